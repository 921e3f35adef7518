"""HumanML3D-style captions generated from a clip's ground-truth events, and the HumanML3D tagger.

``caption_events`` writes several distinct captions for one clip, as different annotators would:
varied subjects, verb synonyms, count words and digits, and order connectives. Every caption is true
to the events (counts, limbs, directions, order); idle events are never mentioned unless the clip is
idle only, and now and then a caption leaves out one minor event (a quarter turn, looking around).
The phrases live in :mod:`motion_align.data.caption_lexicon`.

``tag_caption`` turns text into HumanML3D tokens (``word/UPOS``, nouns and verbs lemmatised, "left"
kept) with the grammar's lexicon, a few context rules and suffix rules for unknown words.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from motion_align.data import caption_lexicon as lex
from motion_align.motion.events import Event

__all__ = ["caption_events", "tag_caption"]

#: Chance that a caption after the first describes only the salient events (when some can go).
SALIENT_RATE = 0.35
#: Chance that a caption starts with a capital letter, as many HumanML3D annotations do.
CAPITAL_RATE = 0.15
#: Attempts per requested caption before giving up on finding distinct ones.
MAX_TRIES_PER_CAPTION = 50

_T = TypeVar("_T")
_SIDES = ("left", "right")
_VERB_MARK = re.compile(r"<(\w+)>")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.])")
_SPACES = re.compile(r"\s{2,}")
_SENTENCE_START = re.compile(r"(^|[.!?]\s+)([a-z])")


def _pick(rng: np.random.Generator, options: Sequence[_T]) -> _T:
    """One element of ``options``, uniformly (a single cheap rng draw)."""
    return options[int(rng.random() * len(options))]


# ---------------------------------------------------------------------------------------- slots
class _Slots(dict):
    """Slot values of one clause, computed on first use; a slot's value may use other slots."""

    def __init__(self, event: Event, rng: np.random.Generator, pronouns: tuple[str, str, str]) -> None:
        super().__init__(poss=pronouns[1], obj=pronouns[2])
        self.event = event
        self.rng = rng

    def __missing__(self, key: str) -> str:
        value = _SLOT_RULES[key](self)
        self[key] = value
        return value

    def phrase(self, options: Sequence[str]) -> str:
        """One of ``options`` with its own slots filled in."""
        return _pick(self.rng, options).format_map(self)

    @property
    def count(self) -> int:
        return self.event.count

    @property
    def speed(self) -> str:
        return self.event.params.get("speed", "normal")


def _side(s: _Slots) -> str:
    """The limb's side, or the travel/turn side."""
    event = s.event
    return event.limb if event.limb in _SIDES else str(event.direction)


def _adverb_count(s: _Slots) -> str:
    """'once'/'' for 1, 'twice', 'three times', '3 times'..."""
    if s.count == 1:
        return _pick(s.rng, lex.ADVERB_COUNT_ONE)
    return s.phrase(lex.ADVERB_COUNT_TWO if s.count == 2 else lex.ADVERB_COUNT_MANY)


def _noun_count(s: _Slots) -> str:
    """The count before a plural noun: 'a', 'one', 'three', '3'."""
    return s.phrase(lex.NOUN_COUNT_ONE if s.count == 1 else lex.NOUN_COUNT_MANY)


def _steps(s: _Slots, adjective: str) -> str:
    """'a step', 'four steps', '4 quick steps'."""
    options = lex.STEPS_ONE if s.count == 1 else lex.STEPS_MANY
    return _pick(s.rng, options).format(word=s["word"], digit=s["digit"], adj=adjective)


def _limb(one: Sequence[str], both: Sequence[str]) -> Callable[[_Slots], str]:
    """A slot rule for a limb noun phrase ('his left hand', 'both arms')."""
    return lambda s: s.phrase(both if s.event.limb == "both" else one)


def _direction(s: _Slots) -> str:
    """'forward', 'backwards', 'sideways to the left'..."""
    kind = "sideways" if s.event.direction in _SIDES else (s.event.direction or "forward")
    straight = s.event.params.get("path", "straight") == "straight"
    return s.phrase((lex.DIRECTIONS if straight else lex.DIRECTIONS_ON_PATH)[kind])


def _path(s: _Slots) -> str:
    """'in a curve to the left', 'in a counterclockwise circle'..."""
    path = s.event.params["path"]
    return s.phrase(lex.PATHS[path] if "curve" in s.event.params else lex.PATHS_NO_SIDE[path])


def _where(s: _Slots) -> str:
    """Direction and path of a walk or run."""
    if s.event.params.get("path", "straight") == "straight":
        return s["dirp"]
    if s.event.direction in (None, "forward"):
        return s.phrase(lex.FORWARD_PATH)
    return f"{s['dirp']} {s['path']}"


