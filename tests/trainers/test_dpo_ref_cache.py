"""MotionDPOTrainer's precomputed reference log-probs: equal to the live reference, cached by the pairs and
the reference, read back without running the model, on by default where valid, right with two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import PAIR_CAPTIONS, REPO, random_pairs
from datasets import Dataset
from peft import get_peft_model

from motion_align.policy.lora import get_peft_config
from motion_align.policy.model import build_policy, format_prompt, load_policy, save_policy
from motion_align.policy.text_tokenizer import train_text_tokenizer
from motion_align.trainers.dpo_config import MotionDPOConfig
from motion_align.trainers.dpo_trainer import MotionDPOTrainer
from motion_align.trainers.reference_logps import REFERENCE_COLUMNS
from motion_align.trainers.sopo_config import MotionSoPoConfig

K = 16


def pairs(n: int = 12, seed: int = 0) -> Dataset:
    rows = random_pairs(n, K, seed)
    return Dataset.from_list([{**r, "prompt": format_prompt(r["prompt"])} for r in rows]).remove_columns(
        "source"
    )


@pytest.fixture(scope="module")
def policies(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ref_cache_policies")
    out = {}
    for family in ("t5", "llama"):
        torch.manual_seed(0)
        tokenizer = train_text_tokenizer(PAIR_CAPTIONS * 4, family, vocab_size=200)
        model, tokenizer = build_policy(family, "tiny", tokenizer, K, dropout=0.0)
        save_policy(model, tokenizer, root / family)
        out[family] = root / family
    return out


def make_trainer(policies, family, cache: Path, model=None, lora=True, data=None, **kw) -> MotionDPOTrainer:
    loaded, tokenizer = load_policy(policies[family])
    model = loaded if model is None else model
    peft = get_peft_config(model, tokenizer) if lora and model is loaded else None
    settings = dict(output_dir=str(cache.parent / "out"), per_device_train_batch_size=4, max_steps=2,
                    precompute_ref_batch_size=8, use_cpu=True, save_strategy="no", report_to="none",
                    disable_tqdm=True, seed=0, ref_logps_cache_dir=str(cache))  # fmt: skip
    args = MotionDPOConfig(**{**settings, **kw})
    return MotionDPOTrainer(model, args=args, train_dataset=data or pairs(), processing_class=tokenizer,
                            peft_config=peft)  # fmt: skip


def count_forwards(trainer) -> list:
    """A list that grows each time a linear layer of the policy (or of its reference) runs."""
    calls: list = []
    for module in trainer.model.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def columns(trainer) -> torch.Tensor:
    return torch.tensor([list(trainer.train_dataset[key]) for key in REFERENCE_COLUMNS])  # (2, N)


def batches(trainer, size: int = 4):
    data = trainer.train_dataset.remove_columns(list(REFERENCE_COLUMNS))
    for start in range(0, len(data), size):
        yield trainer.data_collator([data[i] for i in range(start, min(start + size, len(data)))])


@pytest.mark.parametrize("family", ["t5", "llama"])
def test_precomputed_values_are_the_adapter_free_base_and_a_second_run_reads_them(policies, tmp_path, family):
    cache = tmp_path / "cache"
    first = make_trainer(policies, family, cache)
    assert first.args.precompute_ref_log_probs and "ref_chosen_logps" not in first.train_dataset.column_names
    first.precompute_reference_logps()
    assert len(list(cache.glob("*.safetensors"))) == 1
    values = columns(first)
    base, _ = load_policy(policies[family], dropout=0.0)  # no adapter at all
    with torch.no_grad():
        live = torch.cat(
            [torch.stack(first.compute_ref_log_probs(first.model, b)) for b in batches(first)], 1
        )
        plain = torch.cat(
            [first.completion_logps(base.eval(), b).logps.view(2, -1) for b in batches(first)], 1
        )
    torch.testing.assert_close(values, live, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(values, plain, rtol=1e-5, atol=1e-5)

    second = make_trainer(policies, family, cache)  # a new run: the same pairs and reference
    calls = count_forwards(second)
    second.precompute_reference_logps()
    assert calls == [] and torch.equal(columns(second), values)
    uncached = make_trainer(policies, family, tmp_path / "unused", cache_ref_logps=False)
    uncached.precompute_reference_logps()
    assert torch.equal(columns(uncached), values) and not (tmp_path / "unused").exists()


def test_computing_or_reading_the_values_leaves_the_random_state_as_it_was(policies, tmp_path):
    """A run that computes the values and one that reads them train with the same random draws (the
    precomputation's DataLoader draws a seed): a resumed run must match an uninterrupted one."""
    for source in ("computed", "read"):
        trainer = make_trainer(policies, "llama", tmp_path / "cache")
        torch.manual_seed(7)
        trainer.precompute_reference_logps()
        assert torch.equal(torch.get_rng_state(), torch.manual_seed(7).get_state()), source
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1  # the second one read it


def test_the_key_follows_the_reference_and_the_pairs_not_the_trained_adapter(policies, tmp_path):
    cache = tmp_path / "cache"
    make_trainer(policies, "llama", cache).precompute_reference_logps()

    def misses(**kw) -> bool:
        trainer = make_trainer(policies, "llama", cache, **kw)
        calls = count_forwards(trainer)
        trainer.precompute_reference_logps()
        return bool(calls)

    assert not misses(seed=1)  # another LoRA initialisation: the reference (adapters off) is the same
    assert misses(data=pairs(seed=1)) and misses(max_length=512)  # TRL's default is 1024
    model, tokenizer = load_policy(policies["llama"])
    with torch.no_grad():
        model.get_input_embeddings().weight[0, 0] += 1e-3
    assert misses(model=get_peft_model(model, get_peft_config(model, tokenizer)))  # the base changed
    assert len(list(cache.glob("*.safetensors"))) == 4


def adapted(policies, scale: float):
    """The tiny LLaMA with an existing LoRA adapter (nonzero B): TRL makes its "ref" copy the reference."""
    model, tokenizer = load_policy(policies["llama"])
    model = get_peft_model(model, get_peft_config(model, tokenizer))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, scale)
    return model


