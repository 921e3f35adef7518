"""The prompt-once, length-grouped scoring of preference completions against TRL's concatenated layout: the
same log-probs, token counts, argmax hits and gradients, from fewer processed positions."""

from __future__ import annotations

import pytest
import torch
from conftest import PAIR_CAPTIONS, random_pairs
from peft import get_peft_model
from trl.trainer.dpo_trainer import DataCollatorForPreference

from motion_align.policy.lora import get_peft_config
from motion_align.policy.model import build_policy, format_prompt
from motion_align.policy.text_tokenizer import train_text_tokenizer
from motion_align.trainers.completion_scores import (
    concatenated_scores,
    length_groups,
    seq2seq_scores,
    shared_prompt_scores,
)
from motion_align.trainers.preference_collators import (
    DataCollatorForCausalPreference,
    DataCollatorForMotionPreference,
)

K = 16


def policy(family: str):
    """A tiny policy with a LoRA adapter whose B is nonzero, so the adapter matters, and its tokenizer."""
    torch.manual_seed(0)
    tokenizer = train_text_tokenizer(PAIR_CAPTIONS * 4, family, vocab_size=200)
    model, tokenizer = build_policy(family, "tiny", tokenizer, K, dropout=0.0)
    model = get_peft_model(model, get_peft_config(model, tokenizer, lora_dropout=0.0))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.1)
    return model.eval(), tokenizer


def examples(tokenizer, n: int = 8, seed: int = 0) -> list[dict]:
    """Tokenized pairs as TRL prepares causal ones (prompt ids, completion ids ending in eos), every other
    chosen completion five times longer, so that lengths spread as motions' do."""
    out = []
    for i, row in enumerate(random_pairs(n, K, seed)):
        prompt = tokenizer(format_prompt(row["prompt"]))["input_ids"]
        ids = {k: tokenizer(row[k], add_special_tokens=False)["input_ids"] for k in ("chosen", "rejected")}
        ids["chosen"] = ids["chosen"] * (5 if i % 2 else 1)
        out.append(
            {"prompt_ids": prompt, **{f"{k}_ids": v + [tokenizer.eos_token_id] for k, v in ids.items()}}
        )
    return out


def lora_grads(model) -> dict:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("groups", [1, 3])
def test_shared_prompt_scores_and_gradients_equal_the_concatenated_layout(groups):
    model, tokenizer = policy("llama")
    batch = examples(tokenizer)
    pad = tokenizer.pad_token_id or tokenizer.eos_token_id
    concatenated = concatenated_scores(model, DataCollatorForPreference(pad_token_id=pad)(batch))
    concatenated.logps.sum().backward()
    expected = lora_grads(model)
    model.zero_grad()
    shared_batch = DataCollatorForCausalPreference(pad_token_id=pad)(batch)
    assert "prompt_input_ids" in shared_batch and "input_ids" not in shared_batch
    shared = shared_prompt_scores(model, model, shared_batch, groups)
    shared.logps.sum().backward()
    torch.testing.assert_close(shared.logps, concatenated.logps, rtol=1e-5, atol=1e-4)
    assert torch.equal(shared.n_tokens, concatenated.n_tokens) and torch.equal(shared.hits, concatenated.hits)
    assert shared.positions < concatenated.positions
    got = lora_grads(model)
    assert got.keys() == expected.keys() and len(got) > 10
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5, msg=name)


def test_seq2seq_length_groups_change_the_padding_not_the_scores():
    model, tokenizer = policy("t5")
    pad = tokenizer.pad_token_id
    rows = examples(tokenizer, 8, seed=1)
    batch = DataCollatorForMotionPreference(pad)(rows)
    one, four = (seq2seq_scores(model, model, batch, groups) for groups in (1, 4))
    torch.testing.assert_close(four.logps, one.logps, rtol=1e-5, atol=1e-4)
    assert torch.equal(four.hits, one.hits) and four.positions < one.positions
    # each pair scored alone (no padding at all) gives the same numbers
    for i in (0, 5):
        alone = seq2seq_scores(model, model, DataCollatorForMotionPreference(pad)([rows[i]]), 1)
        torch.testing.assert_close(alone.logps, one.logps[[i, 8 + i]], rtol=1e-5, atol=1e-4)


def test_length_groups_cover_every_row_once_and_split_only_when_padding_pays():
    assert [g.tolist() for g in length_groups(torch.full((8,), 30), 4)] == [list(range(8))]
    lengths = torch.tensor([5, 50, 6, 49, 7, 48, 5, 51] * 2)
    groups = length_groups(lengths, 4)
    assert 1 < len(groups) <= 4 and sorted(torch.cat(groups).tolist()) == list(range(16))
    assert all(lengths[g].max() - lengths[g].min() <= 3 for g in groups)  # short and long rows apart
    assert len(length_groups(lengths, 1)) == 1


def test_causal_collator_truncates_like_trl_and_falls_back_where_the_prompt_cannot_be_shared():
    model, tokenizer = policy("llama")
    pad = tokenizer.pad_token_id or tokenizer.eos_token_id
    batch = examples(tokenizer)
    longest_prompt = max(len(e["prompt_ids"]) for e in batch)
    limit = longest_prompt + 4  # cuts most completions
    stock = DataCollatorForPreference(pad_token_id=pad, max_length=limit, truncation_mode="keep_start")(batch)
    shared = DataCollatorForCausalPreference(
        pad_token_id=pad, max_length=limit, truncation_mode="keep_start"
    )(batch)
    assert "prompt_input_ids" in shared
    with torch.no_grad():
        expected = concatenated_scores(model, stock)
        got = shared_prompt_scores(model, model, shared, 2)
    torch.testing.assert_close(got.logps, expected.logps, rtol=1e-5, atol=1e-4)
    assert torch.equal(got.n_tokens, expected.n_tokens)
    keep_end = DataCollatorForCausalPreference(pad_token_id=pad, max_length=limit, truncation_mode="keep_end")
    assert "input_ids" in keep_end(batch)  # cutting the prompt's start differs between chosen and rejected
    assert "prompt_input_ids" in keep_end([{"prompt_ids": [5, 6], "chosen_ids": [7], "rejected_ids": [8, 9]}])
    short = [{**e, "prompt_ids": e["prompt_ids"][:1]} for e in batch]
    assert "input_ids" in DataCollatorForCausalPreference(pad_token_id=pad)(short)
    assert "input_ids" in DataCollatorForCausalPreference(pad_token_id=pad, share_prompt=False)(batch)
