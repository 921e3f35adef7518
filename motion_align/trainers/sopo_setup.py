"""What ``recipes/sopo.py`` loads besides the policy: the motion tokenizer, the reward model and the prompts
with their real motions (a tokenized dataset: ``motion-align tokenize`` output, or a Hub dataset with
``captions`` and ``codes``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from motion_align.data.sft import real_motion_rows
from motion_align.generation import MOTION_TOKENIZER_FILE, _recorded_motion_tokenizer
from motion_align.trainers.dpo_setup import _missing_input, looks_local, training_info
from motion_align.vocab import MotionVocab

SOPO_CARD_FIELDS = ("reward_model", "num_candidates", "threshold", "similarity_weight", "refresh_steps",
                    "preferred_source", "sampling_temperature")  # fmt: skip


def load_motion_tokenizer(config: Any) -> Any:
    """The VQ-VAE at ``config.motion_tokenizer``, or the one the policy folder records (eval mode)."""
    from motion_tokenizer import MotionVQVAE

    motion_tokenizer = config.motion_tokenizer
    if motion_tokenizer is None:
        if not Path(config.model_name_or_path, MOTION_TOKENIZER_FILE).is_file():
            raise ValueError(
                f"{config.model_name_or_path} records no motion tokenizer: pass --motion_tokenizer"
            )
        motion_tokenizer = _recorded_motion_tokenizer(Path(config.model_name_or_path))
    return MotionVQVAE.from_pretrained(str(motion_tokenizer)).eval()


def get_sopo_models(config: Any) -> tuple[Any, Any]:
    """(motion tokenizer, reward model): :func:`load_motion_tokenizer` and the retrieval model at
    ``config.reward_model`` (folders or Hub ids)."""
    from motion_align.rewards.retrieval import TextMotionRetrieval

    if looks_local(config.reward_model) and not Path(config.reward_model).is_dir():
        raise _missing_input("reward model", config.reward_model, "--reward_model")
    reward_model = TextMotionRetrieval.from_pretrained(config.reward_model)
    return load_motion_tokenizer(config), reward_model.eval()


def load_tokenized_items(config: Any) -> Any:
    """The ``dataset_split`` items of the tokenized dataset ``config.dataset_name`` (``motion-align tokenize``
    output or a Hub dataset; columns ``captions`` and ``codes``), subsampled to ``data_fraction``."""
    import datasets

    name = config.dataset_name
    if looks_local(name):
        if not Path(name).exists():
            raise _missing_input("tokenized dataset", name, "--dataset_name")
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


def get_real_motion_datasets(config: Any, codebook_size: int) -> dict[str, Any]:
    """``{"train": ..., "eval": ...}`` rows of :func:`~motion_align.data.sft.real_motion_rows` from the
    ``dataset_split`` of ``config.dataset_name``: items subsampled to ``data_fraction`` and split
    ``eval_fraction`` off (by item, so no motion is in both), seeded by ``config.seed``. ``codebook_size``
    is the policy's (its motion tokens must cover every code)."""
    items = load_tokenized_items(config)
    splits = {"train": items, "eval": None}
    if config.eval_fraction > 0:
        parts = items.train_test_split(test_size=config.eval_fraction, seed=config.seed)
        splits = {"train": parts["train"], "eval": parts["test"]}
    vocab = MotionVocab(codebook_size)

    def rows(part: Any) -> Any:
        return part.map(
            real_motion_rows, batched=True, fn_kwargs={"vocab": vocab}, remove_columns=part.column_names
        )

    return {key: None if part is None else rows(part) for key, part in splits.items()}


def sopo_training_info(config: Any, rows: int) -> dict[str, Any]:
    """:func:`~motion_align.trainers.dpo_setup.training_info` with SoPo's method name and sampler settings."""
    info = training_info(config, rows)
    adapter = info["method"].split("-", 1)[1]
    info["method"] = ("SoPo" if config.preferred_source == "dataset" else "online DPO") + f"-{adapter}"
    info["command"] = info["command"].replace("recipes/dpo_ipo.py", "recipes/sopo.py")
    info["hyperparameters"].update({k: getattr(config, k) for k in SOPO_CARD_FIELDS})
    return info