def test_an_existing_adapter_is_the_reference_and_a_later_change_to_it_counts(policies, tmp_path):
    cache = tmp_path / "cache"
    base = make_trainer(policies, "llama", cache)
    base.precompute_reference_logps()
    first = make_trainer(policies, "llama", cache, model=adapted(policies, 0.5))
    assert "ref" in first.model.peft_config
    first.precompute_reference_logps()
    assert not torch.allclose(columns(first), columns(base))  # the "ref" adapter, not the base
    other = make_trainer(policies, "llama", cache, model=adapted(policies, 0.2))
    other.precompute_reference_logps()
    assert len(list(cache.glob("*.safetensors"))) == 3 and not torch.allclose(columns(other), columns(first))
    # The iterative rounds replace TRL's "ref" adapter after construction: the precomputation, deferred to
    # train(), sees the final reference (here the base, whose values the cache already has).
    late = make_trainer(policies, "llama", cache, model=adapted(policies, 0.5))
    late.model.delete_adapter("ref")
    calls = count_forwards(late)
    late.train()
    assert calls and torch.equal(columns(late), columns(base))  # training ran the policy; the base was read


def test_full_fine_tuning_keeps_no_copy_and_refuses_a_reference_it_no_longer_has(policies, tmp_path):
    trainer = make_trainer(policies, "t5", tmp_path / "cache", lora=False, max_steps=2, learning_rate=1e-3)
    assert trainer.ref_model is None and trainer.precompute_ref_logps
    start, _ = load_policy(policies["t5"], dropout=0.0)
    trainer.train()
    with torch.no_grad():
        expected = torch.cat(
            [trainer.completion_logps(start.eval(), b).logps.view(2, -1) for b in batches(trainer)], 1
        )
    torch.testing.assert_close(columns(trainer), expected, rtol=1e-5, atol=1e-5)
    batch = trainer._prepare_inputs(next(batches(trainer)))
    with pytest.raises(ValueError, match="the reference is gone"), torch.no_grad():
        trainer.compute_ref_log_probs(trainer.model, batch)
    with pytest.raises(ValueError, match="Cannot compute reference log-probs"):
        trainer.evaluate(pairs(4, seed=5))


