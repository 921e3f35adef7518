"""The motion sampler: batched sampling of motion tokens from a T5 or LLaMA policy, built for this workload.

:func:`sample_tokens` draws ``num_samples`` completions per prompt, caption-major, as ``model.generate`` does
with the same settings, and returns them as ``generate`` lays them out (each row's stop token, then padding).
What makes it fast on CPU (figures in ``docs/benchmarks.md``, "Motion sampler"):

- the forward of :mod:`motion_align.policy.sampler_forward`: the prompt once per caption, then one token per
  live row per step over a preallocated KV cache; rows that drew their stop token (eos or end of motion)
  leave the batch and the cache, so the cost follows the live rows;
- the motion-only mask as a choice of columns: the output layer scores only the tokens that may be drawn
  (codes, start and end of motion, eos), which is the same distribution as masking the others to -inf;
- the motion grammar as per-row state (:class:`MotionRules`): a state per row (before the start token, in
  the motion with n codes, after the end token) picks its row of a precomputed table of allowed columns and
  the drawn column its next state, one gather each per step instead of rescanning every generated id;
- drawing by inverse CDF: one uniform number per row and step. ``torch.multinomial``, which ``generate``
  calls, draws an exponential variate for every vocabulary entry of every row (its one-sample fast path):
  7.4 ms of CPU per step at 256 rows of the demo LLaMA's 1,336 tokens, against 0.4 ms for :func:`draw`
  over the 515 motion columns (measured here, one thread).

Same distribution as ``generate``: the logits processors run in its order (the mask, then temperature,
top-k, top-p, as transformers' warpers, applied to the same finite scores), then one draw from the
softmax. The draws themselves use the random stream differently, so seeded samples differ from
``generate``'s; they are reproducible for a seed, and greedy decoding picks the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from motion_align.policy.sampler_forward import cached_decoder

NEG_INF = float("-inf")
#: Finished rows leave the batch (the cache is compacted) once they are this share of it, or one row. A
#: compaction copies the live rows' cache; carrying a finished row costs its share of every GEMM and
#: attention read. Measured on the demo LLaMA at 256 rows (tokens/s against generate's, one busy run):
#: 0 (every step a row finishes) 2.09x, 1/8 2.47x, 1/4 2.52x; 1/8 also keeps small batches lean.
COMPACT_SHARE = 0.125


@dataclass
class SampledTokens:
    """Generated ids (N, steps), each row cut after its stop token and padded, as ``generate`` returns them
    without the prompt; ``rows_per_step``: how many rows the forward ran at each step (the batch shrinks
    as rows finish)."""

    ids: torch.Tensor
    rows_per_step: list[int] = field(default_factory=list)


class MotionRules:
    """The motion grammar as per-row state over the sampler's ``columns`` (sorted vocabulary ids).

    States: 0 before the start token; ``1 + n`` inside the motion after n codes; ``max_codes + 2`` after the
    end token. Allowed in each state, as :class:`motion_align.policy.generation` states the grammar: the start
    token first; then codes while fewer than ``max_codes``, the end token once ``min_codes`` are drawn; then
    eos. ``allowed[state]`` is a row's mask and ``after[state, column]`` its next state.
    """

    def __init__(
        self,
        columns: Sequence[int],
        first_code: int,
        codebook_size: int,
        eos: int,
        min_codes: int,
        max_codes: int,
        device: torch.device | str = "cpu",
    ) -> None:
        som, eom = first_code + codebook_size, first_code + codebook_size + 1
        ids = torch.as_tensor(list(columns))
        is_code = (ids >= first_code) & (ids < first_code + codebook_size)
        ended = max_codes + 2
        codes = torch.arange(ended + 1)[:, None] - 1  # codes drawn so far, in the motion states
        in_motion = (codes >= 0) & (codes <= max_codes)
        allowed = torch.zeros(ended + 1, len(ids), dtype=torch.bool)
        allowed[0] = ids == som
        allowed |= in_motion & is_code[None] & (codes < max_codes)
        allowed |= in_motion & (ids == eom)[None] & (codes >= min_codes)
        allowed[ended] = ids == eos
        after = torch.zeros(ended + 1, len(ids), dtype=torch.long)
        after[:, ids == som] = 1
        after[:, is_code] = (torch.arange(ended + 1) + 1).clamp(max=ended)[:, None]
        after[:, ids == eom] = ended
        after[:, ids == eos] = ended
        self.allowed, self.after = allowed.to(device), after.to(device)

    def mask(self, scores: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """``scores`` (rows, C) with the columns each row's state forbids at -inf."""
        return scores.masked_fill(~self.allowed[state], NEG_INF)

    def advance(self, state: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
        """The states after drawing ``column`` (one per row)."""
        return self.after[state, column]


def warp(scores: torch.Tensor, temperature: float, top_k: int | None, top_p: float) -> torch.Tensor:
    """Temperature, top-k and top-p, in this order, as transformers' ``TemperatureLogitsWarper``,
    ``TopKLogitsWarper`` and ``TopPLogitsWarper`` (``min_tokens_to_keep=1``) compute them."""
    if temperature != 1.0:
        scores = scores / temperature
    if top_k:
        k = min(max(top_k, 1), scores.shape[-1])
        kth = torch.topk(scores, k)[0][..., -1, None]
        scores = scores.masked_fill(scores < kth, NEG_INF)
    if top_p < 1.0:
        ascending, order = torch.sort(scores, descending=False)
        cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= (1 - top_p)
        drop[..., -1:] = False
        scores = scores.masked_fill(drop.scatter(1, order, drop), NEG_INF)
    return scores


def draw(probs: torch.Tensor) -> torch.Tensor:
    """One index per row of ``probs`` (rows, C), with probability ``probs[row, index]``: inverse CDF with one
    uniform number per row. An index of probability 0 is never drawn (rounding that puts the uniform past the
    last cumulative sum falls back to the last index of positive probability)."""
    cumulative = probs.cumsum(-1)
    u = torch.rand(probs.shape[0], 1, device=probs.device, dtype=cumulative.dtype) * cumulative[:, -1:]
    index = torch.searchsorted(cumulative, u, right=True).squeeze(1)
    last_positive = probs.shape[-1] - 1 - (probs.flip(-1) > 0).to(torch.int8).argmax(-1)
    return torch.minimum(index, last_positive)


def choose(scores: torch.Tensor, sampling: Any) -> torch.Tensor:
    """A column per row: greedy (the first maximum, as ``torch.argmax``) or drawn after the warpers."""
    if not sampling.do_sample:
        return scores.argmax(-1)
    scores = warp(scores, float(sampling.temperature), sampling.top_k, float(sampling.top_p))
    return draw(scores.softmax(-1))


@torch.no_grad()
def sample_tokens(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    sampling: Any,
    stop_ids: Sequence[int],
    pad_id: int,
    columns: Sequence[int] | None = None,
    rules: MotionRules | None = None,
) -> SampledTokens:
    """``sampling.num_samples`` completions per prompt row of ``input_ids`` (T5: right-padded; LLaMA:
    left-padded, with ``attention_mask``), caption-major.

    ``sampling`` is a :class:`motion_align.policy.generation.SamplingConfig` (``do_sample``,
    ``temperature``, ``top_k``, ``top_p``, ``max_new_tokens``, ``num_samples``). ``columns``: the only
    vocabulary ids that may be drawn (None: all); ``rules``: the motion grammar over those columns. A row
    stops at any of ``stop_ids``; later positions hold ``pad_id``. Uses torch's global random state (on the
    model's device).
    """
    device = input_ids.device
    index = None if columns is None else torch.as_tensor(list(columns), device=device)
    if index is not None and (index[1:] <= index[:-1]).any():
        raise ValueError("columns must be ascending vocabulary ids without repeats")
    stops = torch.as_tensor(sorted(set(stop_ids)), device=device)
    steps = sampling.max_new_tokens
    decoder = cached_decoder(model, input_ids, attention_mask, sampling.num_samples, steps, index)
    out = torch.full((decoder.rows, steps), pad_id, dtype=torch.long, device=device)
    live = decoder.order.clone()  # the output row of each batch row
    alive = torch.ones(decoder.rows, dtype=torch.bool, device=device)  # not stopped yet
    state = torch.zeros(decoder.rows, dtype=torch.long, device=device) if rules is not None else None
    scores = decoder.first()
    counts: list[int] = []
    for step in range(steps):
        if rules is not None:
            scores = rules.mask(scores, state)
        column = choose(scores, sampling)
        token = column if index is None else index[column]
        out[live[alive], step] = token[alive]
        counts.append(decoder.rows)
        alive &= ~torch.isin(token, stops)
        remaining = int(alive.sum())
        if remaining == 0 or step == steps - 1:
            return SampledTokens(out[:, : step + 1], counts)
        if rules is not None:
            state = rules.advance(state, column)
        if decoder.rows - remaining >= max(1, int(decoder.rows * COMPACT_SHARE)):
            keep = alive.nonzero().squeeze(1)
            live, token, alive = live[keep], token[keep], alive[keep]
            state = None if state is None else state[keep]
            decoder.keep(keep)
        scores = decoder.step(token)
    raise AssertionError("unreachable: the loop returns at its last step")
