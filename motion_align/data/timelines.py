"""Sampling event timelines for the procedural corpus, and the compositions held out for testing.

A timeline is 1 to 4 events. Some compositions - an action with a given count, and an action
directly followed by another - never occur in the train or val splits, so that generalisation to
unseen combinations of seen parts can be measured on the test split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from motion_align.motion.events import ACTIONS, MAX_COUNT, Event

#: Relative frequency of each action in a timeline (locomotion is common, as in HumanML3D).
ACTION_WEIGHTS = {
    "walk": 3.0, "run": 1.5, "turn": 1.5, "jump": 1.5, "hop": 0.8, "squat": 1.0, "sit": 0.8,
    "wave": 1.2, "raise_arms": 1.0, "clap": 1.0, "punch": 1.0, "kick": 1.0, "bend": 0.8,
    "look_around": 0.6, "idle": 0.3,
}  # fmt: skip
#: Probability of a timeline having 1, 2, 3 or 4 events.
NUM_EVENTS_PROBS = (0.3, 0.35, 0.25, 0.1)
#: Smallest step count for locomotion (a walk of one step is not a walk).
MIN_STEPS = {"walk": 2, "run": 4}

#: Action-and-count compositions that only the test split contains.
HELDOUT_COUNTS = frozenset({("jump", 3), ("clap", 4), ("kick", 2)})
#: Ordered action pairs (the first directly followed by the second) that only the test split contains.
HELDOUT_PAIRS = frozenset(
    {("wave", "jump"), ("squat", "walk"), ("kick", "clap"), ("sit", "wave"), ("jump", "punch")}
)

MIN_FRAMES, MAX_FRAMES = 40, 196


def heldout_compositions(events: Sequence[Event]) -> list[str]:
    """Names of the held-out compositions a timeline contains, e.g. ``["jump x3", "wave > jump"]``."""
    found = [f"{e.action} x{e.count}" for e in events if (e.action, e.count) in HELDOUT_COUNTS]
    actions = [e.action for e in events if e.action != "idle"]
    found += [f"{a} > {b}" for a, b in zip(actions, actions[1:]) if (a, b) in HELDOUT_PAIRS]
    return found


def sample_event(rng: np.random.Generator, action: str | None = None) -> Event:
    """One event with every field drawn uniformly from what ``ACTIONS`` allows."""
    if action is None:
        names = list(ACTION_WEIGHTS)
        weights = np.array([ACTION_WEIGHTS[n] for n in names])
        action = names[rng.choice(len(names), p=weights / weights.sum())]
    spec = ACTIONS[action]
    limb = spec["limb"][rng.integers(len(spec["limb"]))]
    direction = spec["direction"][rng.integers(len(spec["direction"]))]
    params = {key: values[rng.integers(len(values))] for key, values in spec["params"].items()}
    if params.get("path") == "straight":
        params.pop("curve", None)
    if action == "walk" and direction != "forward":
        params["path"] = "straight"  # sidesteps and backward walks go straight
        params.pop("curve", None)
    low = MIN_STEPS.get(action, 1)
    count = int(rng.integers(low, MAX_COUNT.get(action, 1) + 1))
    return Event(action, count, limb, direction, params)


def sample_timeline(
    rng: np.random.Generator,
    frames_of: Callable[[list[Event]], int],
    min_frames: int = MIN_FRAMES,
    max_frames: int = MAX_FRAMES,
    max_tries: int = 50,
) -> list[Event]:
    """A timeline of 1-4 events whose length (``frames_of(events)``) lies in [min_frames, max_frames].

    Too-long timelines are shortened by lowering the largest count, then by dropping the last
    event; too-short ones are drawn again. ``idle`` appears only between or after other events.
    """
    for _ in range(max_tries):
        num_events = int(rng.choice(len(NUM_EVENTS_PROBS), p=NUM_EVENTS_PROBS)) + 1
        events = [sample_event(rng) for _ in range(num_events)]
        if events[0].action == "idle" and num_events > 1:
            events[0] = sample_event(rng)
        events = _fit_length(events, frames_of, max_frames)
        if events and frames_of(events) >= min_frames:
            return events
    raise RuntimeError(
        f"could not sample a timeline of {min_frames}..{max_frames} frames in {max_tries} tries"
    )


def _fit_length(events: list[Event], frames_of: Callable[[list[Event]], int], max_frames: int) -> list[Event]:
    while events and frames_of(events) > max_frames:
        largest = max(range(len(events)), key=lambda i: events[i].count)
        event = events[largest]
        if event.count > MIN_STEPS.get(event.action, 1):
            events[largest] = Event(event.action, event.count - 1, event.limb, event.direction, event.params)
        else:
            events = events[:-1]
    return events
