"""HumanML3D / KIT-ML features back to joint positions, differentiable, in torch.

This is the "Features back to joints" ("recover_from_ric") recipe of Guo et al. ("Generating Diverse and
Natural 3D Human Motions from Text", CVPR 2022; text-to-motion, ``scripts/motion_process.py``): integrate
the root's yaw and planar velocity, then un-rotate the root-relative joint positions of block
[4 : 4 + 3 (J - 1)]. The joint count J comes from the feature width D = 12 J - 1: 263 -> 22 (HumanML3D,
metres), 251 -> 21 (KIT-ML, millimetres). Quaternions are (w, x, y, z).
"""

from __future__ import annotations

import torch

NUM_JOINTS = 22  # HumanML3D's; KIT-ML has 21 (see num_joints_of)


def num_joints_of(nfeats: int) -> int:
    """Joints J of features D = 12 J - 1 wide: 263 -> 22 (HumanML3D), 251 -> 21 (KIT-ML)."""
    if nfeats < 23 or (nfeats + 1) % 12:
        raise ValueError(
            f"features of width {nfeats} are not 12 J - 1 wide for any joint count J "
            "(263: HumanML3D, 22 joints; 251: KIT-ML, 21 joints)"
        )
    return (nfeats + 1) // 12


def position_block(nfeats: int) -> slice:
    """The root-relative joint positions [4 : 4 + 3 (J - 1)] of D-wide features ([4:67] for 263)."""
    return slice(4, 4 + 3 * (num_joints_of(nfeats) - 1))


def quaternion_inverse(q: torch.Tensor) -> torch.Tensor:
    """Inverse of unit quaternions (..., 4): the conjugate."""
    return torch.cat([q[..., :1], -q[..., 1:]], dim=-1)


def quaternion_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors v (..., 3) by unit quaternions q (..., 4); shapes broadcast."""
    w, u = q[..., :1], q[..., 1:]
    u, v = torch.broadcast_tensors(u, v)
    uv = torch.linalg.cross(u, v, dim=-1)
    return v + 2.0 * (w * uv + torch.linalg.cross(u, uv, dim=-1))


def root_rotation_and_position(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Root yaw quaternions (..., T, 4) and root positions (..., T, 3) from features (..., T, D)."""
    half_yaw_step = features[..., 0]  # (..., T)
    # ang[0] = 0, ang[t] = sum_{k<t} f[k, 0]
    ang = torch.cumsum(torch.cat([torch.zeros_like(half_yaw_step[..., :1]), half_yaw_step[..., :-1]], -1), -1)
    zero = torch.zeros_like(ang)
    q = torch.stack([torch.cos(ang), zero, torch.sin(ang), zero], dim=-1)  # (..., T, 4)

    # v[0] = 0, v[t] = (f[t-1, 1], 0, f[t-1, 2])
    vel = features[..., :-1, 1:3]  # (..., T-1, 2)
    vel = torch.stack([vel[..., 0], torch.zeros_like(vel[..., 0]), vel[..., 1]], dim=-1)
    vel = torch.cat([torch.zeros_like(vel[..., :1, :]), vel], dim=-2)  # (..., T, 3)
    root = torch.cumsum(quaternion_rotate(quaternion_inverse(q), vel), dim=-2)
    root = torch.cat([root[..., :1], features[..., 3:4], root[..., 2:3]], dim=-1)  # y from f[t, 3]
    return q, root


def joints_from_features(features: torch.Tensor) -> torch.Tensor:
    """Joint positions (..., T, J, 3) from features (..., T, D): HumanML3D (D 263, J 22, metres) or KIT-ML
    (D 251, J 21, millimetres).

    Differentiable; works in the input's dtype and device. Time is the second-to-last axis, and
    frame t depends only on frames <= t (the root path is a cumulative sum).
    """
    try:
        joints_count = num_joints_of(features.shape[-1])
    except ValueError:
        shape = tuple(features.shape)
        raise ValueError(
            f"expected HumanML3D (..., T, 263) or KIT-ML (..., T, 251) features, got shape {shape}"
        ) from None
    if features.shape[-2] == 0:
        return features.new_zeros(*features.shape[:-1], joints_count, 3)
    q, root = root_rotation_and_position(features)  # (..., T, 4), (..., T, 3)
    local = features[..., position_block(features.shape[-1])]
    local = local.reshape(*local.shape[:-1], joints_count - 1, 3)  # (..., T, J - 1, 3)
    joints = quaternion_rotate(quaternion_inverse(q)[..., None, :], local)
    planar = torch.stack([root[..., 0], torch.zeros_like(root[..., 0]), root[..., 2]], dim=-1)
    joints = joints + planar[..., None, :]
    return torch.cat([root[..., None, :], joints], dim=-2)  # (..., T, J, 3)
