"""The stricter event judge: its threshold table, the context manager that moves the thresholds and puts
them back, scores never above the normal judge's on clips that show their spec, and hand-built motions
just past a threshold that only the normal judge accepts."""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from motion_align.data.synth import synthesize
from motion_align.data.text_motion import iter_items
from motion_align.motion.events import Event
from motion_align.rewards import event_detectors, event_gestures, event_judge, event_signals, strict_judge
from motion_align.rewards.event_judge import EventJudge
from motion_align.rewards.event_signals import DetectedEvent
from motion_align.rewards.strict_judge import (
    LOWER,
    RAISE,
    THRESHOLDS,
    StricterEventJudge,
    moved_thresholds,
    moved_value,
    stricter_thresholds,
)

PACKAGE = Path(strict_judge.__file__).resolve().parents[1]
JUDGE_MODULES = (event_detectors, event_gestures, event_signals, event_judge)
NAMES = {t.name for t in THRESHOLDS}
#: Upper-case numbers of the judge's modules that are no thresholds: joint indices and imported constants.
NOT_THRESHOLDS = {"FPS", "NUM_JOINTS", "FEATURE_DIM", "PELVIS", "NECK"}
NORMAL, STRICT = EventJudge(), StricterEventJudge()


def snapshot() -> dict[str, object]:
    return {t.key: t.current() for t in THRESHOLDS}


def test_every_threshold_exists_and_moves_against_the_motion():
    assert len({t.key for t in THRESHOLDS}) == len(THRESHOLDS)
    moved = moved_thresholds(0.2)
    for t in THRESHOLDS:
        module = importlib.import_module(t.module)
        assert module in JUDGE_MODULES and hasattr(module, t.name), t.key
        normal, strict = moved[t.key]
        assert normal == getattr(module, t.name)
        assert (strict > normal) if t.direction == RAISE else (strict < normal), t.key
        if isinstance(normal, int):
            assert isinstance(strict, int) and strict >= 1, t.key
        else:
            assert strict == pytest.approx(normal + (0.2 if t.direction == RAISE else -0.2) * abs(normal))
    assert moved["event_detectors.FLIGHT_CLEAR"][1] == pytest.approx(0.066)
    assert moved["event_gestures.WAVE_SWING"][1] == pytest.approx(0.084)
    assert moved["event_gestures.CLAP_LOW"][1] == pytest.approx(-0.224)  # a lower bound below 0: raised
    assert moved["event_gestures.CLAP_HOLD"][1] == 16 and moved["event_gestures.PUNCH_HOLD"][1] == 8
    assert moved["event_detectors.BEND_FRAMES"][1] == 7 and moved["event_detectors.TURN_PAUSE"][1] == 3
    assert moved["event_judge.ANGLE_TOLERANCE"][1] == pytest.approx(36.0)
    assert moved_value(1, LOWER, 0.9) == 1  # a frame count stays >= 1


def test_every_other_constant_is_explained_as_left_unchanged():
    """Each upper-case number of the judge's modules is in the table or named in the module docstring."""
    for module in JUDGE_MODULES:
        for name, value in vars(module).items():
            if not name.isupper() or name in NOT_THRESHOLDS or isinstance(value, bool):
                continue
            if isinstance(value, (int, float, np.floating)) and name not in NAMES:
                assert f"``{name}``" in strict_judge.__doc__, f"{module.__name__}.{name}"
    for unchanged in ("JUMP_FORWARD", "SIT_BACK", "LIFT_OFF", "DIP_OFF", "SIGMA", "MIN_STEPS", "TURN_EASE"):
        assert unchanged not in NAMES


def test_thresholds_are_read_at_call_time():
    """No table threshold is imported by name into another module, bound as a default argument or copied
    into another constant at import: setting the module attribute reaches every detector."""
    modules = {m.__name__ for m in JUDGE_MODULES}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in modules:
                assert not {a.name for a in node.names} & NAMES, f"{path}: imports {node.module} names"
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                defaults = [d for d in node.args.defaults + node.args.kw_defaults if d is not None]
                used = {n.id for d in defaults for n in ast.walk(d) if isinstance(n, ast.Name)}
                assert not used & NAMES, f"{path}: {getattr(node, 'name', 'lambda')} binds {used & NAMES}"
        if path.stem in {m.__name__.rsplit(".", 1)[-1] for m in JUDGE_MODULES}:
            bodies = [tree.body] + [n.body for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
            for statement in (s for body in bodies for s in body):
                if isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is not None:
                    used = {n.id for n in ast.walk(statement.value) if isinstance(n, ast.Name)}
                    assert not used & NAMES, f"{path}:{statement.lineno} copies {used & NAMES}"


def test_the_context_moves_the_module_attributes_and_restores_them_also_on_an_exception():
    before = snapshot()
    with stricter_thresholds(0.2) as moved:
        assert event_detectors.FLIGHT_CLEAR == pytest.approx(0.066) and event_gestures.CLAP_HOLD == 16
        assert event_signals.LIFT_ON == pytest.approx(0.06) and event_judge.ANGLE_TOLERANCE == 36.0
        assert snapshot() == {key: strict for key, (_, strict) in moved.items()}
        with stricter_thresholds(0.2):  # nested with the same fraction: no compounding
            assert event_detectors.FLIGHT_CLEAR == pytest.approx(0.066)
            assert moved_thresholds(0.2) == moved  # from the normal values
        with pytest.raises(RuntimeError, match="already in force with fraction 0.2"):
            with stricter_thresholds(0.1):
                pass
        assert event_detectors.FLIGHT_CLEAR == pytest.approx(0.066)
    assert snapshot() == before
    with pytest.raises(KeyError, match="boom"):
        with stricter_thresholds(0.3):
            assert event_gestures.WAVE_SWING == pytest.approx(0.091)
            raise KeyError("boom")
    assert snapshot() == before
    with pytest.raises(ValueError, match="motion: expected joints"):  # the judge's own error, mid-detection
        STRICT.compare([Event("jump")], np.zeros((10, 5)))
    assert snapshot() == before
    for bad in (-0.1, 1.0, 2):
        with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\)"):
            StricterEventJudge(bad)


