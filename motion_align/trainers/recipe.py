"""Recipe plumbing: what every ``recipes/<method>.py`` does around ``trainer.train()``, in one place.

- inputs: the policy (dropout off, optionally 4-bit, with its LoRA config), its motion tokenizer, the
  tokenized items of a corpus and the prompts made from them, the preference pairs; a missing local input
  is a FileNotFoundError that says how to create it;
- the record of a run: ``training_info.json`` (base, method, motion tokenizer, data, recipe,
  hyper-parameters, command: what the model card states), the ``<method>_run.json`` of its metrics;
- the saved folder: every ``checkpoint-N`` and the final folder are loadable policies (an adapter, or a
  whole policy after full fine-tuning, plus ``motion_vocab.json`` and ``motion_tokenizer.json``), which
  :func:`motion_align.policy.model.load_policy` reads, so ``motion-align generate --model`` and
  ``motion-align evaluate --policy`` take them directly; the push to the Hub;
- the process: the resume flag, a clean end of every process, one line instead of a traceback for a
  missing input.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, set_seed

from motion_align.data.preferences import (
    SUMMARY_FILE,
    drop_degenerate_pairs,
    load_preferences,
    select_preferences,
    split_preferences,
    to_trainer_rows,
)
from motion_align.entry_points import parse_recipe_config, run_recipe
from motion_align.hub import TRAINING_INFO, card_info_from_folder, push_artifact, redact
from motion_align.policy.artifacts import ADAPTER, artifact_kind
from motion_align.policy.causal_view import query_ids
from motion_align.policy.generation import (
    MOTION_TOKENIZER_FILE,
    record_motion_tokenizer,
    recorded_motion_tokenizer,
)
from motion_align.policy.lora import get_peft_config, untie_adapter_folder
from motion_align.policy.model import format_prompt, load_policy, policy_family, write_vocab_info
from motion_align.policy.prompts import preset, set_template, template_of
from motion_align.policy.vocab import MotionVocab
from motion_align.trainers.checkpointing import checked_checkpoint, newest_complete_checkpoint
from motion_align.training.loop import end_processes, write_json  # noqa: F401  (recipes end with the first)

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------- inputs


def looks_local(name: str) -> bool:
    """Whether a model or dataset name is a local path (the demo's ``outputs/...`` included), not a Hub id."""
    return name.startswith((".", "/", "outputs")) or Path(name).exists()


def check_input(name: str, what: str, flag: str, folder: bool = True) -> None:
    """FileNotFoundError, saying how to create it, when ``name`` is a local path that does not exist (a
    folder, when ``folder``); Hub ids pass."""
    if looks_local(name) and not (Path(name).is_dir() if folder else Path(name).exists()):
        raise FileNotFoundError(
            f"{what} {name!r} not found. Create the demo artifacts with `make demo` (or `motion-align demo "
            f"--out outputs/demo`), or pass {flag} (a local folder or a Hub id)."
        )


def get_policy(config: Any) -> tuple[Any, Any, Any]:
    """(policy, text tokenizer, LoRA config or None) for an alignment config (DPO, KTO, SoPo, PPO, GRPO).

    The policy is loaded with dropout off; ``load_in_4bit`` (DPO's configs) loads its weights in 4 bits
    through bitsandbytes (QLoRA; bitsandbytes also runs on CPU).
    """
    check_input(config.model_name_or_path, "policy", "--model_name_or_path")
    set_seed(config.seed)
    kwargs: dict[str, Any] = {}
    if getattr(config, "load_in_4bit", False):
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        )
    model, tokenizer = load_policy(config.model_name_or_path, dropout=0.0, **kwargs)
    if getattr(config, "prompt_template", None):  # the recipe overrides the policy's; the output records it
        set_template(tokenizer, preset(config.prompt_template))
    peft_config = None
    if config.use_peft:
        peft_config = get_peft_config(
            model, tokenizer, config.lora_r, config.lora_alpha, config.lora_dropout,
            target_modules=getattr(config, "lora_target_modules", None),
            motion_tokens=getattr(config, "lora_motion_tokens", True),
        )  # fmt: skip
    return model, tokenizer, peft_config


