"""Semi-online preference optimisation (SoPo) of T5 and LLaMA motion policies, on the DPO machinery.

:class:`MotionSoPoTrainer` is a :class:`~motion_align.trainers.dpo_trainer.MotionDPOTrainer` whose batches
hold prompts and their real motions only. Before each step it samples ``num_candidates`` motions per prompt
from the current policy (eval mode, KV cache, one ``generate`` call for the batch), decodes and scores them
with the reward model (:class:`motion_align.trainers.sopo_sampler.CandidateSampler`), picks the pairs
(:func:`motion_align.trainers.sopo_sampler.select_pairs`) and trains on them with the loss of
:func:`motion_align.trainers.losses.sopo_loss`:

- preferred: the real motion; unpreferred: the lowest-scoring candidate (an unusable motion scores 0);
- a pair whose worst candidate scores at least ``threshold`` keeps only its preferred term;
- with ``similarity_weight`` the preferred term is weighted by 2 minus the smallest similarity of the
  real motion to the candidates;
- ``refresh_steps`` N: the candidates come from the policy as it was at the last refresh, taken every N
  optimiser steps (N = 1: the current policy, fully semi-online). A resumed run takes its first snapshot
  at the step it resumes from.
- ``preferred_source: policy`` makes it online DPO: the best candidate against the worst, the prompts
  whose candidates all score the same dropped from the mean.

Each process samples for its own share of the batch. Logged: the candidates' scores and validity, the
share of pairs whose unpreferred term counts, the preferred weight and the seconds spent sampling.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from motion_align.data.sft import real_motion_rows
from motion_align.policy.generation import SamplingConfig
from motion_align.policy.vocab import MotionVocab
from motion_align.trainers.dpo_trainer import MotionDPOTrainer
from motion_align.trainers.losses import sopo_loss
from motion_align.trainers.recipe import check_input, load_tokenized_items
from motion_align.trainers.sopo_sampler import Candidates, CandidateSampler, PairChoice, select_pairs

REAL_MOTION_COLUMNS = ("prompt", "chosen", "caption", "codes")


class _KeepExamples:
    """The batch is the list of examples: the pairs exist only once the sampler has run."""

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        return {"examples": examples}


class MotionSoPoTrainer(MotionDPOTrainer):
    """SoPo (and online DPO) of motion policies; ``args``: a
    :class:`~motion_align.trainers.sopo_config.MotionSoPoConfig`.

    ``train_dataset`` rows: ``prompt`` (formatted), ``chosen`` (the real motion string), ``caption`` and
    ``codes`` (see :func:`motion_align.data.sft.real_motion_rows`).
    """

    def __init__(
        self, model: Any, args: Any, reward_model: Any, motion_tokenizer: Any, **kwargs: Any
    ) -> None:
        tokenizer = kwargs.get("processing_class")
        if tokenizer is None:
            raise ValueError("MotionSoPoTrainer needs processing_class: the policy's text tokenizer")
        sampling = SamplingConfig(
            temperature=args.sampling_temperature, top_k=args.sampling_top_k, top_p=args.sampling_top_p
        )
        self.sampler = CandidateSampler(
            tokenizer, motion_tokenizer, reward_model, args.num_candidates, sampling
        )
        self.threshold, self.similarity_weight = args.threshold, args.similarity_weight
        self.refresh_steps, self.preferred_source = args.refresh_steps, args.preferred_source
        self.sampling_seconds = 0.0
        self._snapshot: dict[str, torch.Tensor] | None = None
        self._snapshot_step = 0
        kwargs["data_collator"] = _KeepExamples()
        super().__init__(model, None, args, **kwargs)
        self.pair_collator = self._default_collator(tokenizer, args)
        reward_model.to(self.accelerator.device).eval()
        motion_tokenizer.to(self.accelerator.device).eval()

    # ----------------------------------------------------------------------------------------- data

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        missing = set(REAL_MOTION_COLUMNS) - set(dataset.column_names)
        if missing:
            raise ValueError(
                f"the {dataset_name} dataset of real motions has no column {sorted(missing)} "
                "(build it with motion_align.data.sft.real_motion_rows)"
            )
        if (
            "rejected" not in dataset.column_names
        ):  # a placeholder: the sampler supplies the unpreferred motion
            dataset = dataset.add_column("rejected", dataset["chosen"])
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        for column in ("caption", "codes"):
            if column not in self._signature_columns:
                self._signature_columns.append(column)

    # ----------------------------------------------------------------------------------------- sampling

    @contextlib.contextmanager
    def _sampling_weights(self, model: Any, mode: str) -> Iterator[None]:
        """The policy's weights as of the last refresh (every ``refresh_steps`` steps) while it samples."""
        if self.refresh_steps == 1 or mode != "train":
            yield
            return
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        step = self.state.global_step
        if self._snapshot is None or step >= self._snapshot_step + self.refresh_steps:
            self._snapshot = {n: p.detach().clone() for n, p in params.items()}
            self._snapshot_step = step
            yield
            return
        current = {n: p.detach().clone() for n, p in params.items()}
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(self._snapshot[n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(current[n])

    def sample_candidates(
        self, model: Any, examples: list[dict[str, Any]], mode: str = "train"
    ) -> Candidates:
        """The candidates of a batch of examples, drawn by the policy in eval mode."""
        unwrapped = self.accelerator.unwrap_model(model)
        captions = [example["caption"] for example in examples]
        real = [example["codes"] for example in examples] if self.preferred_source == "dataset" else None
        was_training = unwrapped.training
        unwrapped.eval()  # no LoRA dropout, no NEFTune noise while sampling
        try:
            with self._sampling_weights(unwrapped, mode):
                return self.sampler(unwrapped, captions, real)
        finally:
            unwrapped.train(was_training)

    def _semi_online_batch(self, model: Any, examples: list[dict[str, Any]], mode: str) -> dict[str, Any]:
        start = time.perf_counter()
        candidates = self.sample_candidates(model, examples, mode)
        similarity = candidates.similarity if self.similarity_weight else None
        choice = select_pairs(
            candidates.scores, candidates.valid, self.threshold, similarity, self.preferred_source
        )
        rows = []
        for example, completions, chosen, rejected in zip(
            examples, candidates.completion_ids, choice.chosen, choice.rejected, strict=True
        ):
            preferred = example["chosen_ids"] if chosen < 0 else completions[chosen]
            rows.append({"prompt_ids": example["prompt_ids"], "chosen_ids": preferred,
                         "rejected_ids": completions[rejected]})  # fmt: skip
        batch = self.pair_collator(rows)
        batch["use_rejected"] = torch.as_tensor(choice.use_rejected & choice.keep)
        batch["preferred_weight"] = torch.as_tensor(choice.preferred_weight, dtype=torch.float32)
        batch["pair_keep"] = torch.as_tensor(choice.keep)
        seconds = time.perf_counter() - start
        if mode == "train":
            self.sampling_seconds += seconds
        self._log_sampling(mode, candidates, choice, seconds)
        return batch

    def _log_sampling(self, mode: str, candidates: Candidates, choice: PairChoice, seconds: float) -> None:
        valid = candidates.valid
        worst = candidates.scores.min(axis=1)
        values = [
            float(candidates.scores[valid].mean()) if valid.any() else 0.0,
            float(worst.mean()),
            float(valid.mean()),
            float((choice.use_rejected & choice.keep).mean()),
            float(choice.keep.mean()),
            float(choice.preferred_weight.mean()),
            float(np.mean(candidates.real_scores)) if candidates.real_scores is not None else float("nan"),
            seconds,
        ]
        names = ["candidate_score", "worst_score", "valid_candidates", "unpreferred_used", "pairs_kept",
                 "preferred_weight", "real_score", "sampling_seconds"]  # fmt: skip
        gathered = self.accelerator.gather(torch.tensor([values], device=self.accelerator.device)).mean(0)
        for name, value in zip(names, gathered.tolist()):
            if name != "real_score" or self.preferred_source == "dataset":
                self._metrics[mode][f"sopo/{name}"].append(value)

    # ----------------------------------------------------------------------------------------- steps

    def training_step(
        self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None
    ) -> torch.Tensor:
        batch = self._semi_online_batch(model, inputs["examples"], "train")
        return super().training_step(model, batch, num_items_in_batch)

    def prediction_step(
        self, model: Any, inputs: dict, prediction_loss_only: bool, ignore_keys: Any = None
    ) -> Any:
        batch = self._semi_online_batch(model, inputs["examples"], "eval")
        return super().prediction_step(model, batch, prediction_loss_only, ignore_keys)

    def _pair_loss(
        self, inputs: dict[str, torch.Tensor], chosen_ratio: torch.Tensor, rejected_ratio: torch.Tensor
    ) -> torch.Tensor:
        """SoPo's loss per pair, averaged over the kept pairs."""
        losses = sopo_loss(
            chosen_ratio, rejected_ratio, self.beta, inputs["use_rejected"], inputs["preferred_weight"],
            self.loss_types[0],
        )  # fmt: skip
        keep = inputs["pair_keep"].to(losses.dtype)
        return (losses * keep).sum() / keep.sum().clamp(min=1)


# ----------------------------------------------------------------------------------------- recipe inputs


def load_reward_model(config: Any) -> Any:
    """The retrieval model at ``config.reward_model`` (a folder or Hub id) that scores the candidates; never
    the metrics evaluator (:func:`~motion_align.rewards.reward_guard.refuse_evaluator`)."""
    from motion_align.rewards.retrieval import TextMotionRetrieval
    from motion_align.rewards.reward_guard import refuse_evaluator

    check_input(config.reward_model, "reward model", "--reward_model")
    refuse_evaluator(config.reward_model, "--reward_model")
    return TextMotionRetrieval.from_pretrained(config.reward_model).eval()


def get_real_motion_datasets(config: Any, codebook_size: int, template: Any = None) -> dict[str, Any]:
    """``{"train": ..., "eval": ...}`` rows of :func:`~motion_align.data.sft.real_motion_rows` from the
    ``dataset_split`` of ``config.dataset_name``: items subsampled to ``data_fraction`` and split
    ``eval_fraction`` off (by item, so no motion is in both), seeded by ``config.seed``. ``codebook_size``
    is the policy's (its motion tokens must cover every code), and ``template`` its prompt template."""
    items = load_tokenized_items(config)
    splits = {"train": items, "eval": None}
    if config.eval_fraction > 0:
        parts = items.train_test_split(test_size=config.eval_fraction, seed=config.seed)
        splits = {"train": parts["train"], "eval": parts["test"]}
    vocab = MotionVocab(codebook_size)

    def rows(part: Any) -> Any:
        return part.map(
            real_motion_rows,
            batched=True,
            fn_kwargs={"vocab": vocab, "template": template},
            remove_columns=part.column_names,
        )

    return {key: None if part is None else rows(part) for key, part in splits.items()}