def test_never_above_the_normal_judge_on_synthesised_and_corpus_clips(tiny_corpus):
    specs = [
        [Event("jump", 3)],
        [Event("hop", 2, limb="right")],
        [Event("wave", 2, limb="left")],
        [Event("clap", 3)],
        [Event("punch", 2, limb="right")],
        [Event("kick", 2, limb="left", params={"height": "high"})],
        [Event("squat", 2, params={"depth": "shallow"})],
        [Event("walk", 3, direction="forward"), Event("turn", direction="right", params={"angle": 180})],
    ]
    motions = [synthesize(spec, np.random.default_rng(seed)).joints for seed in (0, 1) for spec in specs]
    specs = specs * 2
    normal, strict = NORMAL.score_batch(specs, motions), STRICT.score_batch(specs, motions)
    assert (normal == 1.0).all() and (strict <= normal).all()
    assert strict.min() < 1.0  # a synthesised punch reaches ~0.48-0.50 m, short of 0.504 m
    assert [STRICT.score(s, m) for s, m in zip(specs, motions)] == list(strict)
    items = [item for item in iter_items(tiny_corpus, "train") if item.events]
    assert len(items) >= 10
    for item in items:
        assert STRICT.score(item.events, item.features) <= NORMAL.score(item.events, item.features), item.id


def standing(frames: int = 80) -> np.ndarray:
    """A person standing still (the first frame of a synthesised idle clip, held)."""
    return np.repeat(synthesize([Event("idle")], np.random.default_rng(0)).joints[:1], frames, axis=0)


def waving(swing: float) -> np.ndarray:
    """The right hand 0.3 m above its shoulder for 2.5 s, swinging sideways by ``swing`` (peak to trough)
    at 1.6 Hz: three outward swings that come back."""
    joints, n = standing(), np.arange(50)
    outward = -0.25 + swing / 2 * np.sin(2 * np.pi * n / 12.5)
    offset = np.stack([outward, np.full(50, 0.3), np.full(50, 0.05)], axis=1)
    joints[15:65, 21] = joints[15:65, 17] + offset
    return joints


def squatting(depth: float) -> np.ndarray:
    """Everything above the feet lowered by ``depth`` and back up over 1.5 s, the feet planted."""
    joints = standing()
    profile = np.zeros(len(joints))
    profile[20:50] = depth * np.sin(np.pi * np.arange(30) / 29) ** 2
    above_feet = [j for j in range(22) if j not in (7, 8, 10, 11)]
    joints[:, above_feet, 1] -= profile[:, None]
    return joints


def test_motions_just_past_a_threshold_pass_the_normal_judge_only():
    # a 7.7 cm swing: over WAVE_SWING (7 cm), under the stricter 8.4 cm
    wave = [Event("wave", 3, limb="right")]
    assert [(e.action, e.count, e.limb) for e in NORMAL.detect(waving(0.077))] == [("wave", 3, "right")]
    assert STRICT.detect(waving(0.077)) == []
    assert NORMAL.score(wave, waving(0.077)) == 1.0 and STRICT.score(wave, waving(0.077)) == 0.0
    assert STRICT.score(wave, waving(0.12)) == 1.0  # a clear wave passes both
    # a 0.2 m dip: over SQUAT_MIN (0.18 m), under the stricter 0.216 m
    squat = [Event("squat")]
    assert NORMAL.score(squat, squatting(0.2)) == 1.0 and STRICT.detect(squatting(0.2)) == []
    assert STRICT.score(squat, squatting(0.3)) == 1.0
    # a turn measured at 130 deg for an asked 90: within ANGLE_TOLERANCE (45), not the stricter 36
    turn = [Event("turn", direction="left", params={"angle": 90})]
    measured = [DetectedEvent("turn", 1, None, "left", 10, 40, angle=130.0)]
    assert NORMAL.compare_detected(turn, measured).integrity == 1.0
    assert STRICT.compare_detected(turn, measured).integrity == 0.0


def test_fraction_zero_is_the_normal_judge_and_describe_is_plain_json():
    motion = waving(0.077)
    assert StricterEventJudge(0.0).detect(motion) == NORMAL.detect(motion)
    record = json.loads(json.dumps(StricterEventJudge(0.2).describe()))
    assert record["fraction"] == 0.2 and len(record["thresholds"]) == len(THRESHOLDS)
    assert record["thresholds"]["event_gestures.CLAP_HOLD"] == [20, 16]
