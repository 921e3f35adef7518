"""Importing MotionGPT's and T2M-GPT's checkpoints, on tiny checkpoints built here in their exact key layout.

Upstream layouts (OpenMotionLab/MotionGPT, Mael-zys/T2M-GPT):

- VQ-VAE keys and shapes: T2M-GPT ``models/encdec.py`` (``Encoder``/``Decoder``: ``nn.Sequential`` ``model``),
  ``models/resnet.py`` (``Resnet1D``: ``model`` of ``ResConv1DBlock`` with ``conv1`` k3 dilated, ``conv2``
  k1, ``reverse_dilation``), ``models/quantize_cnn.py`` (``QuantizeEMAReset``: the ``codebook`` buffer);
  MotionGPT keeps them under ``vae.`` (``mGPT/archs/mgpt_vq.py``), T2M-GPT's ``net_last.pth`` under ``net`` /
  ``vqvae.``.
- Language model: MotionGPT ``mGPT/archs/mgpt_lm.py``: ``T5ForConditionalGeneration`` of the base,
  ``AutoTokenizer(base, legacy=True)``, ``add_tokens(<motion_id_0> ... <motion_id_{K+2}>)``,
  ``resize_token_embeddings(len(tokenizer))``; saved by Lightning under ``state_dict`` /
  ``lm.language_model.``.

The reference forward below is written from that published architecture with ``F.conv1d`` on the raw
checkpoint tensors, independently of ``motion_tokenizer``'s modules.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, T5Config, T5ForConditionalGeneration

from motion_align.cli import main
from motion_align.policy.model import format_prompt, load_policy
from motion_align.policy.prompts import MOTIONGPT, template_of
from motion_align.policy.text_tokenizer import train_text_tokenizer
from motion_align.policy.vocab import MotionVocab
from motion_tokenizer import MotionVQVAE

NFEATS, WIDTH, CODES, DEPTH, DOWN_T, GROWTH = 263, 16, 512, 3, 2, 3  # MotionGPT's 512 codes
#: The published recipe's GPU settings swapped for a CPU, and 2 steps.
CPU_FLAGS = ["--bf16", "false", "--optim", "adamw_torch", "--max_steps", "2",
             "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "4", "--warmup_steps", "0",
             "--save_strategy", "no", "--eval_strategy", "no", "--disable_tqdm", "true"]  # fmt: skip
CAPTIONS = [
    "a person walks forward",
    "a man jumps twice",
    "someone waves with the left hand",
    "a person sits",
]


def upstream_vqvae_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """T2M-GPT's VQ-VAE keys (no prefix) and shapes for width 16, 32 codes, depth 3, down_t 2, stride 2."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def conv(name: str, out: int, inp: int, kernel: int) -> None:
        state[f"{name}.weight"] = torch.randn(out, inp, kernel, generator=g) / (inp * kernel) ** 0.5
        state[f"{name}.bias"] = torch.randn(out, generator=g) * 0.01

    def stack(name: str) -> None:
        for j in range(DEPTH):
            conv(f"{name}.model.{j}.conv1", WIDTH, WIDTH, 3)
            conv(f"{name}.model.{j}.conv2", WIDTH, WIDTH, 1)

    conv("encoder.model.0", WIDTH, NFEATS, 3)
    for i in range(DOWN_T):
        conv(f"encoder.model.{2 + i}.0", WIDTH, WIDTH, 4)
        stack(f"encoder.model.{2 + i}.1")
    conv(f"encoder.model.{2 + DOWN_T}", WIDTH, WIDTH, 3)
    state["quantizer.codebook"] = torch.randn(CODES, WIDTH, generator=g)
    conv("decoder.model.0", WIDTH, WIDTH, 3)
    for i in range(DOWN_T):
        stack(f"decoder.model.{2 + i}.0")
        conv(f"decoder.model.{2 + i}.2", WIDTH, WIDTH, 3)
    conv(f"decoder.model.{2 + DOWN_T}", WIDTH, WIDTH, 3)
    conv(f"decoder.model.{4 + DOWN_T}", NFEATS, WIDTH, 3)
    return state


