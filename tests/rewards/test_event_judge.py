"""The event judge: detection of synthesised events, mirrored limbs, compare()/score() values on
hand-made specs, agreement with the tiny corpus's labels, and errors for bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from motion_align.data.synth import synthesize
from motion_align.evaluation.event_agreement import format_agreement, judge_agreement, main
from motion_align.motion.events import Event
from motion_align.motion.features import features_from_joints, joints_from_features, mirror_joints
from motion_align.motion.humanml3d import MotionFormatError
from motion_align.rewards.event_judge import EventJudge

JUDGE = EventJudge()


def clip(*events: Event, seed: int = 0) -> np.ndarray:
    """Joints (T, 22, 3) of a synthesised timeline (a random performer style from ``seed``)."""
    return synthesize(list(events), np.random.default_rng(seed)).joints


def summary(joints: np.ndarray) -> list[tuple]:
    """(action, count, limb, direction) of every detected event, in order."""
    return [(e.action, e.count, e.limb, e.direction) for e in JUDGE.detect(joints)]


@pytest.mark.parametrize(
    "event, expected",
    [
        (Event("jump", 3), ("jump", 3, None, None)),
        (Event("jump", 2, direction="forward", params={"height": "low"}), ("jump", 2, None, "forward")),
        (Event("hop", 2, limb="right"), ("hop", 2, "right", None)),
        (Event("wave", 2, limb="left"), ("wave", 2, "left", None)),
        (Event("wave", 4, limb="both"), ("wave", 4, "both", None)),
        (Event("clap", 3), ("clap", 3, None, None)),
        (Event("punch", 2, limb="right"), ("punch", 2, "right", None)),
        (Event("kick", 3, limb="left", params={"height": "high"}), ("kick", 3, "left", None)),
        (Event("squat", 2, params={"depth": "shallow"}), ("squat", 2, None, None)),
        (Event("sit"), ("sit", 1, None, None)),
        (Event("bend", params={"mode": "pick_up"}), ("bend", 1, None, None)),
    ],
)
def test_single_events_are_detected_with_count_and_limb(event, expected):
    for seed in (0, 1):
        assert summary(clip(event, seed=seed)) == [expected], seed


@pytest.mark.parametrize(
    "event, action, direction",
    [
        (Event("walk", 4, direction="forward"), "walk", "forward"),
        (Event("walk", 3, direction="backward"), "walk", "backward"),
        (Event("walk", 2, direction="left"), "walk", "left"),
        (Event("run", 4, direction="forward"), "run", "forward"),
    ],
)
def test_locomotion_gives_direction_gait_and_distance(event, action, direction):
    joints = clip(event)
    (found,) = JUDGE.detect(joints)
    assert (found.action, found.direction, found.angle) == (action, direction, None)
    travelled = np.linalg.norm(joints[-1, 0, [0, 2]] - joints[0, 0, [0, 2]])
    assert found.distance == pytest.approx(travelled, rel=0.1)


def test_a_run_in_a_circle_is_forward_locomotion_with_its_path_length():
    joints = clip(Event("run", 8, direction="forward", params={"path": "circle", "curve": "right"}), seed=2)
    (found,) = JUDGE.detect(joints)
    path = np.linalg.norm(np.diff(joints[:, 0, [0, 2]], axis=0), axis=1).sum()
    assert (found.action, found.direction) == ("run", "forward")
    assert found.distance == pytest.approx(path, rel=0.1)


def test_turns_give_direction_and_angle_and_mirror_to_the_other_side():
    left = clip(Event("turn", direction="left", params={"angle": 90}))
    (turn,) = JUDGE.detect(left)
    assert turn.action == "turn" and turn.direction == "left" and abs(turn.angle - 90) < 20
    (mirrored,) = JUDGE.detect(mirror_joints(left))
    assert mirrored.direction == "right" and abs(mirrored.angle - turn.angle) < 1.0
    (around,) = JUDGE.detect(clip(Event("turn", direction="right", params={"angle": 360}), seed=3))
    assert around.direction == "right" and abs(around.angle - 360) < 30


def test_mirrored_motions_give_mirrored_limbs():
    joints = clip(Event("kick", 2, limb="left"), Event("wave", 1, limb="right"), Event("hop", 3, limb="left"))
    assert summary(joints) == [
        ("kick", 2, "left", None),
        ("wave", 1, "right", None),
        ("hop", 3, "left", None),
    ]
    assert summary(mirror_joints(joints)) == [
        ("kick", 2, "right", None), ("wave", 1, "left", None), ("hop", 3, "right", None)
    ]  # fmt: skip


def test_events_come_in_temporal_order_from_joints_features_or_tensors():
    joints = clip(Event("squat", 1), Event("walk", 3, direction="forward"), Event("clap", 2), seed=4)
    # a walk's count is its steps: three plus the step that brings the feet together
    expected = [("squat", 1, None, None), ("walk", 4, None, "forward"), ("clap", 2, None, None)]
    assert summary(joints) == expected
    features = features_from_joints(joints)  # (T - 1, 263)
    assert summary(joints_from_features(features)) == expected
    assert JUDGE.detect(torch.from_numpy(features)) == JUDGE.detect(features)
    starts = [e.start for e in JUDGE.detect(joints)]
    assert starts == sorted(starts)


@pytest.fixture(scope="module")
def jump_then_wave() -> np.ndarray:
    return clip(Event("jump", 2), Event("wave", 2, limb="left"), seed=5)


def test_compare_scores_a_matching_spec_perfectly(jump_then_wave):
    result = JUDGE.compare([Event("jump", 2), Event("wave", 2, limb="left")], jump_then_wave)
    assert (result.integrity, result.temporal, result.frequency, result.score) == (1.0, 1.0, 1.0, 1.0)
    assert [c.found for c in result.checks] == [True, True] and result.extra == []
    assert result.checks[1].detected.limb == "left" and result.checks[1].detected_count == 2
    assert json.loads(json.dumps(result.to_dict()))["checks"][0]["action"] == "jump"


def test_compare_lowers_each_category_for_its_own_mistake(jump_then_wave):
    missing = JUDGE.compare([Event("jump", 2), Event("wave", 2, limb="left"), Event("kick", 1, limb="right")],
                            jump_then_wave)  # fmt: skip
    assert missing.integrity == pytest.approx(2 / 3) and missing.frequency == pytest.approx(2 / 3)
    assert missing.temporal == 0.5 and missing.checks[2].detected is None  # (jump, wave) ok, (wave, kick) not
    nothing = JUDGE.compare([Event("kick", 1, limb="right"), Event("clap", 2)], jump_then_wave)
    assert (nothing.integrity, nothing.temporal, nothing.frequency, nothing.score) == (0.0, 0.0, 0.0, 0.0)
    assert JUDGE.compare([Event("clap", 2)], jump_then_wave).temporal == 0.0
    swapped = JUDGE.compare([Event("wave", 2, limb="left"), Event("jump", 2)], jump_then_wave)
    assert swapped.temporal == 0.0 and swapped.integrity == 1.0 and swapped.frequency == 1.0
    counted = JUDGE.compare([Event("jump", 3), Event("wave", 2, limb="left")], jump_then_wave)
    assert counted.frequency == 0.5 and counted.integrity == 1.0 and counted.temporal == 1.0
    wrong_hand = JUDGE.compare([Event("jump", 2), Event("wave", 2, limb="right")], jump_then_wave)
    assert wrong_hand.integrity == 0.5 and not wrong_hand.checks[1].found
    assert wrong_hand.checks[1].detected.limb == "left"  # matched, but the hand disagrees
    assert [e.action for e in wrong_hand.extra] == ["wave"]
    for result in (missing, swapped, counted, wrong_hand):
        assert 0.0 <= result.score < 1.0
        assert result.score == pytest.approx((result.integrity + result.temporal + result.frequency) / 3)
    # frequency does not apply to a spec without counted events; the score averages what applies
    walk = JUDGE.compare([Event("walk", 2, direction="backward")], jump_then_wave)
    assert walk.frequency is None and walk.integrity == 0.0 and walk.temporal == 0.0 and walk.score == 0.0
    nothing_judged = JUDGE.compare(
        [Event("raise_arms", limb="left", params={"mode": "front"})], jump_then_wave
    )
    assert (nothing_judged.integrity, nothing_judged.frequency, nothing_judged.score) == (None, None, 1.0)


def test_unjudged_actions_are_ignored_and_neighbours_merge(jump_then_wave):
    ignored = JUDGE.compare(
        [Event("look_around"), Event("idle"), Event("raise_arms", limb="both")], jump_then_wave
    )
    assert ignored.score == 1.0 and ignored.checks == []
    split = JUDGE.compare([Event("jump", 1), Event("jump", 1), Event("wave", 2, limb="left")], jump_then_wave)
    assert split.score == 1.0 and split.checks[0].count == 2  # "jump once, then once more" = jump twice


def test_turn_angle_and_gait_matching():
    joints = clip(
        Event("turn", direction="left", params={"angle": 180}), Event("run", 5, direction="forward"), seed=6
    )
    assert (
        JUDGE.score(
            [Event("turn", direction="left", params={"angle": 180}), Event("run", 5, direction="forward")],
            joints,
        )
        == 1.0
    )
    assert JUDGE.compare([Event("turn", direction="left", params={"angle": 90})], joints).integrity == 0.0
    assert JUDGE.compare([Event("turn", direction="right", params={"angle": 180})], joints).integrity == 0.0
    walk = [Event("walk", 5, direction="forward")]
    assert JUDGE.compare(walk, joints).integrity == 1.0  # walk and run are one locomotion group
    assert EventJudge(strict_gait=True).compare(walk, joints).integrity == 0.0


def test_score_is_a_reward_in_unit_interval_and_batches():
    motions = [clip(Event("clap", 2), seed=7), clip(Event("walk", 3, direction="backward"), seed=8)]
    specs = [[Event("clap", 2)], [Event("walk", 3, direction="forward"), Event("squat", 2)]]
    scores = JUDGE.score_batch(specs, motions)
    assert scores.shape == (2,) and scores[0] == 1.0 and 0.0 <= scores[1] < 0.5
    assert scores[1] == JUDGE.score(specs[1], motions[1])
    with pytest.raises(ValueError, match="2 specs but 1 motions"):
        JUDGE.score_batch(specs, motions[:1])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"motion: expected joints \(T, 22, 3\) .* got shape \(10, 21, 3\)"):
        JUDGE.detect(np.zeros((10, 21, 3)))
    with pytest.raises(ValueError, match=r"got shape \(10, 262\)"):
        JUDGE.detect(np.zeros((10, 262)))
    bad = clip(Event("clap", 1))
    bad[7, 3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf at frame 7"):
        JUDGE.detect(bad)
    with pytest.raises(ValueError, match="at least 2 frames"):
        JUDGE.detect(np.zeros((1, 22, 3)))
    with pytest.raises(TypeError, match=r"spec\[1\]: expected an Event, got dict"):
        JUDGE.compare([Event("clap"), {"action": "jump"}], clip(Event("clap", 1)))


def test_agreement_with_the_tiny_corpus_labels(tiny_corpus, tmp_path):
    record = judge_agreement(tiny_corpus, "train", progress=False)
    assert record["clips"] > 10 and record["seconds_per_clip"] > 0
    rated = {name: cat for name, cat in record["categories"].items() if cat["cases"]}
    assert len(rated) >= 6
    for name, cat in rated.items():
        assert cat["rate"] >= 0.9, (name, cat)
        assert sum(cat["presence"].values()) == record["clips"]
    assert record["order"]["rate"] >= 0.9 and record["judge"]["score"] >= 0.9
    text = format_agreement(record)
    assert "| category | cases | agree | rate | TP | FP | FN | TN |" in text and "| order |" in text
    out = tmp_path / "agreement.json"
    printed = main(["--corpus", str(tiny_corpus), "--split", "train", "--max-clips", "5", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(printed)) and printed["clips"] == 5


def test_agreement_needs_event_labels(tiny_corpus, tmp_path):
    copy = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, copy)
    (copy / "events.jsonl").unlink()
    with pytest.raises(MotionFormatError, match="events.jsonl.*no events for clip"):
        judge_agreement(copy, "train", progress=False)
