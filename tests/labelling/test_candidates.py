"""Candidates (a generations folder, a pair dataset) into the store, and their renders: drawn ahead in the
background, cached on disk, decoded by the motion tokenizer where the motions are token strings."""

import json
import time

import numpy as np
import pytest
from datasets import Dataset
from labelling_helpers import CODEBOOK, generations_folder
from PIL import Image

from motion_align.data.preferences import save_preferences
from motion_align.labelling.candidates import read_candidates
from motion_align.labelling.render_cache import PairRenderer
from motion_align.labelling.store import LabelStore
from motion_align.policy.generation import record_motion_tokenizer
from motion_align.policy.vocab import MotionVocab


def test_generations_folder_pairs_valid_samples_in_turn(tiny_corpus, tmp_path):
    folder = generations_folder(tiny_corpus, tmp_path / "gen", prompts=2, samples=3)
    lines = (folder / "generations.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    rows[1]["valid"] = False  # prompt 0: samples 0 and 2 are paired; prompt 1: 0 and 1, and 2 is left alone
    (folder / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs, info = read_candidates(folder, codebook_size=CODEBOOK)
    vocab = MotionVocab(CODEBOOK)
    assert [(p["motion_a"], p["motion_b"]) for p in pairs] == [
        (vocab.codes_to_string(rows[0]["codes"]), vocab.codes_to_string(rows[2]["codes"])),
        (vocab.codes_to_string(rows[3]["codes"]), vocab.codes_to_string(rows[4]["codes"])),
    ]
    assert pairs[0]["features_a"] == str((folder / rows[0]["files"][0]).resolve())
    assert (info["kind"], info["invalid"], info["pairs"]) == ("generations", 1, 2)
    with pytest.raises(ValueError, match="pass --codebook-size"):
        read_candidates(folder)
    del rows[3]["codes"]
    (folder / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"generations\.jsonl line 4: field 'codes': missing"):
        read_candidates(folder, codebook_size=CODEBOOK)


def test_renders_are_drawn_ahead_cached_and_loop(tiny_corpus, tmp_path):
    folder = generations_folder(tiny_corpus, tmp_path / "gen", prompts=3)
    store = LabelStore(tmp_path / "labels.db")
    store.add_pairs(read_candidates(folder, codebook_size=CODEBOOK)[0])
    renderer = PairRenderer(store, tmp_path / "renders", size=(96, 96))
    ids = [p["pair_id"] for p in store.pairs()]
    assert renderer.prefetch([(ids[0], "a"), (ids[1], "b")]) == 2
    assert renderer.prefetch([(ids[0], "a")]) == 0  # queued already: not twice
    first = renderer.get(ids[1], "b")  # waits for the background thread (or draws it)
    deadline = time.monotonic() + 60
    while not renderer.path(ids[0], "a").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert renderer.path(ids[0], "a").is_file()  # drawn in the background, never asked for
    stamp = first.stat().st_mtime_ns
    assert renderer.get(ids[1], "b") == first and first.stat().st_mtime_ns == stamp  # from the cache
    with Image.open(first) as gif:
        frames = max(len(np.load(store.pair(ids[1])[f"features_{s}"])) for s in "ab")
        assert gif.n_frames == frames and gif.info["loop"] == 0 and gif.size[0] >= 2 * 96
    assert not renderer.path(ids[2], "a").exists()
    renderer.close()


def test_a_pair_dataset_renders_through_the_policys_motion_tokenizer(motion_tokenizer_dir, tmp_path):
    from motion_tokenizer import MotionVQVAE

    size = MotionVQVAE.from_pretrained(str(motion_tokenizer_dir)).config.codebook_size
    vocab = MotionVocab(size)
    rows = [
        {
            "prompt": "a person jumps.",
            "chosen": vocab.codes_to_string([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
            "rejected": vocab.codes_to_string([5] * 12),
            "degree": "better",
            "source": "judge",
        },
        {
            "prompt": "a person waves.",
            "chosen": vocab.codes_to_string([3] * 10),
            "rejected": vocab.codes_to_string([3] * 10),
            "degree": "unsure",
            "source": "judge",
        },
    ]
    policy = tmp_path / "policy"
    policy.mkdir()
    record_motion_tokenizer(policy, str(motion_tokenizer_dir))
    pairs_dir = save_preferences(Dataset.from_list(rows), tmp_path / "pairs", sampled_from=policy)
    pairs, info = read_candidates(pairs_dir)
    assert len(pairs) == 1 and info["same_motion"] == 1  # the second pair compares a motion with itself
    assert info["motion_tokenizer"] == str(motion_tokenizer_dir)
    store = LabelStore(tmp_path / "labels.db")
    store.add_pairs(pairs)
    (pair_id,) = [p["pair_id"] for p in store.pairs()]
    blind = PairRenderer(store, tmp_path / "blind", size=(64, 64))
    with pytest.raises(RuntimeError, match="no motion tokenizer is known .* --tokenizer"):
        blind.get(pair_id, "a")
    renderer = PairRenderer(store, tmp_path / "renders", info["motion_tokenizer"], size=(64, 64))
    with Image.open(renderer.get(pair_id, "a")) as gif:
        assert gif.n_frames == 4 * 12  # the longer motion: 12 codes of 4 frames each
