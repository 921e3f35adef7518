"""Summed log-probs of preference completions under a policy, with as little repeated or padded work as the
model family allows.

A DPO step scores 2B completions (B chosen, B rejected) of B prompts. TRL's causal layout concatenates each
prompt with each of its completions and pads all 2B rows to the longest: every prompt is run twice and, with
motion completions of 20 to 50 tokens, over a quarter of the completion positions are padding. Here:

- **the prompt once**: a causal policy runs the B prompts (all but their last token) once with a KV cache;
  the completions then run against that cache, each row's input being the prompt's last token followed by
  its completion (so every position predicts one completion token and no prompt position needs logits), at
  the positions the concatenation would give them. A T5 runs its encoder once per prompt for the same reason;
- **length groups**: the 2B completion rows are sorted by length and split into up to ``max_groups``
  contiguous groups (:func:`length_groups`), each padded only to its own longest row and run as its own
  forward pass against its rows' prompt states. Grouping changes which rows share a matrix product, not what
  any row computes: the log-probs equal the concatenated layout's up to float rounding.

Rows are returned chosen first, then rejected, as TRL orders them. Dropout sees the shared prompt once per
pair instead of once per completion (the same expectation; with dropout off, as TRL sets it, the same
numbers).

Exactly one pass a step goes through the training wrapper (``model``: DDP, a DeepSpeed engine), the last; the
others call the model it holds (``unwrapped``). The number of groups differs between processes, and DDP
synchronises buffers at every wrapped forward (processes running different numbers of them would wait on
each other for ever) and prepares its gradient reduction from one forward's outputs: the last group's
logits depend on every pass before it (through the prompt states), so every trained weight is reached.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import torch
from transformers import DynamicCache
from transformers.modeling_outputs import BaseModelOutput
from trl.trainer.utils import selective_log_softmax

GROUP_OVERHEAD_ROWS = 2  # a further forward pass must save the padding of this many rows of mean length


class CompletionScores(NamedTuple):
    """Per completion row (2B,): summed log-prob, token count and argmax hits; and the token positions the
    forward passes processed, padding included (what the layout costs)."""

    logps: torch.Tensor
    n_tokens: torch.Tensor
    hits: torch.Tensor
    positions: int


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[label] per position (..., T): one log-sum-exp over the batch in float32/64 (the
    same formula as TRL's row loop), TRL's per-row log-softmax for half precisions."""
    if logits.dtype not in (torch.float32, torch.float64):
        return selective_log_softmax(logits, labels)
    return logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


def length_groups(lengths: torch.Tensor, max_groups: int) -> list[torch.Tensor]:
    """Row indices sorted by length and cut into the 1..``max_groups`` contiguous, near-equal groups that
    cost the fewest padded positions, each further group charged ``GROUP_OVERHEAD_ROWS`` rows of mean
    length (a forward pass has a fixed cost)."""
    order = torch.argsort(lengths, descending=True, stable=True)
    sorted_lengths = lengths[order].tolist()
    rows, penalty = len(sorted_lengths), GROUP_OVERHEAD_ROWS * float(lengths.float().mean())
    best, best_cost = [order], float("inf")
    for count in range(1, min(max_groups, rows) + 1):
        bounds = [round(i * rows / count) for i in range(count + 1)]
        cost = sum((b - a) * sorted_lengths[a] for a, b in zip(bounds, bounds[1:])) + (count - 1) * penalty
        if cost < best_cost:
            best, best_cost = [order[a:b] for a, b in zip(bounds, bounds[1:])], cost
    return best


def _score_groups(
    targets: torch.Tensor, mask: torch.Tensor, max_groups: int, logits_of: Any, runners: tuple[Any, Any]
) -> CompletionScores:
    """Scores of the rows of ``targets`` / ``mask`` (R, T) whose logits ``logits_of(runner, rows, width)``
    gives (len(rows), width, V) for the first ``width`` targets of ``rows``, one call per length group: the
    last with ``runners[0]`` (the wrapper), the others with ``runners[1]``."""
    n_tokens = mask.sum(1)
    groups = length_groups(n_tokens, max_groups)
    logps, hits, positions = [], [], 0
    for index, rows in enumerate(groups):
        width = max(int(n_tokens[rows].max()), 1)
        runner = runners[0] if index == len(groups) - 1 else runners[1]
        logits = logits_of(runner, rows, width)  # (n, width, V)
        labels, valid = targets[rows, :width], mask[rows, :width]
        logps.append((token_logps(logits, labels) * valid).sum(1))
        hits.append(((logits.detach().argmax(-1) == labels) & valid.bool()).sum(1))
        positions += len(rows) * width
    order = torch.cat(groups)
    back = torch.empty_like(order)
    back[order] = torch.arange(len(order), device=order.device)  # row i's place in the grouped order
    return CompletionScores(torch.cat(logps)[back], n_tokens, torch.cat(hits)[back], positions)


