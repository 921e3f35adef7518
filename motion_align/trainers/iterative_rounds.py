"""Iterative on-policy preference alignment: AToM's loop (Han et al. 2024, "AToM: Aligning Text-to-Motion
Model at Event-Level with GPT-4Vision Reward", arXiv 2411.18654) as rounds of one recipe.

Round r (1..N) of ``recipes/iterative_dpo.py``:

1. **sample**: ``num_samples`` motions for each of ``prompts_per_round`` fresh captions of the corpus (with
   their event specs), from the current policy (the SFT policy in round 1, round r-1's after); every process
   samples and scores its share of the captions, the main process gathers them;
2. **judge and pair**: the scorer (the event judge, the retrieval reward, or the mean of their within-caption
   ranks) ranks each caption's distinct valid samples; best against worst, with the degree of the score gap
   (:mod:`motion_align.data.pair_builders`); captions whose samples all score the same are dropped and
   counted. The pairs are saved in ``round-r/pairs`` with the policy that sampled them;
3. **measure**: the current policy's reward on the round's samples (the judge's mean score, an unusable
   motion scoring 0) and on ``heldout_prompts`` captions of another split (one sample each, the same seed
   every round), and its KL divergence from the SFT policy on those held-out samples (nats per motion);
4. **train**: DPO/IPO of ``max_steps`` steps on the round's pairs. One LoRA adapter on the SFT policy is
   trained across rounds; the reference is the SFT policy (the adapter disabled) or, with
   ``reference: previous``, the previous round's policy (TRL's DPOTrainer keeps a frozen copy of the adapter
   it is given as the "ref" adapter).

The KL budget: after each round the new policy's KL from the SFT policy is measured on the held-out samples;
over ``kl_budget`` the run stops and keeps the last policy within it (``stop``) or doubles the next round's
beta (``adapt``: beta is the weight of the KL term in the objective DPO solves, Rafailov et al. 2023). Every
round is saved in ``round-r/`` (``round.json`` once complete, the DPO trainer's checkpoints meanwhile), so a
rerun with ``--resume_from_checkpoint true`` (or just the same command) carries on where it stopped.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object

from motion_align.data.pair_builders import (
    JudgeScorer,
    PairPrompt,
    RankMeanScorer,
    RewardScorer,
    corpus_prompts,
    pair_candidates,
)
from motion_align.data.preferences import save_preferences
from motion_align.plots import plot_curves
from motion_align.policy.causal_view import response_log_probs
from motion_align.policy.generation import SamplingConfig, generate_motions, load_generator
from motion_align.policy.model import load_policy
from motion_align.policy.vocab import MotionVocab
from motion_align.trainers.checkpointing import newest_complete_checkpoint
from motion_align.trainers.dpo_trainer import MotionDPOTrainer
from motion_align.trainers.recipe import (
    AdapterCheckpointCallback,
    absolute_if_local,
    get_policy,
    get_preference_datasets,
    method_name,
    save_aligned_policy,
    training_info,
)
from motion_align.training.loop import write_json

logger = logging.getLogger(__name__)

ROUND_FILE = "round.json"
RUN_FILE = "iterative_run.json"
PAIRS_REPORT = "pairs_report.json"
CURVES_FILE = "training_curves.png"
SCRIPT = "recipes/iterative_dpo.py"
#: Counts of the per-process pair reports that add up.
REPORT_COUNTS = ("prompts", "prompts_with_pairs", "prompts_tied", "prompts_too_few", "samples", "invalid",
                 "duplicates", "candidates", "invalid_candidates", "dropped_small_gap")  # fmt: skip


def round_seed(*parts: int) -> int:
    """A sampling seed per (run seed, round, process or purpose, chunk)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0] % 2**31)


def round_prompts(prompts: list[PairPrompt], count: int, seed: int, round_index: int) -> list[PairPrompt]:
    """``count`` captions for round ``round_index``: the pool shuffled once (by ``seed``) and cut into
    consecutive slices, so rounds see fresh captions until the pool is used up, then wrap around."""
    order = np.random.default_rng(seed).permutation(len(prompts))
    start = (round_index - 1) * count
    return [prompts[order[(start + i) % len(prompts)]] for i in range(min(count, len(prompts)))]