def reference_codes_and_features(state, mean, std, features):
    """The published forward on raw tensors: normalise, encode, nearest code, decode, denormalise."""

    def conv(h, name, stride=1, padding=1, dilation=1):
        return F.conv1d(h, state[f"{name}.weight"], state[f"{name}.bias"], stride, padding, dilation)

    def stack(h, name):
        for j, dilation in enumerate([GROWTH**k for k in range(DEPTH)][::-1]):  # reversed: 9, 3, 1
            r = conv(F.relu(h), f"{name}.model.{j}.conv1", padding=dilation, dilation=dilation)
            h = h + conv(F.relu(r), f"{name}.model.{j}.conv2", padding=0)
        return h

    h = ((features - mean) / std).T[None]  # (1, 263, T)
    h = F.relu(conv(h, "encoder.model.0"))
    for i in range(DOWN_T):
        h = stack(conv(h, f"encoder.model.{2 + i}.0", stride=2), f"encoder.model.{2 + i}.1")
    z = conv(h, f"encoder.model.{2 + DOWN_T}")[0].T  # (T/4, D)
    codes = torch.cdist(z, state["quantizer.codebook"]).argmin(dim=1)
    h = F.relu(conv(state["quantizer.codebook"][codes].T[None], "decoder.model.0"))
    for i in range(DOWN_T):
        h = stack(h, f"decoder.model.{2 + i}.0")
        h = conv(F.interpolate(h, scale_factor=2, mode="nearest"), f"decoder.model.{2 + i}.2")
    h = conv(F.relu(conv(h, f"decoder.model.{2 + DOWN_T}")), f"decoder.model.{4 + DOWN_T}")
    return codes, h[0].T * std + mean