def seq2seq_scores(
    model: Any, unwrapped: Any, inputs: dict[str, torch.Tensor], max_groups: int
) -> CompletionScores:
    """Encoder-decoder: the B prompts encoded once (by ``unwrapped``'s encoder), the 2B targets decoded
    (teacher forcing, shifted right from the decoder start token) in length groups against their prompts'
    states, the last group by ``model`` (the wrapper)."""
    prompt_mask = inputs["prompt_attention_mask"]  # (B, S)
    encoder = unwrapped.get_encoder()
    encoded = encoder(input_ids=inputs["prompt_input_ids"], attention_mask=prompt_mask).last_hidden_state
    targets, mask = inputs["completion_ids"], inputs["completion_mask"]  # (2B, T)
    pairs = len(prompt_mask)
    start = torch.full_like(targets[:, :1], unwrapped.config.decoder_start_token_id)
    decoder_inputs = torch.cat([start, targets[:, :-1]], dim=1)

    def logits_of(runner: Any, rows: torch.Tensor, width: int) -> torch.Tensor:
        prompts = rows % pairs
        return runner(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoded[prompts]),
            attention_mask=prompt_mask[prompts],
            decoder_input_ids=decoder_inputs[rows, :width],
            use_cache=False,
        ).logits

    scores = _score_groups(targets, mask, max_groups, logits_of, (model, unwrapped))
    return scores._replace(positions=scores.positions + prompt_mask.numel())


def _cache_keyword(unwrapped: Any) -> str:
    """The forward keyword of the KV cache: ``cache`` (transformers >= 5.2x), formerly ``past_key_values``."""
    base = unwrapped.get_base_model() if hasattr(unwrapped, "get_base_model") else unwrapped
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def shared_prompt_scores(
    model: Any, unwrapped: Any, inputs: dict[str, torch.Tensor], max_groups: int
) -> CompletionScores:
    """Causal LM: the prompts but their last token once, with a KV cache; then each group of completion rows
    fed ``[last prompt token, completion[:-1]]`` against its prompts' cache, at positions ``len - 1 + j``.
    ``model`` (a wrapper: DDP, DeepSpeed) runs the last pass, ``unwrapped`` (the model it holds) the rest."""
    prompt, prompt_mask = inputs["prompt_input_ids"], inputs["prompt_attention_mask"]  # (B, P), right-padded
    targets, mask = inputs["completion_ids"], inputs["completion_mask"]  # (2B, T)
    pairs, width = prompt.shape
    lengths = prompt_mask.sum(1)  # (B,) >= 2 (see shares_prompt)
    head_mask = (torch.arange(width - 1, device=prompt.device) < (lengths - 1)[:, None]).long()
    out = unwrapped(input_ids=prompt[:, :-1], attention_mask=head_mask, use_cache=True, logits_to_keep=1)
    states = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
    cache = [(keys, values) for keys, values, *_ in states]
    keyword = _cache_keyword(unwrapped)
    last = prompt.gather(1, (lengths - 1)[:, None])  # (B, 1)
    feed = torch.cat([last.repeat(2, 1), targets[:, :-1]], dim=1)  # (2B, T)
    start = (lengths - 1).repeat(2)  # (2B,) position of each row's first input

    def logits_of(runner: Any, rows: torch.Tensor, span: int) -> torch.Tensor:
        prompts = rows % pairs
        past = DynamicCache(ddp_cache_data=[(keys[prompts], values[prompts]) for keys, values in cache])
        positions = start[rows, None] + torch.arange(span, device=feed.device)
        return runner(
            input_ids=feed[rows, :span],
            attention_mask=torch.cat([head_mask[prompts], mask[rows, :span]], dim=1),
            position_ids=positions,
            use_cache=True,
            **{keyword: past},
        ).logits

    scores = _score_groups(targets, mask, max_groups, logits_of, (model, unwrapped))
    return scores._replace(positions=scores.positions + pairs * (width - 1))


def concatenated_scores(model: Any, inputs: dict[str, torch.Tensor]) -> CompletionScores:
    """Causal LM, TRL's layout: 2B rows of prompt + completion, position t predicting token t + 1."""
    input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1]
    labels, mask = input_ids[:, 1:], inputs["completion_mask"][:, 1:]
    logps = (token_logps(logits, labels) * mask).sum(1)
    hits = ((logits.detach().argmax(-1) == labels) & mask.bool()).sum(1)
    return CompletionScores(logps, mask.sum(1), hits, input_ids.numel())


def shares_prompt(inputs: dict[str, torch.Tensor]) -> bool:
    """Whether a causal batch is in the prompt-once layout with prompts of at least two tokens (a row with no
    prompt token before its last would attend to nothing in the prompt pass)."""
    return "prompt_input_ids" in inputs and bool((inputs["prompt_attention_mask"].sum(1) >= 2).all())
