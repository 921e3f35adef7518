"""The AI judge: a vision-language model looks at frames of a motion and answers event-level questions.

AToM (Han et al., "AToM: Aligning Text-to-Motion Model at Event-Level with GPT-4Vision Reward", 2024,
arXiv 2411.18654) scores generated motions with GPT-4V on the events their text asks for, in three
categories: **integrity** (is every asked-for event there), **temporal** (in the asked-for order) and
**frequency** (the asked-for number of times). This judge asks any model behind the OpenAI-compatible
chat-completions protocol (:mod:`motion_align.rewards.vlm_client`) the same three things; the prompt is
our own. Per motion it draws N evenly spaced frames (:mod:`motion_align.motion.frame_grid`, one grid
image or one image per frame) and lists the asked-for events: the caption's event spec, normalised as
the event judge does (judged actions only, same-action neighbours merged; ``event_judge.normalise``),
so that the two judges answer the same questions. The model answers, per event in order, ``present``,
``times`` (for counted actions) and ``after_previous`` (for every event but the first), with a short
reason, in a JSON schema sent with the request (:func:`answer_schema`).

An answer is validated against that schema and against the question (:func:`answer_errors`: the events
numbered 1..n in order, a count for every counted event, an order for every event but the first); a bad
answer is a recorded judge failure, never a score. From a valid answer the figures follow the event
judge's definitions (``event_judge`` docstring): integrity = share of events present; temporal = share
of consecutive pairs both present with the later one after the earlier (one event: present or not);
frequency = share of counted events present with the asked count (None without one); score = their mean.
A spec with nothing judged is not sent: its verdict is "nothing to judge", score 1.0, as for the event
judge. :class:`AIJudgeScorer` plugs the judge into ``motion-align pairs judged --scorer ai-judge``: a
failed motion scores NaN, which the pair builder drops (never a low score that could become "rejected").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from motion_align.motion.events import Event
from motion_align.motion.frame_grid import LAYOUTS, LEGEND, draw_frames, frame_indices, grid_image, png_bytes
from motion_align.motion.skeleton import FPS
from motion_align.rewards.event_judge import COUNTED_ACTIONS, NormalEvent, as_joints, normalise
from motion_align.rewards.vlm_client import ChatJob, VLMClient, cache_key, image_part

SCHEMA_NAME = "motion_event_verdict"
#: Bump when the prompt or the schema changes meaning: it is part of every cache key.
PROMPT_VERSION = 1
CATEGORIES = ("integrity", "temporal", "frequency")
SYSTEM_PROMPT = (
    "You check whether a human motion shows the events a text asked for. You see still frames of a "
    "stick-figure animation of the motion, in time order, from one fixed camera. Judge only what the "
    "frames show, and answer in the JSON format you are given."
)
_JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def asked_events(spec: Sequence[Event]) -> list[NormalEvent]:
    """The events a spec asks the judges about: judged actions, same-kind neighbours merged, in order."""
    return normalise(spec, by_time=False)


def describe(event: NormalEvent) -> str:
    """One asked-for event in words, e.g. "jumps forward, 2 times" or "turns to their left by about 90
    degrees"; left and right are the person's own sides."""
    if event.group == "locomotion":
        way = {"forward": "forward", "backward": "backward", "left": "sideways to their left",
               "right": "sideways to their right"}.get(event.direction or "", "")  # fmt: skip
        text = f"walks or runs {way}".strip() + " (either gait counts)"
    elif event.action == "turn":
        text = f"turns to their {event.direction}" if event.direction else "turns around"
        if event.angle is not None:
            text += f" by about {event.angle:g} degrees"
    else:
        text = {
            "jump": "jumps forward" if event.direction == "forward" else "jumps",
            "hop": f"hops on the {event.limb} leg", "squat": "squats down and up", "sit": "sits down",
            "bend": "bends over at the waist", "clap": "claps the hands",
            "wave": "waves both hands" if event.limb == "both" else f"waves the {event.limb} hand",
            "punch": f"punches with the {event.limb} hand", "kick": f"kicks with the {event.limb} leg",
        }.get(event.action, event.action)  # fmt: skip
    if event.action in COUNTED_ACTIONS:
        text += f", {event.count} time{'s' if event.count != 1 else ''}"
    return text


def answer_schema(num_events: int) -> dict[str, Any]:
    """The JSON schema of an answer about ``num_events`` events (strict-mode compatible: every property
    required, no others)."""
    item = {
        "type": "object",
        "properties": {
            "event": {"type": "integer", "minimum": 1, "maximum": num_events},
            "present": {"type": "boolean"},
            "times": {"type": ["integer", "null"], "minimum": 0},
            "after_previous": {"type": ["boolean", "null"]},
            "reason": {"type": "string"},
        },
        "required": ["event", "present", "times", "after_previous", "reason"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "events": {"type": "array", "items": item, "minItems": num_events, "maxItems": num_events},
            "reason": {"type": "string"},
        },
        "required": ["events", "reason"],
        "additionalProperties": False,
    }