class Remembered:
    """A scorer that scores each motion object once: the pairs and the reward curves of a round read the same
    samples' scores (:meth:`Scoring.forget` between rounds)."""

    def __init__(self, scorer: Any) -> None:
        self.scorer, self.name, self.scores = scorer, scorer.name, {}

    def __call__(self, captions: Any, specs: Any, motions: Any) -> np.ndarray:
        new = [i for i, m in enumerate(motions) if id(m) not in self.scores]
        if new:
            picked = [motions[i] for i in new]
            found = self.scorer([captions[i] for i in new], [specs[i] for i in new], picked)
            self.scores.update({id(motions[i]): float(v) for i, v in zip(new, found, strict=True)})
        return np.array([self.scores[id(m)] for m in motions], dtype=np.float64)


class Scoring:
    """The round's scorer and the judge's raw scores (the reward curves read those); each motion is scored
    once."""

    def __init__(self, config: Any) -> None:
        self.judge = Remembered(JudgeScorer())
        self.reward = None
        if config.scorer != "judge":
            from motion_align.rewards.retrieval import TextMotionRetrieval

            model = TextMotionRetrieval.from_pretrained(config.retrieval_model).eval()
            self.reward = Remembered(RewardScorer(model))
        self.kind = config.scorer

    def forget(self) -> None:
        """Drops the remembered scores (the motions they belong to are gone)."""
        for scorer in (self.judge, self.reward):
            if scorer is not None:
                scorer.scores.clear()

    def pair_scorer(self) -> Any:
        if self.kind == "judge":
            return self.judge
        return self.reward if self.kind == "reward" else RankMeanScorer([self.judge, self.reward])

    def mean_rewards(self, prompts: list[PairPrompt], motions: list[Any]) -> dict[str, float]:
        """Sums and counts of the judge's (and the retrieval reward's) scores over ``motions``, an unusable
        motion scoring 0, to be added up over processes."""
        valid = [m for m in motions if m.valid]
        captions = [prompts[m.prompt_index].caption for m in valid]
        specs = [prompts[m.prompt_index].spec for m in valid]
        sums = {"count": float(len(motions)), "valid": float(len(valid))}
        sums["judge"] = float(np.sum(self.judge(captions, specs, valid))) if valid else 0.0
        if self.reward is not None:
            sums["retrieval"] = float(np.sum(self.reward(captions, specs, valid))) if valid else 0.0
        return sums


def add_up(parts: list[dict[str, float]]) -> dict[str, float]:
    """Per-process sums -> means per motion (``valid`` becomes the share of usable motions)."""
    total = {key: sum(part[key] for part in parts) for key in parts[0]}
    count = max(total.pop("count"), 1.0)
    return {key: round(value / count, 5) for key, value in total.items()}


def sample(config: Any, policy: Any, captions: list[str], num_samples: int, seed: int, what: str,
           state: Any) -> list[Any]:  # fmt: skip
    """``num_samples`` motions per caption from ``policy`` ((model, tokenizer, motion tokenizer)), in chunks
    of ``sampling_batch_size`` captions (chunk c seeded by (``seed``, c)), with a progress bar on the main
    process; ``prompt_index`` counts over all of ``captions``."""
    from tqdm.auto import tqdm

    batch = config.sampling_batch_size
    motions: list[Any] = []
    bar = tqdm(total=len(captions), desc=what, unit="caption",
               disable=config.disable_tqdm or not state.is_local_main_process)  # fmt: skip
    for chunk, start in enumerate(range(0, len(captions), batch)):
        sampling = SamplingConfig(temperature=config.sampling_temperature, num_samples=num_samples,
                                  seed=round_seed(seed, chunk))  # fmt: skip
        part = generate_motions(*policy, captions[start : start + batch], sampling, batch)
        for motion in part:
            motion.prompt_index += start
        motions += part
        bar.update(len(captions[start : start + batch]))
    bar.close()
    return motions


