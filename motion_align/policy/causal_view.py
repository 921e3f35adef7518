"""One row layout for online RL with both policy families: ``[prompt..., <som>] + [codes..., <eom>, eos]``.

TRL's PPOTrainer (and reward models in general) work on *causal rows*: the query, left-padded, then the
response, right-padded, in one tensor, where position t's logits predict token t + 1. Our queries end
with the start-of-motion token ``<som>``, so a response is the codes, the end-of-motion token and eos; the
policy cannot start a motion with anything else, and the column of ``<som>`` marks where the prompt ends
in every row (:func:`motion_boundary`): captions are text and never hold motion tokens.

A decoder-only policy (LLaMA) reads such rows as they are. An encoder-decoder policy (T5, as MotionGPT)
is made to read them by :class:`EncoderDecoderAsCausalLM` and :class:`EncoderDecoderTrunk`: the prompt
(up to ``<som>``, its eos included) goes to the encoder, ``[decoder start, <som>, response...]`` to the
decoder, and decoder position j, which predicts row column s + j (s: the ``<som>`` column), is placed at
row column s - 1 + j. Logits and hidden states at prompt columns before s - 1 are zeros: nothing reads
them (PPO reads columns from the query's last one on).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutput
from transformers.utils import ModelOutput

from motion_align.policy.model import decoder_cache, format_prompt, policy_family
from motion_align.policy.prompts import template_of
from motion_align.policy.vocab import MotionVocab


def motion_boundary(input_ids: torch.Tensor, som_id: int) -> int:
    """The column of the start-of-motion token that ends every query of ``input_ids`` (B, L)."""
    all_rows = (input_ids == som_id).all(0)
    if not all_rows.any():
        raise ValueError(
            f"no column holds the start-of-motion token (id {som_id}) in every row: causal motion rows are "
            "[prompt..., <som>] left-padded, then the response"
        )
    return int(all_rows.nonzero()[0, 0])


def query_ids(tokenizer: Any, caption: str, vocab: MotionVocab | None = None) -> list[int]:
    """The query of ``caption``: its prompt's ids (in the policy's template, as its SFT saw them) and
    ``<som>``."""
    vocab = vocab or MotionVocab.from_tokenizer(tokenizer)
    prompt = format_prompt(caption, template=template_of(tokenizer))
    return tokenizer(prompt)["input_ids"] + [tokenizer.convert_tokens_to_ids(vocab.som)]


def response_ids(tokenizer: Any, motion: str, vocab: MotionVocab | None = None) -> list[int]:
    """The response of a motion string (``<som>codes<eom>``): codes, ``<eom>`` and one eos."""
    vocab = vocab or MotionVocab.from_tokenizer(tokenizer)
    ids = tokenizer(motion, add_special_tokens=False)["input_ids"]
    som = tokenizer.convert_tokens_to_ids(vocab.som)
    if not ids or ids[0] != som:
        raise ValueError(f"a motion string starts with {vocab.som}, got {motion[:40]!r}")
    eos = tokenizer.eos_token_id
    return ids[1:] if ids[-1] == eos else ids[1:] + [eos]


def pad_rows(queries: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad: int) -> dict:
    """Causal rows: queries left-padded to one length, then responses right-padded; with the mask."""
    q_len = max(len(q) for q in queries)
    r_len = max((len(r) for r in responses), default=0)
    ids = torch.full((len(queries), q_len + r_len), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, (q, r) in enumerate(zip(queries, responses, strict=True)):
        ids[row, q_len - len(q) : q_len] = torch.as_tensor(q, dtype=torch.long)
        ids[row, q_len : q_len + len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[row, q_len - len(q) : q_len + len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def last_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index (B,) of each row's last attended column."""
    columns = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.bool() * columns).argmax(1)


