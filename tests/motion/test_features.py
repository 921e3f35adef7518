"""Tests of motion_align.motion.features and .quaternion against the real HumanML3D clip 012314."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import HUMANML3D

from motion_align.motion import features as F
from motion_align.motion import quaternion as Q
from motion_align.motion import skeleton as sk
from motion_align.motion.features import (
    canonicalize_joints,
    features_from_joints,
    joints_from_features,
    mirror_features,
    mirror_joints,
)

REFERENCE = HUMANML3D
CLIP = "012314"
COMPARED = 80  # frames whose reference features are not affected by the missing 171st raw frame


@pytest.fixture(scope="module")
def reference() -> tuple[np.ndarray, np.ndarray]:
    joints_file = REFERENCE / "new_joints" / f"{CLIP}.npy"
    features_file = REFERENCE / "new_joint_vecs" / f"{CLIP}.npy"
    if not (joints_file.is_file() and features_file.is_file()):
        pytest.skip(f"real HumanML3D reference clip not found under {REFERENCE}")
    return np.load(joints_file), np.load(features_file)


@pytest.fixture(scope="module")
def joints(reference: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return reference[0]


def _turn_progressively(joints: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate frame t about the vertical through its root by degrees * t / (T - 1)."""
    angle = np.radians(np.linspace(0.0, degrees, len(joints)))
    root = joints[:, :1] * np.array([1.0, 0.0, 1.0])
    return Q.qrot(Q.qyaw(angle)[:, None], joints - root) + root


def _yaw_degrees(joints: np.ndarray) -> np.ndarray:
    """Yaw (degrees) of the per-frame root rotations r[t] the features are built from."""
    r = F._root_rotations(canonicalize_joints(joints))
    return 2.0 * np.degrees(np.arctan2(r[:, 2], r[:, 0]))


# ----------------------------------------------------------------------------- quaternions


def test_quaternion_basics() -> None:
    rng = np.random.default_rng(0)
    q = Q.qnormalize(rng.normal(size=(5, 4)))
    v = rng.normal(size=(5, 3))
    np.testing.assert_allclose(Q.qrot(q, v), np.einsum("nij,nj->ni", Q.quat_to_matrix(q), v), atol=1e-12)
    np.testing.assert_allclose(Q.qrot(Q.qmul(q, Q.qinv(q)), v), v, atol=1e-12)
    np.testing.assert_allclose(Q.qrot(Q.qmul(q[0], q[1]), v), Q.qrot(q[0], Q.qrot(q[1], v)), atol=1e-12)
    np.testing.assert_allclose(Q.cont6d_to_matrix(Q.quat_to_cont6d(q)), Q.quat_to_matrix(q), atol=1e-12)
    m = Q.quat_to_matrix(q[0])
    expected = [m[0, 0], m[1, 0], m[2, 0], m[0, 1], m[1, 1], m[2, 1]]
    np.testing.assert_array_equal(Q.quat_to_cont6d(q[0]), expected)


def test_qbetween_including_antiparallel() -> None:
    rng = np.random.default_rng(1)
    v0 = np.concatenate([rng.normal(size=(4, 3)), np.eye(3), -np.eye(3), [[1.0, 2.0, 3.0]]])
    v1 = np.concatenate([rng.normal(size=(4, 3)), -np.eye(3), np.eye(3), [[-2.0, -4.0, -6.0]]])
    q = Q.qbetween(v0, v1)
    assert np.all(np.isfinite(q))
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-12)
    unit = v1 / np.linalg.norm(v1, axis=-1, keepdims=True)
    np.testing.assert_allclose(Q.qrot(q, v0 / np.linalg.norm(v0, axis=-1, keepdims=True)), unit, atol=1e-12)
    # The facing case: -z to +z is a half turn about y.
    np.testing.assert_allclose(
        np.abs(Q.qbetween([0.0, 0.0, -1.0], [0.0, 0.0, 1.0])), [0, 0, 1, 0], atol=1e-12
    )


# ----------------------------------------------------------------------------- the real clip


def test_recover_matches_dataset_joints(reference: tuple[np.ndarray, np.ndarray]) -> None:
    joints, features = reference
    recovered = joints_from_features(features)
    assert recovered.shape == joints.shape and recovered.dtype == np.float32
    assert np.abs(recovered - joints).max() < 1e-5


def test_features_match_dataset(reference: tuple[np.ndarray, np.ndarray]) -> None:
    joints, features = reference
    ours = features_from_joints(joints)
    assert ours.shape == (len(joints) - 1, sk.FEATURE_DIM) and ours.dtype == np.float32
    assert np.abs(ours[:COMPARED] - features[:COMPARED]).max() < 1e-4
    np.testing.assert_array_equal(ours[:COMPARED, 259:], features[:COMPARED, 259:])