def test_on_by_default_only_where_valid(policies, tmp_path):
    cache = tmp_path / "cache"
    assert MotionDPOConfig(output_dir=str(tmp_path)).precompute_ref_log_probs is None  # auto
    assert MotionSoPoConfig(output_dir=str(tmp_path)).precompute_ref_log_probs is False  # sampled online
    streamed = make_trainer(policies, "llama", cache, data=pairs().to_iterable_dataset())
    assert not streamed.precompute_ref_logps
    synced = make_trainer(policies, "llama", cache, lora=False, sync_ref_model=True)
    assert not synced.precompute_ref_logps and synced.ref_model is not None
    forced = make_trainer(policies, "llama", cache, data=pairs().to_iterable_dataset(),
                          precompute_ref_log_probs=True)  # fmt: skip
    with pytest.raises(ValueError, match="the train dataset is a IterableDataset: precomputed reference"):
        forced.precompute_reference_logps()


SCRIPT = """
import json, sys
import torch
from datasets import Dataset
from motion_align.policy.lora import get_peft_config
from motion_align.policy.model import load_policy
from motion_align.trainers.dpo_config import MotionDPOConfig
from motion_align.trainers.dpo_trainer import MotionDPOTrainer

policy, data, cache, out = sys.argv[1:5]  # then "train" or "precompute"
model, tokenizer = load_policy(policy)
args = MotionDPOConfig(output_dir=out + "/run", per_device_train_batch_size=2, precompute_ref_batch_size=2,
                       max_steps=2, use_cpu=True, report_to="none", save_strategy="no",
                       ref_logps_cache_dir=cache, length_groups=4)
trainer = MotionDPOTrainer(model, args=args, train_dataset=Dataset.from_list(json.loads(open(data).read())),
                           processing_class=tokenizer, peft_config=get_peft_config(model, tokenizer))
calls = []
for module in trainer.model.modules():
    if isinstance(module, torch.nn.Linear):
        module.register_forward_hook(lambda *_: calls.append(1))
trainer.precompute_reference_logps()
rank = trainer.accelerator.process_index
record = {"world": trainer.accelerator.num_processes, "forwards": len(calls),
          "values": [list(trainer.train_dataset[k]) for k in ("ref_chosen_logps", "ref_rejected_logps")]}
open(f"{out}/rank{rank}.json", "w").write(json.dumps(record))
if sys.argv[5] == "train":  # ranks whose batches split into different numbers of length groups
    trainer.train()
trainer.accelerator.wait_for_everyone()
torch.distributed.destroy_process_group()
"""


@pytest.mark.slow
def test_two_processes_share_the_work_and_the_cache(policies, tmp_path):
    """11 pairs in batches of 2 over 2 processes (accelerate pads the last batch; gather drops the repeat):
    every process ends with all values, in order, equal to one process's; a second launch reads the cache
    and trains two steps on batches whose completions split into different numbers of length groups on the
    two ranks (each must still run one wrapped forward a step, or DDP waits for ever)."""
    rows = pairs(11).to_list()
    for i, row in enumerate(rows):  # some long completions: lengths spread as motions' do
        row["chosen"] = row["chosen"] * (1 + 4 * (i % 3 == 0))
    data = Dataset.from_list(rows)
    (tmp_path / "pairs.json").write_text(json.dumps(data.to_list()))
    (tmp_path / "script.py").write_text(SCRIPT)
    cache = tmp_path / "cache"
    single = make_trainer(policies, "llama", tmp_path / "single-cache", data=data)
    single.precompute_reference_logps()
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    accelerate = Path(sys.executable).with_name("accelerate")
    for launch in ("computes", "reads"):
        out = tmp_path / launch
        out.mkdir()
        launcher = [
            str(accelerate),
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--main_process_port",
            "29533",
        ]
        inputs = [str(policies["llama"]), str(tmp_path / "pairs.json"), str(cache), str(out)]
        inputs.append("train" if launch == "reads" else "precompute")
        cmd = [*launcher, str(tmp_path / "script.py"), *inputs]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        records = [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]
        assert all(r["world"] == 2 for r in records)
        for record in records:
            torch.testing.assert_close(torch.tensor(record["values"]), columns(single), rtol=1e-5, atol=1e-5)
        forwards = [r["forwards"] for r in records]
        assert all(f > 0 for f in forwards) if launch == "computes" else forwards == [0, 0]
    assert len(list(cache.glob("*.safetensors"))) == 1
