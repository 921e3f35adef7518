"""Tests of the caption generator and the HumanML3D tagger (fast: a few seconds in all)."""

from __future__ import annotations

import itertools
import re
import string

import numpy as np
import pytest

from motion_align.data import caption_lexicon as lex
from motion_align.data.captions import caption_events, tag_caption
from motion_align.motion.events import ACTIONS, MAX_COUNT, Event

_WORD = re.compile(r"[a-z0-9]+")
_TOKEN = re.compile(r"^([a-z]+)/([A-Z]+)$")
_IDLE_WORDS = {"still", "idle", "idly", "motionless"}
_CCW = {"counterclockwise", "anticlockwise"}
_COUNT_WORDS = {**{w: n for n, w in enumerate(lex.NUMBER_WORDS) if n}, "twice": 2, "once": 1}
#: Lemmas that name each action whose wording uses no other action's words (for order checks).
_ACTION_LEMMAS = {
    "jump": {"jump", "leap"}, "clap": {"clap"}, "kick": {"kick"}, "punch": {"punch", "jab", "strike"},
    "wave": {"wave"}, "squat": {"squat", "crouch"}, "sit": {"sit", "seat"}, "bend": {"bend", "pick", "lean"},
    "hop": {"hop"}, "turn": {"turn", "spin"}, "look_around": {"look", "glance", "scan"},
}  # fmt: skip


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("-", ""))


def _all_events() -> list[Event]:
    """Every combination of limb, direction, parameters and count of every action."""
    events = []
    for action, spec in ACTIONS.items():
        names = list(spec["params"])
        for limb, direction, values in itertools.product(
            spec["limb"], spec["direction"], itertools.product(*(spec["params"][n] for n in names))
        ):
            for count in range(1, MAX_COUNT.get(action, 1) + 1):
                events.append(Event(action, count, limb, direction, dict(zip(names, values))))
        events.append(Event(action, 1, spec["limb"][0], spec["direction"][0]))  # no params at all
    return events


ALL_EVENTS = _all_events()


def _random_event(rng: np.random.Generator, actions: list[str] | None = None) -> Event:
    actions = actions or list(ACTIONS)
    action = actions[rng.integers(len(actions))]
    spec = ACTIONS[action]
    params = {k: v[rng.integers(len(v))] for k, v in spec["params"].items()}
    return Event(action, int(rng.integers(1, MAX_COUNT.get(action, 1) + 1)),
                 spec["limb"][rng.integers(len(spec["limb"]))],
                 spec["direction"][rng.integers(len(spec["direction"]))], params)  # fmt: skip


def _random_clips(seed: int, n: int, actions: list[str] | None = None) -> list[list[Event]]:
    rng = np.random.default_rng(seed)
    return [[_random_event(rng, actions) for _ in range(rng.integers(1, 5))] for _ in range(n)]


@pytest.fixture(scope="module")
def single_captions() -> list[tuple[Event, list[tuple[str, list[str]]]]]:
    rng = np.random.default_rng(0)
    return [(event, caption_events([event], rng, 3)) for event in ALL_EVENTS]


def test_distinct_sentences(single_captions) -> None:
    for _, captions in single_captions:
        texts = [text for text, _ in captions]
        assert len(texts) == 3 and len(set(texts)) == 3
        for text in texts:
            assert text.endswith(".") and "  " not in text and " ," not in text
            assert text[1:] == text[1:].lower() or ". " in text  # lower case but for sentence starts
    rng = np.random.default_rng(1)
    assert len({t for t, _ in caption_events([Event("clap")], rng, 12)}) == 12


def test_count_words(single_captions) -> None:
    for event, captions in single_captions:
        if event.action not in MAX_COUNT:
            continue
        for text, _ in captions:
            found = {_COUNT_WORDS.get(w, int(w) if w.isdigit() else None) for w in _words(text)} - {None}
            assert found <= {event.count}, (event, text)
            if event.count > 1:
                assert found == {event.count}, (event, text)


@pytest.mark.parametrize("mirror", [False, True])
def test_limb_and_side_words(single_captions, mirror: bool) -> None:
    swap = {"left": "right", "right": "left"}
    rng = np.random.default_rng(2)
    for event, captions in single_captions:
        if mirror:
            event = event.mirrored()
            captions = caption_events([event], rng, 3)
        side = event.limb if event.limb in swap else None
        if event.action in ("walk", "turn"):
            side = event.direction
        if event.action in ("walk", "run") and event.params.get("path", "straight") != "straight":
            continue  # the curve side is checked in test_path_and_direction_words
        for text, _ in captions:
            words = set(_words(text))
            if event.limb == "both":
                assert "both" in words and not words & {"left", "right"}, text
            elif side in swap:
                rotation = _CCW if side == "left" else {"clockwise"}
                assert (
                    side in words
                    or (event.action == "turn" and words & rotation)
                    or (event.params.get("angle") == 180 and "around" in words)
                ), text
                assert swap[side] not in words, text
            else:
                assert not words & {"left", "right"}, text


