"""Preference alignment (DPO, IPO, hinge) of text-to-motion policies with TRL's ``DPOTrainer``.

TRL 1.12's ``DPOTrainer`` is causal-only and computes its losses inline with one ``label_smoothing`` for
all pairs. :class:`MotionDPOTrainer` subclasses it and overrides only:

- dataset preparation: TRL's for LLaMA policies, plus a per-pair ``margin`` / ``pair_smoothing`` column
  from each pair's degree of preference (``MotionDPOConfig.degree_use``); for T5, ``prompt`` ->
  encoder ids and ``chosen`` / ``rejected`` -> decoder targets, each ending in one ``</s>``;
- the collator (:mod:`motion_align.trainers.preference_collators`): each prompt once, chosen and rejected
  stacked as ``(2B, T)`` completions, for T5 and causal policies alike;
- ``_compute_loss``: sequence log-probs of chosen and rejected under the policy
  (:mod:`motion_align.trainers.completion_scores`: the prompt run once, the completions in length groups)
  and the reference, the pure losses of :mod:`motion_align.trainers.losses`, and TRL's metrics
  (``rewards/chosen``, ``rewards/rejected``, ``rewards/accuracies``, ``rewards/margins``, ``logps/chosen``,
  ``logps/rejected``, ``mean_token_accuracy``, ``num_tokens``);
- the reference log-probs of offline pairs: computed once when training starts and cached on disk
  (:mod:`motion_align.trainers.reference_logps`; ``precompute_ref_log_probs``, on by default where valid).

The reference is the policy with its adapters disabled under LoRA (no second copy in memory) and the
starting policy under full fine-tuning: its log-probs precomputed before the first step (no copy kept), or
with ``precompute_ref_log_probs=False`` a frozen copy (TRL would reload it from the Hub id, which a policy
built in memory, or a T5, does not have). Dropout is off in policy and reference (TRL's
``disable_dropout``), except LoRA's own dropout: it acts on the adapter path only, which is zero at step
0 and absent from the reference, so the published r 8 / alpha 16 / dropout 0.05 setting keeps it.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch
from accelerate.utils import is_peft_model
from datasets import Dataset
from transformers import set_seed
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled
from trl import DPOTrainer
from trl.trainer.utils import use_adapter

from motion_align.data.preferences import DEGREE_LABEL_SMOOTHING, DEGREE_MARGINS
from motion_align.policy.lora import restore_lora_dropout
from motion_align.policy.model import load_policy, policy_family, set_dropout
from motion_align.trainers.checkpointing import AtomicCheckpoints
from motion_align.trainers.completion_scores import (
    CompletionScores,
    concatenated_scores,
    seq2seq_scores,
    shared_prompt_scores,
)
from motion_align.trainers.losses import preference_loss, sequence_log_ratios
from motion_align.trainers.preference_collators import (
    DataCollatorForCausalPreference,
    DataCollatorForMotionPreference,
)
from motion_align.trainers.reference_logps import REFERENCE_COLUMNS, add_reference_columns, default_cache_dir


def _seq2seq_features(example: dict[str, Any], tokenizer: Any) -> dict[str, list[int]]:
    """Prompt -> encoder ids; chosen / rejected -> decoder targets ending in exactly one eos."""
    eos = tokenizer.eos_token_id
    out = {"prompt_ids": tokenizer(example["prompt"])["input_ids"]}
    for key in ("chosen", "rejected"):
        ids = tokenizer(example[key])["input_ids"]
        out[f"{key}_ids"] = ids if ids and ids[-1] == eos else ids + [eos]
    return out


def degree_columns(example: dict[str, Any], degree_use: str, margin_scale: float) -> dict[str, float]:
    """``margin`` or ``pair_smoothing`` of one pair from its ``degree`` (None: 0 for both)."""
    degree = example.get("degree")
    if degree_use == "margin":
        return {"margin": margin_scale * DEGREE_MARGINS[degree] if degree else 0.0}
    return {"pair_smoothing": DEGREE_LABEL_SMOOTHING[degree] if degree else 0.0}


def frozen_reference(model: Any) -> Any:
    """The frozen starting policy for full fine-tuning: a deep copy, or under DeepSpeed ZeRO-3 (whose
    partitioned parameters a copy would not carry) the policy reloaded from the folder or Hub id it came
    from."""
    if is_deepspeed_zero3_enabled():
        name = getattr(model.config, "_name_or_path", "")
        if not name:
            raise ValueError("full fine-tuning under ZeRO-3 needs a policy loaded from a folder or Hub id")
        reference, _ = load_policy(name, dropout=0.0)
    else:
        reference = copy.deepcopy(model)
    return reference.eval().requires_grad_(False)


def with_precompute_resolved(args: Any, train_dataset: Any, eval_dataset: Any) -> Any:
    """``args``, or when its ``precompute_ref_log_probs`` is None (auto) a shallow copy with it decided: on
    for map-style offline pairs whose reference stays fixed (no ``sync_ref_model``; no Liger loss, which
    refuses it), off otherwise (an ``IterableDataset`` streams pairs that cannot be computed ahead)."""
    if getattr(args, "precompute_ref_log_probs", False) is not None:
        return args
    evals = eval_dataset.values() if isinstance(eval_dataset, dict) else [eval_dataset]
    offline = isinstance(train_dataset, Dataset) and all(d is None or isinstance(d, Dataset) for d in evals)
    args = copy.copy(args)
    args.precompute_ref_log_probs = offline and not args.sync_ref_model and not args.use_liger_kernel
    return args


class MotionDPOTrainer(AtomicCheckpoints, DPOTrainer):
    """``DPOTrainer`` for T5 and LLaMA motion policies, with per-pair margins or label smoothing."""

    def __init__(self, model: Any, ref_model: Any = None, args: Any = None, **kwargs: Any) -> None:
        if isinstance(model, str):
            raise TypeError(
                "MotionDPOTrainer takes a loaded policy: use motion_align.policy.model.load_policy"
            )
        self._is_encoder_decoder = policy_family(model) == "t5"
        self.degree_use = getattr(args, "degree_use", "none")
        self.margin_scale = getattr(args, "margin_scale", 1.0)
        self.rpo_alpha = getattr(args, "rpo_alpha", 0.0)
        set_seed(args.seed)  # the LoRA initialisation below is part of the run: same seed, same adapter
        if args.disable_dropout:  # TRL's switch reaches nn.Dropout modules, not LLaMA's functional dropout
            set_dropout(model, 0.0)
        args = with_precompute_resolved(args, kwargs.get("train_dataset"), kwargs.get("eval_dataset"))
        peft_config = kwargs.get("peft_config")
        full_finetune = peft_config is None and not is_peft_model(model)
        if ref_model is None and full_finetune and not args.precompute_ref_log_probs:
            ref_model = frozen_reference(model)
        tokenizer = kwargs.get("processing_class")
        if tokenizer is None:
            raise ValueError("MotionDPOTrainer needs processing_class: the policy's text tokenizer")
        if kwargs.get("data_collator") is None:
            kwargs["data_collator"] = self._default_collator(tokenizer, args)
        self.reference_seconds: dict[str, float] = {}  # spent on the reference log-probs, per dataset
        self._defer_reference = True  # TRL would precompute in __init__: train() does instead
        super().__init__(model, ref_model, args, **kwargs)
        self._defer_reference = False
        if args.disable_dropout and peft_config is not None:
            restore_lora_dropout(self.model, peft_config.lora_dropout)

    def _default_collator(self, tokenizer: Any, args: Any) -> Any:
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if self._is_encoder_decoder:
            return DataCollatorForMotionPreference(tokenizer.pad_token_id, args.pad_to_multiple_of)
        return DataCollatorForCausalPreference(
            pad_token_id=tokenizer.pad_token_id,
            max_length=args.max_length,
            truncation_mode=args.truncation_mode,
            pad_to_multiple_of=args.pad_to_multiple_of,
            share_prompt=not args.gradient_checkpointing,  # checkpointed layers return no KV cache
        )

    # ----------------------------------------------------------------------------------------- data

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        if self._is_encoder_decoder and "prompt_ids" not in dataset.column_names:
            missing = {"prompt", "chosen", "rejected"} - set(dataset.column_names)
            if missing:
                raise ValueError(f"the {dataset_name} preference dataset has no column {sorted(missing)}")
            dataset = dataset.map(
                _seq2seq_features,
                fn_kwargs={"tokenizer": processing_class},
                num_proc=args.dataset_num_proc,
                desc=f"Tokenizing {dataset_name} dataset",
            )
        elif not self._is_encoder_decoder:
            dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if self.degree_use != "none" and "degree" in dataset.column_names:
            dataset = dataset.map(
                degree_columns, fn_kwargs={"degree_use": self.degree_use, "margin_scale": self.margin_scale}
            )
        return dataset

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self._signature_columns is not None:
            for column in ("margin", "pair_smoothing"):
                if column not in self._signature_columns:
                    self._signature_columns.append(column)

    # ----------------------------------------------------------------------------------------- log-probs

    def completion_logps(self, model: Any, inputs: dict[str, torch.Tensor]) -> CompletionScores:
        """Summed log-probs (2B,) of the completions, their token counts and argmax hits (2B,), and the
        positions the forward passes processed. Rows: chosen then rejected."""
        groups = getattr(self.args, "length_groups", 1)
        unwrapped = self.accelerator.unwrap_model(model)
        if self._is_encoder_decoder:
            return seq2seq_scores(model, unwrapped, inputs, groups)
        if "prompt_input_ids" in inputs:
            return shared_prompt_scores(model, unwrapped, inputs, groups)
        return concatenated_scores(model, inputs)

    @contextlib.contextmanager
    def _reference(self, model: Any) -> Iterator[Any]:
        """The reference model: a frozen copy, or the policy with adapters disabled (or the ``ref`` adapter
        TRL adds when training an existing one) and without NEFTune noise on its embeddings."""
        if self.ref_model is not None:
            yield self.ref_model
            return
        if not is_peft_model(self.accelerator.unwrap_model(model)):  # full fine-tuning, precomputed reference
            if self.state.global_step > 0:
                raise ValueError(
                    "the reference is gone: full fine-tuning with precompute_ref_log_probs keeps no copy of "
                    "the starting policy, and these pairs have no precomputed reference log-probs (give "
                    "them before training, or set precompute_ref_log_probs=false)"
                )
            yield model  # before the first step the policy is the reference
            return
        unwrapped = self.accelerator.unwrap_model(model)
        embedding = unwrapped.get_input_embeddings()
        was_training = embedding.training
        embedding.training = False  # NEFTune's hook adds noise only in training mode
        try:
            with use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None):
                yield model
        finally:
            embedding.training = was_training

    def compute_ref_log_probs(self, model: Any, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Reference log-probs (B,) of chosen and rejected (also used to precompute them)."""
        with torch.no_grad(), self._reference(model) as reference:
            logps = self.completion_logps(reference, inputs)[0]
        return logps.chunk(2)

    # ----------------------------------------------------------------------------------------- reference

    def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
        """The reference log-probs of ``dataset`` as columns (:mod:`motion_align.trainers.reference_logps`);
        deferred while TRL's ``__init__`` asks, so that a caller may still set the reference up (the
        iterative rounds replace TRL's ``ref`` adapter after construction): ``train`` computes them."""
        if self._defer_reference:
            return dataset
        args = self.args
        size = args.precompute_ref_batch_size or 4 * max(
            args.per_device_train_batch_size, args.per_device_eval_batch_size
        )
        cache_dir = None
        if getattr(args, "cache_ref_logps", True):
            cache_dir = getattr(args, "ref_logps_cache_dir", None) or default_cache_dir()
        return add_reference_columns(self, dataset, name, size, cache_dir)

    def precompute_reference_logps(self, train: bool = True) -> None:
        """With ``precompute_ref_log_probs``, adds the reference log-probs to the train (if ``train``) and
        eval pairs that lack them; ``train`` and ``evaluate`` call it. Call it earlier to have the columns
        sooner, once the reference is final."""
        if not self.precompute_ref_logps:
            return
        if train:
            self.train_dataset = self._precompute_ref_logps(self.train_dataset, "train", 0)
        if isinstance(self.eval_dataset, dict):
            self.eval_dataset = {k: self._precompute_ref_logps(d, k, 0) for k, d in self.eval_dataset.items()}
        elif self.eval_dataset is not None:
            self.eval_dataset = self._precompute_ref_logps(self.eval_dataset, "eval", 0)

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """TRL's training, the reference log-probs precomputed first (before a resumed run loads its
        checkpoint: under full fine-tuning the policy is then still the reference)."""
        self.precompute_reference_logps()
        return super().train(*args, **kwargs)

    def evaluate(self, eval_dataset: Any = None, *args: Any, **kwargs: Any) -> Any:
        if eval_dataset is None:  # TRL's evaluate precomputes a dataset passed to it
            self.precompute_reference_logps(train=False)
        return super().evaluate(eval_dataset, *args, **kwargs)

    # ----------------------------------------------------------------------------------------- loss

    def _compute_loss(self, model: Any, inputs: dict[str, torch.Tensor], return_outputs: bool) -> Any:
        mode = "train" if self.model.training else "eval"
        scores = self.completion_logps(model, inputs)
        if all(key in inputs for key in REFERENCE_COLUMNS):
            ref_chosen, ref_rejected = (inputs[key] for key in REFERENCE_COLUMNS)
        else:
            ref_chosen, ref_rejected = self.compute_ref_log_probs(model, inputs)
        (chosen, rejected), (chosen_n, rejected_n) = scores.logps.chunk(2), scores.n_tokens.chunk(2)
        chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected  # (B,)
        ratios = sequence_log_ratios(self.loss_types[0], chosen_ratio, rejected_ratio, chosen_n, rejected_n)
        loss = self._pair_loss(inputs, *ratios)
        nll = None
        if self.rpo_alpha:  # DPO+NLL (Pang et al. 2024): the chosen motions' mean per-token NLL
            nll = -chosen / chosen_n.clamp(min=1)
            loss = loss + self.rpo_alpha * nll.mean()
        self._log_metrics(mode, scores, chosen_ratio, rejected_ratio, inputs, nll)
        return (loss, {"logps": scores.logps}) if return_outputs else loss

    def _pair_loss(
        self, inputs: dict[str, torch.Tensor], chosen_ratio: torch.Tensor, rejected_ratio: torch.Tensor
    ) -> torch.Tensor:
        """The batch loss from the policy-minus-reference log-ratios (B,) (per token for IPO)."""
        smoothing = inputs.get("pair_smoothing", self.label_smoothing)
        h = chosen_ratio - rejected_ratio
        return preference_loss(self.loss_types[0], h, self.beta, inputs.get("margin"), smoothing).mean()

    def _log_metrics(self, mode: str, scores: CompletionScores, chosen_ratio: torch.Tensor,
                     rejected_ratio: torch.Tensor, inputs: dict, nll: Any) -> None:  # fmt: skip
        """TRL's metrics from one gather of per-pair values (one host sync a step): the implicit rewards
        beta * log-ratio, their accuracy and margin, the log-probs, the chosen completions' token accuracy
        and the prompt + completion tokens of both sequences of every pair (TRL's ``num_tokens``)."""
        pairs = len(chosen_ratio)
        chosen_reward, rejected_reward = (
            self.beta * chosen_ratio.detach(),
            self.beta * rejected_ratio.detach(),
        )
        if "input_ids" in inputs:
            seen = inputs["attention_mask"].sum(1).view(2, pairs).sum(0)
        else:
            seen = 2 * inputs["prompt_attention_mask"].sum(1) + inputs["completion_mask"].sum(1).view(
                2, -1
            ).sum(0)
        columns = {
            "rewards/chosen": chosen_reward,
            "rewards/rejected": rejected_reward,
            "rewards/accuracies": chosen_reward > rejected_reward,
            "rewards/margins": chosen_reward - rejected_reward,
            "logps/chosen": scores.logps[:pairs].detach(),
            "logps/rejected": scores.logps[pairs:].detach(),
            **({"pairs/degree_margin": inputs["margin"]} if "margin" in inputs else {}),
            **({"nll_loss": nll.detach()} if nll is not None else {}),
            "hits": scores.hits[:pairs],
            "targets": scores.n_tokens[:pairs],
            "seen": seen,
        }
        rows = self.accelerator.gather_for_metrics(torch.stack([c.float() for c in columns.values()], dim=1))
        values = dict(zip(columns, rows.mean(0).tolist()))
        totals = dict(zip(columns, rows.sum(0).tolist()))
        metrics = self._metrics[mode]
        for name in list(columns)[:-3]:
            metrics[name].append(values[name])
        metrics["mean_token_accuracy"].append(totals["hits"] / max(totals["targets"], 1.0))
        if mode == "train":
            self._total_train_tokens += int(totals["seen"])
        metrics["num_tokens"] = [self._total_train_tokens]

    def prediction_step(
        self, model: Any, inputs: dict, prediction_loss_only: bool, ignore_keys: Any = None
    ) -> Any:
        """Evaluation computes the loss and the metrics only (no logits are gathered)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None