class _Split(nn.Module):
    """Shared by both views: a causal row -> encoder inputs and decoder inputs, and back."""

    def __init__(self, model: nn.Module, som_id: int, decoder_start_id: int) -> None:
        super().__init__()
        self.model, self.som_id, self.decoder_start_id = model, som_id, decoder_start_id

    @property
    def config(self) -> Any:
        return self.model.config

    def split(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[dict, int]:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        s = motion_boundary(input_ids, self.som_id)
        start = torch.full_like(input_ids[:, :1], self.decoder_start_id)
        inputs = {
            "input_ids": input_ids[:, :s],
            "attention_mask": attention_mask[:, :s],
            "decoder_input_ids": torch.cat([start, input_ids[:, s:]], 1),
            "decoder_attention_mask": torch.cat([torch.ones_like(start), attention_mask[:, s:]], 1),
        }
        return inputs, s

    @staticmethod
    def to_row(decoder_values: torch.Tensor, s: int) -> torch.Tensor:
        """(B, L - s + 1, ...) decoder values -> (B, L, ...) row values: zeros before column s - 1."""
        front = decoder_values.new_zeros((decoder_values.shape[0], s - 1, *decoder_values.shape[2:]))
        return torch.cat([front, decoder_values], 1)


class EncoderDecoderAsCausalLM(_Split):
    """An encoder-decoder LM (T5, or a PEFT model of one) that reads and generates causal motion rows."""

    def __init__(self, model: nn.Module, som_id: int, decoder_start_id: int | None = None) -> None:
        start = model.config.decoder_start_token_id if decoder_start_id is None else decoder_start_id
        super().__init__(model, som_id, start)
        self.is_gradient_checkpointing = False

    @property
    def generation_config(self) -> Any:
        return self.model.generation_config

    def gradient_checkpointing_enable(self, **kwargs: Any) -> None:
        self.model.gradient_checkpointing_enable(**kwargs)
        self.is_gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self.model.gradient_checkpointing_disable()
        self.is_gradient_checkpointing = False

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any):
        inputs, s = self.split(input_ids, attention_mask)
        logits = self.model(**inputs, use_cache=False).logits  # (B, L - s + 1, V)
        return CausalLMOutput(logits=self.to_row(logits, s))

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any):
        """Continue queries ending in ``<som>``: ``sequences`` are the queries then the generated tokens."""
        if not (input_ids[:, -1] == self.som_id).all():
            raise ValueError("every query must end with the start-of-motion token")
        inputs, _ = self.split(input_ids, attention_mask)
        del inputs["decoder_attention_mask"]
        if kwargs.get("use_cache", True):
            kwargs = {**decoder_cache(self.model), **kwargs}
        out = self.model.generate(**inputs, **kwargs)
        sequences = out.sequences if isinstance(out, ModelOutput) else out
        new = sequences[:, 2:]  # after [decoder start, <som>]
        if isinstance(out, ModelOutput):
            out.sequences = torch.cat([input_ids, new], 1)
            return out
        return torch.cat([input_ids, new], 1)


class EncoderDecoderTrunk(_Split):
    """The encoder-decoder backbone (a ``T5Model``) of a reward or value model, on causal motion rows:
    ``hidden_states[-1]`` (B, L, D) holds at column t the decoder state after reading row token t."""

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any):
        inputs, s = self.split(input_ids, attention_mask)
        hidden = self.to_row(self.model(**inputs, use_cache=False).last_hidden_state, s)
        return BaseModelOutput(last_hidden_state=hidden, hidden_states=(hidden,))


@torch.no_grad()
def response_log_probs(
    model: Any, tokenizer: Any, captions: Sequence[str], motions: Sequence[str], batch_size: int = 64
) -> torch.Tensor:
    """log p(motion | caption) under ``model`` (either family): the sum over the response tokens (codes,
    ``<eom>``, eos) of each motion string (``<som>codes<eom>``), shape (N,). The difference of two policies'
    values on the policy's own samples, averaged, estimates their KL divergence in nats per motion."""
    vocab = MotionVocab.from_tokenizer(tokenizer)
    som = tokenizer.convert_tokens_to_ids(vocab.som)
    view = EncoderDecoderAsCausalLM(model, som) if policy_family(model) == "t5" else model
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(captions), batch_size):
        queries = [query_ids(tokenizer, c, vocab) for c in captions[start : start + batch_size]]
        responses = [response_ids(tokenizer, m, vocab) for m in motions[start : start + batch_size]]
        rows = pad_rows(queries, responses, tokenizer.pad_token_id or 0)
        logits = view(**{k: v.to(device) for k, v in rows.items()}).logits.float()
        q_len = max(len(q) for q in queries)
        targets = rows["input_ids"][:, q_len:].to(device)
        mask = rows["attention_mask"][:, q_len:].to(device).bool()
        logps = logits[:, q_len - 1 : -1].log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
        out.append((logps * mask).sum(1).cpu())
    return torch.cat(out) if out else torch.zeros(0)
