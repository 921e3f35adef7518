"""Supervised fine-tuning of text-to-motion policies with TRL's ``SFTTrainer``.

TRL 1.12's ``SFTTrainer`` is causal-only: it tokenizes ``prompt + completion`` into one sequence,
masks the prompt (completion-only loss) and shifts labels by one for its metrics. That is exactly
right for LLaMA policies, which use ``SFTTrainer`` unchanged. :class:`MotionSFTTrainer` adds the
encoder-decoder (T5) path and overrides only what differs there:

- dataset preparation: ``prompt`` -> encoder ``input_ids``, ``completion`` -> decoder ``labels``
  (the completion ids and the tokenizer's ``</s>``, nothing else);
- the collator: :class:`DataCollatorForSeq2SeqMotion` pads both, labels with -100;
- the loss: cross-entropy summed over label tokens and divided by the tokens of the whole batch (all
  processes, all accumulation steps), as TRL's causal loss; T5 logits line up with the labels (no
  shift), so token accuracy is computed without one.

For a causal policy every method defers to ``SFTTrainer``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import TrainerCallback, set_seed
from trl import SFTTrainer
from trl.trainer.utils import pad

from motion_align.data.sft import read_codebook_size, read_dataset, read_tokenization
from motion_align.policy.generation import FRAMES_PER_CODE, record_motion_tokenizer
from motion_align.policy.model import (
    build_policy,
    format_prompt,
    load_policy,
    policy_family,
    save_policy,
    write_vocab_info,
)
from motion_align.policy.prompts import preset, set_template
from motion_align.policy.text_tokenizer import corpus_captions, train_text_tokenizer
from motion_align.trainers.checkpointing import AtomicCheckpoints

IGNORE_INDEX = -100


@dataclass
class DataCollatorForSeq2SeqMotion:
    """Pads encoder ``input_ids`` (with ``pad_token_id``, plus an attention mask) and ``labels`` (with -100).

    T5 builds ``decoder_input_ids`` from the labels itself (shift right, -100 -> pad).
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        input_ids = [torch.tensor(example["input_ids"]) for example in examples]
        labels = [torch.tensor(example["labels"]) for example in examples]
        masks = [torch.ones_like(ids) for ids in input_ids]
        kw = dict(padding_side="right", pad_to_multiple_of=self.pad_to_multiple_of)
        return {
            "input_ids": pad(input_ids, padding_value=self.pad_token_id, **kw),  # (B, S)
            "attention_mask": pad(masks, padding_value=0, **kw),  # (B, S)
            "labels": pad(labels, padding_value=IGNORE_INDEX, **kw),  # (B, T)
        }


def _seq2seq_features(
    example: dict[str, str], tokenizer: Any, max_length: int | None
) -> dict[str, list[int]]:
    """Prompt -> encoder ids; completion -> label ids ending in exactly one eos."""
    input_ids = tokenizer(example["prompt"])["input_ids"]
    labels = tokenizer(example["completion"])["input_ids"]
    if not labels or labels[-1] != tokenizer.eos_token_id:
        labels = labels + [tokenizer.eos_token_id]
    if max_length is not None:
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    return {"input_ids": input_ids, "labels": labels}


