"""Reference log-probs of fixed offline preference pairs: computed once before training, kept on disk.

With offline pairs and a frozen reference (the policy with its adapters disabled under LoRA, the ``ref``
adapter TRL adds when an existing adapter is trained, or the starting policy under full fine-tuning), the
reference's log-prob of every chosen and rejected completion is a fixed number. :func:`add_reference_columns`
computes them in no-grad passes before the first step and stores them as the columns TRL's losses read
(``ref_chosen_logps``, ``ref_rejected_logps``), so training runs the policy alone:

- the pairs are sorted longest first and batched ``batch_size`` at a time (each batch padded to its own
  longest pair, so little padding; the longest batch comes first, so a batch too large for memory fails at
  once), in eval mode, by the trainer's own ``compute_ref_log_probs`` (the same code as the live reference);
- with several processes each process computes its shard of the batches (accelerate's prepared dataloader)
  and ``gather_for_metrics`` gives every process all values in order, as TRL's precomputation does;
- under DeepSpeed the reference runs in an inference engine built once (TRL's ``prepare_deepspeed``), as the
  model is not placed or is partitioned before training starts.

The values are cached as ``<key>.safetensors`` in ``$MOTION_ALIGN_CACHE/ref-logps`` (else
``~/.cache/motion-align/ref-logps``), written atomically by the main process; the main process reads a hit
and broadcasts it, so the processes need not share a disk. The key hashes what the values depend on:

- the tokenized pairs (prompt, chosen and rejected ids, in order). This is the data's fingerprint in the
  strict sense: ``datasets``' own ``_fingerprint`` is random for a dataset built by a transform it cannot
  hash and differs for equal datasets built by different steps, while these ids are exactly what the
  reference reads;
- every tensor of the reference (names, dtypes, shapes, bytes; the trained adapters' tensors left out, since
  the reference runs without them, and the ``ref`` adapter's kept) and its config;
- the settings that change the log-probs: ``max_length`` and ``truncation_mode`` (the causal collator
  truncates), the trainer class, and :data:`CACHE_FORMAT`.

Under DeepSpeed ZeRO-3 the parameters are partitioned and cannot be hashed from one process, so the values
are computed every run and not cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch
from accelerate.utils import broadcast_object_list, is_peft_model
from datasets import Dataset
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

from motion_tokenizer.atomic_files import write_atomic

logger = logging.getLogger(__name__)

REFERENCE_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
PAIR_TOKEN_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")
CACHE_ENV = "MOTION_ALIGN_CACHE"
CACHE_FORMAT = 1  # raise when the computation changes, so older files are not read
_SCAN_BATCH = 8192  # rows per arrow batch while hashing the pairs


def default_cache_dir() -> Path:
    """``$MOTION_ALIGN_CACHE/ref-logps``, else ``~/.cache/motion-align/ref-logps``."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "motion-align"
    return Path(root) / "ref-logps"


def scan_pairs(dataset: Dataset) -> tuple[str, np.ndarray]:
    """Hash of the tokenized pairs (in order) and each pair's longest sequence, prompt + the longer of its
    completions (N,): the data part of the cache key and the batching order."""
    digest = hashlib.blake2b(digest_size=16)
    longest = []
    for table in dataset.with_format("arrow", columns=list(PAIR_TOKEN_COLUMNS)).iter(batch_size=_SCAN_BATCH):
        lengths = []
        for name in PAIR_TOKEN_COLUMNS:
            column = table.column(name).combine_chunks()
            sizes = pc.list_value_length(column).to_numpy(zero_copy_only=False).astype(np.int64)
            ids = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.int64)
            digest.update(name.encode())
            digest.update(sizes)
            digest.update(ids)
            lengths.append(sizes)
        longest.append(lengths[0] + np.maximum(lengths[1], lengths[2]))
    return digest.hexdigest(), np.concatenate(longest) if longest else np.zeros(0, dtype=np.int64)