def test_path_and_direction_words(single_captions) -> None:
    for event, captions in single_captions:
        if event.action not in ("walk", "run"):
            continue
        path, curve = event.params.get("path", "straight"), event.params.get("curve")
        for text, _ in captions:
            words = set(_words(text))
            if event.direction == "forward" and path == "straight":
                assert words & {"forward", "forwards", "ahead"}, text
            if event.direction == "backward":
                assert words & {"backward", "backwards"}, text
            if path != "straight":
                path_words = {"curve", "arc", "curving", "curved"} if path == "curve" else {"circle"}
                assert words & path_words, text
            if path != "straight" and curve and event.direction in ("forward", "backward"):
                same = {curve} | (_CCW if curve == "left" else {"clockwise"})
                other = {"left", "right", "clockwise"} - same
                assert words & same and not words & other, text


def _canonical(text: str, swap: bool) -> str:
    names = {"left": "L", "right": "R", "counterclockwise": "CCW", "anticlockwise": "CCW", "clockwise": "CW"}
    if swap:
        names = {k: {"L": "R", "R": "L", "CCW": "CW", "CW": "CCW"}[v] for k, v in names.items()}
    pattern = r"\b(counter-clockwise|counterclockwise|anticlockwise|clockwise|left|right)\b"
    return re.sub(pattern, lambda m: names[m.group(1).replace("-", "")], text.lower())


def test_mirrored_events_give_mirrored_wording() -> None:
    for i, clip in enumerate(_random_clips(3, 400)):
        plain = caption_events(clip, np.random.default_rng(i), 3)
        mirrored = caption_events([e.mirrored() for e in clip], np.random.default_rng(i), 3)
        for (text, tokens), (m_text, m_tokens) in zip(plain, mirrored):
            assert _canonical(text, swap=True) == _canonical(m_text, swap=False)
            assert [_canonical(t, True) for t in tokens] == [_canonical(t, False) for t in m_tokens]


def _action_positions(tokens: list[str], actions: list[str]) -> list[int | None]:
    lemmas = [token.split("/")[0] for token in tokens]
    return [next((i for i, lemma in enumerate(lemmas) if lemma in _ACTION_LEMMAS[a]), None) for a in actions]


def test_order_is_kept() -> None:
    rng = np.random.default_rng(4)
    kinds = [a for a in _ACTION_LEMMAS if a not in ("turn", "look_around")]
    for _ in range(300):
        actions = [str(a) for a in rng.choice(kinds, size=int(rng.integers(2, 5)), replace=False)]
        clip = [_random_event(rng, [a]) for a in actions]
        for text, tokens in caption_events(clip, rng, 3):
            positions = _action_positions(tokens, actions)
            assert None not in positions and positions == sorted(positions), (actions, text)


def test_salient_captions_drop_one_minor_event_only() -> None:
    rng = np.random.default_rng(5)
    shortened = total = 0
    for _ in range(300):
        clip = [_random_event(rng, ["jump"]), Event("turn", 1, None, "left", {"angle": 90}),
                _random_event(rng, ["clap"]), Event("look_around")]  # fmt: skip
        actions = [e.action for e in clip]
        full = 0
        for text, tokens in caption_events(clip, rng, 3):
            positions = _action_positions(tokens, actions)
            kept = [p for p in positions if p is not None]
            assert kept == sorted(kept) and positions[0] is not None and positions[2] is not None, text
            assert positions.count(None) <= 1, text
            full += None not in positions
        assert full >= 1
        shortened += 3 - full
        total += 3
    assert 0.1 < shortened / total < 0.4


def test_idle_only_when_alone() -> None:
    rng = np.random.default_rng(6)
    for clip in ([Event("idle")], [Event("idle"), Event("idle")]):
        for text, _ in caption_events(clip, rng, 3):
            assert set(_words(text)) & _IDLE_WORDS, text
    for clip in _random_clips(7, 300):
        clip = [Event("idle"), *clip, Event("idle")]
        if all(e.action == "idle" for e in clip):
            continue
        for text, _ in caption_events(clip, rng, 3):
            assert not set(_words(text)) & _IDLE_WORDS, text


def test_token_format_and_lemmas() -> None:
    rng = np.random.default_rng(8)
    for clip in _random_clips(9, 500):
        for _, tokens in caption_events(clip, rng, 3):
            for token in tokens:
                match = _TOKEN.match(token)
                assert match and match.group(2) in lex.UPOS, token
                assert match.group(1) != "leave", token
    assert tag_caption("a person walks forward four steps.") == [
        "a/DET", "person/NOUN", "walk/VERB", "forward/ADV", "four/NUM", "step/NOUN"]  # fmt: skip
    assert tag_caption("a man kicks with his left leg.") == [
        "a/DET", "man/NOUN", "kick/VERB", "with/ADP", "his/DET", "left/ADJ", "leg/NOUN"]  # fmt: skip
    assert tag_caption("Someone is waving both hands, then jumps 4 times.") == [
        "someone/PRON",
        "is/AUX",
        "wave/VERB",
        "both/DET",
        "hand/NOUN",
        "then/ADV",
        "jump/VERB",
        "time/NOUN",
    ]
    assert tag_caption("raises both arms and legs") == ["raise/VERB", "both/DET", "arm/NOUN", "and/CCONJ",
                                                        "leg/NOUN"]  # fmt: skip
    assert tag_caption("walks counter-clockwise")[-1] == "counterclockwise/ADV"


