"""Preference alignment (DPO, IPO, hinge) of text-to-motion policies with TRL's ``DPOTrainer``.

TRL 1.12's ``DPOTrainer`` is causal-only and computes its losses inline with one ``label_smoothing`` for
all pairs. :class:`MotionDPOTrainer` subclasses it and overrides only:

- dataset preparation: TRL's for LLaMA policies, plus a per-pair ``margin`` / ``pair_smoothing`` column
  from each pair's degree of preference (``MotionDPOConfig.degree_use``); for T5, ``prompt`` ->
  encoder ids and ``chosen`` / ``rejected`` -> decoder targets, each ending in one ``</s>``;
- the collator (T5): the prompt once, chosen and rejected stacked as ``(2B, T)`` decoder targets;
- ``_compute_loss``: sequence log-probs of chosen and rejected under the policy and the reference, the
  pure losses of :mod:`motion_align.trainers.losses`, and TRL's metrics (``rewards/chosen``,
  ``rewards/rejected``, ``rewards/accuracies``, ``rewards/margins``, ``logps/chosen``, ``logps/rejected``). T5
  runs its encoder once per prompt and decodes chosen and rejected against the same encoder states.

The reference is the policy with its adapters disabled under LoRA (no second copy in memory) and a
frozen copy of the starting policy under full fine-tuning (TRL would reload it from the Hub id, which
a policy built in memory, or a T5, does not have). Dropout is off in policy and reference (TRL's
``disable_dropout``), except LoRA's own dropout: it acts on the adapter path only, which is zero at step
0 and absent from the reference, so the published r 8 / alpha 16 / dropout 0.05 setting keeps it.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from accelerate.utils import is_peft_model
from transformers import set_seed
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled
from transformers.modeling_outputs import BaseModelOutput
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference
from trl.trainer.utils import pad, selective_log_softmax, use_adapter

from motion_align.data.preferences import DEGREE_LABEL_SMOOTHING, DEGREE_MARGINS
from motion_align.policy.lora import restore_lora_dropout
from motion_align.policy.model import load_policy, policy_family, set_dropout
from motion_align.trainers.checkpointing import AtomicCheckpoints
from motion_align.trainers.losses import preference_loss, sequence_log_ratios

# Per-pair columns the collators pass through to the loss, with the reference log-probs TRL precomputes.
PAIR_FIELDS = ("margin", "pair_smoothing", "ref_chosen_logps", "ref_rejected_logps")


def _pair_fields(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """The per-pair float fields present in ``examples``, as (B,) tensors."""
    return {
        key: torch.tensor([float(example[key]) for example in examples])
        for key in PAIR_FIELDS
        if key in examples[0]
    }


@dataclass
class DataCollatorForMotionPreference:
    """Encoder-decoder batches: each prompt once, the chosen then the rejected targets stacked.

    Returns ``prompt_input_ids`` / ``prompt_attention_mask`` (B, S), ``completion_ids`` /
    ``completion_mask`` (2B, T) with rows ``[chosen_0..chosen_{B-1}, rejected_0..rejected_{B-1}]``, and
    the per-pair fields (B,).
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        prompts = [torch.tensor(example["prompt_ids"]) for example in examples]
        targets = [
            torch.tensor(example[key]) for key in ("chosen_ids", "rejected_ids") for example in examples
        ]
        kw = dict(padding_side="right", pad_to_multiple_of=self.pad_to_multiple_of)
        return {
            "prompt_input_ids": pad(prompts, padding_value=self.pad_token_id, **kw),  # (B, S)
            "prompt_attention_mask": pad([torch.ones_like(p) for p in prompts], padding_value=0, **kw),
            "completion_ids": pad(targets, padding_value=self.pad_token_id, **kw),  # (2B, T)
            "completion_mask": pad([torch.ones_like(t) for t in targets], padding_value=0, **kw),
            **_pair_fields(examples),
        }


