"""``model.generate`` as a motion sampler (``SamplingConfig.engine="generate"``): the motion grammar and the
motion-only mask as transformers logits processors.

This was the only engine before :mod:`motion_align.policy.sampler`; it stays selectable, as the reference
the sampler's tests and ``benchmarks/generation_throughput.py`` compare with, and for policies the sampler
does not implement. The processors rescan every generated id at every step (the grammar) and build a full
vocabulary mask per step (the motion-only mask); the sampler keeps that state per row instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from motion_align.policy.model import decoder_cache, policy_family


@dataclass(frozen=True)
class GrammarSettings:
    """The motion vocabulary's ids (K codes, then start, end, mask) and the grammar's bounds on codes."""

    ids: Sequence[int]
    codebook_size: int
    eos: int
    min_codes: int
    max_codes: int


class MotionGrammarProcessor(LogitsProcessor):
    """Allows, per row, only the tokens that keep the generation a valid motion: the start token first;
    then codes, the end token only after ``min_codes`` codes and nothing else after ``max_codes``; then eos.
    ``prompt_length`` leading ids of every row are not generated (T5: the decoder start; LLaMA: the
    left-padded prompt)."""

    def __init__(self, grammar: GrammarSettings, prompt_length: int) -> None:
        ids, size = grammar.ids, grammar.codebook_size
        self.first_code, self.som, self.eom = ids[0], ids[size], ids[size + 1]
        self.codebook_size, self.eos, self.prompt_length = size, grammar.eos, prompt_length
        self.min_codes, self.max_codes = grammar.min_codes, grammar.max_codes

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        generated = input_ids[:, self.prompt_length :]
        started, ended = (generated == self.som).any(1), (generated == self.eom).any(1)
        is_code = (generated >= self.first_code) & (generated < self.first_code + self.codebook_size)
        codes = is_code.sum(1)
        allowed = torch.zeros_like(scores, dtype=torch.bool)
        allowed[:, self.som] = ~started
        in_motion = started & ~ended
        allowed[:, self.first_code : self.first_code + self.codebook_size] = (
            in_motion & (codes < self.max_codes)
        )[:, None]
        allowed[:, self.eom] = in_motion & (codes >= self.min_codes)
        allowed[:, self.eos] = ended
        return scores.masked_fill(~allowed, float("-inf"))


class AllowedTokensProcessor(LogitsProcessor):
    """Sets the score of every token outside ``allowed`` to -inf."""

    def __init__(self, allowed: Sequence[int]) -> None:
        self.allowed = torch.tensor(sorted(set(allowed)))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        mask = torch.full_like(scores, float("-inf"))
        mask[:, self.allowed.to(scores.device)] = 0.0
        return scores + mask


def generate_motion_ids(
    model: Any,
    inputs: dict[str, torch.Tensor],
    generate_kwargs: dict[str, Any],
    grammar: GrammarSettings,
    stop_ids: Sequence[int],
    pad_id: int,
    motion_grammar: bool,
    motion_only: bool,
) -> torch.Tensor:
    """The generated ids (the prompt cut off) of one ``model.generate`` call over ``inputs`` (the encoded
    prompts), with the grammar or else the motion-only mask (codes, start and end of motion, eos) as logits
    processors; rows stop at any of ``stop_ids``."""
    family = policy_family(model)
    kwargs = dict(generate_kwargs)
    if motion_grammar:
        prompt_length = 1 if family == "t5" else inputs["input_ids"].shape[1]
        kwargs["logits_processor"] = LogitsProcessorList([MotionGrammarProcessor(grammar, prompt_length)])
    elif motion_only:  # never the mask token or text
        allowed = [*grammar.ids[: grammar.codebook_size + 2], *stop_ids]
        kwargs["logits_processor"] = LogitsProcessorList([AllowedTokensProcessor(allowed)])
    if kwargs.get("use_cache"):
        kwargs.update(decoder_cache(model))
    output = model.generate(**inputs, **kwargs, eos_token_id=list(stop_ids), pad_token_id=pad_id)
    # T5 rows start with the decoder start token; LLaMA rows with the (left padded) prompt
    return output[:, 1:] if family == "t5" else output[:, inputs["input_ids"].shape[1] :]
