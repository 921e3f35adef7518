"""The weights the motion sampler's forward (:mod:`motion_align.policy.sampler_forward`) computes with, read
once per sampling call from the policy's modules as they are now.

A step of a small policy on CPU costs about as much in operator calls as in arithmetic, so the forward runs
on a few fused tensors rather than calling every module: the query/key/value projections as one matrix
(three GEMMs become one), the gate and up projections likewise, RMS norms as ``F.rms_norm`` (one kernel
instead of seven operations), the tanh GELU as ``F.gelu``, the output layer cut to the columns the sampler
may draw.

Wrapped layers compute what they compute now: a PEFT LoRA layer (its active adapters and scaling, or none
inside ``disable_adapter()``), a ``trainable_tokens`` wrapper, a ``modules_to_save`` copy. Their effective
weight is read off their outputs for the unit vectors (:func:`linear_weights`) and checked against the module
on a random input; a module that is not affine now (dropout active in training mode, for one) is called as
it is instead (:class:`Projection` falls back to the modules).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: Relative tolerance of the check that a wrapped layer is the affine map read off it.
AFFINE_TOLERANCE = 1e-3
#: Largest layer (weight elements) whose weight is stacked with others or read off a wrapper: a larger one
#: (a billion-parameter policy's) is called as it is, so that sampling never holds a second copy of it.
FUSE_LIMIT = 1 << 22
#: Norm classes that are RMS norms (no mean, no bias): ``weight * x / sqrt(mean(x^2) + eps)``.
RMS_NORMS = ("LlamaRMSNorm", "T5LayerNorm")
#: Activation classes that are the tanh approximation of GELU.
TANH_GELUS = ("NewGELUActivation", "GELUTanh", "PytorchGELUTanh")


def _in_features(module: nn.Module) -> int:
    for candidate in (module, getattr(module, "get_base_layer", lambda: None)()):
        features = getattr(candidate, "in_features", None)
        if isinstance(features, int):
            return features
        weight = getattr(candidate, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() == 2:
            return int(weight.shape[1])
    raise ValueError(f"cannot tell the input width of {type(module).__name__}")


def _size(module: nn.Module) -> int:
    """Elements of the layer's weight (its base layer's, for a wrapper)."""
    for candidate in (module, getattr(module, "get_base_layer", lambda: None)()):
        weight = getattr(candidate, "weight", None)
        if isinstance(weight, torch.Tensor):
            return int(getattr(weight, "ds_shape", weight.shape).numel())
    return 0


@torch.no_grad()
def linear_weights(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """``(weight, bias)`` of the affine map ``module`` computes now, or None when it is not one.

    A plain ``nn.Linear`` gives its own tensors. Any other module mapping (..., in) to (..., out) is read:
    ``bias = module(0)``, ``weight = (module(I) - bias).T``, then checked on a random input (drawn from its
    own generator: the global random state, which seeds the sampling, is left alone).
    """
    weight = getattr(module, "weight", None)
    if type(module) is nn.Linear and not hasattr(weight, "ds_shape"):
        return module.weight, module.bias
    parameter = next(module.parameters(), None)
    if parameter is None:
        return None
    width = _in_features(module)
    eye = torch.eye(width, dtype=parameter.dtype, device=parameter.device)
    bias = module(torch.zeros(1, width, dtype=parameter.dtype, device=parameter.device))[0]
    weight = (module(eye) - bias).T.contiguous()
    probe = torch.randn(4, width, generator=torch.Generator().manual_seed(0)).to(parameter)
    expected, computed = module(probe), F.linear(probe, weight, bias)
    scale = expected.abs().max().clamp(min=1e-6)
    if not bool(((expected - computed).abs().max() / scale) <= AFFINE_TOLERANCE):
        return None
    return weight, (bias if bool(bias.any()) else None)


class Projection:
    """Linear layers applied to one input, their outputs side by side: one GEMM over their stacked weights
    when each is affine now, else each module called and the outputs concatenated."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        small = all(_size(m) <= FUSE_LIMIT for m in modules)
        found = [linear_weights(m) for m in modules] if small else [None]
        if all(f is not None for f in found):
            self.modules = None
            self.weight = torch.cat([w for w, _ in found]) if len(found) > 1 else found[0][0]
            biases = [b if b is not None else w.new_zeros(w.shape[0]) for w, b in found]
            self.bias = None if all(b is None for _, b in found) else torch.cat(biases)
        else:
            self.modules, self.weight, self.bias = list(modules), None, None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.modules is None:
            return F.linear(x, self.weight, self.bias)
        outputs = [m(x) for m in self.modules]
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)


def norm_function(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``F.rms_norm`` with the module's weight and epsilon for LLaMA's and T5's RMS norms, else the module."""
    weight, eps = getattr(module, "weight", None), getattr(module, "variance_epsilon", None)
    if type(module).__name__ not in RMS_NORMS or not isinstance(weight, torch.Tensor) or eps is None:
        return module
    shape = (weight.shape[-1],)

    def rms_norm(x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, shape, weight, eps)

    return rms_norm


def activation_function(module: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """``F.gelu(approximate="tanh")`` for transformers' tanh-GELU classes, ``F.silu`` for SiLU, else the
    module (the same function, one kernel instead of several operations)."""
    name = type(module).__name__
    if name in TANH_GELUS:
        return lambda x: F.gelu(x, approximate="tanh")
    if name in ("SiLU", "SiLUActivation"):
        return F.silu
    return module


class OutputHead:
    """Scores (float32) of the vocabulary ``columns`` (ascending ids; None: all) from the output layer."""

    def __init__(self, head: nn.Module, columns: torch.Tensor | None) -> None:
        plain = type(head) is nn.Linear and not hasattr(head.weight, "ds_shape")
        found = linear_weights(head) if plain or _size(head) <= FUSE_LIMIT else None
        self.head, self.columns = head, columns
        if found is None:
            self.weight = self.bias = None
            return
        weight, bias = found
        take = (lambda t: t) if columns is None else (lambda t: t.index_select(0, columns))
        self.weight, self.bias = take(weight), None if bias is None else take(bias)

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.weight is not None:
            return F.linear(hidden, self.weight, self.bias).float()
        logits = self.head(hidden)
        return (logits if self.columns is None else logits.index_select(-1, self.columns)).float()
