"""Phrase tables and word lexicon of the caption grammar used by :mod:`motion_align.data.captions`.

The grammar is data. A clause template is a string in which ``<verb>`` marks a verb to inflect
(third person singular or gerund) and ``{slot}`` names a value computed from the event (count,
limb, direction...). Slot values may contain slots themselves. Sentence templates join clauses:
``{a}``..``{d}`` are the clauses in the third person, ``{ai}``..``{di}`` their gerunds, ``{S}`` the
subject and ``{P}`` a subject pronoun. Every phrase keeps the events' order; left/right and
clockwise/counterclockwise come only from the events, so mirrored events give mirrored wording.

The lexicon maps every word the grammar can produce to ``(lemma, UPOS)`` for the HumanML3D tagger.
"""

from __future__ import annotations

# ------------------------------------------------------------------------------------------ subjects
#: (noun phrase, gender); repeats weight the common ones, as in HumanML3D.
SUBJECTS: tuple[tuple[str, str], ...] = (
    ("a person", "any"), ("a person", "any"), ("a person", "any"), ("a person", "any"),
    ("someone", "any"), ("someone", "any"), ("a man", "male"), ("a man", "male"), ("a woman", "female"),
    ("the person", "any"), ("a figure", "any"), ("the human", "any"), ("the man", "male"),
    ("a human", "any"), ("the woman", "female"), ("somebody", "any"), ("the figure", "any"),
)  # fmt: skip

#: (subject pronoun, possessive, object pronoun) per gender.
PRONOUNS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "male": (("he", "his", "him"),),
    "female": (("she", "her", "her"),),
    "any": (("he", "his", "him"), ("he", "his", "him"), ("they", "their", "them")),
}

# ------------------------------------------------------------------------------------------ counts
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                                 "nine", "ten", "eleven", "twelve", "thirteen", "fourteen")  # fmt: skip

#: Adverbial count ("{cnt}"); 1 is mostly left unsaid.
ADVERB_COUNT_ONE: tuple[str, ...] = ("", "", "once")
ADVERB_COUNT_TWO: tuple[str, ...] = ("twice", "twice", "two times", "2 times")
ADVERB_COUNT_MANY: tuple[str, ...] = ("{word} times", "{word} times", "{digit} times")
#: Count before a noun ("{num}"): "a jump", "three jumps", "3 jumps".
NOUN_COUNT_ONE: tuple[str, ...] = ("a", "a", "one", "a single")
NOUN_COUNT_MANY: tuple[str, ...] = ("{word}", "{word}", "{digit}")

# ------------------------------------------------------------------------------------------ limbs
HAND_ONE: tuple[str, ...] = ("{poss} {side} hand", "{poss} {side} hand", "the {side} hand")
HAND_BOTH: tuple[str, ...] = ("both hands", "both hands", "both of {poss} hands")
ARM_ONE: tuple[str, ...] = ("{poss} {side} arm", "{poss} {side} arm", "the {side} arm")
ARM_BOTH: tuple[str, ...] = ("both arms", "both arms", "both of {poss} arms")
LEG: tuple[str, ...] = ("{poss} {side} leg", "the {side} leg", "{poss} {side} foot", "the {side} foot")
FIST: tuple[str, ...] = ("{poss} {side} fist", "the {side} fist", "{poss} {side} hand")

# ------------------------------------------------------------------------------------------ walk / run
WALK_VERBS: dict[str, tuple[str, ...]] = {
    "slow": ("<walk> slowly", "slowly <walk>", "<stroll>", "<stroll> slowly"),
    "normal": ("<walk>",),
    "fast": ("<walk> quickly", "quickly <walk>", "<walk> briskly", "<hurry>", "<walk> fast"),
}
RUN_VERBS: dict[str, tuple[str, ...]] = {
    "slow": ("<jog>", "<jog>", "<jog> slowly", "<run> slowly", "<jog> lightly"),
    "normal": ("<run>",),
    "fast": ("<sprint>", "<run> fast", "<run> quickly", "<dash>"),
}
STEP_ADJECTIVES: dict[str, tuple[str, ...]] = {"slow": ("slow",), "normal": ("",),
                                                "fast": ("quick", "brisk", "fast")}  # fmt: skip