def test_left_is_never_lemmatised() -> None:
    for text in ("turns left.", "waves the left hand.", "walks to the left.", "the man left the room."):
        lefts = [t for t in tag_caption(text) if t.startswith(("left/", "leave/"))]
        assert len(lefts) == 1 and lefts[0].split("/")[0] == "left", (text, lefts)
    assert tag_caption("turns left")[-1] == "left/ADV"
    assert tag_caption("walks to the left")[-1] == "left/NOUN"


def _strings(table: object) -> list[str]:
    """Every string inside nested dicts, tuples and lists (dict values only)."""
    if isinstance(table, str):
        return [table]
    items = table.values() if isinstance(table, dict) else table
    return [s for item in items for s in _strings(item)]


def test_every_grammar_word_is_in_the_lexicon() -> None:
    rng = np.random.default_rng(10)
    texts = [text for event in ALL_EVENTS for text, _ in caption_events([event], rng, 6)]
    texts += [text for clip in _random_clips(11, 1500) for text, _ in caption_events(clip, rng, 3)]
    words = {w for text in texts for w in _words(text) if w.isalpha()}
    assert not words - set(lex.LEXICON)
    # and statically: every literal word of every phrase table
    tables = [[subject for subject, _ in lex.SUBJECTS], lex.PRONOUNS, lex.CLAUSES, lex.SENTENCES, lex.PATHS,
              lex.PATHS_NO_SIDE, lex.DIRECTIONS, lex.WALK_VERBS, lex.RUN_VERBS, lex.ROTATION,
              lex.JUMP_DIRECTIONS, lex.STEPS_ONE, lex.STEPS_MANY, lex.FORWARD_PATH, lex.HAND_ONE,
              lex.HAND_BOTH,
              lex.ARM_ONE, lex.ARM_BOTH, lex.LEG, lex.FIST, lex.ADVERB_COUNT_ONE, lex.ADVERB_COUNT_TWO,
              lex.ADVERB_COUNT_MANY, lex.NOUN_COUNT_ONE, lex.NOUN_COUNT_MANY, lex.STEP_ADJECTIVES,
              lex.NUMBER_WORDS, lex.JUMP_UP_DOWN, lex.JUMP_FORWARD, lex.SPEED_ADVERBS,
              lex.DIRECTIONS_ON_PATH, lex.SIDESTEP_WHERE]  # fmt: skip
    literal = {w for phrase in _strings(tables) for w in _words(re.sub(r"\{\w+\}|<\w+>", " ", phrase))}
    assert not {w for w in literal if w.isalpha()} - set(lex.LEXICON)
    marks = set(re.findall(r"<(\w+)>", repr(list(lex.CLAUSES.values()) + [lex.WALK_VERBS, lex.RUN_VERBS])))
    assert marks <= set(lex.VERB_FORMS)


def test_unknown_words_do_not_crash() -> None:
    tokens = tag_caption("The dancer gracefully pirouettes, spinning 3 times on her toes! It's 2nd-rate.")
    assert all(_TOKEN.match(t) and t.split("/")[1] in lex.UPOS for t in tokens)
    assert "gracefully/ADV" in tokens and "spin/VERB" in tokens and "toe/NOUN" in tokens
    assert tag_caption("") == [] and tag_caption("123 ...") == []


def test_deterministic_for_a_seed() -> None:
    clip = [Event("walk", 4, None, "forward", {"speed": "fast"}),
            Event("turn", 1, None, "left", {"angle": 180}), Event("wave", 2, "right")]  # fmt: skip
    first = caption_events(clip, np.random.default_rng(42), 3)
    assert first == caption_events(clip, np.random.default_rng(42), 3)
    others = {tuple(t for t, _ in caption_events(clip, np.random.default_rng(s), 3)) for s in range(5)}
    assert len(others) > 1


def test_errors_and_sizes() -> None:
    with pytest.raises(ValueError):
        caption_events([], np.random.default_rng(0))
    assert caption_events([Event("jump")], np.random.default_rng(0), 0) == []
    assert len(caption_events([Event("jump")], np.random.default_rng(0), 1)) == 1
    texts = [t for t, _ in caption_events([Event("sit")], np.random.default_rng(0), 5)]
    assert all(c in string.printable for text in texts for c in text)


def test_captions_of_many_clips_are_seeded() -> None:
    clips = _random_clips(12, 1000)

    def captions(seed: int) -> list:
        rng = np.random.default_rng(seed)
        return [caption_events(clip, rng, 3) for clip in clips]

    first = captions(13)
    assert first == captions(13) and first != captions(14)
    assert all(len(per_clip) == 3 and all(text for text, _ in per_clip) for per_clip in first)