def sample_and_pair(
    config: Any, policy: str, prompts: list[PairPrompt], scoring: Scoring, round_index: int, state: Any
) -> tuple[list[dict] | None, dict[str, Any] | None]:
    """Steps 1-2 of a round on every process: the main process gets (pair rows, report), the others None."""
    share = prompts[state.process_index :: state.num_processes]
    model, tokenizer, motion_tokenizer = load_generator(policy)
    seed = round_seed(config.seed, round_index, state.process_index)
    motions = sample(config, (model, tokenizer, motion_tokenizer), [p.caption for p in share],
                     config.num_samples, seed, f"round {round_index}: sampling", state)  # fmt: skip
    codebook = MotionVocab.from_tokenizer(tokenizer).codebook_size
    invalid_score = 0.0 if config.invalid_rejected else None
    pairs, report = pair_candidates(share, motions, scoring.pair_scorer(), codebook, config.pairs_per_prompt,
                                    config.min_gap, invalid_score=invalid_score)  # fmt: skip
    payload = {"rows": pairs.to_list(), "report": report, "rewards": scoring.mean_rewards(share, motions)}
    scoring.forget()
    gathered = gather_object([payload])
    if not state.is_main_process:
        return None, None
    rows = [row for part in gathered for row in part["rows"]]
    merged = {key: sum(part["report"][key] for part in gathered) for key in REPORT_COUNTS}
    merged["pairs"] = len(rows)
    merged["degrees"] = {d: sum(part["report"]["degrees"][d] for part in gathered) for d in report["degrees"]}
    gaps = [row["chosen_score"] - row["rejected_score"] for row in rows]
    merged["mean_gap"] = round(float(np.mean(gaps)), 6) if gaps else None
    merged["train_reward"] = add_up([part["rewards"] for part in gathered])
    merged.update(source=report["source"], num_samples=config.num_samples, policy=absolute_if_local(policy))
    return rows, merged


def measure(
    config: Any, policy: str, sft: Any, heldout: list[PairPrompt], scoring: Scoring, state: Any
) -> dict[str, Any]:
    """Step 3 on every process (each its share of the held-out captions): the held-out reward and the KL
    divergence from the SFT policy (``sft``: (model, tokenizer), None for the SFT policy itself, whose KL is
    0), as means over all processes."""
    if not heldout:
        return {}
    share = heldout[state.process_index :: state.num_processes]
    model, tokenizer, motion_tokenizer = load_generator(policy)
    seed = round_seed(config.seed, 0, 1000 + state.process_index)  # the same held-out draw every round
    motions = sample(config, (model, tokenizer, motion_tokenizer), [p.caption for p in share], 1, seed,
                     "held-out", state)  # fmt: skip
    sums = scoring.mean_rewards(share, motions)
    scoring.forget()
    vocab = MotionVocab.from_tokenizer(tokenizer)
    sums["kl"] = 0.0
    if sft is not None:
        captions = [share[m.prompt_index].caption for m in motions]
        strings = [vocab.codes_to_string(m.codes) for m in motions]
        policy_logps = response_log_probs(model, tokenizer, captions, strings)
        sft_logps = response_log_probs(sft[0], sft[1], captions, strings)
        sums["kl"] = float((policy_logps - sft_logps).sum())
    return add_up(gather_object([sums]))


def round_policy(config: Any, previous: str | None) -> tuple[Any, Any, Any]:
    """(model, tokenizer, LoRA config or None) that round r trains: the SFT policy with a fresh adapter in
    round 1 (or under full fine-tuning), else the SFT policy with round r-1's adapter, trainable."""
    if previous is None or not config.use_peft:
        return get_policy(replace(config, model_name_or_path=previous or config.model_name_or_path))
    from peft import PeftModel
    from transformers import set_seed

    set_seed(config.seed)
    base, tokenizer = load_policy(config.model_name_or_path, dropout=0.0)
    return PeftModel.from_pretrained(base, previous, is_trainable=True), tokenizer, None