def require_decoder_only(model: Any, config: Any, trainer: str, alternative: str) -> None:
    """ValueError for a T5 policy under a TRL trainer that is causal-only (KTO, GRPO), naming the
    ``alternative`` recipe that aligns it."""
    if policy_family(model) == "t5":
        raise ValueError(
            f"{config.model_name_or_path} is a T5 (encoder-decoder) policy, but TRL's {trainer} is "
            f"decoder-only: align it with {alternative}, or pass a LLaMA-family policy as "
            "--model_name_or_path"
        )


def motion_tokenizer_name(config: Any) -> str | None:
    """``config.motion_tokenizer``, or the one the policy folder records (None when neither says)."""
    if config.motion_tokenizer is None and Path(config.model_name_or_path, MOTION_TOKENIZER_FILE).is_file():
        return recorded_motion_tokenizer(Path(config.model_name_or_path))
    return config.motion_tokenizer


def load_motion_tokenizer(config: Any) -> Any:
    """The VQ-VAE at ``config.motion_tokenizer``, or the one the policy folder records (eval mode)."""
    from motion_tokenizer import MotionVQVAE

    name = motion_tokenizer_name(config)
    if name is None:
        raise ValueError(f"{config.model_name_or_path} records no motion tokenizer: pass --motion_tokenizer")
    return MotionVQVAE.from_pretrained(str(name)).eval()


def load_tokenized_items(config: Any) -> Any:
    """The ``dataset_split`` items of the tokenized dataset ``config.dataset_name`` (``motion-align tokenize``
    output or a Hub dataset; columns ``captions`` and ``codes``), subsampled to ``data_fraction``."""
    import datasets

    name = config.dataset_name
    check_input(name, "tokenized dataset", "--dataset_name", folder=False)
    if looks_local(name):
        items = datasets.load_from_disk(name)
        if isinstance(items, datasets.DatasetDict):
            if config.dataset_split not in items:
                raise ValueError(f"{name}: no split {config.dataset_split!r} (has {sorted(items)})")
            items = items[config.dataset_split]
    else:
        items = datasets.load_dataset(name, split=config.dataset_split)
    missing = {"captions", "codes"} - set(items.column_names)
    if missing:
        raise ValueError(
            f"{name}: a tokenized dataset needs the columns captions and codes; missing {sorted(missing)}"
        )
    if config.data_fraction < 1.0:
        keep = max(1, round(config.data_fraction * len(items)))
        items = items.shuffle(seed=config.seed).select(range(keep))
    return items


def prompt_rows(items: Any, tokenizer: Any, with_ids: bool = True, with_start: bool = True) -> Any:
    """Tokenized items -> one row per caption: ``caption``, ``events`` (JSON, ``""`` for none) and the query,
    as ``input_ids`` (PPO: the formatted caption and ``<som>``) or as the ``prompt`` text (GRPO: the formatted
    caption, and ``<som>`` only ``with_start``)."""
    vocab, template = MotionVocab.from_tokenizer(tokenizer), template_of(tokenizer)
    has_events = "events" in items.column_names

    def rows(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"input_ids" if with_ids else "prompt": [], "caption": [], "events": []}
        events = batch["events"] if has_events else [""] * len(batch["captions"])
        for captions, spec in zip(batch["captions"], events, strict=True):
            for caption in captions:
                if with_ids:
                    out["input_ids"].append(query_ids(tokenizer, caption, vocab))
                else:
                    out["prompt"].append(format_prompt(caption, template=template) + (vocab.som * with_start))
                out["caption"].append(caption)
                out["events"].append(spec or "")
        return out

    return items.map(rows, batched=True, remove_columns=items.column_names, desc="Prompts")


def same_policy(a: str, b: str) -> bool:
    """Whether two policy names (local folders, compared resolved, or Hub ids) name the same policy."""
    return absolute_if_local(a) == absolute_if_local(b)