def test_forward_is_smoothed_before_normalising(reference: tuple[np.ndarray, np.ndarray]) -> None:
    """The original pipeline smooths the unnormalised forward; normalising first does not match."""
    joints, features = reference
    wrong = F._features_from_canonical(canonicalize_joints(joints), normalise_first=True)
    assert np.abs(wrong[:COMPARED] - features[:COMPARED]).max() > 1e-2


def test_canonical_clip_is_unchanged_by_canonicalisation(joints: np.ndarray) -> None:
    canonical = canonicalize_joints(joints)
    assert canonical.dtype == np.float64 and canonical.shape == joints.shape
    assert np.abs(canonical - joints).max() < 1e-5


def test_invariant_to_yaw_translation_and_scale(joints: np.ndarray) -> None:
    expected = features_from_joints(joints)[:COMPARED]
    rng = np.random.default_rng(2)
    moved = Q.qrot(Q.qyaw(rng.uniform(-np.pi, np.pi)), joints) + rng.uniform(-3.0, 3.0, size=3)
    assert np.abs(features_from_joints(moved)[:COMPARED] - expected).max() < 1e-4
    assert np.abs(features_from_joints(1.15 * joints)[:COMPARED] - expected).max() < 1e-4


def test_retargeting_restores_standard_bone_lengths(joints: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    stretch = rng.uniform(0.6, 1.5, size=sk.NUM_JOINTS)
    stretched = joints.astype(np.float64).copy()
    for j in range(1, sk.NUM_JOINTS):
        parent = sk.PARENTS[j]
        bone = joints[:, j] - joints[:, parent]
        stretched[:, j] = stretched[:, parent] + stretch[j] * bone
    assert np.abs(sk.bone_lengths(stretched)[0] - sk.BONE_LENGTHS).max() > 0.01
    canonical = canonicalize_joints(stretched)
    assert np.abs(sk.bone_lengths(canonical) - sk.BONE_LENGTHS).max() < 1e-6
    assert abs(canonical[..., 1].min()) < 1e-12
    np.testing.assert_allclose(canonical[0, 0, [0, 2]], 0.0, atol=1e-12)


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("degrees", [0.0, -60.0])
def test_round_trip_within_180_degrees(joints: np.ndarray, degrees: float) -> None:
    clip = _turn_progressively(joints, degrees)
    assert np.abs(_yaw_degrees(clip)).max() < 170.0  # premise: facing stays within +-180 degrees
    recovered = joints_from_features(features_from_joints(clip))
    assert np.abs(recovered - canonicalize_joints(clip)[:-1]).max() < 1e-5


def test_round_trip_fails_past_180_degrees(joints: np.ndarray) -> None:
    """MOTION_FORMAT.md: arcsin yaw velocities lose the sign where facing crosses 180 degrees."""
    clip = _turn_progressively(joints, 120.0)
    yaw = _yaw_degrees(clip)
    assert np.any(np.abs(np.diff(yaw)) > 180.0)  # premise: r[t] wraps through +-180 degrees
    recovered = joints_from_features(features_from_joints(clip))
    assert np.abs(recovered - canonicalize_joints(clip)[:-1]).max() > 0.1


def test_batched_recovery(reference: tuple[np.ndarray, np.ndarray]) -> None:
    features = reference[1]
    batch = np.stack([features[:50], features[10:60]])
    recovered = joints_from_features(batch)
    assert recovered.shape == (2, 50, sk.NUM_JOINTS, 3)
    np.testing.assert_array_equal(recovered[1], joints_from_features(features[10:60]))


# ----------------------------------------------------------------------------- mirroring


def test_mirror_features_equals_features_of_mirrored_joints(joints: np.ndarray) -> None:
    rng = np.random.default_rng(4)
    raw = 0.9 * Q.qrot(Q.qyaw(rng.uniform(-np.pi, np.pi)), joints) + rng.uniform(-1.0, 1.0, size=3)
    features = features_from_joints(raw)
    mirrored = mirror_features(features)
    # Mirroring the canonical (standard-skeleton) joints is what mirror_features computes.
    direct = features_from_joints(mirror_joints(canonicalize_joints(raw)), retarget=False)
    assert np.abs(mirrored - direct).max() < 1e-5
    np.testing.assert_array_equal(mirror_features(mirrored), features)
    np.testing.assert_array_equal(mirror_joints(mirror_joints(raw)), raw)
    # Retargeting a mirrored clip is not the mirror of the retargeted clip: the standard skeleton is
    # left/right asymmetric (e.g. leg lengths 0.8260 m vs 0.8158 m), so positions differ by mm-cm.
    retargeted = features_from_joints(mirror_joints(raw))
    assert 1e-3 < np.abs(retargeted[:, 4:67] - mirrored[:, 4:67]).max() < 0.1


def test_mirror_features_semantics(reference: tuple[np.ndarray, np.ndarray]) -> None:
    features = reference[1]
    mirrored = mirror_features(features)
    np.testing.assert_array_equal(mirrored[:, 0], -features[:, 0])
    np.testing.assert_array_equal(mirrored[:, 1:3], features[:, 1:3] * [-1, 1])
    np.testing.assert_array_equal(mirrored[:, 259:], features[:, [261, 262, 259, 260]])
    left_knee, right_knee = 4, 5
    np.testing.assert_array_equal(
        mirrored[:, 4 + 3 * (left_knee - 1) : 4 + 3 * left_knee],
        features[:, 4 + 3 * (right_knee - 1) : 4 + 3 * right_knee] * [-1, 1, 1],
    )
    np.testing.assert_allclose(
        joints_from_features(mirrored), mirror_joints(joints_from_features(features)), atol=1e-5
    )


# ----------------------------------------------------------------------------- resampling


def test_resampling_30fps_gives_20fps_features(joints: np.ndarray) -> None:
    joints = joints[: len(joints) - 1 + len(joints) % 2]  # odd frame count: both ends shared
    n = len(joints)
    src = np.arange(int((n - 1) * 1.5) + 1) * (20.0 / 30.0)  # 30 fps sample times in 20 fps frames
    i0 = np.minimum(np.floor(src).astype(int), n - 1)
    w = (src - i0)[:, None, None]
    clip30 = (1.0 - w) * joints[i0] + w * joints[np.minimum(i0 + 1, n - 1)]
    canonical = canonicalize_joints(clip30, fps=30.0)
    reference = canonicalize_joints(joints)
    assert canonical.shape == (n, sk.NUM_JOINTS, 3)
    assert np.abs(canonical[::2] - reference[::2]).max() < 1e-9  # shared sample times: exact
    # Odd frames are interpolated twice (20 -> 30 -> 20 fps), which rounds off a fast tennis serve.
    ours = features_from_joints(clip30, fps=30.0)
    assert ours.shape == (n - 1, sk.FEATURE_DIM)
    error = np.abs(ours - features_from_joints(joints))[:, :259]
    assert error.mean() < 5e-3 and error[:, :67].max() < 0.05


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: features_from_joints(np.zeros((10, 21, 3))),
            r"joints: expected shape \(T, 22, 3\), got \(10, 21, 3\)",
        ),
        (lambda: canonicalize_joints(np.zeros((22, 3))), r"joints: expected .*got \(22, 3\)"),
        (lambda: joints_from_features(np.zeros((10, 262))), r"features: expected shape \(\.\.\., T, 263\)"),
        (lambda: mirror_features(np.zeros(262)), r"features: expected shape \(\.\.\., 263\), got \(262,\)"),
        (lambda: mirror_joints(np.zeros((5, 22, 2))), r"joints: expected shape \(\.\.\., 22, 3\)"),
        (lambda: features_from_joints(np.ones((1, 22, 3))), r"joints: clip too short: got 1 frame"),
        (lambda: joints_from_features(np.zeros((0, 263))), r"features: clip too short"),
        (lambda: features_from_joints(np.zeros((3, 22, 3)), fps=0), r"fps: expected a positive"),
        (lambda: features_from_joints(np.zeros((3, 22, 3)), fps=np.nan), r"fps: expected a positive"),
        (lambda: features_from_joints("not numbers"), r"joints: cannot convert"),
    ],
)
def test_bad_inputs_raise_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_non_finite_and_degenerate_inputs(joints: np.ndarray) -> None:
    bad = joints.copy()
    bad[12, 5, 1] = np.nan
    with pytest.raises(ValueError, match="joints: contains NaN or inf at frame 12"):
        features_from_joints(bad)
    features = features_from_joints(joints)
    features[7, 100] = np.inf
    with pytest.raises(ValueError, match="features: contains NaN or inf at frame 7"):
        joints_from_features(features)
    with pytest.raises(ValueError, match=r"at frame 7 of batch item \(1,\)"):
        joints_from_features(np.stack([np.zeros_like(features), features]))
    collapsed = joints.copy()
    collapsed[3, 7] = collapsed[3, 4]
    with pytest.raises(ValueError, match="bone 4->7 has zero length at frame 3"):
        features_from_joints(collapsed)
    with pytest.raises(ValueError, match="clip too short: 1 frame"):
        features_from_joints(joints[:2], fps=30.0)  # 2 frames at 30 fps -> 1 frame at 20 fps


def test_inputs_are_not_mutated_and_lists_accepted(joints: np.ndarray) -> None:
    clip = joints[:20].copy()
    before = clip.copy()
    features = features_from_joints(clip)
    canonicalize_joints(clip, fps=25.0)
    mirror_joints(clip)
    np.testing.assert_array_equal(clip, before)
    saved = features.copy()
    joints_from_features(features)
    mirror_features(features)
    np.testing.assert_array_equal(features, saved)
    np.testing.assert_array_equal(features_from_joints(clip.tolist()), features)