def complete_reference_copy(model: Any) -> int:
    """Copies every weight of the "default" adapter into the "ref" adapter that TRL's DPOTrainer made from it.

    TRL 1.12 copies the parameters whose names contain ``.default.`` (LoRA's A and B); the motion-token rows
    that PEFT trains beside LoRA (``trainable_tokens_delta.default``, see
    :func:`motion_align.policy.lora.get_peft_config`) end in ``.default`` and would stay at zero in the
    reference, which would then be the previous round's LoRA with the SFT policy's motion-token embeddings.
    Returns how many tensors it copied."""
    copied = 0
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".default"):
                model.get_parameter(name.removesuffix("default") + "ref").copy_(param)
                copied += 1
    return copied


def train_round(config: Any, folder: Path, previous: str | None, beta: float, round_index: int) -> dict:
    """Step 4 on every process: DPO/IPO on ``folder/pairs`` into ``folder/policy``; resumes from the newest
    complete checkpoint there. Returns the run record."""
    out = folder / "policy"
    round_config = replace(config, output_dir=str(out), dataset_name=str(folder / "pairs"), beta=beta,
                           seed=config.seed + round_index)  # fmt: skip
    model, tokenizer, peft_config = round_policy(round_config, previous)
    data = get_preference_datasets(round_config, tokenizer, policy=previous)  # round r trains round r-1's
    method = f"iterative {method_name(config.loss_type)}"
    info = training_info(round_config, method, SCRIPT, len(data["train"]), data["provenance"])
    info["round"] = round_index
    callbacks = [AdapterCheckpointCallback(tokenizer, info)]
    trainer = MotionDPOTrainer(
        model,
        args=round_config,
        train_dataset=data["train"],
        eval_dataset=data["eval"],
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    wrapped = trainer.model
    if "ref" in getattr(wrapped, "peft_config", {}):
        if config.reference == "sft":
            wrapped.delete_adapter("ref")  # the reference is then the adapter disabled: the SFT policy
        else:
            complete_reference_copy(wrapped)
    resume = None
    if any(out.glob("checkpoint-*")):
        resume = str(newest_complete_checkpoint(out))
    result = trainer.train(resume_from_checkpoint=resume)
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    if "ref" in getattr(unwrapped, "peft_config", {}):
        unwrapped.delete_adapter("ref")  # the saved folder holds the policy's adapter only
    run = {"world_size": trainer.accelerator.num_processes, "train": result.metrics, "beta": beta}
    save_aligned_policy(trainer, tokenizer, round_config, info, "dpo_run.json", run, push=False)
    return run


def over_budget(config: Any, kl: float | None) -> bool:
    return config.kl_budget is not None and kl is not None and kl > config.kl_budget


def run_rounds(config: Any) -> Path | None:
    """Every round (finished ones reused), then ``iterative_run.json``, the curves, and the policy the run
    ends with copied into the output folder (an adapter folder, loadable like any recipe's result; nothing
    when the first round already went over the KL budget). Returns the output folder on the main process."""
    state = PartialState()
    out = Path(config.output_dir)
    sft_name = config.model_name_or_path
    pool = corpus_prompts(config.corpus, config.prompt_split, None, config.seed)
    heldout = corpus_prompts(config.corpus, config.heldout_split, config.heldout_prompts or None, config.seed)
    heldout = heldout[: config.heldout_prompts]
    scoring = Scoring(config)
    sft = load_policy(sft_name, dropout=0.0)
    sft[0].eval()
    records: list[dict[str, Any]] = []
    current, beta, stopped = None, config.beta, None
    measured = None  # the held-out figures of the current policy
    for r in range(1, config.rounds + 1):
        folder = out / f"round-{r}"
        done = folder / ROUND_FILE
        if done.is_file():
            record = json.loads(done.read_text())
        else:
            if measured is None:
                measured = measure(
                    config, current or sft_name, sft if current else None, heldout, scoring, state
                )
            record = one_round(config, folder, current, beta, r, pool, heldout, measured, scoring, sft, state)
        records.append(record)
        beta = record["beta_next"]
        if record.get("over_budget") and config.kl_budget_mode == "stop":
            stopped, measured = r, record["before"]
            break
        current, measured = record["policy"], record["after"]
    if measured is None:  # no round ran (rounds: 0 is refused) or every round was reused and stopped at once
        measured = measure(config, current or sft_name, sft if current else None, heldout, scoring, state)
    final = current or sft_name
    if not state.is_main_process:
        return None
    max_kl = max((record["after"]["kl"] for record in records if record.get("after")), default=None)
    run = {"rounds": records, "final": {"policy": final, "heldout": measured}, "reference": config.reference,
           "scorer": config.scorer, "world_size": state.num_processes,
           "kl_budget": {"budget": config.kl_budget, "mode": config.kl_budget_mode, "unit": "nats per motion",
                         "stopped_after_round": stopped, "max_kl": max_kl}}  # fmt: skip
    write_json(out / RUN_FILE, run)
    if current:  # the policy the run ends with, in <output_dir> itself, as every recipe leaves its result
        for item in Path(current).iterdir():
            if item.is_file():
                shutil.copy2(item, out / item.name)
    plot_round_curves(run, out / CURVES_FILE)
    logger.info("iterative alignment done: %s", out / RUN_FILE)
    return out


def one_round(config, folder, current, beta, r, pool, heldout, before, scoring, sft, state) -> dict[str, Any]:
    """Sample and pair, train, and measure the new policy (``before``: the input policy's figures); writes
    ``round.json`` (main process) last."""
    start = time.perf_counter()
    policy = current or config.model_name_or_path
    pairs_dir = folder / "pairs"
    report_file = pairs_dir / PAIRS_REPORT
    if not report_file.is_file():
        prompts = round_prompts(pool, config.prompts_per_round, config.seed, r)
        rows, report = sample_and_pair(config, policy, prompts, scoring, r, state)
        if state.is_main_process:
            if not rows:
                raise ValueError(f"round {r}: no pairs from {policy} (report: {json.dumps(report)})")
            import datasets

            save_preferences(datasets.Dataset.from_list(rows), pairs_dir, overwrite=True, sampled_from=policy)
            write_json(report_file, report)
        state.wait_for_everyone()
    report = json.loads(report_file.read_text())
    if not (folder / "policy" / "dpo_run.json").is_file():
        train_round(config, folder, current, beta, r)
    state.wait_for_everyone()
    policy_out = str((folder / "policy").resolve())
    after = measure(config, policy_out, sft, heldout, scoring, state)
    over = over_budget(config, after.get("kl"))
    beta_next = beta * 2 if over and config.kl_budget_mode == "adapt" else beta
    if over:
        action = (
            f"stops, keeping round {r}'s input policy" if config.kl_budget_mode == "stop" else "doubles beta"
        )
        logger.warning(
            "round %d: KL %.3f nats over the budget %.3f: %s", r, after["kl"], config.kl_budget, action
        )
    run = json.loads((folder / "policy" / "dpo_run.json").read_text())
    record = {"round": r, "input_policy": absolute_if_local(policy), "policy": policy_out, "beta": beta,
              "beta_next": beta_next, "pairs": {k: v for k, v in report.items() if k != "policy"},
              "before": before, "after": after, "over_budget": over,
              "train_loss": run["train"].get("train_loss"),
              "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    if state.is_main_process:
        write_json(folder / ROUND_FILE, record)
    state.wait_for_everyone()
    nan = float("nan")
    logger.info("round %d: %d pairs, held-out judge %.3f -> %.3f, KL %.3f", r, report["pairs"],
                before.get("judge", nan), after.get("judge", nan), after.get("kl", nan))  # fmt: skip
    return record


def plot_round_curves(run: dict[str, Any], path: Path) -> Path:
    """Reward on the round's training samples next to the held-out reward, and the KL from SFT, per round."""
    rows = []
    for record in run["rounds"]:
        step = record["round"] - 1
        rows.append({"step": step, "train judge": record["pairs"]["train_reward"]["judge"],
                     **{f"held-out {k}": v for k, v in record["before"].items()}})  # fmt: skip
    last = run["rounds"][-1]["round"] if run["rounds"] else 0
    rows.append({"step": last, **{f"held-out {k}": v for k, v in run["final"]["heldout"].items()}})
    panels = [("train judge", "held-out judge"), "held-out kl", "held-out valid"]
    if any("held-out retrieval" in row for row in rows):
        panels.insert(1, "held-out retrieval")
    return plot_curves(rows, path, panels, title=f"iterative alignment ({run['reference']} reference)")
