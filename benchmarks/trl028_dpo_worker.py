"""One DPO benchmark run of ``trl==0.28``'s DPOTrainer, the last TRL whose DPOTrainer trains encoder-decoders.

    <side venv>/bin/python benchmarks/trl028_dpo_worker.py RUN_FOLDER

Runs in the side environment that ``benchmarks/dpo_throughput.py`` creates (trl 0.28 and the transformers,
peft, accelerate and datasets of its time; see ``trl028_venv.py``) and imports nothing of motion_align.
``RUN_FOLDER`` holds what the driver exported from the main environment: ``model/`` (the policy and its
tokenizer, ``save_pretrained``, safetensors), ``pairs.json`` (``prompt``/``chosen``/``rejected`` rows) and
``run.json`` (the settings and the LoRA config). Prints one line ``DPO_BENCH_RESULT {json}``: pairs/s, step
times, memory (:mod:`train_meters`), the seconds TRL spent precomputing the reference log-probs, and those
of the first pairs, which the driver compares with MotionDPOTrainer's to show both trained the same model on
the same tokens.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_meters import MemoryMeter, StepClock, step_figures  # noqa: E402

RESULT_PREFIX = "DPO_BENCH_RESULT "


def untie_declared_output(model: Any) -> None:
    """Drop the weight ties the loaded weights do not honour from ``model._tied_weights_keys`` (a T5 with its
    own ``lm_head``: transformers 5 declares it tied), so that PEFT gives the ``lm_head`` its own
    trainable-token rows, as ``motion_align.policy.lora.declare_untied_output`` does in the main run."""
    declared = getattr(model, "_tied_weights_keys", None)
    if not isinstance(declared, dict):
        return
    params = dict(model.named_parameters(remove_duplicate=False))
    model._tied_weights_keys = {
        t: s for t, s in declared.items() if t not in params or s not in params or params[t] is params[s]
    }


def lora_config(fields: dict[str, Any]) -> Any:
    """The run's LoraConfig, keeping the fields this peft knows (the main run's peft may be newer)."""
    from peft import LoraConfig

    known = {f.name for f in dataclasses.fields(LoraConfig)}
    dropped = sorted(set(fields) - known)
    if dropped:
        print(f"LoRA fields unknown to this peft, left out: {dropped}", file=sys.stderr)
    return LoraConfig(**{k: v for k, v in fields.items() if k in known})


def measure(folder: Path) -> dict[str, Any]:
    import peft
    import transformers
    import trl
    from datasets import Dataset
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    run = json.loads((folder / "run.json").read_text())
    torch.set_num_threads(run["threads"])
    versions = {m.__name__: m.__version__ for m in (torch, transformers, trl, peft)}
    result: dict[str, Any] = {"versions": versions, "error": None}
    reference_s: list[float] = []

    class TimedDPOTrainer(DPOTrainer):  # trl 0.28 precomputes the reference log-probs in here
        def get_train_dataloader(self):
            start = time.perf_counter()
            loader = super().get_train_dataloader()
            reference_s.append(time.perf_counter() - start)
            return loader

    tokenizer = AutoTokenizer.from_pretrained(folder / "model")
    model = AutoModelForSeq2SeqLM.from_pretrained(folder / "model", dtype=torch.float32)
    untie_declared_output(model)
    on_gpu, total = torch.cuda.is_available(), run["warmup"] + run["steps"]
    args = DPOConfig(
        output_dir=tempfile.mkdtemp(),
        loss_type="sigmoid",
        beta=run["beta"],
        learning_rate=run["learning_rate"],
        lr_scheduler_type="cosine",
        warmup_steps=0,
        per_device_train_batch_size=run["batch_size"],
        max_steps=total,
        gradient_checkpointing=False,
        disable_dropout=True,
        precompute_ref_log_probs=True,
        precompute_ref_batch_size=run["precompute_batch_size"],
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        use_cpu=not on_gpu,
        dataloader_pin_memory=False,
        logging_steps=total,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=run["seed"],
    )
    data = Dataset.from_list(json.loads((folder / "pairs.json").read_text()))
    clock, meter = StepClock(), MemoryMeter()
    try:
        trainer = TimedDPOTrainer(
            model,
            args=args,
            train_dataset=data,
            processing_class=tokenizer,
            peft_config=lora_config(run["lora"]),
        )
        trainer.get_train_dataloader()  # trl 0.28 precomputes here: done before the memory meter starts
        trainer.add_callback(clock)
        meter.start()
        output = trainer.train()
    except Exception as err:  # shown in the table
        return {**result, "error": f"{type(err).__name__}: {str(err).splitlines()[0]}"}
    result.update(meter.stop())
    result.update(step_figures(clock, run["batch_size"], run["warmup"], run["steps"]))
    probe = trainer.train_dataset.select(range(min(run["probe_pairs"], len(trainer.train_dataset))))
    params = {id(p): p for p in trainer.model.parameters()}.values()
    result.update(
        reference_s=reference_s[0],  # the first call: train() calls it again, precomputed by then
        reference_probe=[list(probe["ref_chosen_logps"]), list(probe["ref_rejected_logps"])],
        train_loss=output.training_loss,
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
    )
    return result


if __name__ == "__main__":
    print(RESULT_PREFIX + json.dumps(measure(Path(sys.argv[1]))), flush=True)