_SLOT_RULES: dict[str, Callable[[_Slots], str]] = {
    "side": _side,
    "c": lambda s: s.event.params["curve"],
    "rot": lambda s: _pick(s.rng, lex.ROTATION[s["side"]]),
    "rot_c": lambda s: _pick(s.rng, lex.ROTATION[s["c"]]),
    "word": lambda s: lex.NUMBER_WORDS[s.count],
    "digit": lambda s: str(s.count),
    "cnt": _adverb_count,
    "num": _noun_count,
    "s": lambda s: "s" if s.count > 1 else "",
    "es": lambda s: "es" if s.count > 1 else "",
    "sides": lambda s: "sides" if s.event.limb == "both" else "side",
    "hand": _limb(lex.HAND_ONE, lex.HAND_BOTH),
    "arm": _limb(lex.ARM_ONE, lex.ARM_BOTH),
    "leg": _limb(lex.LEG, lex.LEG),
    "fist": _limb(lex.FIST, lex.FIST),
    "wv": lambda s: s.phrase(lex.WALK_VERBS[s.speed]),
    "rv": lambda s: s.phrase(lex.RUN_VERBS[s.speed]),
    "steps": lambda s: _steps(s, ""),
    "asteps": lambda s: _steps(s, _pick(s.rng, lex.STEP_ADJECTIVES[s.speed])),
    "dirp": _direction,
    "side_where": lambda s: s.phrase(lex.DIRECTIONS["sideways"]),
    "sidestep_where": lambda s: s.phrase(lex.SIDESTEP_WHERE),
    "path": _path,
    "where": _where,
    "jdir": lambda s: s.phrase(lex.JUMP_DIRECTIONS[s.event.direction]),
    "jud": lambda s: s.phrase(lex.JUMP_UP_DOWN[s.event.direction]),
    "jfwd": lambda s: s.phrase(lex.JUMP_FORWARD[s.event.direction]),
    "spd": lambda s: s.phrase(lex.SPEED_ADVERBS[s.speed]),
}


# ---------------------------------------------------------------------------------------- sentences
def _variant(event: Event) -> object:
    """The key of the clause table to use for ``event`` ("any" when no variant applies)."""
    straight = event.params.get("path", "straight") == "straight"
    if event.action == "walk" and event.direction in _SIDES and straight:
        return "sideways"
    param = lex.VARIANT_PARAM.get(event.action)
    return event.params.get(param, "any") if param else "any"


def _clause(event: Event, rng: np.random.Generator, pronouns: tuple[str, str, str]) -> str:
    """One clause for ``event`` with its verbs still marked (``<walk> forward four steps``)."""
    table = lex.CLAUSES[event.action]
    return _Slots(event, rng, pronouns).phrase(table.get(_variant(event), table["any"]))


def _inflect(marked: str, form: int) -> str:
    """Replace ``<verb>`` marks by the third person singular (form 0) or the gerund (form 1)."""
    return _VERB_MARK.sub(lambda m: lex.VERB_FORMS[m.group(1)][form], marked)


def _sentence_templates(n: int, singular_pronoun: bool) -> tuple[str, ...]:
    """Sentence templates for ``n`` clauses; those with a subject pronoun need a singular one."""
    if n not in lex.SENTENCES:
        return ("{S} " + ", then ".join(f"{{{letter}}}" for letter in string.ascii_lowercase[:n]) + ".",)
    templates = lex.SENTENCES[n]
    return templates if singular_pronoun else tuple(t for t in templates if "{P}" not in t)


def _tidy(text: str, capital: bool) -> str:
    """Collapse spaces left by empty slots; optionally capitalise sentence starts."""
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", _SPACES.sub(" ", text)).strip()
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text) if capital else text


def _sentence(events: Sequence[Event], rng: np.random.Generator) -> str:
    """One caption describing ``events`` in order."""
    subject, gender = _pick(rng, lex.SUBJECTS)
    pronouns = _pick(rng, lex.PRONOUNS[gender])
    clauses = [_clause(event, rng, pronouns) for event in events]
    fields = {"S": subject, "P": pronouns[0]}
    for letter, clause in zip(string.ascii_lowercase, clauses):
        fields[letter] = _inflect(clause, 0)
        fields[letter + "i"] = _inflect(clause, 1)
    template = _pick(rng, _sentence_templates(len(clauses), pronouns[0] != "they"))
    return _tidy(template.format_map(fields), rng.random() < CAPITAL_RATE)


def _is_minor(event: Event) -> bool:
    """Events a caption may leave out: looking around and quarter turns."""
    return event.action == "look_around" or (event.action == "turn" and event.params.get("angle", 90) == 90)


def _salient(events: Sequence[Event], rng: np.random.Generator) -> list[Event]:
    """``events`` without one minor event (order kept)."""
    drop = _pick(rng, [i for i, event in enumerate(events) if _is_minor(event)])
    return [event for i, event in enumerate(events) if i != drop]