def reference_digest(model: Any, skipped_adapters: Collection[str] = ()) -> str:
    """Hash of ``model``'s config and every tensor of its state dict (names, dtypes, shapes, bytes), except
    the tensors of the adapters named in ``skipped_adapters`` (a name with one of them as a dotted part)."""
    digest = hashlib.blake2b(digest_size=16)
    unnamed = ("_name_or_path", "transformers_version")
    config = {k: v for k, v in model.config.to_dict().items() if k not in unnamed}
    digest.update(json.dumps(config, sort_keys=True, default=repr).encode())
    skipped = set(skipped_adapters)
    for name, tensor in sorted(model.state_dict().items()):
        if skipped & set(name.split(".")):
            continue
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


def reference_key(trainer: Any, pairs_digest: str) -> str:
    """The cache key of the reference log-probs of the pairs hashed as ``pairs_digest`` (see the module)."""
    model = trainer.ref_model
    skipped: set[str] = set()
    if model is None:
        model = trainer.accelerator.unwrap_model(trainer.model)
        if is_peft_model(model):  # the reference runs with the "ref" adapter if there is one, else none
            skipped = set(model.peft_config) - {"ref"}
    args = trainer.args
    settings = dict(
        format=CACHE_FORMAT,
        trainer=type(trainer).__qualname__,
        pairs=pairs_digest,
        reference=reference_digest(model, skipped),
        max_length=args.max_length,
        truncation_mode=args.truncation_mode,
    )
    return hashlib.blake2b(json.dumps(settings, sort_keys=True).encode(), digest_size=16).hexdigest()