STEPS_ONE: tuple[str, ...] = ("a {adj} step", "a {adj} step", "one {adj} step", "a single {adj} step")
STEPS_MANY: tuple[str, ...] = ("{word} {adj} steps", "{word} {adj} steps", "{digit} {adj} steps")

#: Travel directions; left/right mean sidestepping.
DIRECTIONS: dict[str, tuple[str, ...]] = {
    "forward": ("forward", "forward", "forwards", "straight ahead", "ahead", "straight forward"),
    "backward": ("backward", "backwards", "backwards", "straight backward"),
    "sideways": ("sideways to the {side}", "sideways to the {side}", "to the {side}", "to {poss} {side}",
                 "sideways to {poss} {side}"),
}  # fmt: skip
#: Curved paths; ``{c}`` is the curve side, ``{rot_c}`` its rotation word.
PATHS: dict[str, tuple[str, ...]] = {
    "curve": ("in a curve to the {c}", "along a curve to the {c}", "in an arc to the {c}",
              "on a path curving to the {c}", "curving to the {c}"),
    "circle": ("in a circle to the {c}", "in a {rot_c} circle", "in a circle {rot_c}",
               "around in a circle to the {c}", "in a circle going {rot_c}"),
}  # fmt: skip
PATHS_NO_SIDE: dict[str, tuple[str, ...]] = {"curve": ("in a curve", "along a curved path"),
                                             "circle": ("in a circle", "around in a circle")}  # fmt: skip
#: Where a curved path goes when walking forward ("{path}" alone implies forward).
FORWARD_PATH: tuple[str, ...] = ("{path}", "{path}", "{dirp} {path}")
#: Rotation seen from above: turning left is counterclockwise. Equal lengths keep mirroring exact.
ROTATION: dict[str, tuple[str, ...]] = {
    "left": ("counterclockwise", "counterclockwise", "counter-clockwise", "anticlockwise"),
    "right": ("clockwise", "clockwise", "clockwise", "clockwise"),
}
#: Where a jump goes.
JUMP_DIRECTIONS: dict[str | None, tuple[str, ...]] = {
    None: ("", "", "in place", "on the spot"),
    "forward": ("forward", "forward", "forwards", "ahead"),
}
#: Where a jump goes, for "<jump> {jud}" ("jumps up and down") and "<leap> {jfwd} high into the air".
JUMP_UP_DOWN: dict[str | None, tuple[str, ...]] = {None: ("up and down",), "forward": ("forward", "forwards")}
JUMP_FORWARD: dict[str | None, tuple[str, ...]] = {None: ("",), "forward": ("forward",)}
#: Speed adverbs for sidestepping.
SPEED_ADVERBS: dict[str, tuple[str, ...]] = {"slow": ("slowly",), "normal": ("",),
                                              "fast": ("quickly", "briskly")}  # fmt: skip
#: Where a sidestep goes ("sidesteps sideways" would be redundant).
SIDESTEP_WHERE: tuple[str, ...] = ("to the {side}", "to the {side}", "to {poss} {side}")
#: Directions on a curved path ("straight ahead" would contradict the curve).
DIRECTIONS_ON_PATH: dict[str, tuple[str, ...]] = {
    "forward": ("forward", "forwards"),
    "backward": ("backward", "backwards"),
    "sideways": ("sideways to the {side}", "to the {side}"),
}

# ------------------------------------------------------------------------------------------ clauses
_WALK = ("{wv} {where} {steps}", "{wv} {steps} {where}", "<take> {asteps} {where}",
         "{wv} {where} for {steps}")  # fmt: skip
_JUMP = ("<jump> {jdir} {cnt}", "<jump> {cnt} {jdir}", "<leap> {jdir} {cnt}", "<do> {num} jump{s} {jdir}",
         "<jump> {jud} {cnt}")  # fmt: skip
_SQUAT = ("<squat> {cnt}", "<squat> down {cnt}", "<crouch> down {cnt}", "<do> {num} squat{s}",
          "<crouch> {cnt}")  # fmt: skip