def caption_events(
    events: Sequence[Event], rng: np.random.Generator, num_captions: int = 3
) -> list[tuple[str, list[str]]]:
    """``num_captions`` distinct captions ``(text, tokens)`` that describe ``events`` truthfully.

    Idle events are left out unless the clip is idle only. At least one caption describes every
    other event; the others may leave out one minor event (see ``_is_minor``).
    """
    if not events:
        raise ValueError("a clip needs at least one event")
    told = [event for event in events if event.action != "idle"] or [events[0]]
    can_shorten = len(told) >= 2 and any(_is_minor(event) for event in told)
    texts: list[str] = []
    for _ in range(MAX_TRIES_PER_CAPTION * num_captions):
        if len(texts) >= num_captions:
            break
        shorten = can_shorten and bool(texts) and rng.random() < SALIENT_RATE
        text = _sentence(_salient(told, rng) if shorten else told, rng)
        if text not in texts:
            texts.append(text)
    if len(texts) < num_captions:
        raise RuntimeError(f"found only {len(texts)} distinct captions of {num_captions} for {events}")
    return [(texts[i], tag_caption(texts[i])) for i in rng.permutation(len(texts))]


# ---------------------------------------------------------------------------------------- tagging
_TOKEN = re.compile(r"'[a-z]+|[a-z0-9]+|[^\sa-z0-9]")
_NOUNISH_NEXT = frozenset({"NOUN"})
_MODIFIER_PREV = frozenset({"DET", "NUM", "ADJ"})
_GRADABLE = frozenset({"high", "low", "fast"})
_ADJECTIVAL = _GRADABLE | frozenset(_SIDES) | frozenset({"clockwise", "counterclockwise", "anticlockwise"})

#: Suffix rules for unknown words: (suffix, shortest word, lemma ending replacing the suffix, UPOS).
_SUFFIX_RULES: tuple[tuple[str, int, str, str], ...] = (
    ("ly", 4, "ly", "ADV"), ("ous", 4, "ous", "ADJ"), ("ful", 4, "ful", "ADJ"), ("ing", 5, "", "VERB"),
    ("ied", 4, "y", "VERB"), ("ed", 4, "", "VERB"), ("ies", 4, "y", "NOUN"), ("ches", 5, "ch", "NOUN"),
    ("shes", 5, "sh", "NOUN"), ("ss", 3, "ss", "NOUN"), ("us", 3, "us", "NOUN"), ("is", 3, "is", "NOUN"),
    ("s", 3, "", "NOUN"),
)  # fmt: skip


def _guess(word: str) -> tuple[str, str]:
    """(lemma, UPOS) of a word outside the lexicon, from its suffix (a noun by default)."""
    if not word.isalpha():
        return word, "NUM" if any(ch.isdigit() for ch in word) else "PUNCT"
    for suffix, shortest, ending, pos in _SUFFIX_RULES:
        if word.endswith(suffix) and len(word) >= shortest:
            stem = word[: len(word) - len(suffix)]
            if suffix in ("ing", "ed") and len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
                stem = stem[:-1]  # running -> run, hopped -> hop
            return stem + ending, pos
    return word, "NOUN"


def _lookup(word: str) -> tuple[str, str]:
    """(lemma, default UPOS) of a lower-case token."""
    return lex.LEXICON.get(word) or _guess(word)


def _is_nounish(word: str, pos: str) -> bool:
    return pos in _NOUNISH_NEXT or word in lex.NOUN_OR_VERB


def _context_pos(words: list[str], tags: list[str], i: int) -> str:
    """The tag of ``words[i]`` given its (already tagged) left neighbour and default-tagged right one."""
    word, pos = words[i], tags[i]
    prev_pos = tags[i - 1] if i > 0 else ""
    nxt, next_pos = (words[i + 1], tags[i + 1]) if i + 1 < len(words) else ("", "")
    if word in lex.NOUN_OR_VERB:
        return "NOUN" if prev_pos in _MODIFIER_PREV else "VERB"
    if word in _ADJECTIVAL:
        if _is_nounish(nxt, next_pos):
            return "ADJ"
        return "NOUN" if word in _SIDES and prev_pos == "DET" else "ADV"
    if word == "her":
        return "DET" if _is_nounish(nxt, next_pos) or next_pos == "ADJ" or nxt in _ADJECTIVAL else "PRON"
    if word == "to":
        return "PART" if next_pos == "VERB" and lex.LEXICON.get(nxt, ("", ""))[0] == nxt else "ADP"
    if word in ("around", "about"):
        return "ADP" if next_pos in ("DET", "PRON") else "ADV"
    return pos


def tag_caption(text: str) -> list[str]:
    """HumanML3D tokens of ``text``: ``word/UPOS``, lower case, alphabetic words only.

    Hyphens are removed first ("counter-clockwise" -> "counterclockwise"); nouns and verbs are
    lemmatised except "left", which is never read as the verb "leave".
    """
    words = _TOKEN.findall(text.lower().replace("-", ""))
    entries = [_lookup(word) for word in words]
    tags = [pos for _, pos in entries]
    tokens = []
    for i, word in enumerate(words):
        if not word.isalpha():
            continue
        tags[i] = pos = _context_pos(words, tags, i)
        lemma = entries[i][0] if pos in ("NOUN", "VERB") and word != "left" else word
        tokens.append(f"{lemma}/{pos}")
    return tokens
