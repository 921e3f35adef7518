import numpy as np
import pytest

from motion_align.data.timelines import (
    HELDOUT_COUNTS,
    HELDOUT_PAIRS,
    heldout_compositions,
    sample_event,
    sample_timeline,
)
from motion_align.motion.events import ACTIONS, MAX_COUNT, Event


def frames_by_count(events):
    """A stand-in length model: 20 frames per counted repetition."""
    return sum(20 * e.count for e in events)


def test_every_sampled_event_is_valid_and_every_action_occurs():
    rng = np.random.default_rng(0)
    events = [sample_event(rng) for _ in range(3000)]
    assert {e.action for e in events} == set(ACTIONS)
    for event in events:
        Event.from_dict(event.to_dict())  # validates
        assert 1 <= event.count <= MAX_COUNT.get(event.action, 1)
        if event.params.get("path") == "straight":
            assert "curve" not in event.params


def test_timelines_fit_the_frame_budget_and_start_with_an_action():
    rng = np.random.default_rng(1)
    lengths = set()
    for _ in range(300):
        events = sample_timeline(rng, frames_by_count, min_frames=40, max_frames=196)
        assert 40 <= frames_by_count(events) <= 196
        assert 1 <= len(events) <= 4
        assert events[0].action != "idle" or len(events) == 1
        lengths.add(len(events))
    assert lengths == {1, 2, 3, 4}


def test_impossible_budget_is_a_clear_error():
    with pytest.raises(RuntimeError, match="could not sample a timeline"):
        sample_timeline(np.random.default_rng(0), lambda events: 1000, max_tries=3)


def _once(action):
    event = sample_event(np.random.default_rng(0), action)
    return Event(event.action, 1, event.limb, event.direction, event.params)


def test_heldout_compositions_are_found():
    action, count = sorted(HELDOUT_COUNTS)[0]
    first, second = sorted(HELDOUT_PAIRS)[0]
    assert heldout_compositions([Event(action, count)]) == [f"{action} x{count}"]
    assert heldout_compositions([Event(action, count - 1)]) == []
    # An idle event between the two actions does not break the pair; the reverse order is not held out.
    assert heldout_compositions([_once(first), Event("idle"), _once(second)]) == [f"{first} > {second}"]
    assert heldout_compositions([_once(second), _once(first)]) == []
    assert heldout_compositions([_once(first), _once("turn"), _once(second)]) == []