def pair_provenance(config: Any, policy: str | None = None) -> dict[str, Any]:
    """Which policy sampled the pairs of ``config.dataset_name`` (``sampled_from`` in a local folder's
    ``preferences.json``, written by ``motion-align pairs judged --policy``) and whether it is the policy
    being aligned (``policy``, by default ``config.model_name_or_path``): ``on_policy``, None when the pairs
    do not say (human labels, a Hub dataset).

    Off-policy pairs are allowed but warned about: the methods implemented here (AToM's judged rounds, SoPo,
    online DPO) train on samples of the policy being aligned, and another policy's samples (a weaker one's,
    typically) can be worse than what the policy already makes."""
    summary = Path(config.dataset_name, SUMMARY_FILE)
    sampled_from = None
    if looks_local(config.dataset_name) and summary.is_file():
        sampled_from = json.loads(summary.read_text(encoding="utf-8")).get("sampled_from")
    policy = policy or config.model_name_or_path
    on_policy = None if sampled_from is None else same_policy(sampled_from, policy)
    if on_policy is False:
        logger.warning(
            "%s: the pairs were sampled from %s, not from the policy being aligned (%s): off-policy pairs "
            "(recorded in training_info.json)", config.dataset_name, sampled_from, policy,
        )  # fmt: skip
    return {"sampled_from": sampled_from, "on_policy": on_policy}


def get_preference_datasets(
    config: Any, tokenizer: Any, rows: Callable[[Any, Any], Any] = to_trainer_rows, policy: str | None = None
) -> dict[str, Any]:
    """``{"train": ..., "eval": ..., "provenance": ...}``: ``rows(pairs, template)`` (the DPO trainer's by
    default) of the pairs, their prompts in the policy's template (the one its text ``tokenizer`` records),
    and which policy sampled them (:func:`pair_provenance`; ``policy``: the one being aligned, by default
    ``config.model_name_or_path``).

    The pairs are checked against the policy's codebook (read from its text ``tokenizer``: a code it has no
    token for is an error naming the record), cleaned of pairs whose chosen is the rejected and of exact
    duplicates (counted; refused with ``strict``), filtered by degree, subsampled to ``data_fraction`` and
    split ``eval_fraction`` off, all seeded by ``config.seed``. The cleaning comes first, so no
    (prompt, chosen, rejected) row is in both splits.
    """
    name = config.dataset_name
    check_input(name, "preference dataset", "--dataset_name", folder=False)
    codebook_size = MotionVocab.from_tokenizer(tokenizer).codebook_size
    pairs = load_preferences(name, split=config.dataset_split, codebook_size=codebook_size)
    pairs, dropped = drop_degenerate_pairs(pairs, name, config.strict)
    if any(dropped.values()):
        logger.warning(
            "%s: dropped %d pair(s) whose chosen is the rejected motion and %d duplicate pair(s) "
            "(--strict refuses them)", name, dropped["same_motion"], dropped["duplicate"],
        )  # fmt: skip
    pairs = select_preferences(
        pairs, config.preference_degrees, config.include_unsure, config.data_fraction, config.seed
    )
    if len(pairs) == 0:
        degrees = config.preference_degrees or "any"
        raise ValueError(f"{name}: no pairs left after the degree filter ({degrees}, unsure: "
                         f"{config.include_unsure}) and the cleaning ({dropped})")  # fmt: skip
    splits = {"train": pairs, "eval": None}
    if config.eval_fraction > 0:
        splits = split_preferences(pairs, config.eval_fraction, config.seed)
    template = template_of(tokenizer)
    data = {key: None if part is None else rows(part, template) for key, part in splits.items()}
    data["provenance"] = pair_provenance(config, policy)
    logger.info(
        "%s: %d training rows, %s eval rows", name, len(data["train"]), data["eval"] and len(data["eval"])
    )
    return data


# ----------------------------------------------------------------------------------------- records


def absolute_if_local(name: str) -> str:
    """A local path made absolute (so a saved folder names it from anywhere); a Hub id as it is."""
    return str(Path(name).resolve()) if Path(name).exists() else name


def method_name(loss_type: str | list[str]) -> str:
    """The method a config's ``loss_type`` names: DPOConfig's is a list whose first loss names it (TRL calls
    DPO's loss ``sigmoid``), KTOConfig's a single string (``kto``)."""
    loss = loss_type if isinstance(loss_type, str) else loss_type[0]
    return "DPO" if loss == "sigmoid" else loss.upper()


def adapter_kind(config: Any) -> str:
    """What a run trains: a QLoRA or LoRA adapter, or every weight."""
    if getattr(config, "load_in_4bit", False):
        return "QLoRA"
    return "LoRA" if config.use_peft else "full fine-tuning"