_KICK = ("<kick> with {leg} {cnt}", "<kick> {leg} forward {cnt}", "<kick> {cnt} with {leg}",
         "<do> {num} kick{s} with {leg}", "<kick> out with {leg} {cnt}")  # fmt: skip
_BEND = ("<bend> over", "<bend> forward at the waist", "<bend> over and <straighten> back up",
         "<lean> forward and <bend> over", "<bend> over at the waist")  # fmt: skip

#: Clause templates per action and variant (a parameter value, see ``VARIANT_PARAM``; "any" otherwise).
CLAUSES: dict[str, dict[object, tuple[str, ...]]] = {
    "walk": {"any": _WALK,
             "sideways": _WALK + ("{spd} <sidestep> {sidestep_where} {cnt}",
                                  "{spd} <step> {side_where} {cnt}")},
    "run": {"any": ("{rv} {where} {steps}", "{rv} {steps} {where}", "{rv} {where} for {steps}")},
    "turn": {
        90: ("<turn> {side}", "<turn> to the {side}", "<turn> 90 degrees to the {side}",
             "<turn> ninety degrees to the {side}", "<make> a quarter turn to the {side}",
             "<turn> to {poss} {side}", "<turn> 90 degrees {side}"),
        180: ("<turn> around to the {side}", "<turn> around to {poss} {side}",
              "<turn> 180 degrees to the {side}", "<make> a half turn to the {side}", "<turn> around",
              "<turn> around over {poss} {side} shoulder", "<turn> around {rot}"),
        360: ("<spin> in a full circle to the {side}", "<turn> all the way around to the {side}",
              "<do> a full turn to the {side}", "<spin> 360 degrees {rot}", "<turn> a full circle {rot}",
              "<make> a complete turn to the {side}", "<spin> around {rot}"),
        "any": ("<turn> to the {side}", "<turn> {side}", "<turn> toward {poss} {side}"),
    },
    "jump": {
        "any": _JUMP,
        "low": ("<do> {num} small jump{s} {jdir}", "<make> {num} small jump{s} {jdir}",
                "<jump> slightly {jdir} {cnt}", "<do> {num} little jump{s} {jdir}",
                "<jump> a little {jdir} {cnt}"),
        "high": ("<jump> high {jdir} {cnt}", "<leap> {jfwd} high into the air {cnt}",
                 "<do> {num} high jump{s} {jdir}", "<do> {num} big jump{s} {jdir}",
                 "<jump> up high {jdir} {cnt}"),
    },
    "hop": {"any": ("<hop> on {leg} {cnt}", "<hop> on {leg} {cnt}", "<hop> {cnt} on {leg}",
                    "<do> {num} hop{s} on {leg}")},
    "squat": {
        "any": _SQUAT,
        "deep": ("<squat> down deeply {cnt}", "<squat> deeply {cnt}", "<do> {num} deep squat{s}",
                 "<crouch> down low {cnt}", "<squat> all the way down {cnt}", "<squat> low {cnt}"),
        "shallow": ("<do> {num} shallow squat{s}", "<squat> slightly {cnt}", "<squat> down a little {cnt}",
                    "<do> {num} half squat{s}", "<crouch> slightly {cnt}"),
    },
    "sit": {"any": ("<sit> down and <stand> back up", "<take> a seat and <get> up",
                    "<sit> down and then <get> up again", "<sit> down and <stand> up",
                    "<sit> down briefly and <stand> back up", "<sit> down and <rise> again",
                    "<take> a seat and then <stand> up again")},
    "wave": {"any": ("<wave> {hand} {cnt}", "<wave> {cnt} with {hand}", "<wave> with {hand} {cnt}",
                     "<wave> hello with {hand} {cnt}", "<wave> {arm} {cnt}", "<wave> {hand} in the air {cnt}",
                     "<wave> goodbye with {hand} {cnt}")},
    "raise_arms": {
        "any": ("<raise> {arm} {cnt}", "<lift> {arm} {cnt}", "<raise> {arm} up {cnt}"),
        "front": ("<raise> {arm} in front of {obj} {cnt}", "<raise> {arm} forward {cnt}",
                  "<lift> {arm} to the front {cnt}", "<raise> {arm} straight out in front {cnt}",
                  "<lift> {arm} forward {cnt}"),
        "side": ("<raise> {arm} out to the {sides} {cnt}", "<lift> {arm} sideways {cnt}",
                 "<raise> {arm} to the {sides} {cnt}", "<lift> {arm} out to the {sides} {cnt}"),
        "overhead": ("<raise> {arm} above {poss} head {cnt}", "<lift> {arm} overhead {cnt}",
                     "<raise> {arm} over {poss} head {cnt}", "<raise> {hand} up above {poss} head {cnt}",
                     "<lift> {arm} up over {poss} head {cnt}"),
    },
    "clap": {"any": ("<clap> {cnt}", "<clap> {cnt}", "<clap> {poss} hands {cnt}",
                     "<clap> {poss} hands together {cnt}", "<give> {num} clap{s}", "<clap> hands {cnt}")},
    "punch": {"any": ("<punch> with {fist} {cnt}", "<punch> {cnt} with {hand}",
                      "<throw> {num} punch{es} with {hand}", "<jab> with {fist} {cnt}",
                      "<strike> forward with {fist} {cnt}", "<punch> forward with {arm} {cnt}",
                      "<throw> {num} {side} jab{s}")},
    "kick": {
        "any": _KICK,
        "high": ("<kick> high with {leg} {cnt}", "<do> {num} high kick{s} with {leg}",
                 "<kick> {leg} up high {cnt}", "<kick> {leg} high into the air {cnt}"),
        "low": ("<kick> low with {leg} {cnt}", "<do> {num} low kick{s} with {leg}",
                "<kick> {leg} forward low {cnt}", "<do> {num} small kick{s} with {leg}"),
    },
    "bend": {
        "any": _BEND,
        "bend_over": _BEND,
        "pick_up": ("<bend> down to pick something up", "<bend> over to pick something up",
                    "<pick> something up from the ground", "<reach> down to pick something up off the floor",
                    "<bend> down to pick up an object", "<bend> down and <pick> something up"),
    },
    "look_around": {"any": ("<look> around", "<look> around", "<look> around {obj}", "<glance> around",
                            "<look> around curiously", "<scan> {poss} surroundings", "<look> about")},
    "idle": {"any": ("<stand> still", "<stand> idle", "<stand> still in place",
                     "<stand> still without moving", "<remain> standing still", "<stay> still",
                     "<stand> motionless", "<stand> there idly")},
}  # fmt: skip

