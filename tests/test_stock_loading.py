"""What a second machine gets from the Hub (tests/hub_stand_in.py), for both families: an adapter pushed
with its base, motion tokenizer and preference data (`motion-align push --push-base/--push-tokenizer/
--push-dataset`),

- loads with stock `AutoPeftModelFor{Seq2Seq,Causal}LM` in a Python where motion_align cannot be imported, and
  gives the toolkit's logits (motion rows included), although the T5's output rows are untied;
- has a model card whose Python block runs as written there;
- generates with `motion-align generate --model <repo id>` (adapter or policy repo) as from the local folder,
  the motion tokenizer found by its Hub id in the repo's config, or in its card.

No uploaded file of any pushed repo names a folder of this machine."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_push import (
    TRAINING_INFO,
    Adapter,
    assert_no_local_path,
    logits,
    make_adapter,
    snapshot,
)

from motion_align.cli import main
from motion_align.policy.artifacts import fetch_artifact
from motion_align.policy.generation import find_motion_tokenizer, record_motion_tokenizer
from motion_align.policy.model import load_adapter_policy, load_policy
from motion_align.policy.vocab import MotionVocab
from motion_tokenizer import MotionVQVAE

FAMILIES = ("t5", "llama")
STOCK_CLASSES = {"t5": "AutoPeftModelForSeq2SeqLM", "llama": "AutoPeftModelForCausalLM"}
#: Run first in every stock process: an import of motion_align (or any of its modules) fails there.
NO_MOTION_ALIGN = 'import sys\nsys.modules["motion_align"] = None\n'
STOCK_LOGITS = (
    NO_MOTION_ALIGN
    + """
import peft, torch
from safetensors.torch import load_file, save_file

cls, repo, inputs, out = sys.argv[1:]
model = getattr(peft, cls).from_pretrained(repo).eval()
with torch.no_grad():
    save_file({"logits": model(**load_file(inputs)).logits.contiguous()}, out)
print(sorted(name for name, module in sys.modules.items() if name.startswith("motion") and module))
"""
)
RUN_SNIPPETS = (
    NO_MOTION_ALIGN
    + """
for path in sys.argv[1:]:
    exec(compile(open(path).read(), path, "exec"), {"__name__": "__main__"})
print(sorted(name for name, module in sys.modules.items() if name.startswith("motion") and module))
"""
)


@pytest.fixture(scope="module")
def pushable(tmp_path_factory, motion_tokenizer_dir, preference_inputs) -> dict[str, Adapter]:
    """Per family: a tiny base policy and a LoRA adapter trained on it (the motion tokenizer's codebook), as a
    recipe leaves them: base, motion tokenizer and preference data recorded by their local paths."""
    codebook = MotionVQVAE.from_pretrained(motion_tokenizer_dir).config.codebook_size
    made = {}
    for family in FAMILIES:
        adapter = make_adapter(family, tmp_path_factory.mktemp(f"stock_{family}"), codebook_size=codebook)
        for folder in (adapter.base, adapter.folder):
            record_motion_tokenizer(folder, str(motion_tokenizer_dir))
        local = {"base_model": str(adapter.base), "motion_tokenizer": str(motion_tokenizer_dir),
                 "dataset": str(preference_inputs["prefs"])}  # fmt: skip
        command = (f"accelerate launch recipes/dpo_ipo.py --model_name_or_path {adapter.base} --dataset_name "
                   f"{preference_inputs['prefs']} --motion_tokenizer {motion_tokenizer_dir}")  # fmt: skip
        info = {**TRAINING_INFO, **local, "family": family, "method": "IPO-LoRA", "command": command}
        (adapter.folder / "training_info.json").write_text(json.dumps(info))
        made[family] = adapter
    return made


def push(adapter: Adapter, family: str) -> dict[str, str]:
    """``motion-align push`` of the adapter with everything it names; the repo ids."""
    repos = {"adapter": f"user/{family}-ipo-lora", "base": f"user/{family}-sft",
             "tokenizer": "user/motion-vq", "dataset": "user/motion-prefs"}  # fmt: skip
    argv = ["push", "--folder", str(adapter.folder), "--repo-id", repos["adapter"],
            "--push-base", repos["base"], "--push-tokenizer", repos["tokenizer"],
            "--push-dataset", repos["dataset"]]  # fmt: skip
    assert main(argv) == 0
    return repos


def stock_env(hub, tmp_path: Path, pythonpath: str = "") -> dict[str, str]:
    """A fresh machine's environment: the stand-in as the Hub, an empty cache, no motion_align on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT=hub.endpoint, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf_home"),
               HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=pythonpath,
               OMP_NUM_THREADS=str(torch.get_num_threads()))  # the same kernels as this process  # fmt: skip
    return env