def _type_ok(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _JSON_TYPES[name])


def schema_errors(value: Any, schema: dict[str, Any], path: str = "answer") -> list[str]:
    """What is wrong with ``value`` under ``schema``, for the keywords :func:`answer_schema` uses (type,
    properties, required, additionalProperties, items, minItems, maxItems, minimum, maximum)."""
    types = schema.get("type")
    types = [types] if isinstance(types, str) else types or []
    if types and not any(_type_ok(value, t) for t in types):
        return [f"{path}: expected {' or '.join(types)}, got {type(value).__name__} {value!r:.40}"]
    errors: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        errors += [f"{path}.{name}: missing" for name in schema.get("required", ()) if name not in value]
        if schema.get("additionalProperties") is False:
            errors += [f"{path}.{name}: not allowed" for name in value if name not in properties]
        for name, sub in properties.items():
            if name in value:
                errors += schema_errors(value[name], sub, f"{path}.{name}")
    elif isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            errors.append(
                f"{path}: {len(value)} items, expected {schema.get('minItems')}..{schema.get('maxItems')}"
            )
        for k, item in enumerate(value):
            errors += schema_errors(item, schema.get("items", {}), f"{path}[{k}]")
    elif _type_ok(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} is below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} is above {schema['maximum']}")
    return errors


def answer_errors(answer: Any, asked: Sequence[NormalEvent]) -> list[str]:
    """Schema errors, then what the schema cannot say: the events numbered 1..n in order, ``times`` an
    integer for counted actions, ``after_previous`` a boolean for every event but the first."""
    errors = schema_errors(answer, answer_schema(len(asked)))
    if errors:
        return errors
    for k, (item, event) in enumerate(zip(answer["events"], asked)):
        if item["event"] != k + 1:
            errors.append(f"answer.events[{k}].event: {item['event']}, expected {k + 1} (the list's order)")
        if event.action in COUNTED_ACTIONS and item["times"] is None:
            errors.append(
                f"answer.events[{k}].times: null, but event {k + 1} ({event.action}) asks for a count"
            )
        if k > 0 and item["after_previous"] is None:
            errors.append(f"answer.events[{k}].after_previous: null, but event {k + 1} has a previous one")
    return errors


def figures_from_answer(answer: dict[str, Any], asked: Sequence[NormalEvent]) -> dict[str, float | None]:
    """Integrity, temporal, frequency and score of a valid answer (module docstring)."""
    items = answer["events"]
    present = [bool(item["present"]) for item in items]
    if len(items) == 1:
        temporal = float(present[0])
    else:
        temporal = float(np.mean([present[k - 1] and present[k] and bool(items[k]["after_previous"])
                                  for k in range(1, len(items))]))  # fmt: skip
    counted = [p and item["times"] == event.count
               for p, item, event in zip(present, items, asked)
               if event.action in COUNTED_ACTIONS]  # fmt: skip
    figures = {"integrity": float(np.mean(present)), "temporal": temporal,
               "frequency": float(np.mean(counted)) if counted else None}  # fmt: skip
    applying = [f for f in figures.values() if f is not None]
    return {**figures, "score": float(np.mean(applying))}


def build_prompt(caption: str, asked: Sequence[NormalEvent], shown: int, seconds: float, layout: str) -> str:
    """The user message's text (the images follow it)."""
    where = ("tiled left to right, then top to bottom, in one image" if layout == "grid"
             else "one image per frame, in order")  # fmt: skip
    events = "\n".join(f"{k}. The person {describe(e)}." for k, e in enumerate(asked, 1))
    return (
        f'The motion was made for this text: "{caption}"\n\n'
        f"The images show {shown} frames of it, evenly spaced over its {seconds:.1f} seconds and numbered "
        f"in time order ({where}); each frame is labelled with its number and time. The camera does not "
        f"move. Colours follow the body, not the screen: {LEGEND}, grey = spine and head. A short grey "
        "line from the head points where the face looks. The light green line on the floor is the whole "
        "path of the body, the darker green line the path so far. The floor squares are 0.5 m wide.\n\n"
        f"Check these events, asked for in this order:\n{events}\n\n"
        "For each event, in the list's order, answer:\n"
        '- "event": its number;\n'
        '- "present": true if the motion shows it (with the limb, direction or angle given), else false;\n'
        '- "times": for an event asked a number of times, how many times the motion shows it (0 if '
        "never); null for the other events;\n"
        '- "after_previous": for every event but the first, true if it happens after the previous event '
        "of the list (false if either is missing); null for the first event;\n"
        '- "reason": one short sentence saying what you saw.\n'
        'Then "reason": one short sentence about the whole motion. Left and right are always the '
        "person's own sides, not the screen's."
    )


