"""KIT-ML through the whole pipeline, by its entry points: tokenizer training, tokenization, SFT, alignment
(IPO-LoRA), evaluator training, evaluation and rendering all read the dataset from the folder (251-d).

The KIT-ML folder is made from the tiny procedural corpus: its SMPL-22 joints are mapped onto KIT's 21
joints (the metatarsals halfway between ankle and toe), in millimetres, and turned into KIT features at
12.5 fps by ``features_from_joints(..., skeleton="kit")``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, random_pairs, run_script

from motion_align.cli import main
from motion_align.motion.features import features_from_joints, mirror_joints
from motion_align.motion.humanml3d import Clip, read_captions, read_joints, read_split, write_humanml3d
from motion_align.motion.skeleton import KIT, skeleton_for_features

#: KIT joint -> SMPL-22 joint(s) it is taken from (two: their midpoint).
KIT_FROM_SMPL = {
    "root": (0,), "lower_back": (3,), "upper_back": (9,), "neck": (12,), "head": (15,),
    "right_shoulder": (17,), "right_elbow": (19,), "right_wrist": (21,),
    "left_shoulder": (16,), "left_elbow": (18,), "left_wrist": (20,),
    "right_hip": (2,), "right_knee": (5,), "right_ankle": (8,), "right_metatarsal": (8, 11),
    "right_toe": (11,), "left_hip": (1,), "left_knee": (4,), "left_ankle": (7,), "left_metatarsal": (7, 10),
    "left_toe": (10,),
}  # fmt: skip


def kit_joints(smpl: np.ndarray) -> np.ndarray:
    """(T, 22, 3) metres -> (T, 21, 3) millimetres on KIT's joints."""
    return 1000.0 * np.stack([smpl[:, list(KIT_FROM_SMPL[name])].mean(1) for name in KIT.joint_names], 1)


@pytest.fixture(scope="module")
def kit_corpus(tiny_corpus, tmp_path_factory) -> Path:
    """The tiny corpus as a KIT-ML folder; every clip in every split (enough items for R-precision)."""
    ids = sorted({i for split in ("train", "val", "test") for i in read_split(tiny_corpus, split)})
    clips = []
    for clip_id in ids:  # each clip and its mirror image (HumanML3D's "M" clips): enough for R-precision
        joints, captions = read_joints(tiny_corpus, clip_id), read_captions(tiny_corpus, clip_id)
        mirrored = (f"M{clip_id}", mirror_joints(joints), [c.mirrored() for c in captions])
        for name, smpl, texts in ((clip_id, joints, captions), mirrored):
            features = features_from_joints(kit_joints(smpl), fps=20, skeleton="kit")
            clips.append(Clip(name, features, None, texts))
    ids = [clip.id for clip in clips]
    return write_humanml3d(
        tmp_path_factory.mktemp("kit") / "KIT-ML", clips, dict.fromkeys(("train", "val", "test"), ids)
    )


def run_recipe(recipe: str, argv: list[str], monkeypatch) -> None:
    assert run_script(recipe, [*argv, "--disable_tqdm", "true"], monkeypatch) == 0


def test_kit_ml_through_tokenizer_sft_alignment_evaluation_and_rendering(kit_corpus, tmp_path, monkeypatch):
    assert skeleton_for_features(np.load(kit_corpus / "Mean.npy").shape[0]) is KIT
    run_recipe("recipes/train_tokenizer.py", ["--config", str(REPO / "recipes/tokenizer/tiny.yaml"),
               "--data_dir", str(kit_corpus), "--output_dir", str(tmp_path / "tok"), "--max_steps", "2",
               "--eval_max_clips", "2", "--save_steps", "100"], monkeypatch)  # fmt: skip
    config = json.loads((tmp_path / "tok" / "config.json").read_text())
    assert config["nfeats"] == 251
    assert main(["tokenize", "--tokenizer", str(tmp_path / "tok"), "--data", str(kit_corpus),
                 "--out", str(tmp_path / "codes")]) == 0  # fmt: skip
    run_recipe("recipes/sft.py", ["--config", str(REPO / "recipes/llama/sft/config_tiny.yaml"), "--data_dir",
               str(tmp_path / "codes"), "--output_dir", str(tmp_path / "sft"), "--max_steps", "4",
               "--save_strategy", "no", "--eval_strategy", "no"], monkeypatch)  # fmt: skip
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(row) + "\n" for row in random_pairs(16, config["codebook_size"])))
    run_recipe("recipes/dpo_ipo.py", ["--config", str(REPO / "recipes/llama/dpo_ipo/config_ipo_lora.yaml"),
               "--model_name_or_path", str(tmp_path / "sft"), "--dataset_name", str(pairs), "--output_dir",
               str(tmp_path / "ipo"), "--max_steps", "1", "--eval_strategy", "no", "--save_strategy", "no",
               "--per_device_train_batch_size", "4", "--bf16", "false"], monkeypatch)  # fmt: skip
    run_recipe("recipes/train_evaluator.py", ["--config", str(REPO / "recipes/evaluator/tiny.yaml"),
               "--data_dir", str(kit_corpus), "--output_dir", str(tmp_path / "evaluator"),
               "--max_steps", "2"], monkeypatch)  # fmt: skip
    assert json.loads((tmp_path / "evaluator" / "config.json").read_text())["nfeats"] == 251
    assert main(["evaluate", "--data", str(kit_corpus), "--evaluator", str(tmp_path / "evaluator"),
                 "--policy", f"sft={tmp_path / 'sft'}", "--policy", f"ipo={tmp_path / 'ipo'}",
                 "--motion-tokenizer", str(tmp_path / "tok"), "--out", str(tmp_path / "eval"),
                 "--repeats", "2", "--mm-prompts", "2", "--mm-samples", "10", "--grammar", "ipo",
                 "--generation-rounds", "1"]) == 0  # fmt: skip
    record = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(record["rows"]) == {"real", "reconstruction", "sft", "ipo"}
    assert all("events" not in row for row in record["rows"].values())  # the event judge reads SMPL-22 only
    assert np.isfinite(record["rows"]["ipo"]["metrics"]["FID"]["mean"])
    assert record["rows"]["ipo"]["motion_grammar"] and record["rows"]["ipo"]["placeholders"] == 0
    clip_id = read_split(kit_corpus, "test")[0]
    assert main(["render", str(kit_corpus), "--id", clip_id, "--out", str(tmp_path / "render"),
                 "--formats", "png"]) == 0  # fmt: skip
    assert list((tmp_path / "render").glob("*.png"))
    assert main(["generate", "--model", str(tmp_path / "ipo"), "--prompt", "a person walks forward",
                 "--num-samples", "1", "--out", str(tmp_path / "gen"), "--formats", "png"]) == 0  # fmt: skip
    saved = [np.load(path) for path in (tmp_path / "gen").rglob("sample_*.npy")]
    assert saved and all(array.ndim == 2 and array.shape[1] == 251 for array in saved)