#: Which parameter picks the clause variant of an action.
VARIANT_PARAM: dict[str, str] = {"turn": "angle", "jump": "height", "squat": "depth", "raise_arms": "mode",
                                 "kick": "height", "bend": "mode"}  # fmt: skip

# ------------------------------------------------------------------------------------------ sentences
#: Sentence templates by number of clauses. ``{P}`` templates need a singular subject pronoun.
SENTENCES: dict[int, tuple[str, ...]] = {
    1: ("{S} {a}.", "{S} {a}.", "{S} {a}.", "{S} is {ai}."),
    2: ("{S} {a}, then {b}.", "{S} {a} and then {b}.", "{S} first {a}, then {b}.", "{S} {a}, and then {b}.",
        "{S} {a} before {bi}.", "after {ai}, {S} {b}.", "{S} {a} and {b}.", "first, {S} {a}. then {P} {b}.",
        "{S} {a}. after that, {P} {b}.", "{S} {a}, after which {P} {b}.", "{S} first {a} and then {b}."),
    3: ("{S} {a}, {b} and finally {c}.", "{S} first {a}, then {b}, and then {c}.",
        "{S} {a}, then {b}, then {c}.", "{S} {a}, {b}, and then {c}.", "after {ai}, {S} {b} and then {c}.",
        "{S} {a}, then {b} before {ci}.",
        "{S} first {a}, then {b} and finally {c}.", "{S} {a}. then {P} {b} and finally {c}."),
    4: ("{S} {a}, {b}, {c} and finally {d}.", "{S} first {a}, then {b}, then {c}, and finally {d}.",
        "{S} {a}, then {b}, then {c}, then {d}.", "after {ai}, {S} {b}, {c} and then {d}.",
        "{S} {a}, {b}, {c}, and then {d}.", "{S} first {a}, then {b}. after that, {P} {c} and finally {d}."),
}  # fmt: skip