@dataclass
class AIVerdict:
    """One motion's verdict: ``status`` "ok" (figures from a valid answer), "failed" (``failure`` kind and
    ``detail``; no figure) or "nothing_to_judge" (the spec asks for no judged event; score 1.0)."""

    status: str
    integrity: float | None = None
    temporal: float | None = None
    frequency: float | None = None
    score: float | None = None
    failure: str | None = None
    detail: str = ""
    answer: dict[str, Any] | None = None
    cached: bool = False
    requests: int = 0
    asked: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class AIJudge:
    """Judges (caption, spec, motion) cases with a :class:`VLMClient` (module docstring). ``frames`` frames
    are shown per motion, as one grid (``layout="grid"``) or one image each (``"frames"``), each frame
    ``size`` pixels wide."""

    def __init__(self, client: VLMClient, frames: int = 8, layout: str = "grid", size: int = 256) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if frames < 2:
            raise ValueError(f"frames must be at least 2 (order needs more than one frame), got {frames}")
        self.client, self.frames, self.layout, self.size = client, frames, layout, size

    def job(
        self, caption: str, spec: Sequence[Event], motion: Any
    ) -> tuple[ChatJob | None, list[NormalEvent]]:
        """The request for one case (None when the spec asks for nothing judged) and the asked events."""
        asked = asked_events(spec)
        if not asked:
            return None, asked
        features = np.asarray(motion.detach().cpu() if hasattr(motion, "detach") else motion, np.float32)
        joints = as_joints(features)  # checks the motion: the error names what is wrong with it
        shown = len(frame_indices(len(joints), self.frames))
        text = build_prompt(caption, asked, shown, len(joints) / FPS, self.layout)
        schema = answer_schema(len(asked))
        drawing = {"frames": self.frames, "layout": self.layout, "size": self.size}
        key = cache_key(PROMPT_VERSION, features, caption, SYSTEM_PROMPT, text, schema,
                        self.client.config.model, drawing)  # fmt: skip

        def messages() -> list[dict[str, Any]]:
            images = draw_frames(joints, self.frames, self.size)
            pngs = (
                [png_bytes(grid_image(images))] if self.layout == "grid" else [png_bytes(i) for i in images]
            )
            content = [{"type": "text", "text": text}, *(image_part(png) for png in pngs)]
            return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]

        return ChatJob(key, messages, schema, SCHEMA_NAME, lambda answer: answer_errors(answer, asked)), asked

    def judge(
        self, captions: Sequence[str], specs: Sequence[Sequence[Event]], motions: Sequence[Any]
    ) -> list[AIVerdict]:
        """Verdicts of N cases (motions: features (T, 263) or joints (T, 22, 3)), asked concurrently."""
        if not len(captions) == len(specs) == len(motions):
            raise ValueError(f"judge: {len(captions)} captions, {len(specs)} specs, {len(motions)} motions")
        prepared = []
        for i, (caption, spec, motion) in enumerate(zip(captions, specs, motions)):
            try:
                prepared.append(self.job(caption, spec, motion))
            except ValueError as error:
                raise ValueError(f"motions[{i}] (for {caption!r:.60}): {error}") from error
        jobs = [job for job, _ in prepared if job is not None]
        outcomes = iter(self.client.run(jobs))
        verdicts = []
        for job, asked in prepared:
            names = [describe(e) for e in asked]
            if job is None:
                verdicts.append(AIVerdict("nothing_to_judge", score=1.0, asked=names))
                continue
            out = next(outcomes)
            if not out.ok:
                verdicts.append(AIVerdict("failed", failure=out.failure, detail=out.detail,
                                          requests=out.requests, asked=names))  # fmt: skip
                continue
            figures = figures_from_answer(out.answer, asked)
            verdicts.append(AIVerdict("ok", **figures, answer=out.answer, cached=out.cached,
                                      requests=out.requests, asked=names))  # fmt: skip
        return verdicts


class AIJudgeScorer:
    """The AI judge as a pair-builder scorer (``pairs judged --scorer ai-judge``): scores in [0, 1], NaN for
    a motion the judge failed on (the pair builder drops it). Counts verdicts by status and failure kind."""

    name = "ai-judge"
    can_fail = True  # NaN scores are failures, left out by the pair builder

    def __init__(self, judge: AIJudge) -> None:
        self.judge = judge
        self.statuses: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()

    def __call__(self, captions, specs, motions) -> np.ndarray:
        verdicts = self.judge.judge(captions, specs, [m.features for m in motions])
        self.statuses.update(v.status for v in verdicts)
        self.failures.update(v.failure for v in verdicts if v.failure)
        return np.array([np.nan if v.score is None else v.score for v in verdicts], dtype=np.float64)

    def report(self) -> dict[str, Any]:
        """Verdicts by status, failures by kind, and the client's usage (requests, tokens, cost)."""
        return {"verdicts": dict(sorted(self.statuses.items())),
                "failures": dict(sorted(self.failures.items())),
                "usage": self.judge.client.usage()}  # fmt: skip