class MotionSFTTrainer(AtomicCheckpoints, SFTTrainer):
    """``SFTTrainer`` that also trains encoder-decoder (T5) policies on prompt-completion rows."""

    def __init__(self, model: Any, args: Any = None, **kwargs: Any) -> None:
        self._is_encoder_decoder = policy_family(model) == "t5"
        if self._is_encoder_decoder:
            if args is not None and args.loss_type not in ("nll", None):
                raise ValueError(
                    f"loss_type={args.loss_type!r} is causal-only in TRL: use loss_type='nll' for T5 policies"
                )
            if args is not None and (args.packing or args.padding_free):
                raise ValueError("packing and padding_free are causal-only: turn them off for T5 policies")
            tokenizer = kwargs.get("processing_class")
            if tokenizer is None:
                raise ValueError(
                    "MotionSFTTrainer needs processing_class (the policy's text tokenizer) for T5"
                )
            kwargs.setdefault("data_collator", DataCollatorForSeq2SeqMotion(tokenizer.pad_token_id))
        super().__init__(model, args, **kwargs)

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, *rest: Any, **kw: Any) -> Any:
        if not self._is_encoder_decoder:
            return super()._prepare_dataset(dataset, processing_class, args, *rest, **kw)
        if "input_ids" in dataset.column_names:
            return dataset  # already tokenized
        missing = {"prompt", "completion"} - set(dataset.column_names)
        if missing:
            raise ValueError(
                f"a T5 SFT dataset needs 'prompt' and 'completion' columns; missing {sorted(missing)}"
            )
        return dataset.map(
            _seq2seq_features,
            fn_kwargs={"tokenizer": processing_class, "max_length": args.max_length},
            remove_columns=dataset.column_names,
            num_proc=args.dataset_num_proc,
        )

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        if not self._is_encoder_decoder:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        inputs.pop("_prediction_loss_only", None)  # set by SFTTrainer.prediction_step
        outputs = model(**inputs, use_cache=False)
        # T5 returns the mean over this process's tokens and ignores num_items_in_batch, while Trainer
        # multiplies the loss by the world size for models that take loss kwargs: under DDP that would
        # double gradients and logged losses. Sum over tokens / tokens of the whole (accumulated) batch.
        mask = inputs["labels"] != IGNORE_INDEX
        loss = F.cross_entropy(
            outputs.logits.flatten(0, 1).float(), inputs["labels"].flatten(), ignore_index=IGNORE_INDEX,
            reduction="sum",
        )  # fmt: skip
        if num_items_in_batch is None:
            loss = loss / mask.sum().clamp(min=1)
        else:
            loss = loss / num_items_in_batch
            if self.args.average_tokens_across_devices:  # DDP averages gradients over processes
                loss = loss * self.accelerator.num_processes
        with torch.no_grad():  # logits (B, T, V) line up with labels (B, T): no shift
            correct = ((outputs.logits.argmax(-1) == inputs["labels"]) & mask).sum()
            correct = self.accelerator.gather_for_metrics(correct).sum()
            total = self.accelerator.gather_for_metrics(mask.sum()).sum()
            self._metrics[mode]["mean_token_accuracy"].append((correct / total.clamp(min=1)).item())
        return (loss, outputs) if return_outputs else loss


def get_sft_policy(config: Any) -> tuple[Any, Any]:
    """The policy and text tokenizer a :class:`~motion_align.trainers.sft_config.MotionSFTConfig` asks for.

    ``model_name_or_path`` loads a saved policy; otherwise one is built from ``family``/``preset``, with a
    text tokenizer trained for the tiny/small presets on the prompts of ``corpus_dir``'s train captions (the
    template included, so "Generate motion:" becomes a few pieces rather than 17 single characters: on the
    demo's T5, 600 steps, the same val loss and validity, 10% faster), after seeding with ``config.seed``.
    With ``config.length_prompts`` those prompts carry durations, so the tokenizer learns their numbers.
    """
    set_seed(config.seed)  # the same initial weights in every process and every run
    template = preset(config.prompt_template) if config.prompt_template else None
    if config.model_name_or_path:
        model, tokenizer = load_policy(config.model_name_or_path, dropout=config.policy_dropout)
        if policy_family(model) != config.family:
            found = policy_family(model)
            raise ValueError(
                f"{config.model_name_or_path} is a {found!r} policy but family={config.family!r}"
            )
        if template is not None:
            set_template(tokenizer, template)
        return model, tokenizer
    codebook_size = config.codebook_size or read_codebook_size(config.data_dir)
    tokenizer = None
    if config.preset in ("tiny", "small"):
        corpus = config.corpus_dir or _recorded_corpus(config.data_dir)
        captions = corpus_captions(corpus, "train")
        if (
            config.length_prompts
        ):  # every duration (HumanML3D 40, 44, ..., 196 frames) in turn over the captions
            skeleton = read_dataset(config.data_dir)
            lengths = range(skeleton.min_frames, skeleton.max_frames + 1, FRAMES_PER_CODE)
            prompts = [format_prompt(c, lengths[n % len(lengths)], template, fps=skeleton.fps)
                       for n, c in enumerate(captions)]  # fmt: skip
        else:
            prompts = [format_prompt(caption, template=template) for caption in captions]
        tokenizer = train_text_tokenizer(prompts, config.family, vocab_size=config.text_vocab_size)
    model, tokenizer = build_policy(
        config.family, config.preset, tokenizer, codebook_size, dropout=config.policy_dropout
    )
    if template is not None:
        set_template(tokenizer, template)
    return model, tokenizer


