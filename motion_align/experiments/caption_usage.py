"""How much a policy's motion tokens depend on the caption: teacher-forced NLL by position, with each
row's own caption and with a caption drawn from another row.

    python experiments/caption_usage.py --model outputs/demo/policy-t5 --data outputs/demo/tokenized

The rows are ``load_sft_dataset(data)[split]`` (one per caption), scored as SFT trains them: the labels are
the start token, the codes, the end token and the text eos. Each label position falls in a band (start,
codes 1-4, 5-12, 13-24, 25-36, 37+, end, eos). The gain of a band is its NLL with shuffled captions minus
its NLL with the true ones: how many nats the caption is worth there. A policy that ignores its prompt
gains nothing; one that reads it well gains most on the first codes and on the end token.
"""

from __future__ import annotations

import argparse
import random
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from motion_align.data.sft import load_sft_dataset
from motion_align.policy.model import load_policy, policy_family
from motion_align.trainers.sft_trainer import DataCollatorForSeq2SeqMotion

#: (name, first code position, last code position) of the code bands; position 0 is the start token.
CODE_BANDS = (("codes 1-4", 1, 4), ("codes 5-12", 5, 12), ("codes 13-24", 13, 24), ("codes 25-36", 25, 36))
BANDS = ("start", *(name for name, _, _ in CODE_BANDS), "codes 37+", "end", "eos")


def band_of(position: int, length: int) -> str:
    """The band of label ``position`` in a completion of ``length`` labels (start, codes, end, eos)."""
    if position == 0:
        return "start"
    if position == length - 1:
        return "eos"
    if position == length - 2:
        return "end"
    for name, first, last in CODE_BANDS:
        if first <= position <= last:
            return name
    return "codes 37+"


def _features(tokenizer: Any, family: str, prompt: str, completion: str) -> dict[str, list[int]]:
    """A row as the SFT trainers build it: ``labels`` are the completion and one text eos (no bos);
    ``input_ids`` are the prompt's ids (T5: the encoder input) followed, for a decoder-only policy, by the
    labels."""
    labels = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    prompt_ids = tokenizer(prompt)["input_ids"]
    return {"input_ids": prompt_ids if family == "t5" else prompt_ids + labels, "labels": labels}


@torch.no_grad()
def label_nll(
    model: Any, tokenizer: Any, rows: list[tuple[str, str]], batch_size: int = 32
) -> list[torch.Tensor]:
    """Per-label NLL (nats) of each (prompt, completion) row, teacher-forced."""
    family = policy_family(model)
    collate = DataCollatorForSeq2SeqMotion(tokenizer.pad_token_id)  # right padding, labels padded with -100
    model.eval()
    out: list[torch.Tensor] = []
    for start in tqdm(range(0, len(rows), batch_size), desc="nll", leave=False):
        features = [_features(tokenizer, family, p, c) for p, c in rows[start : start + batch_size]]
        batch = collate(features)
        lengths = [(len(f["input_ids"]), len(f["labels"])) for f in features]
        if family == "t5":
            logits = model(**batch).logits  # (B, T, V), lined up with the labels
            labels, spans = batch["labels"], [(0, n) for _, n in lengths]
        else:
            inputs = {key: batch[key] for key in ("input_ids", "attention_mask")}
            logits = model(**inputs).logits[:, :-1]  # (B, S-1, V)
            labels = batch["input_ids"][:, 1:]  # position s predicts id s + 1
            spans = [(total - n - 1, total - 1) for total, n in lengths]
        nll = F.cross_entropy(logits.float().transpose(1, 2), labels.clamp(min=0), reduction="none")
        out += [nll[i, a:b] for i, (a, b) in enumerate(spans)]
    return out


def caption_usage(
    model: Any, tokenizer: Any, rows: list[tuple[str, str]], seed: int = 0, batch_size: int = 32
) -> dict[str, dict[str, float]]:
    """Per band: label count, mean NLL with the true captions and with shuffled ones, and the gain."""
    if len(rows) < 2:
        raise ValueError(f"caption_usage needs at least 2 rows to shuffle captions, got {len(rows)}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    donor = {i: order[(k + 1) % len(order)] for k, i in enumerate(order)}  # a cycle: no row keeps its own
    shuffled = [(rows[donor[i]][0], completion) for i, (_, completion) in enumerate(rows)]
    sums = {band: [0, 0.0, 0.0] for band in BANDS}
    for true, other in zip(
        label_nll(model, tokenizer, rows, batch_size), label_nll(model, tokenizer, shuffled, batch_size)
    ):
        for position in range(len(true)):
            entry = sums[band_of(position, len(true))]
            entry[0] += 1
            entry[1] += true[position].item()
            entry[2] += other[position].item()
    table = {}
    for band, (count, true_sum, other_sum) in sums.items():
        if count:
            true_nll, other_nll = true_sum / count, other_sum / count
            table[band] = dict(labels=count, true=true_nll, shuffled=other_nll, gain=other_nll - true_nll)
    return table


def format_table(table: dict[str, dict[str, float]]) -> str:
    lines = [
        "| band | labels | NLL, own caption | NLL, another caption | gain (nats) |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {band} | {r['labels']} | {r['true']:.3f} | {r['shuffled']:.3f} | {r['gain']:+.3f} |"
        for band, r in table.items()
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved policy (folder or Hub id)")
    parser.add_argument("--data", required=True, help="a tokenized dataset (`motion-align tokenize`)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--num-rows", type=int, default=900, help="rows (captions) scored; 0: all")
    parser.add_argument("--seed", type=int, default=0, help="which other row lends each row its caption")
    args = parser.parse_args(argv)
    dataset = load_sft_dataset(args.data)
    if args.split not in dataset:
        parser.error(f"{args.data} has no split {args.split!r}; it has {sorted(dataset)}")
    model, tokenizer = load_policy(args.model, dropout=0.0)
    split = dataset[args.split]
    rows = list(zip(split["prompt"], split["completion"], strict=True))
    if args.num_rows:
        rows = rows[: args.num_rows]
    print(f"{args.model}: {len(rows)} {args.split} rows of {args.data}")
    print(format_table(caption_usage(model, tokenizer, rows, seed=args.seed)))