@pytest.fixture(scope="module")
def upstream(tmp_path_factory, tiny_corpus) -> dict:
    """A tiny Flan-T5-like base folder, and MotionGPT's and T2M-GPT's checkpoints built from it."""
    root = tmp_path_factory.mktemp("upstream")
    base = root / "flan-t5-tiny"
    tokenizer = train_text_tokenizer([format_prompt(c) for c in CAPTIONS] * 4, "t5", vocab_size=200)
    config = T5Config(vocab_size=len(tokenizer), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                      tie_word_embeddings=False, decoder_start_token_id=tokenizer.pad_token_id,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    tokenizer.save_pretrained(base)
    config.save_pretrained(base)
    # MotionGPT's language model, built as mgpt_lm.py builds it
    lm_tokenizer = AutoTokenizer.from_pretrained(base, legacy=True)
    lm_tokenizer.add_tokens([f"<motion_id_{i}>" for i in range(CODES + 3)])
    torch.manual_seed(0)
    lm = T5ForConditionalGeneration(config)
    lm.resize_token_embeddings(len(lm_tokenizer))
    lm.eval()
    vq = upstream_vqvae_state()
    state = {**{f"vae.{k}": v for k, v in vq.items()},
             **{f"lm.language_model.{k}": v.clone() for k, v in lm.state_dict().items()}}  # fmt: skip
    torch.save({"epoch": 3, "global_step": 99, "state_dict": state}, root / "motiongpt.tar")
    torch.save({"net": {f"vqvae.{k}": v for k, v in vq.items()}}, root / "net_last.pth")
    return {"root": root, "base": base, "lm": lm, "lm_tokenizer": lm_tokenizer, "vq": vq,
            "stats": tiny_corpus, "state": state}  # fmt: skip


def run_import(
    upstream, out: Path, *extra: str, kind: str = "motiongpt", checkpoint: Path | None = None
) -> int:
    name = "motiongpt.tar" if kind == "motiongpt" else "net_last.pth"
    argv = ["import", kind, "--checkpoint", str(checkpoint or upstream["root"] / name),
            "--mean-std", str(upstream["stats"]), "--out", str(out), *extra]  # fmt: skip
    if kind == "motiongpt":
        argv += ["--base", str(upstream["base"])]
    return main(argv)


def corpus_clip(folder: Path, frames: int = 48) -> torch.Tensor:
    clip = sorted((folder / "new_joint_vecs").glob("*.npy"))[0]
    return torch.from_numpy(np.load(clip)[:frames].astype(np.float32))


@pytest.mark.parametrize("kind", ["motiongpt", "t2m-gpt"])
def test_the_imported_tokenizer_encodes_and_decodes_as_the_published_vqvae(upstream, tmp_path, kind):
    assert run_import(upstream, tmp_path / "out", kind=kind) == 0
    tokenizer = MotionVQVAE.from_pretrained(tmp_path / "out" / "tokenizer").eval()
    config = tokenizer.config
    sizes = (
        config.width,
        config.code_dim,
        config.codebook_size,
        config.depth,
        config.down_t,
        config.stride_t,
    )
    assert sizes == (WIDTH, WIDTH, CODES, DEPTH, DOWN_T, 2)
    mean = torch.from_numpy(np.load(upstream["stats"] / "Mean.npy"))
    std = torch.from_numpy(np.load(upstream["stats"] / "Std.npy"))
    features = corpus_clip(upstream["stats"])
    codes, decoded = reference_codes_and_features(upstream["vq"], mean, std, features)
    with torch.no_grad():
        ours = tokenizer.encode(features[None])[0]
        assert ours.tolist() == codes.tolist()
        ours_decoded = tokenizer.decode(ours[None])[0]
    assert torch.allclose(ours_decoded, decoded, atol=1e-5)
    assert (tmp_path / "out" / "policy").is_dir() == (kind == "motiongpt")


def test_the_imported_policy_gives_motiongpts_logits_through_stock_and_toolkit_loaders(upstream, tmp_path):
    assert run_import(upstream, tmp_path / "out") == 0
    folder = tmp_path / "out" / "policy"
    vocab = MotionVocab(CODES)
    prompt, motion = format_prompt("a person walks forward"), vocab.codes_to_string([3, 17, 17, 30])
    reference_tokenizer = upstream["lm_tokenizer"]
    inputs = reference_tokenizer(prompt, return_tensors="pt")
    labels = reference_tokenizer(motion, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = upstream["lm"](**inputs, labels=labels).logits
    stock = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    stock_tokenizer = AutoTokenizer.from_pretrained(folder)
    model, tokenizer = load_policy(folder, dropout=0.0)
    for m, t in ((stock, stock_tokenizer), (model.eval(), tokenizer)):
        assert (
            t(prompt).input_ids == inputs.input_ids[0].tolist() and t(motion).input_ids == labels[0].tolist()
        )
        assert vocab.ids(t)[0] == len(reference_tokenizer) - (CODES + 3)  # MotionGPT's order of motion ids
        with torch.no_grad():
            assert torch.allclose(
                m(**t(prompt, return_tensors="pt"), labels=labels).logits, expected, atol=1e-6
            )
    assert template_of(stock_tokenizer) == MOTIONGPT  # MotionGPT's prompts, recorded with its tokenizer
    recorded = json.loads((folder / "motion_tokenizer.json").read_text())["path"]
    assert (folder / recorded).resolve() == (tmp_path / "out" / "tokenizer").resolve()


def test_generate_runs_on_the_imported_policy_through_its_tokenizer(upstream, tmp_path):
    assert run_import(upstream, tmp_path / "out") == 0
    out = tmp_path / "gen"
    argv = ["generate", "--model", str(tmp_path / "out" / "policy"), "--prompt", "a person walks forward",
            "--num-samples", "2", "--formats", "png", "--out", str(out), "--seed", "0"]  # fmt: skip
    assert main(argv) == 0
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(row["prompt"] == "a person walks forward" for row in rows)


def save_variant(upstream, path: Path, change) -> Path:
    state = dict(upstream["state"])
    container = {"epoch": 3, "state_dict": state}
    change(state, container)
    torch.save(container, path)
    return path


BAD = {
    "an unexpected key": (lambda s, c: s.update({"vae.encoder.model.9.weight": torch.zeros(1)}),
                          "unexpected keys ['vae.encoder.model.9.weight']"),
    "a missing key": (lambda s, c: s.pop("vae.decoder.model.2.2.bias"),
                      "missing keys ['vae.decoder.model.2.2.bias']"),
    "a wrong shape": (lambda s, c: s.update({"vae.decoder.model.6.bias": torch.zeros(7)}),
                      "key vae.decoder.model.6.bias has shape (7,), expected (263,)"),
    "a language model of another vocabulary": (
        lambda s, c: s.update({"lm.language_model.shared.weight": s["lm.language_model.shared.weight"][:-3]}),
        "shared.weight has"),
    "a wrong prefix": (lambda s, c: c.update(state_dict={k.replace("vae.", "vqvae.", 1): v
                                                         for k, v in s.items()}),
                       "no key of 'state_dict' starts with 'vae.'"),
    "a pickled class": (lambda s, c: c.update({"hyper_parameters": argparse.Namespace(lr=1e-4)}),
                        "the class argparse.Namespace"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_checkpoints_name_the_problem_and_write_nothing(upstream, tmp_path, capsys, case):
    change, words = BAD[case]
    checkpoint = save_variant(upstream, tmp_path / "bad.tar", change)
    assert run_import(upstream, tmp_path / "out", checkpoint=checkpoint) == 2
    err = capsys.readouterr().err
    assert "bad.tar" in err and words in err, err
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar"]


def test_a_truncated_checkpoint_or_another_projects_layout_is_named(upstream, tmp_path, capsys):
    cut = tmp_path / "cut.tar"
    cut.write_bytes((upstream["root"] / "motiongpt.tar").read_bytes()[:5000])
    assert run_import(upstream, tmp_path / "out", checkpoint=cut) == 2
    assert "cut.tar: not a readable PyTorch checkpoint, cut short or damaged" in capsys.readouterr().err
    # T2M-GPT's file given as MotionGPT's: its entry and prefix are not there
    assert run_import(upstream, tmp_path / "out", checkpoint=upstream["root"] / "net_last.pth") == 2
    assert "net_last.pth: no 'state_dict' entry at the top level (found ['net'])" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_pickled_class_loads_only_with_the_explicit_opt_in(upstream, tmp_path):
    def add_hyper_parameters(state, container):
        container["hyper_parameters"] = argparse.Namespace(lr=1e-4)

    checkpoint = save_variant(upstream, tmp_path / "lightning.tar", add_hyper_parameters)
    assert run_import(upstream, tmp_path / "out", "--trust-checkpoint", checkpoint=checkpoint) == 0
    assert (tmp_path / "out" / "policy" / "model.safetensors").is_file()


def write_instructmotion_labels(root: Path, pairs: int = 12, seed: int = 0) -> Path:
    """InstructMotion's ``preference_data`` layout (``src/utils/motiongpt_utils.py`` reads it): one labels
    jsonl, and each sample's codes as ``tokens/<id>_<k>_token.npy`` (1, N) beside its ``features`` path."""
    rng = np.random.default_rng(seed)
    data = root / "preference_data"
    (data / "tokens").mkdir(parents=True)
    degrees = ["Much better", "Better", "Slightly better", "Negligibly better/unsure"]
    with open(data / "preference_labels.jsonl", "w") as labels:
        for i in range(pairs):
            record = {"id": i, "prompt": CAPTIONS[i % len(CAPTIONS)],
                      "chosen": [{"choice": f"sample_{1 + i % 2}", "degree of preference": degrees[i % 4],
                                  "user": "tester"}]}  # fmt: skip
            for k in (1, 2):
                record[f"sample_{k}"] = {"features": f"features/{i}_{k}.npy", "seed": int(rng.integers(1000))}
                codes = rng.integers(0, CODES, size=(1, int(rng.integers(10, 20))))
                np.save(data / "tokens" / f"{i}_{k}_token.npy", codes)
            labels.write(json.dumps(record) + "\n")
    return data


def test_motiongpt_on_instructmotion_labels_end_to_end_with_the_published_recipe(
    upstream, tmp_path, monkeypatch, capsys
):
    import runpy
    import sys

    from conftest import REPO, lora_moved

    from motion_align.data.preferences import load_preferences
    from motion_align.motion.features import joints_from_features
    from motion_align.motion.render import render_side_by_side

    imported = tmp_path / "motiongpt"
    assert run_import(upstream, imported) == 0
    data = write_instructmotion_labels(tmp_path)
    prefs = imported / "preferences"
    argv = ["pairs", "labels", "--labels", str(data / "preference_labels.jsonl"), "--tokens", str(data),
            "--codebook-size", str(CODES), "--out", str(prefs)]  # fmt: skip
    assert main(argv) == 0
    pairs = load_preferences(prefs, codebook_size=CODES)
    assert len(pairs) == 12 and set(pairs["source"]) == {"instructmotion"}
    # the pairs' motions decode through the imported tokenizer and render side by side
    tokenizer, vocab = MotionVQVAE.from_pretrained(imported / "tokenizer").eval(), MotionVocab(CODES)
    motions = []
    for side in ("chosen", "rejected"):
        codes = torch.tensor([vocab.decode(pairs[0][side]).codes])
        with torch.no_grad():
            features = tokenizer.decode(codes)[0].numpy()
        motions.append(joints_from_features(features))
        assert features.shape == (4 * codes.shape[1], NFEATS) and np.isfinite(features).all()
    rendered = render_side_by_side(motions, tmp_path / "pair0", caption=pairs[0]["prompt"],
                                   labels=("chosen", "rejected"), formats=("png",))  # fmt: skip
    assert all(path.is_file() for path in rendered)
    # the published recipe, 2 steps on the CPU
    out = tmp_path / "aligned"
    flags = ["--config", str(REPO / "recipes/motiongpt/config_ipo_lora.yaml"),
             "--model_name_or_path", str(imported / "policy"), "--dataset_name", str(prefs),
             "--output_dir", str(out), *CPU_FLAGS]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["recipes/dpo_ipo.py", *flags])
    runpy.run_path(str(REPO / "recipes/dpo_ipo.py"), run_name="__main__")
    info = json.loads((out / "training_info.json").read_text())
    assert info["method"] == "IPO-LoRA" and info["hyperparameters"]["learning_rate"] == 1e-3
    assert lora_moved(out) and load_policy(out)[0].config.is_encoder_decoder
    assert template_of(AutoTokenizer.from_pretrained(out)) == MOTIONGPT  # the policy's prompts, kept
    adapter = json.loads((out / "adapter_config.json").read_text())  # InstructMotion's LoRA: q and v only
    assert sorted(adapter["target_modules"]) == ["q", "v"] and not adapter.get("trainable_token_indices")


def test_every_command_of_docs_motiongpt_runs_as_written(upstream, tmp_path, hub):
    """docs/motiongpt.md's ``bash`` blocks after the first (which sets the variables), run in order by bash,
    with the variables pointing at stand-ins: the tiny checkpoint, a 48-clip corpus as HumanML3D, an untrained
    tiny evaluator, InstructMotion-format labels, the CPU flags, and the Hub stand-in."""
    import os
    import re
    import subprocess
    import sys

    from conftest import REPO
    from hub_stand_in import FAKE_TOKEN

    from motion_align.data.corpus import CorpusConfig, build_corpus
    from motion_align.evaluation.evaluator import EvaluatorConfig, MotionTextEvaluator

    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "docs/motiongpt.md").read_text(), re.S)
    assert blocks[0].startswith("export CKPT") and len(blocks) >= 7
    humanml3d = tmp_path / "humanml3d"
    build_corpus(humanml3d, CorpusConfig(num_clips=48, seed=3, workers=1), progress=False)
    evaluator = MotionTextEvaluator(EvaluatorConfig.preset("tiny"))
    evaluator.set_normalization_(np.load(humanml3d / "Mean.npy"), np.load(humanml3d / "Std.npy"))
    evaluator.save_pretrained(tmp_path / "evaluator")
    work = tmp_path / "work"
    work.mkdir()
    for name in ("recipes", "accelerate_configs"):
        (work / name).symlink_to(REPO / name)
    env = {**os.environ, "CKPT": str(upstream["root"] / "motiongpt.tar"), "BASE": str(upstream["base"]),
           "HUMANML3D": str(humanml3d), "PREFS": str(write_instructmotion_labels(tmp_path)),
           "EVALUATOR": str(tmp_path / "evaluator"), "TRAIN_FLAGS": " ".join(CPU_FLAGS),
           "EVAL_FLAGS": "--split all --num-prompts 32 --repeats 2 --mm-prompts 2 --mm-samples 4 --no-judge",
           "HUB_REPO": "user/motiongpt-ipo-lora", "HF_HOME": str(tmp_path / "hf_home"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
           "ACCELERATE_USE_CPU": "true"}  # fmt: skip
    env.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN=FAKE_TOKEN, HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0")
    script = "set -euo pipefail\n" + "\n".join(blocks[1:])
    proc = subprocess.run(
        ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    outputs = work / "outputs"
    rows = json.loads((outputs / "motiongpt/eval-aligned/metrics.json").read_text())["rows"]
    assert {"motiongpt", "ipo-lora"} <= set(rows)
    assert (hub.repo_path("user/motiongpt-ipo-lora") / "adapter_model.safetensors").is_file()
    assert proc.stdout.strip().splitlines()[-1].startswith("T5ForConditionalGeneration")