# ------------------------------------------------------------------------------------------ lexicon
#: Verb lemma -> (third person singular, gerund).
VERB_FORMS: dict[str, tuple[str, str]] = {
    "walk": ("walks", "walking"), "stroll": ("strolls", "strolling"), "hurry": ("hurries", "hurrying"),
    "take": ("takes", "taking"), "sidestep": ("sidesteps", "sidestepping"), "step": ("steps", "stepping"),
    "run": ("runs", "running"), "jog": ("jogs", "jogging"), "sprint": ("sprints", "sprinting"),
    "dash": ("dashes", "dashing"), "turn": ("turns", "turning"), "make": ("makes", "making"),
    "do": ("does", "doing"), "spin": ("spins", "spinning"), "jump": ("jumps", "jumping"),
    "leap": ("leaps", "leaping"), "hop": ("hops", "hopping"), "squat": ("squats", "squatting"),
    "crouch": ("crouches", "crouching"), "sit": ("sits", "sitting"), "stand": ("stands", "standing"),
    "get": ("gets", "getting"), "rise": ("rises", "rising"), "wave": ("waves", "waving"),
    "raise": ("raises", "raising"), "lift": ("lifts", "lifting"), "reach": ("reaches", "reaching"),
    "clap": ("claps", "clapping"), "give": ("gives", "giving"), "punch": ("punches", "punching"),
    "throw": ("throws", "throwing"), "jab": ("jabs", "jabbing"), "strike": ("strikes", "striking"),
    "kick": ("kicks", "kicking"), "bend": ("bends", "bending"), "lean": ("leans", "leaning"),
    "straighten": ("straightens", "straightening"), "pick": ("picks", "picking"),
    "look": ("looks", "looking"),
    "glance": ("glances", "glancing"), "scan": ("scans", "scanning"), "remain": ("remains", "remaining"),
    "stay": ("stays", "staying"), "move": ("moves", "moving"), "curve": ("curves", "curving"),
    "go": ("goes", "going"),
}  # fmt: skip

#: Noun lemma -> plural.
NOUN_PLURALS: dict[str, str] = {
    "person": "people", "man": "men", "woman": "women", "figure": "figures", "human": "humans",
    "step": "steps", "time": "times", "degree": "degrees", "hand": "hands", "arm": "arms", "leg": "legs",
    "foot": "feet", "fist": "fists", "jump": "jumps", "hop": "hops", "squat": "squats", "punch": "punches",
    "kick": "kicks", "clap": "claps", "jab": "jabs", "side": "sides", "turn": "turns", "circle": "circles",
    "curve": "curves", "arc": "arcs", "path": "paths", "pace": "paces", "seat": "seats", "head": "heads",
    "air": "airs", "ground": "grounds", "floor": "floors", "object": "objects", "waist": "waists",
    "shoulder": "shoulders", "spot": "spots", "place": "places", "hello": "hellos", "goodbye": "goodbyes",
    "surrounding": "surroundings", "way": "ways", "front": "fronts", "quarter": "quarters", "wave": "waves",
    "leap": "leaps",
}  # fmt: skip

#: Words that are a noun after a determiner, number or adjective and a verb otherwise.
NOUN_OR_VERB: frozenset[str] = frozenset({
    "step", "steps", "jump", "jumps", "hop", "hops", "squat", "squats", "punch", "punches", "kick", "kicks",
    "clap", "claps", "jab", "jabs", "turn", "turns", "wave", "waves", "leap", "leaps",
})  # fmt: skip

