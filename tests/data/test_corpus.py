import json

import numpy as np
import pytest

from motion_align.data import corpus as corpus_module
from motion_align.data.corpus import CorpusConfig, build_corpus, generate_clip, read_corpus_record
from motion_align.data.text_motion import iter_items, to_dataset
from motion_align.data.timelines import heldout_compositions
from motion_align.motion.features import joints_from_features
from motion_align.motion.humanml3d import read_captions, read_events, read_features, read_split
from motion_align.motion.normalization import Normalizer
from motion_align.motion.skeleton import BONE_LENGTHS, FEATURE_DIM, bone_lengths

NUM_CLIPS = 40


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "corpus"
    record = build_corpus(root, CorpusConfig(num_clips=NUM_CLIPS, seed=3, workers=2), progress=False)
    return root, record


def test_corpus_is_a_complete_humanml3d_folder(corpus):
    root, record = corpus
    for name in ("new_joint_vecs", "new_joints", "texts"):
        assert len(list((root / name).iterdir())) == NUM_CLIPS
    for name in ("Mean.npy", "Std.npy", "events.jsonl", "corpus.json"):
        assert (root / name).is_file()
    assert read_corpus_record(root) == record
    everything = read_split(root, "all")
    assert len(everything) == NUM_CLIPS
    train, val, test = (set(read_split(root, s)) for s in ("train", "val", "test"))
    assert train | val | test == set(everything)
    assert not (train & val or train & test or val & test)
    assert set(read_split(root, "train_val")) == train | val
    assert set(read_split(root, "test")) == set(read_split(root, "test_seen")) | set(
        read_split(root, "test_heldout")
    )
    assert sum(record["splits"][s] for s in ("train", "val", "test_seen", "test_heldout")) == NUM_CLIPS


def test_heldout_compositions_appear_only_in_test(corpus):
    root, _ = corpus
    events = read_events(root)
    heldout = set(read_split(root, "test_heldout"))
    for clip_id, clip_events in events.items():
        assert bool(heldout_compositions(clip_events)) == (clip_id in heldout)


def test_clips_are_plausible_and_labelled(corpus):
    root, _ = corpus
    events = read_events(root)
    for clip_id in read_split(root, "all"):
        features = read_features(root, clip_id)
        assert 40 <= len(features) <= 196 and features.shape[1] == FEATURE_DIM
        joints = joints_from_features(features)
        assert np.abs(bone_lengths(joints)[:, 1:] - BONE_LENGTHS[1:]).max() < 1e-3
        assert joints[..., 1].min() > -0.01
        captions = read_captions(root, clip_id)
        whole = [c for c in captions if c.start == 0 and c.end == 0]
        assert len(whole) >= 3 and len({c.text for c in whole}) == len(whole)
        for segment in (c for c in captions if c.end > 0):
            assert 0 <= segment.start < segment.end <= len(features) / 20 + 1e-6
        spans = [(e.start, e.end) for e in events[clip_id]]
        assert all(0 <= s < e <= len(features) + 1 for s, e in spans)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_statistics_are_group_averaged_over_the_whole_corpus(corpus):
    root, _ = corpus
    mean, std = Normalizer.load(root).as_tuple()
    frames = np.concatenate([read_features(root, i) for i in read_split(root, "all")])
    np.testing.assert_allclose(mean, frames.astype(np.float64).mean(0), atol=1e-5)
    assert np.all(std > 0)
    assert np.allclose(std[4:67], std[4])  # one value per group


def test_same_seed_same_clip_regardless_of_workers():
    config = CorpusConfig(num_clips=4, seed=11)
    a, b = generate_clip(2, config), generate_clip(2, config)
    assert np.array_equal(a.clip.features, b.clip.features)
    assert [c.text for c in a.clip.captions] == [c.text for c in b.clip.captions]
    assert not np.array_equal(a.clip.features[:10], generate_clip(3, config).clip.features[:10])


def test_dataset_conversion_has_events(corpus):
    root, _ = corpus
    dataset = to_dataset(root, "train")
    assert len(dataset) == sum(1 for _ in iter_items(root, "train"))
    row = dataset[0]
    assert row["length"] == len(row["features"]) and len(row["captions"]) >= 1
    whole = [r for r in dataset if "#" not in r["id"]]
    assert whole and all(json.loads(r["events"]) for r in whole)


def test_a_crash_leaves_no_half_corpus(tmp_path, monkeypatch):
    def broken(index, config):
        if index == 3:
            raise RuntimeError("synthesiser crashed")
        return generate_clip(index, config)

    monkeypatch.setattr(corpus_module, "generate_clip", broken)
    root = tmp_path / "corpus"
    with pytest.raises(RuntimeError, match="synthesiser crashed"):
        build_corpus(root, CorpusConfig(num_clips=6, workers=1), progress=False)
    assert list(tmp_path.iterdir()) == []