def _recorded_corpus(data_dir: str) -> str:
    """The HumanML3D folder ``tokenize_folder`` recorded in ``<data_dir>/tokenization.json``."""
    path = Path(data_dir) / "tokenization.json"
    corpus = json.loads(path.read_text(encoding="utf-8")).get("data_dir") if path.is_file() else None
    if not corpus or not Path(corpus).is_dir():
        raise ValueError(
            f"corpus_dir is not set and {path} names no existing corpus folder: pass --corpus_dir"
        )
    return corpus


class PolicyCheckpointCallback(TrainerCallback):
    """Makes every ``checkpoint-N`` a complete policy folder: ``motion_vocab.json`` and, when the dataset
    names one, ``motion_tokenizer.json`` beside the weights, so ``load_policy`` and ``motion-align generate
    --model <output_dir>/checkpoint-N`` work on a checkpoint as on the final policy."""

    def __init__(self, tokenizer: Any, motion_tokenizer: str | None = None) -> None:
        self.tokenizer, self.motion_tokenizer = tokenizer, motion_tokenizer

    def describe_checkpoint(self, folder: Path, model: Any) -> None:
        """Called by :class:`~motion_align.trainers.checkpointing.AtomicCheckpoints` on the main process,
        before the checkpoint is renamed into place."""
        write_vocab_info(model, self.tokenizer, folder)
        if self.motion_tokenizer:
            record_motion_tokenizer(folder, self.motion_tokenizer)


class CausalSFTTrainer(AtomicCheckpoints, SFTTrainer):
    """TRL's ``SFTTrainer`` (LLaMA-family policies) with crash-safe checkpoints."""


def get_sft_trainer(model: Any, tokenizer: Any, args: Any, train_dataset: Any, eval_dataset: Any = None,
                    **kwargs: Any) -> SFTTrainer:  # fmt: skip
    """``SFTTrainer`` for a causal policy, :class:`MotionSFTTrainer` for an encoder-decoder one; both save
    checkpoints that are complete policies (:class:`PolicyCheckpointCallback`)."""
    trainer_cls = MotionSFTTrainer if policy_family(model) == "t5" else CausalSFTTrainer
    data_dir = getattr(args, "data_dir", None)
    motion_tokenizer = read_tokenization(data_dir).get("motion_tokenizer") if data_dir else None
    callbacks = list(kwargs.pop("callbacks", None) or [])
    callbacks.append(PolicyCheckpointCallback(tokenizer, motion_tokenizer))
    return trainer_cls(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
        **kwargs,
    )


def final_eval_metrics(trainer: SFTTrainer, eval_dataset: Any) -> dict[str, Any]:
    """The evaluation of the final step: the logged one when the last step evaluated, else a fresh one
    (none without ``eval_dataset``)."""
    evals = [log for log in trainer.state.log_history if "eval_loss" in log]
    metrics = evals[-1] if evals and evals[-1]["step"] == trainer.state.global_step else {}
    if eval_dataset is not None and not metrics:
        metrics = trainer.evaluate()
    return metrics


def save_sft_policy(
    trainer: SFTTrainer, tokenizer: Any, config: Any, result: Any, eval_dataset: Any
) -> Path | None:
    """Every process: the final evaluation (:func:`final_eval_metrics`); main process: the policy
    (:func:`save_policy`) into ``config.output_dir``, next to the checkpoints, with the trainer state,
    ``motion_tokenizer.json`` (when the dataset names its VQ-VAE, so ``motion-align generate --model
    <output_dir>`` finds it) and ``sft_run.json`` (world size, train and eval metrics). Returns the folder on
    the main process, None on the others.

    ``save_policy`` replaces a whole folder, so the policy is written complete to a hidden subfolder first
    and its files are then renamed one by one into ``output_dir`` (checkpoint-* folders stay).
    """
    metrics = final_eval_metrics(trainer, eval_dataset)
    if not trainer.accelerator.is_main_process:
        return None
    trainer.save_state()
    out = Path(config.output_dir)
    staging = out / ".policy"
    shutil.rmtree(staging, ignore_errors=True)
    save_policy(trainer.accelerator.unwrap_model(trainer.model), tokenizer, staging)
    for file in staging.iterdir():
        file.replace(out / file.name)
    staging.rmdir()
    motion_tokenizer = read_tokenization(config.data_dir).get("motion_tokenizer")
    if motion_tokenizer:
        record_motion_tokenizer(out, motion_tokenizer)
    run = {"world_size": trainer.accelerator.num_processes, "train": result.metrics, "eval": metrics}
    (out / "sft_run.json").write_text(json.dumps(run, indent=2) + "\n")
    return out
