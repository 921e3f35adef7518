"""Preference losses as pure functions of sequence log-probabilities.

Every loss reads the policy's and the reference's log-probabilities of the chosen and rejected motions,
``(B,)`` each, and works on the log-ratio difference

    h = (log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x)),

whose ``beta``-scaled halves are the implicit rewards (Rafailov et al. 2023). Two per-pair knobs carry a
human label's degree of preference:

- ``margin`` m (B,): the chosen implicit reward must beat the rejected one by m (as the reward-model
  margin of Touvron et al. 2023, "Llama 2", eq. 2, moved onto DPO's implicit reward);
- ``label_smoothing`` eps (B,) or float: the probability that the label is flipped (conservative DPO,
  Mitchell 2023): each loss becomes ``(1 - eps) * l(h) + eps * l(-h)``.

Returned losses are per pair, ``(B,)``; the trainer averages them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LOSS_TYPES = ("sigmoid", "ipo", "hinge")


def sequence_log_ratios(
    loss_type: str,
    chosen_ratio: torch.Tensor,
    rejected_ratio: torch.Tensor,
    chosen_tokens: torch.Tensor,
    rejected_tokens: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The policy-minus-reference log-ratios (B,) each loss reads from the summed ones: IPO's per token (each
    motion's log-ratio divided by its token count, as TRL and the IPO authors' experiments use it), the
    others' per sequence."""
    if loss_type == "ipo":
        return chosen_ratio / chosen_tokens.clamp(min=1), rejected_ratio / rejected_tokens.clamp(min=1)
    return chosen_ratio, rejected_ratio


def logratio_difference(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
) -> torch.Tensor:
    """``h = (pi_w - ref_w) - (pi_l - ref_l)`` from sequence log-probabilities, each (B,)."""
    return (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)


def _smoothed(
    loss_of: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor, eps: torch.Tensor | float
) -> torch.Tensor:
    eps = torch.as_tensor(eps, dtype=h.dtype, device=h.device)
    return (1 - eps) * loss_of(h) + eps * loss_of(-h)


def _margin(margin: torch.Tensor | float | None, h: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(h) if margin is None else torch.as_tensor(margin, dtype=h.dtype, device=h.device)


def sigmoid_loss(
    h: torch.Tensor, beta: float, margin: torch.Tensor | float | None = None, label_smoothing=0.0
) -> torch.Tensor:
    """DPO (Rafailov et al. 2023, eq. 7): ``-log sigmoid(beta * h - m)``; with eps, cDPO's mixture."""
    m = _margin(margin, h)
    return _smoothed(lambda z: -F.logsigmoid(beta * z - m), h, label_smoothing)


def ipo_loss(
    h: torch.Tensor, beta: float, margin: torch.Tensor | float | None = None, label_smoothing=0.0
) -> torch.Tensor:
    """IPO (Azar et al. 2023, eq. 17): ``(h - (1/2 + m) / beta)^2``, the squared distance to the target
    log-ratio gap ``1 / (2 beta)`` (tau = beta), raised by the margin on the implicit-reward scale.

    ``h`` is expected per token (log-probabilities averaged over each motion's tokens), as TRL and the
    IPO authors' experiments use it. With eps the minimiser is ``(1 - 2 eps) (1/2 + m) / beta``: the
    expected loss under a label that is right with probability 1 - eps (Azar et al., section 5).
    """
    m = _margin(margin, h)
    return _smoothed(lambda z: (z - (0.5 + m) / beta) ** 2, h, label_smoothing)


def hinge_loss(
    h: torch.Tensor, beta: float, margin: torch.Tensor | float | None = None, label_smoothing=0.0
) -> torch.Tensor:
    """SLiC-HF's rank calibration (Zhao et al. 2023, eq. 2): ``max(0, 1 + m - beta * h)``."""
    m = _margin(margin, h)
    return _smoothed(lambda z: torch.relu(1 + m - beta * z), h, label_smoothing)


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "sigmoid": sigmoid_loss,
    "ipo": ipo_loss,
    "hinge": hinge_loss,
}


def preference_loss(
    loss_type: str,
    h: torch.Tensor,
    beta: float,
    margin: torch.Tensor | float | None = None,
    label_smoothing: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """Per-pair loss (B,) of ``loss_type`` (one of :data:`LOSS_TYPES`; ``beta`` > 0 and ``label_smoothing``
    in [0, 0.5], as :class:`~motion_align.trainers.dpo_config.MotionDPOConfig` checks)."""
    return LOSSES[loss_type](h, beta, margin, label_smoothing)


def sopo_loss(
    chosen_ratio: torch.Tensor,
    rejected_ratio: torch.Tensor,
    beta: float,
    use_rejected: torch.Tensor,
    preferred_weight: torch.Tensor | float | None = None,
    loss_type: str = "sigmoid",
) -> torch.Tensor:
    """Semi-online preference optimisation (SoPo; Tan et al. 2024, "SoPo: Text-to-Motion Generation Using
    Semi-Online Preference Optimization", arXiv 2412.05095), per pair (B,).

    The preferred motion is a real one from the dataset, the unpreferred one the worst of the current
    policy's samples, counted only when its reward is below the threshold tau (the indicator
    ``use_rejected``, (B,) bool), and the preferred log-ratio is weighted by ``w`` (2 minus the smallest
    motion-to-motion similarity of the real motion to the samples; 1 when None):

        h = w * (log pi(y_w|x) - log ref(y_w|x)) - 1[r(y_l) < tau] * (log pi(y_l|x) - log ref(y_l|x))

    and the loss is ``loss_type``'s loss of ``h`` (sigmoid: ``-log sigmoid(beta * h)``, the paper's
    DPO form). A pair whose worst sample is above tau keeps only its preferred term: the real motion's
    likelihood is raised against the reference, and no sample that is good enough is pushed down.
    ``chosen_ratio`` / ``rejected_ratio`` are the policy-minus-reference log-probabilities (B,) (per token
    for IPO).
    """
    used = torch.as_tensor(use_rejected, device=chosen_ratio.device).to(chosen_ratio.dtype)
    weight = 1.0 if preferred_weight is None else torch.as_tensor(preferred_weight).to(chosen_ratio)
    return preference_loss(loss_type, weight * chosen_ratio - used * rejected_ratio, beta)


def bradley_terry_loss(
    chosen_reward: torch.Tensor,
    rejected_reward: torch.Tensor,
    margin: torch.Tensor | float | None = None,
    label: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """The reward model's loss per pair (B,): Bradley-Terry on the reward difference d = r(y_w) - r(y_l),

        -[p * log sigmoid(d - m) + (1 - p) * log sigmoid(m - d)],

    with the degree margin m (Touvron et al. 2023, "Llama 2", eq. 2: 3/2/1/0 from "Much better" to
    "unsure") and the label p: 1 for a preference, 0.5 for an unsure pair, which then pulls d towards m
    (0 for unsure: "as good as each other"). With p = 1 it is InstructGPT's loss (Ouyang et al. 2022).
    """
    d = chosen_reward - rejected_reward
    m = _margin(margin, d)
    p = torch.as_tensor(label, dtype=d.dtype, device=d.device)
    if ((p < 0) | (p > 1)).any():
        raise ValueError("Bradley-Terry labels must be in [0, 1]")
    return -(p * F.logsigmoid(d - m) + (1 - p) * F.logsigmoid(m - d))