#: Closed-class and other words, with their usual tag (context rules in the tagger refine some).
_CLOSED: dict[str, tuple[str, ...]] = {
    "DET": ("a", "an", "the", "his", "her", "their", "its", "both", "all", "this", "these", "those",
            "some", "any", "every", "each", "another", "my", "your", "our", "no"),
    "PRON": ("he", "she", "they", "him", "them", "it", "someone", "somebody", "something", "which", "that",
             "himself", "herself", "themselves", "itself", "i", "you", "we", "me", "us", "who", "what",
             "anything",
             "nothing", "everything", "anyone", "everyone", "one"),
    "AUX": ("is", "are", "was", "were", "be", "been", "being", "has", "have", "had", "can", "could", "will",
            "would", "should", "may", "might", "must", "am"),
    "CCONJ": ("and", "or", "but", "nor", "yet"),
    "SCONJ": ("while", "as", "because", "if", "until", "when", "since", "though", "although", "whilst"),
    "PART": ("not", "to"),
    "ADP": ("to", "in", "into", "on", "onto", "with", "at", "for", "from", "off", "along", "of", "over",
            "above", "up", "down", "out", "toward", "towards", "without", "after", "before", "by", "across",
            "through", "behind", "under", "below", "near", "like", "around", "about", "past", "upon",
            "within", "against", "during", "between", "beside", "than"),
    "ADV": ("then", "first", "finally", "forward", "forwards", "backward", "backwards", "ahead", "sideways",
            "straight", "slowly", "quickly", "briskly", "fast", "lightly", "slightly", "deeply", "curiously",
            "briefly", "again", "together", "back", "overhead", "still", "idly", "there", "once", "twice",
            "clockwise", "counterclockwise", "anticlockwise", "high", "low", "left", "right", "away", "also",
            "very", "just", "repeatedly", "gently", "quick", "here", "too", "now", "slow", "thrice",
            "afterwards", "next", "later", "around", "about", "leftward", "rightward", "upward", "upwards",
            "downward",
            "downwards", "outward", "inward", "so", "far", "rather", "quite", "where", "how", "when",
            "counterclockwise"),
    "ADJ": ("slow", "quick", "brisk", "small", "little", "big", "deep", "shallow", "half", "full",
            "complete", "single", "curved", "idle", "motionless", "quarter", "large", "long",
            "short", "other", "same", "several", "few", "many", "huge", "tiny", "wide", "steady", "light",
            "heavy", "great", "both"),
    "NUM": NUMBER_WORDS + ("ninety", "twenty", "thirty", "forty", "fifty", "hundred", "sixty", "eighty",
                           "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "seventy"),
}  # fmt: skip

#: Words whose tag is fixed although they appear above under several tags: last listing wins otherwise.
_PREFERRED: dict[str, str] = {
    "to": "ADP", "left": "ADV", "right": "ADV", "around": "ADV", "about": "ADV", "slow": "ADJ",
    "quick": "ADJ", "both": "DET", "one": "NUM", "high": "ADV", "low": "ADV", "fast": "ADV", "quarter": "ADJ",
}  # fmt: skip


def build_lexicon() -> dict[str, tuple[str, str]]:
    """Word -> (lemma, UPOS) for every word of the grammar (and a few common extras)."""
    lexicon: dict[str, tuple[str, str]] = {}
    for pos, words in _CLOSED.items():
        for word in words:
            lexicon[word] = (word, pos)
    for noun, plural in NOUN_PLURALS.items():
        lexicon[noun] = (noun, "NOUN")
        lexicon[plural] = (noun, "NOUN")
    for verb, (third, gerund) in VERB_FORMS.items():
        for form in (verb, third, gerund):
            if form not in NOUN_PLURALS and form not in NOUN_PLURALS.values():
                lexicon[form] = (verb, "VERB")
    for word, pos in _PREFERRED.items():
        lexicon[word] = (word, pos)
    # Verb-only forms the noun table shadows: "stepping", "jumping"... are set above; nouns stay nouns.
    lexicon["surroundings"] = ("surrounding", "NOUN")
    lexicon["someone"] = ("someone", "PRON")
    return lexicon


LEXICON: dict[str, tuple[str, str]] = build_lexicon()

#: The HumanML3D tag set (spaCy's universal tags as the dataset uses them).
UPOS: frozenset[str] = frozenset({"NOUN", "VERB", "ADJ", "ADV", "ADP", "DET", "PRON", "NUM", "CCONJ", "SCONJ",
                                  "PART", "AUX", "PROPN"})  # fmt: skip