@dataclass
class _WithPairFields:
    """TRL's causal preference collator, plus the per-pair fields."""

    collator: DataCollatorForPreference

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collator(examples)
        batch.update(_pair_fields(examples))
        return batch


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
        peft_config = kwargs.get("peft_config")
        full_finetune = peft_config is None and not is_peft_model(model)
        if ref_model is None and full_finetune and not args.precompute_ref_log_probs:
            ref_model = frozen_reference(model)
        tokenizer = kwargs.get("processing_class")
        if tokenizer is None:
            raise ValueError("MotionDPOTrainer needs processing_class: the policy's text tokenizer")
        if kwargs.get("data_collator") is None:
            kwargs["data_collator"] = self._default_collator(tokenizer, args)
        super().__init__(model, ref_model, args, **kwargs)
        if args.disable_dropout and peft_config is not None:
            restore_lora_dropout(self.model, peft_config.lora_dropout)

    def _default_collator(self, tokenizer: Any, args: Any) -> Any:
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if self._is_encoder_decoder:
            return DataCollatorForMotionPreference(tokenizer.pad_token_id, args.pad_to_multiple_of)
        return _WithPairFields(
            DataCollatorForPreference(
                pad_token_id=tokenizer.pad_token_id,
                max_length=args.max_length,
                truncation_mode=args.truncation_mode,
                pad_to_multiple_of=args.pad_to_multiple_of,
            )
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

    def _seq2seq_logits(self, model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Decoder logits (2B, T, V) of chosen and rejected, from one encoder pass over the B prompts."""
        unwrapped = self.accelerator.unwrap_model(model)
        prompt_mask = inputs["prompt_attention_mask"]  # (B, S)
        encoded = unwrapped.get_encoder()(
            input_ids=inputs["prompt_input_ids"], attention_mask=prompt_mask
        ).last_hidden_state  # (B, S, D)
        targets = inputs["completion_ids"]  # (2B, T)
        start = torch.full_like(targets[:, :1], unwrapped.config.decoder_start_token_id)
        outputs = model(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoded.repeat(2, 1, 1)),
            attention_mask=prompt_mask.repeat(2, 1),
            decoder_input_ids=torch.cat([start, targets[:, :-1]], dim=1),  # teacher forcing, shifted right
            use_cache=False,
        )
        return outputs.logits

    def completion_logps(
        self, model: Any, inputs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Summed log-probs (2B,) of the completions, their token counts (2B,), the logits (2B, T, V) that
        predict them and the mask (2B, T) of completion positions. Rows: chosen then rejected."""
        if self._is_encoder_decoder:
            logits = self._seq2seq_logits(model, inputs)
            labels, mask = inputs["completion_ids"], inputs["completion_mask"]
        else:  # position t predicts token t + 1
            outputs = model(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False
            )
            logits = outputs.logits[:, :-1]
            labels, mask = inputs["input_ids"][:, 1:], inputs["completion_mask"][:, 1:]
        per_token = selective_log_softmax(logits, labels) * mask  # (2B, T)
        return per_token.sum(1), mask.sum(1), logits, mask

    @contextlib.contextmanager
    def _reference(self, model: Any) -> Iterator[Any]:
        """The reference model: a frozen copy, or the policy with adapters disabled (or the ``ref`` adapter
        TRL adds when training an existing one) and without NEFTune noise on its embeddings."""
        if self.ref_model is not None or not is_peft_model(self.accelerator.unwrap_model(model)):
            yield self.ref_model
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

    # ----------------------------------------------------------------------------------------- loss

    def _compute_loss(self, model: Any, inputs: dict[str, torch.Tensor], return_outputs: bool) -> Any:
        mode = "train" if self.model.training else "eval"
        logps, n_tokens, logits, mask = self.completion_logps(model, inputs)
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            ref_chosen, ref_rejected = self.compute_ref_log_probs(model, inputs)
        chosen, rejected = logps.chunk(2)
        chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected  # (B,)
        ratios = sequence_log_ratios(self.loss_types[0], chosen_ratio, rejected_ratio, *n_tokens.chunk(2))
        loss = self._pair_loss(inputs, *ratios)
        if self.rpo_alpha:  # DPO+NLL (Pang et al. 2024): the chosen motions' mean per-token NLL
            nll = -(chosen / n_tokens.chunk(2)[0].clamp(min=1)).mean()
            loss = loss + self.rpo_alpha * nll
            self._metrics[mode]["nll_loss"].append(
                self.accelerator.gather_for_metrics(nll.detach()).mean().item()
            )
        self._log_pairs(mode, chosen, rejected, chosen_ratio, rejected_ratio, inputs)
        self._log_tokens(mode, logits, mask, inputs)
        return (loss, {"logits": logits}) if return_outputs else loss

    def _pair_loss(
        self, inputs: dict[str, torch.Tensor], chosen_ratio: torch.Tensor, rejected_ratio: torch.Tensor
    ) -> torch.Tensor:
        """The batch loss from the policy-minus-reference log-ratios (B,) (per token for IPO)."""
        smoothing = inputs.get("pair_smoothing", self.label_smoothing)
        h = chosen_ratio - rejected_ratio
        return preference_loss(self.loss_types[0], h, self.beta, inputs.get("margin"), smoothing).mean()

    def _log_pairs(self, mode: str, chosen: torch.Tensor, rejected: torch.Tensor, chosen_ratio: torch.Tensor,
                   rejected_ratio: torch.Tensor, inputs: dict[str, torch.Tensor]) -> None:  # fmt: skip
        """TRL's reward metrics: the implicit rewards beta * log-ratio, their accuracy and margin."""
        gather = self.accelerator.gather_for_metrics
        chosen_reward, rejected_reward = (
            self.beta * chosen_ratio.detach(),
            self.beta * rejected_ratio.detach(),
        )
        metrics = self._metrics[mode]
        metrics["rewards/chosen"].append(gather(chosen_reward).mean().item())
        metrics["rewards/rejected"].append(gather(rejected_reward).mean().item())
        metrics["rewards/accuracies"].append(gather((chosen_reward > rejected_reward).float()).mean().item())
        metrics["rewards/margins"].append(gather(chosen_reward - rejected_reward).mean().item())
        metrics["logps/chosen"].append(gather(chosen.detach()).mean().item())
        metrics["logps/rejected"].append(gather(rejected.detach()).mean().item())
        if "margin" in inputs:
            metrics["pairs/degree_margin"].append(gather(inputs["margin"]).mean().item())

    def _log_tokens(self, mode: str, logits: torch.Tensor, mask: torch.Tensor, inputs: dict) -> None:
        """Token accuracy on the chosen completions and the number of tokens seen, as TRL logs them."""
        gather = self.accelerator.gather_for_metrics
        labels = inputs["completion_ids"] if self._is_encoder_decoder else inputs["input_ids"][:, 1:]
        half = len(labels) // 2
        chosen_mask = mask[:half].bool()
        correct = ((logits[:half].detach().argmax(-1) == labels[:half]) & chosen_mask).sum()
        total = gather(chosen_mask.sum()).sum()
        self._metrics[mode]["mean_token_accuracy"].append((gather(correct).sum() / total.clamp(min=1)).item())
        if mode == "train":  # prompt + completion tokens of both sequences of every pair, as TRL counts
            if self._is_encoder_decoder:
                seen = 2 * inputs["prompt_attention_mask"].sum() + inputs["completion_mask"].sum()
            else:
                seen = inputs["attention_mask"].sum()
            self._total_train_tokens += gather(seen).sum().item()
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]

    def prediction_step(
        self, model: Any, inputs: dict, prediction_loss_only: bool, ignore_keys: Any = None
    ) -> Any:
        """Evaluation computes the loss and the metrics only (no logits are gathered)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None
