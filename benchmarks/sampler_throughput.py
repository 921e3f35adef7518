"""The semi-online sampler's throughput (candidates/s: generate, decode, score) against naive loops, and the
share of SoPo training time spent sampling.

    python benchmarks/sampler_throughput.py [--demo outputs/demo] [--policy DIR] [--engine ours]
        [--prompts 64] [--candidates 4] [--batch-size 16] [--train-steps 6] [--threads N] [--out results.json]

Every way produces the same work for the same ``--prompts`` captions of the tokenized train split: K
candidates per caption from the policy (temperature 1, KV cache on), each decoded by the VQ-VAE and scored
by the retrieval reward, plus the real motion's decode, reward and similarity to each candidate (what SoPo
needs). The ways:

- ``CandidateSampler`` over batches of ``--batch-size`` prompts (ours: one sampler call per batch, one
  VQ-VAE call and one reward call for all its candidates and real motions);
- the same sampler one prompt at a time (a per-prompt loop: K samples per ``generate`` call);
- one sample at a time (a per-sample loop, as a sampler written for one motion at a time runs: one
  ``generate``, one decode and one reward call per candidate; the real motion is decoded with each).

candidates/s = prompts x K / wall time, after one untimed warm-up batch per way. The share of training
time is ``MotionSoPoTrainer``'s sampling seconds over its train runtime for ``--train-steps`` steps of
SoPo-LoRA (one process, ``--batch-size`` prompts per step).

With the demo's artifacts (``make demo``: tokenizer, retrieval, tokenized, and a policy) it measures the
demo's policy: ``--policy``, else ``policy-t5``, else ``policy-llama``; without them it builds untrained tiny
ones in a temporary folder (a smoke run: the figures then say nothing about the demo). ``--engine`` picks the
sampler that draws the candidates (``SamplingConfig.engine``): ours (:mod:`motion_align.policy.sampler`) or
``generate`` (``model.generate``, the sampler before it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import datasets
import torch

from motion_align.policy.generation import ENGINES, SamplingConfig, load_generator, record_motion_tokenizer
from motion_align.policy.lora import get_peft_config
from motion_align.policy.model import build_policy, format_prompt, load_policy, save_policy
from motion_align.policy.text_tokenizer import train_text_tokenizer
from motion_align.policy.vocab import MotionVocab
from motion_align.rewards.retrieval import RetrievalConfig, TextMotionRetrieval
from motion_align.trainers.recipe import load_motion_tokenizer
from motion_align.trainers.sopo_config import MotionSoPoConfig
from motion_align.trainers.sopo_sampler import CandidateSampler
from motion_align.trainers.sopo_trainer import MotionSoPoTrainer, get_real_motion_datasets, load_reward_model

WAYS = ("batched (ours)", "per-prompt loop", "per-sample loop")


def tiny_artifacts(root: Path, seed: int = 0) -> dict[str, Path]:
    """Untrained tiny stand-ins of the demo's artifacts: a VQ-VAE, a tokenized dataset of random codes, a
    retrieval model and a T5 policy that records its VQ-VAE."""
    from motion_tokenizer import MotionVQVAE, VQVAEConfig

    torch.manual_seed(seed)
    vq = MotionVQVAE(VQVAEConfig.preset("tiny"))
    vq.save_pretrained(root / "tokenizer")
    k = vq.config.codebook_size
    g = torch.Generator().manual_seed(seed)
    captions = [f"a person walks {n} steps and waves." for n in range(1, 33)]
    codes = [torch.randint(0, k, (12 + n % 30,), generator=g).tolist() for n in range(32)]
    items = datasets.Dataset.from_dict({"captions": [[c] for c in captions], "codes": codes})
    datasets.DatasetDict({"train": items}).save_to_disk(str(root / "tokenized"))
    (root / "tokenized" / "tokenization.json").write_text(json.dumps({"codebook_size": k}))
    TextMotionRetrieval(RetrievalConfig.preset("tiny")).save_pretrained(root / "retrieval")
    tokenizer = train_text_tokenizer([format_prompt(c) for c in captions], "t5", vocab_size=300)
    save_policy(*build_policy("t5", "tiny", tokenizer, k, dropout=0.0), root / "policy")
    record_motion_tokenizer(root / "policy", str(root / "tokenizer"))
    return {name: root / name for name in ("tokenizer", "tokenized", "retrieval", "policy")}


def workload(paths: dict[str, Path], prompts: int) -> tuple[list[str], list[list[int]]]:
    """The first ``prompts`` items of the train split: one caption each and the real codes."""
    items = datasets.load_from_disk(str(paths["tokenized"]))["train"]
    items = items.select(range(min(prompts, len(items))))
    return [c[0] for c in items["captions"]], [list(c) for c in items["codes"]]


def _timed(run: Any) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def measure_ways(
    paths: dict[str, Path], prompts: int, k: int, batch_size: int, seed: int, engine: str = "ours"
) -> dict[str, Any]:
    """Seconds and candidates/s of each way on the same captions (one warm-up batch each, untimed)."""
    model, tokenizer, vq = load_generator(paths["policy"])
    reward = TextMotionRetrieval.from_pretrained(paths["retrieval"]).eval()
    captions, codes = workload(paths, prompts)
    sampling = SamplingConfig(engine=engine)
    batched = CandidateSampler(tokenizer, vq, reward, k, sampling)
    single = CandidateSampler(tokenizer, vq, reward, 1, sampling)
    stages = {"generate": 0.0, "decode": 0.0, "score": 0.0}

    def ours() -> None:
        for start in range(0, len(captions), batch_size):
            got = batched(model, captions[start : start + batch_size], codes[start : start + batch_size])
            for key in stages:
                stages[key] += got.seconds[key]

    def per_prompt() -> None:
        for caption, real in zip(captions, codes):
            batched(model, [caption], [real])

    def per_sample() -> None:
        for caption, real in zip(captions, codes):
            for _ in range(k):
                single(model, [caption], [real])

    warmups = {
        WAYS[0]: lambda: batched(model, captions[:batch_size], codes[:batch_size]),
        WAYS[1]: lambda: batched(model, captions[:1], codes[:1]),
        WAYS[2]: lambda: single(model, captions[:1], codes[:1]),
    }
    out: dict[str, Any] = {"prompts": len(captions), "candidates": len(captions) * k, "ways": {}}
    for way, run in zip(WAYS, (ours, per_prompt, per_sample)):
        torch.manual_seed(seed)
        warmups[way]()
        seconds = _timed(run)
        out["ways"][way] = {"seconds": seconds, "candidates_per_s": len(captions) * k / seconds}
    total = sum(stages.values())
    out["stage_share"] = {key: value / total for key, value in stages.items()}
    return out


def measure_training_share(paths: dict[str, Path], k: int, batch_size: int, steps: int, seed: int) -> dict:
    """SoPo-LoRA for ``steps`` steps on one process: sampling seconds over the train runtime."""
    with tempfile.TemporaryDirectory() as out:
        config = MotionSoPoConfig(
            model_name_or_path=str(paths["policy"]), dataset_name=str(paths["tokenized"]),
            reward_model=str(paths["retrieval"]), output_dir=out, num_candidates=k,
            per_device_train_batch_size=batch_size, max_steps=steps, warmup_steps=0, logging_steps=steps,
            save_strategy="no", report_to="none", disable_tqdm=True, seed=seed,
        )  # fmt: skip
        model, tokenizer = load_policy(config.model_name_or_path, dropout=0.0)
        reward, vq = load_reward_model(config), load_motion_tokenizer(config)
        data = get_real_motion_datasets(config, MotionVocab.from_tokenizer(tokenizer).codebook_size)
        peft_config = get_peft_config(model, tokenizer)
        trainer = MotionSoPoTrainer(model, config, reward, vq, processing_class=tokenizer,
                                    train_dataset=data["train"], peft_config=peft_config)  # fmt: skip
        runtime = trainer.train().metrics["train_runtime"]
    return {"steps": steps, "train_seconds": runtime, "sampling_seconds": trainer.sampling_seconds,
            "sampling_share": trainer.sampling_seconds / runtime}  # fmt: skip


def table(result: dict[str, Any]) -> list[str]:
    ways = result["ways"]
    base = ways[WAYS[0]]["candidates_per_s"]
    lines = ["| sampler | candidates/s | seconds | ours is |", "|---|---:|---:|---:|"]
    for way, row in ways.items():
        ratio = "-" if way == WAYS[0] else f"{base / row['candidates_per_s']:.1f}x faster"
        lines.append(f"| {way} | {row['candidates_per_s']:.1f} | {row['seconds']:.1f} | {ratio} |")
    shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in result["stage_share"].items())
    lines += ["", f"Where ours spends its time: {shares}."]
    if "training" in result:
        t = result["training"]
        lines.append(
            f"SoPo-LoRA training, {t['steps']} steps: {t['sampling_seconds']:.1f} s of "
            f"{t['train_seconds']:.1f} s sampling ({100 * t['sampling_share']:.0f}%)."
        )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", type=Path, default=Path("outputs/demo"), help="make demo's output folder")
    parser.add_argument(
        "--policy", type=Path, help="the policy (default: the demo's policy-t5 or policy-llama)"
    )
    parser.add_argument("--engine", default="ours", choices=ENGINES, help="the sampler of the candidates")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--candidates", type=int, default=4, help="K samples per prompt")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per sampler call (and step)")
    parser.add_argument("--train-steps", type=int, default=6, help="SoPo steps for the time share (0: skip)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    names = ("tokenizer", "tokenized", "retrieval")
    found = [args.demo / name for name in ("policy-t5", "policy-llama") if (args.demo / name).exists()]
    policy = args.policy or (found[0] if found else None)
    with tempfile.TemporaryDirectory() as tmp:
        if policy is not None and all((args.demo / n).exists() for n in names):
            paths, source = {n: args.demo / n for n in names} | {"policy": policy}, f"the policy {policy}"
        else:
            paths, source = tiny_artifacts(Path(tmp), args.seed), "untrained tiny stand-ins (no demo found)"
        result = measure_ways(paths, args.prompts, args.candidates, args.batch_size, args.seed, args.engine)
        if args.train_steps:
            result["training"] = measure_training_share(
                paths, args.candidates, args.batch_size, args.train_steps, args.seed
            )
    result.update(source=source, threads=args.threads, batch_size=args.batch_size, k=args.candidates,
                  engine=args.engine)  # fmt: skip
    print(f"# Semi-online sampler: {result['prompts']} prompts x {args.candidates} candidates, {source}, "
          f"engine {args.engine}, batches of {args.batch_size}, {args.threads} threads\n")  # fmt: skip
    print("\n".join(table(result)))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