class ReferenceLogpsCache:
    """The cached reference log-probs (chosen and rejected, float32) of one key in ``folder``."""

    def __init__(self, folder: str | os.PathLike[str], key: str) -> None:
        self.path = Path(folder) / f"{key}.safetensors"

    def load(self, rows: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The values of ``rows`` pairs, or None when absent or unreadable (a damaged file is recomputed)."""
        if not self.path.is_file():
            return None
        try:
            tensors = load_file(self.path)
        except (OSError, SafetensorError) as err:
            logger.warning("%s: unreadable (%s), recomputing the reference log-probs", self.path, err)
            return None
        chosen, rejected = tensors.get("chosen"), tensors.get("rejected")
        if chosen is None or rejected is None or chosen.shape != (rows,) or rejected.shape != (rows,):
            logger.warning("%s: not %d pairs' values, recomputing the reference log-probs", self.path, rows)
            return None
        return chosen, rejected

    def save(self, chosen: torch.Tensor, rejected: torch.Tensor) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"chosen": chosen.float().contiguous(), "rejected": rejected.float().contiguous()}
        metadata = {"format": str(CACHE_FORMAT), "rows": str(len(chosen))}
        write_atomic(self.path, lambda tmp: save_file(tensors, tmp, metadata))


@contextlib.contextmanager
def reference_runner(trainer: Any) -> Iterator[Any]:
    """What ``trainer.compute_ref_log_probs`` runs before training: the policy (its reference is chosen
    inside), or under DeepSpeed an inference engine of it, built once and kept on the trainer. It runs as in
    a training step, in train mode, but with its dropout layers off (a ``ref`` adapter's LoRA dropout: the
    reference is deterministic). Not eval mode: bitsandbytes' 4-bit layers on CPU repack their weights in
    eval mode (and fail on small layers)."""
    model = trainer.model
    if trainer.is_deepspeed_enabled and trainer.ref_model is None:
        if getattr(trainer, "reference_engine", None) is None:
            from trl.models import prepare_deepspeed

            trainer.reference_engine = prepare_deepspeed(trainer.model, trainer.accelerator)
        model = trainer.reference_engine
    modules = list(trainer.accelerator.unwrap_model(model).modules())
    modes = [module.training for module in modules]
    for module in modules:
        module.training = not isinstance(module, torch.nn.Dropout)
    try:
        yield model
    finally:
        for module, mode in zip(modules, modes):
            module.training = mode


def compute_reference_logps(
    trainer: Any, dataset: Dataset, batch_size: int, order: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference log-probs (N,) of the chosen and rejected completions, in the dataset's order, from batches
    of ``batch_size`` pairs taken in ``order``; each process computes its shard.

    Leaves torch's random state as it found it (iterating a DataLoader draws its base seed from it): a run
    that computes the values and one that reads them from the cache then train with the same dropout masks
    and sampling draws, and a resumed run matches an uninterrupted one."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        return _compute(trainer, dataset, batch_size, order)


def _compute(
    trainer: Any, dataset: Dataset, batch_size: int, order: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    ordered = dataset.select_columns(list(PAIR_TOKEN_COLUMNS)).select(order)
    loader = DataLoader(
        ordered,
        batch_size=batch_size,
        collate_fn=trainer.data_collator,
        num_workers=trainer.args.dataloader_num_workers,
        shuffle=False,
    )
    loader = trainer.accelerator.prepare(loader)
    chosen, rejected = [], []
    with torch.no_grad(), reference_runner(trainer) as model:
        for batch in loader:
            values = trainer.accelerator.gather_for_metrics(trainer.compute_ref_log_probs(model, batch))
            chosen.append(values[0].float().cpu())
            rejected.append(values[1].float().cpu())
    index = torch.as_tensor(order)
    out = torch.empty(2, len(order))
    out[0, index], out[1, index] = torch.cat(chosen), torch.cat(rejected)
    return out[0], out[1]


def add_reference_columns(
    trainer: Any, dataset: Dataset, name: str, batch_size: int, cache_dir: str | os.PathLike[str] | None
) -> Dataset:
    """``dataset`` with the reference log-probs of its pairs as ``ref_chosen_logps`` / ``ref_rejected_logps``,
    read from the cache in ``cache_dir`` (None: no cache) or computed and cached. A dataset that already has
    both columns is returned as it is. Records the seconds spent in ``trainer.reference_seconds[name]``."""
    if not isinstance(dataset, Dataset):
        raise ValueError(
            f"the {name} dataset is a {type(dataset).__name__}: precomputed reference log-probs need a "
            "map-style datasets.Dataset (set precompute_ref_log_probs=false to compute them at every step)"
        )
    if set(REFERENCE_COLUMNS) <= set(dataset.column_names):
        return dataset
    start = time.perf_counter()
    accelerator = trainer.accelerator
    pairs_digest, lengths = scan_pairs(dataset)
    cache = None
    if cache_dir is not None and not is_deepspeed_zero3_enabled():
        key = [reference_key(trainer, pairs_digest) if accelerator.is_main_process else None]
        cache = ReferenceLogpsCache(cache_dir, broadcast_object_list(key)[0])
    hit: list[Any] = [None]
    if cache is not None and accelerator.is_main_process:
        loaded = cache.load(len(dataset))
        hit = [None if loaded is None else [values.tolist() for values in loaded]]
    broadcast_object_list(hit)
    if hit[0] is None:
        order = np.argsort(-lengths, kind="stable")
        chosen, rejected = compute_reference_logps(trainer, dataset, batch_size, order)
        if cache is not None and accelerator.is_main_process:
            cache.save(chosen, rejected)
        source = f"computed in batches of {batch_size}"
    else:
        chosen, rejected = (torch.tensor(values, dtype=torch.float32) for values in hit[0])
        source = f"read from {cache.path}"
    trainer.reference_seconds[name] = time.perf_counter() - start
    logger.info("reference log-probs of the %d %s pairs %s (%.1f s)", len(dataset), name, source,
                trainer.reference_seconds[name])  # fmt: skip
    dataset = dataset.add_column(REFERENCE_COLUMNS[0], chosen.tolist())
    return dataset.add_column(REFERENCE_COLUMNS[1], rejected.tolist())