def run_stock(hub, tmp_path: Path, script: str, *args: str, python: str = sys.executable,
              pythonpath: str = "") -> str:  # fmt: skip
    """``script`` run by ``python`` (this venv's, or tests/test_stock_loading_clean_env.py's clean one)."""
    proc = subprocess.run([python, "-c", script, *args], env=stock_env(hub, tmp_path, pythonpath),
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    modules = proc.stdout.strip().splitlines()[-1]
    assert "motion_align" not in modules  # motion_tokenizer only, if anything
    return proc.stdout


@pytest.mark.parametrize("family", FAMILIES)
def test_stock_peft_loads_the_pushed_adapter_as_the_toolkit_does(
    family, pushable, hub, tmp_path, tmp_path_factory
):
    adapter = pushable[family]
    before = snapshot(adapter.folder)
    repos = push(adapter, family)
    assert snapshot(adapter.folder) == before  # the user's folder is never written
    config = json.loads((hub.repo_path(repos["adapter"]) / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == repos["base"]
    assert json.loads((hub.repo_path(repos["adapter"]) / "motion_tokenizer.json").read_text()) == {
        "path": repos["tokenizer"]}  # fmt: skip
    info = json.loads((hub.repo_path(repos["adapter"]) / "training_info.json").read_text())
    assert (info["base_model"], info["motion_tokenizer"], info["dataset"]) == (
        repos["base"], repos["tokenizer"], repos["dataset"])  # fmt: skip
    assert f"--model_name_or_path {repos['base']} --dataset_name {repos['dataset']}" in info["command"]
    every = [(repos[k], "model") for k in ("adapter", "base", "tokenizer")] + [(repos["dataset"], "dataset")]
    assert_no_local_path(hub, every, tmp_path_factory.getbasetemp())  # no file names a folder of this machine
    check_stock_logits(hub, adapter, repos, tmp_path)


def check_stock_logits(hub, adapter: Adapter, repos: dict[str, str], tmp_path: Path, **run) -> None:
    """Stock `AutoPeftModelFor...` (``run``: run_stock's python/pythonpath) gives the pushed adapter the
    toolkit loader's logits, motion rows included."""
    inputs = tmp_path / "inputs.safetensors"
    save_file({k: v.contiguous() for k, v in adapter.inputs.items()}, inputs)
    run_stock(hub, tmp_path, STOCK_LOGITS, STOCK_CLASSES[adapter.family], repos["adapter"], str(inputs),
              str(tmp_path / "stock.safetensors"), **run)  # fmt: skip
    stock = load_file(tmp_path / "stock.safetensors")["logits"]
    toolkit, tokenizer = load_adapter_policy(fetch_artifact(repos["adapter"]), merge=False)
    expected = logits(toolkit.eval(), adapter.inputs)
    torch.testing.assert_close(stock, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(stock, adapter.logits, atol=1e-6, rtol=0)  # what training left
    motion = MotionVocab.from_tokenizer(tokenizer).ids(tokenizer)  # the motion rows of the output layer
    torch.testing.assert_close(stock[..., motion], expected[..., motion], atol=1e-6, rtol=0)
    assert not torch.allclose(stock[..., motion], adapter.base_logits[..., motion], atol=1e-3)  # they moved
    merged, _ = load_policy(fetch_artifact(repos["adapter"]))  # the toolkit's default: the adapter merged
    torch.testing.assert_close(stock, logits(merged.eval(), adapter.inputs), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_cards_python_blocks_run_as_written(family, pushable, hub, tmp_path):
    repos = push(pushable[family], family)
    run_card_blocks(hub, repos, family, tmp_path)


def run_card_blocks(hub, repos: dict[str, str], family: str, tmp_path: Path, **run) -> None:
    """The Python block of each pushed card (adapter, base, motion tokenizer) run as written, in one stock
    process (``run``: run_stock's python/pythonpath)."""
    snippets = []
    for repo in (repos["adapter"], repos["base"], repos["tokenizer"]):
        readme = (hub.repo_path(repo) / "README.md").read_text()
        (block,) = re.findall(r"```python\n(.*?)```", readme, re.S)
        assert f'from_pretrained("{repo}")' in block and "motion_align" not in block
        snippets.append(tmp_path / f"{repo.replace('/', '_')}.py")
        snippets[-1].write_text(block)
    adapter_block = snippets[0].read_text()
    assert f"{STOCK_CLASSES[family]}.from_pretrained" in adapter_block
    assert f'MotionVQVAE.from_pretrained("{repos["tokenizer"]}")' in adapter_block
    out = run_stock(hub, tmp_path, RUN_SNIPPETS, *map(str, snippets), **run).strip().splitlines()
    assert re.fullmatch(r"\d+ codes (None|\(1, \d+, 263\))", out[-4]), out  # the adapter's block
    assert re.fullmatch(r"\d+ codes (None|\(1, \d+, 263\))", out[-3]), out  # the base policy's
    assert out[-2] == "(1, 16) (1, 64, 263)"  # the motion tokenizer's
    assert "'motion_tokenizer'" in out[-1]  # what the blocks imported besides transformers, peft, torch


def generate(model: str, out: Path, *flags: str) -> list[dict]:
    argv = ["generate", "--model", model, "--prompt", "a person walks forward and waves", "--num-samples",
            "1", "--greedy", "--grammar", "--formats", "png", "--out", str(out), *flags]  # fmt: skip
    assert main(argv) == 0
    return [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]


def test_generate_takes_an_adapter_repo_a_policy_repo_or_a_folder(
    pushable, hub, motion_tokenizer_dir, tmp_path
):
    adapter = pushable["t5"]
    repos = push(adapter, "t5")
    local = generate(str(adapter.folder), tmp_path / "gen_local")  # motion tokenizer: the folder's record
    from_hub = generate(repos["adapter"], tmp_path / "gen_hub")  # the motion tokenizer: by its recorded id
    assert [r["codes"] for r in from_hub] == [r["codes"] for r in local] and all(r["valid"] for r in from_hub)
    base_local = generate(str(adapter.base), tmp_path / "gen_base_local")
    base_hub = generate(repos["base"], tmp_path / "gen_base_hub")
    assert [r["codes"] for r in base_hub] == [r["codes"] for r in base_local]
    assert any("/user/motion-vq/resolve/main/config.json" in r for r in hub.requests)  # fetched by its id

    # the motion tokenizer from the card alone, then from the base the adapter names
    copy = Path(shutil.copytree(fetch_artifact(repos["adapter"]), tmp_path / "copy", symlinks=False))
    for name in ("motion_tokenizer.json", "training_info.json"):
        (copy / name).unlink()
    assert find_motion_tokenizer(copy) == repos["tokenizer"]  # README.md's motion_tokenizer metadata
    (copy / "README.md").unlink()
    assert find_motion_tokenizer(copy) == repos["tokenizer"]  # the base's (user/t5-sft) motion_tokenizer.json
    (copy / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "user/no-record"}))
    with pytest.raises(ValueError, match="does not record its motion tokenizer .* pass the motion tokenizer"):
        find_motion_tokenizer(copy, search_base=False)