def training_info(
    config: Any, method: str, script: str, rows: int, pairs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What the model card states: the base, ``method`` with the adapter kind ("IPO-LoRA"), the motion
    tokenizer, the data and its ``rows``, the recipe, the hyper-parameters the config lists in its
    ``card_fields``, and the command (``script`` launched with this process's arguments); with ``pairs``
    (:func:`pair_provenance`), which policy sampled the preference pairs."""
    motion_tokenizer = motion_tokenizer_name(config)
    argv = sys.argv[1:]
    extra = {} if pairs is None else {"pairs": pairs}
    return {
        **extra,
        "base_model": absolute_if_local(config.model_name_or_path),
        "method": f"{method}-{adapter_kind(config)}",
        "motion_tokenizer": absolute_if_local(motion_tokenizer) if motion_tokenizer else None,
        "dataset": config.dataset_name,
        "rows": rows,
        "recipe": argv[argv.index("--config") + 1] if "--config" in argv[:-1] else None,
        "hyperparameters": {k: getattr(config, k) for k in config.card_fields if hasattr(config, k)},
        "command": redact(f"accelerate launch {script} " + " ".join(argv)),
    }


def card_metrics(metrics: dict[str, float], prefixes: tuple[str, ...]) -> dict[str, float]:
    """The final evaluation's metrics whose names start with ``prefixes``, rounded for the model card."""
    return {k: round(v, 4) for k, v in metrics.items() if k.startswith(prefixes)}


# ----------------------------------------------------------------------------------------- saving


class AdapterCheckpointCallback(TrainerCallback):
    """Makes every ``checkpoint-N`` a loadable policy folder like the final one: the base recorded by
    absolute path, ``motion_vocab.json`` and ``motion_tokenizer.json`` (``motion-align evaluate --policy
    name=<output_dir>/checkpoint-N`` then works). The trainers'
    :class:`~motion_align.trainers.checkpointing.AtomicCheckpoints` call it before the checkpoint is renamed
    into place."""

    def __init__(self, tokenizer: Any, info: dict[str, Any]) -> None:
        self.tokenizer, self.info = tokenizer, info

    def describe_checkpoint(self, folder: Path, model: Any) -> None:
        describe_folder(folder, model, self.tokenizer, self.info)


def describe_folder(folder: Path, model: Any, tokenizer: Any, info: dict[str, Any]) -> None:
    """``motion_vocab.json``, ``motion_tokenizer.json`` and the absolute base path in a saved folder."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    write_vocab_info(base, tokenizer, folder)
    adapter_config = folder / "adapter_config.json"
    if adapter_config.is_file():  # a local base is recorded by absolute path, so the folder loads anywhere
        data = json.loads(adapter_config.read_text(encoding="utf-8"))
        data["base_model_name_or_path"] = info["base_model"]
        adapter_config.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if info.get("motion_tokenizer"):
        record_motion_tokenizer(folder, info["motion_tokenizer"])


def save_policy_folder(folder: str | Path, model: Any, tokenizer: Any, info: dict[str, Any]) -> Path:
    """Main process, after the policy (adapter or whole) was saved into ``folder``: its description
    (:func:`describe_folder`), a T5 adapter rewritten into the form stock PEFT loads as the toolkit does
    (:func:`motion_align.policy.lora.untie_adapter_folder`; checkpoints keep PEFT's, which resuming reads),
    and ``training_info.json``."""
    out = Path(folder)
    describe_folder(out, model, tokenizer, info)
    if (out / "adapter_config.json").is_file():  # a T5 adapter in the form stock PEFT loads untied
        untie_adapter_folder(out)
    write_json(out / TRAINING_INFO, info)
    return out


def push_recipe_output(folder: str | Path, config: Any) -> str:
    """Push a recipe's saved ``folder`` (an adapter, or a fully fine-tuned policy) to ``config.hub_model_id``
    with the card its ``training_info.json`` describes (what ``--push_to_hub true`` does at the end of an
    alignment recipe; ``hub_private_repo`` makes the repos private). A base policy (of an adapter) or motion
    tokenizer that is a local folder goes along, to ``<hub_model_id>-base`` and
    ``<hub_model_id>-motion-tokenizer``, so that the Hub copy names no folder of this machine. Returns what
    was pushed, for the log: each repo and its commit URL, the artifact's last."""
    folder, repo = Path(folder), config.hub_model_id
    kind = artifact_kind(folder)
    card = card_info_from_folder(folder, kind=kind)
    flags: dict[str, str] = {}
    if kind == ADAPTER and card.base_model and Path(card.base_model).exists():
        flags["push_base"] = f"{repo}-base"
    if card.motion_tokenizer and Path(card.motion_tokenizer).exists():
        flags["push_tokenizer"] = f"{repo}-motion-tokenizer"
    private = bool(getattr(config, "hub_private_repo", False))
    pushed = push_artifact(folder, repo, kind, token=config.hub_token, private=private, card=card, **flags)
    return ", ".join(f"{p.repo_id} ({p.url})" for p in pushed)


def save_aligned_policy(
    trainer: Any, tokenizer: Any, config: Any, info: dict[str, Any], run_file: str, run: dict[str, Any],
    push: bool,
) -> Path | None:  # fmt: skip
    """The end of a TRL alignment run: every process saves the model (ZeRO-3 gathers the weights from all of
    them); the main process writes the trainer state, the policy folder (:func:`save_policy_folder`) and
    ``run_file`` (``run``), and pushes the folder to ``config.hub_model_id`` when ``push``. Returns the folder
    on the main process, None on the others."""
    trainer.save_model(config.output_dir)
    if not trainer.accelerator.is_main_process:
        return None
    trainer.save_state()
    model = trainer.accelerator.unwrap_model(trainer.model)
    out = save_policy_folder(config.output_dir, model, tokenizer, info)
    write_json(out / run_file, run)
    logger.info("saved the aligned policy to %s", out)
    if push:
        logger.info("pushed to %s", push_recipe_output(out, config))
    return out


# ----------------------------------------------------------------------------------------- process


def parse_config(config_class: type) -> Any:
    """The recipe's config from the dataclass defaults < YAML (``--config``) < command-line flags (unknown
    keys are an error: :func:`motion_align.entry_points.parse_recipe_config`), after logging is set up."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_recipe_config(config_class)
    keep_token_off_disk(config)
    if hasattr(config, "world_size"):  # TRL's configs know their processes
        logger.info("world size %d, device %s", config.world_size, config.device)
    return config


def keep_token_off_disk(config: Any) -> None:
    """Moves ``--hub_token`` (a flag or a YAML key) out of the config into this process's ``HF_TOKEN``, where
    the push reads it: the Trainer pickles its arguments into every checkpoint's ``training_args.bin``, and
    the run records copy the config, so a token left in it would be written to disk and could be uploaded."""
    token = getattr(config, "hub_token", None)
    if token:
        os.environ["HF_TOKEN"] = token
        config.hub_token = None


def take_push_flag(config: Any) -> bool:
    """``config.push_to_hub``, turned off in the config: the recipe pushes once, at the end, with the model
    card, rather than TRL at every save."""
    push, config.push_to_hub = config.push_to_hub, False
    return push


def resume_flag(config: Any) -> str | None:
    """``trainer.train``'s ``resume_from_checkpoint`` from the recipe's: "true" or "latest" mean the newest
    complete checkpoint in ``output_dir`` (a damaged newer one is skipped with a warning), a folder means
    that one, checked complete (:mod:`motion_align.trainers.checkpointing`)."""
    checkpoint = config.resume_from_checkpoint
    if not checkpoint:
        return None
    if checkpoint in ("true", "True", "latest"):
        folder = newest_complete_checkpoint(config.output_dir)
    else:
        folder = checked_checkpoint(checkpoint)
    logger.info("resuming from %s", folder)
    return str(folder)


def distribution(trainer: Any) -> dict[str, Any]:
    """How a run was spread, for its run record: ``world_size``, ``distributed_type`` (accelerate's, e.g.
    ``DistributedType.DEEPSPEED``) and ``zero_stage`` (False without DeepSpeed)."""
    accelerator = trainer.accelerator
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    zero_stage = plugin.zero_stage if getattr(trainer, "is_deepspeed_enabled", False) and plugin else False
    return {"world_size": accelerator.num_processes, "distributed_type": str(accelerator.distributed_type),
            "zero_stage": zero_stage}  # fmt: skip


def run(main: Callable[[], None], script: str) -> None:
    """Runs a recipe's ``main``: bad data, config or input ends it with one line and status 2
    (:func:`motion_align.entry_points.run_recipe`; ``--debug`` shows the traceback)."""
    run_recipe(main, script)
