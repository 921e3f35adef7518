"""Tests of reading and writing HumanML3D folders (tiny random clips in tmp_path)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from motion_align.data.text_motion import iter_items, to_dataset
from motion_align.motion.events import Event
from motion_align.motion.humanml3d import (
    Caption,
    Clip,
    ClipWriter,
    MotionFormatError,
    mirror_caption_text,
    parse_caption_line,
    read_captions,
    read_events,
    read_features,
    read_joints,
    read_split,
    write_humanml3d,
)


def make_clip(
    clip_id: str, frames: int, seed: int = 0, captions: list[Caption] | None = None, events=None
) -> Clip:
    """A random clip: features (frames, 263) and joints (frames, 22, 3), float32."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((frames, 263)).astype(np.float32)
    joints = rng.standard_normal((frames, 22, 3)).astype(np.float32)
    if captions is None:
        captions = [Caption("a person walks forward.", ["a/DET", "person/NOUN", "walk/VERB", "forward/ADV"])]
    return Clip(clip_id, features, joints, captions, events)


WAVE = Event("wave", 2, limb="left")


def corpus() -> tuple[list[Clip], dict[str, list[str]]]:
    clips = [
        make_clip("000001", 60, 1, events=[Event("walk", 4, direction="forward", start=0, end=40), WAVE]),
        make_clip(
            "000002",
            250,
            2,
            captions=[
                Caption("a man kicks with his left leg.", ["a/DET", "man/NOUN", "kick/VERB", "left/ADJ"]),
                Caption("he jumps.", ["he/PRON", "jump/VERB"], 1.0, 4.5),
                Caption("he jumps up.", ["he/PRON", "jump/VERB", "up/ADV"], 1.0, 4.5),
                Caption("then sits down.", ["then/ADV", "sit/VERB", "down/ADV"], 5.0, 6.0),
            ],
        ),
        make_clip("M000001", 30, 3, captions=[Caption("a short clip.", ["a/DET", "short/ADJ", "clip/NOUN"])]),
    ]
    splits = {"train": ["000001", "000002"], "val": ["M000001"], "test": ["000002"]}
    return clips, splits


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, list[Clip]]:
    clips, splits = corpus()
    root = write_humanml3d(tmp_path / "hml", clips, splits)
    return root, clips


def test_round_trip(written: tuple[Path, list[Clip]]) -> None:
    root, clips = written
    for clip in clips:
        assert np.array_equal(read_features(root, clip.id), clip.features)
        assert np.array_equal(read_joints(root, clip.id), clip.joints)
        assert read_features(root, clip.id).dtype == np.float32
        assert read_captions(root, clip.id) == clip.captions
    assert (root / "texts" / "000002.txt").read_text().splitlines()[1] == (
        "he jumps.#he/PRON jump/VERB#1.0#4.5"
    )
    assert read_split(root, "train") == ["000001", "000002"]
    assert read_split(root, "val") == ["M000001"]
    assert read_split(root, "train_val") == ["000001", "000002", "M000001"]
    assert read_split(root, "all") == ["000001", "000002", "M000001"]
    events = read_events(root)
    assert set(events) == {"000001"} and events["000001"] == clips[0].events
    mean, std = np.load(root / "Mean.npy"), np.load(root / "Std.npy")
    stacked = np.concatenate([clip.features for clip in clips]).astype(np.float64)
    assert mean.shape == std.shape == (263,) and mean.dtype == np.float32
    np.testing.assert_allclose(mean, stacked.mean(0), atol=1e-5)
    np.testing.assert_allclose(std[4:67], stacked.std(0)[4:67].mean(), rtol=1e-5)
    assert not any(p.name.startswith(".") for p in root.parent.iterdir())


def test_explicit_mean_std_and_overwrite(written: tuple[Path, list[Clip]]) -> None:
    root, _ = written
    clip = make_clip("x1", 50, 9)
    with pytest.raises(FileExistsError):
        write_humanml3d(root, [clip], {"train": ["x1"]})
    assert read_split(root, "all") == ["000001", "000002", "M000001"]
    write_humanml3d(root, [clip], {"train": ["x1"]}, np.zeros(263), np.ones(263), overwrite=True)
    assert read_split(root, "all") == ["x1"] and read_split(root, "test") == []
    assert np.array_equal(np.load(root / "Std.npy"), np.ones(263, np.float32))
    assert read_events(root) == {}
    assert sorted(p.name for p in root.parent.iterdir()) == ["hml"]


def test_caption_line_parsing() -> None:
    caption = parse_caption_line("a man kicks.#a/DET man/NOUN kick/VERB#0.0#0.0\n", "t.txt", 1)
    assert caption == Caption("a man kicks.", ["a/DET", "man/NOUN", "kick/VERB"], 0.0, 0.0)
    assert caption.to_line() == "a man kicks.#a/DET man/NOUN kick/VERB#0.0#0.0"
    assert parse_caption_line("a man.#a/DET man/NOUN#nan#nan", "t.txt", 2).is_whole_clip
    assert parse_caption_line("x.#x/X#1.5#3", "t.txt", 3) == Caption("x.", ["x/X"], 1.5, 3.0)


@pytest.mark.parametrize(
    "line, needles",
    [
        ("a man kicks.#a/DET#0.0", ["got 3", "line 3"]),
        ("a#man#kicks.#a/DET#0.0#0.0", ["got 6", "line 3"]),
        ("a man.#a/DET man/NOUN#abc#0.0", ["line 3", "'start'", "'abc'"]),
        ("a man.#a/DET man/NOUN#0.0#x1", ["line 3", "'end'", "'x1'"]),
        ("a man.#a/DET man#0.0#0.0", ["line 3", "'tokens'", "'man'"]),
        ("a man.#a/DET#2.0#1.0", ["line 3", "'end'"]),
        ("a man.#a/DET#-1.0#1.0", ["line 3", "'start'"]),
    ],
)
def test_bad_caption_lines(tmp_path: Path, line: str, needles: list[str]) -> None:
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "000012.txt").write_text(f"ok.#ok/ADJ#0.0#0.0\n\n{line}\n")
    with pytest.raises(MotionFormatError) as info:
        read_captions(tmp_path, "000012")
    message = str(info.value)
    assert "000012.txt" in message and info.value.line == 3
    for needle in needles:
        assert needle in message


def test_bad_arrays(written: tuple[Path, list[Clip]]) -> None:
    root, clips = written
    bad = clips[0].features.copy()
    bad[7, 100] = np.nan
    np.save(root / "new_joint_vecs" / "000001.npy", bad)
    with pytest.raises(MotionFormatError, match=r"000001\.npy.*frame 7"):
        read_features(root, "000001")
    np.save(root / "new_joint_vecs" / "000001.npy", bad[:, :262])
    with pytest.raises(MotionFormatError, match=r"000001\.npy.*shape \(60, 262\)"):
        read_features(root, "000001")
    np.save(root / "new_joints" / "000001.npy", clips[0].joints.reshape(60, 66))
    with pytest.raises(MotionFormatError, match=r"new_joints/000001\.npy.*shape"):
        read_joints(root, "000001")
    np.save(root / "new_joint_vecs" / "000001.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(MotionFormatError, match=r"000001\.npy"):
        read_features(root, "000001")
    with pytest.raises(MotionFormatError, match=r"new_joint_vecs/nope\.npy: file not found"):
        read_features(root, "nope")
    with pytest.raises(MotionFormatError, match=r"texts/nope\.txt: file not found"):
        read_captions(root, "nope")


def test_missing_split(written: tuple[Path, list[Clip]]) -> None:
    root, _ = written
    with pytest.raises(MotionFormatError) as info:
        read_split(root, "holdout")
    assert "holdout.txt" in str(info.value) and "train_val.txt" in str(info.value)


def test_missing_clip_in_split(written: tuple[Path, list[Clip]]) -> None:
    root, _ = written
    (root / "new_joint_vecs" / "M000001.npy").unlink()
    with pytest.raises(MotionFormatError, match=r"M000001\.npy"):
        list(iter_items(root, "val", min_frames=1))


@pytest.mark.parametrize(
    "line, needles",
    [
        ('{"id": "000001", "events": [', ["invalid JSON"]),
        ('{"id": "000001", "events": [{"action": "fly"}]}', ["'events[0]'", "fly"]),
        ('{"id": "000001", "events": [{"action": "walk", "wings": 2}]}', ["'events[0]'"]),
        ('{"id": "000001", "events": 3}', ["'events'"]),
        ('{"events": []}', ["'id'"]),
    ],
)
def test_bad_events(tmp_path: Path, line: str, needles: list[str]) -> None:
    good = json.dumps({"id": "000000", "events": [Event("clap", 2).to_dict()]})
    (tmp_path / "events.jsonl").write_text(f"{good}\n{line}\n")
    with pytest.raises(MotionFormatError) as info:
        read_events(tmp_path)
    assert "events.jsonl line 2" in str(info.value)
    for needle in needles:
        assert needle in str(info.value)


def test_items_segments_and_cropping(written: tuple[Path, list[Clip]]) -> None:
    root, clips = written
    stats: dict[str, int] = {}
    items = {item.id: item for item in iter_items(root, "train_val", stats=stats)}
    assert list(items) == ["000001", "000002", "000002#20-90"]
    # too short: M000001 (30), 000002#100-120
    assert stats == {"clips": 3, "items": 3, "too_short": 2, "no_captions": 0, "cropped": 1}
    whole = items["000002"]
    assert whole.length == 196 and (whole.start, whole.end) == (0, 196)
    assert np.array_equal(whole.features, clips[1].features[:196])
    assert [c.text for c in whole.captions] == ["a man kicks with his left leg."]
    segment = items["000002#20-90"]
    assert np.array_equal(segment.features, clips[1].features[20:90]) and segment.events is None
    assert [c.text for c in segment.captions] == ["he jumps.", "he jumps up."]
    assert items["000001"].events == clips[0].events
    short = list(iter_items(root, "all", min_frames=10, max_frames=300))
    assert [i.id for i in short] == ["000001", "000002", "000002#20-90", "000002#100-120", "M000001"]
    assert short[1].length == 250 and short[3].length == 20
    assert [i.id for i in iter_items(root, "all", min_frames=10, segments=False)] == [
        "000001", "000002", "M000001",
    ]  # fmt: skip


def test_to_dataset(written: tuple[Path, list[Clip]], tmp_path: Path) -> None:
    root, clips = written
    ds = to_dataset(root, "train", cache_dir=tmp_path / "cache")
    assert list(ds["id"]) == ["000001", "000002", "000002#20-90"]
    assert set(ds.column_names) == {"id", "captions", "tokens", "features", "length", "events"}
    assert ds.features["features"].shape == (None, 263)
    row = ds.with_format("numpy")[2]
    assert row["features"].shape == (70, 263) and row["features"].dtype == np.float32
    assert np.array_equal(row["features"], clips[1].features[20:90])
    plain = ds[2]
    assert plain["captions"] == ["he jumps.", "he jumps up."] and plain["length"] == 70
    assert plain["tokens"][1] == ["he/PRON", "jump/VERB", "up/ADV"] and plain["events"] == ""
    events = [Event.from_dict(d) for d in json.loads(ds[0]["events"])]
    assert events == clips[0].events
    # An edited folder must not be served from a stale cache.
    write_humanml3d(root, [make_clip("y", 45)], {"train": ["y"]}, overwrite=True)
    assert list(to_dataset(root, "train", cache_dir=tmp_path / "cache")["id"]) == ["y"]


def test_to_dataset_empty(written: tuple[Path, list[Clip]], tmp_path: Path) -> None:
    root, _ = written
    ds = to_dataset(root, "val", cache_dir=tmp_path / "cache")  # M000001 has 30 frames < 40
    assert len(ds) == 0 and ds.features["features"].shape == (None, 263)


def test_existing_empty_root_and_joint_frames(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    clip = make_clip("a", 45)
    clip.joints = np.concatenate([clip.joints, clip.joints[-1:]])  # T + 1 joint frames is allowed
    write_humanml3d(root, [clip], {"train": ["a"]})
    assert read_joints(root, "a").shape == (46, 22, 3)
    clip.joints = clip.joints[:40]
    with pytest.raises(ValueError, match="40 joint frames for 45 feature rows"):
        write_humanml3d(tmp_path / "other", [clip], {})


def test_error_is_picklable() -> None:
    error = pickle.loads(pickle.dumps(MotionFormatError("texts/1.txt", "bad", 3, "start")))
    assert str(error) == "texts/1.txt line 3: field 'start': bad"
    assert (error.line, error.field) == (3, "start")


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_atomic_failure_leaves_nothing(tmp_path: Path) -> None:
    clips = [make_clip(f"c{i}", 45, i) for i in range(5)]
    clips[2].features[10, 5] = np.nan
    with pytest.raises(ValueError, match=r"c2: features non-finite value .* frame 10"):
        write_humanml3d(tmp_path / "out", clips, {"train": [c.id for c in clips]})
    assert _leftovers(tmp_path) == []


def test_atomic_failure_keeps_existing_root(written: tuple[Path, list[Clip]]) -> None:
    root, _ = written
    before = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    clips = [make_clip(f"c{i}", 45, i) for i in range(5)]
    clips[2].joints = clips[2].joints[:, :21]
    with pytest.raises(ValueError, match="c2: joints shape"):
        write_humanml3d(root, clips, {"train": ["c0"]}, overwrite=True)
    after = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before and _leftovers(root.parent) == ["hml"]


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda c: setattr(c, "id", "../evil"), "safe file name"),
        (lambda c: setattr(c, "captions", []), "at least one caption"),
        (lambda c: setattr(c, "captions", [Caption("a#b", ["a/X"])]), "contains '#'"),
        (lambda c: setattr(c, "captions", [Caption("a\nb", ["a/X"])]), "contains"),
        (lambda c: setattr(c, "features", c.features[:, :10]), "features shape"),
    ],
)
def test_writer_validation(tmp_path: Path, change, match: str) -> None:
    clip = make_clip("c0", 45)
    change(clip)
    with pytest.raises(ValueError, match=match):
        write_humanml3d(tmp_path / "out", [clip], {})
    assert _leftovers(tmp_path) == []


def test_clip_writer_streaming(tmp_path: Path) -> None:
    root = tmp_path / "stream"
    with ClipWriter(root) as writer:
        tmp_dir = tmp_path / f".stream.tmp-{os.getpid()}"
        assert tmp_dir.is_dir() and not root.exists()
        for i in range(4):
            writer.add(make_clip(f"s{i}", 41, i))
        writer.finish({"train": ["s0", "s1"], "test": ["s3"]})
    assert read_split(root, "all") == ["s0", "s1", "s2", "s3"] and not tmp_dir.exists()
    with pytest.raises(RuntimeError, match="without finish"):
        with ClipWriter(tmp_path / "unfinished") as writer:
            writer.add(make_clip("s0", 41))
    with pytest.raises(ValueError, match="not written"):
        with ClipWriter(tmp_path / "badsplit") as writer:
            writer.add(make_clip("s0", 41))
            writer.finish({"train": ["zz"]})
    with pytest.raises(KeyError):
        with ClipWriter(tmp_path / "user_error") as writer:
            writer.add(make_clip("s0", 41))
            raise KeyError("boom")
    assert _leftovers(tmp_path) == ["stream"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a man kicks with his left leg.", "a man kicks with his right leg."),
        ("Right hand up, then left.", "Left hand up, then right."),
        ("he turns clockwise", "he turns counterclockwise"),
        ("Counterclockwise, counter-clockwise, anticlockwise.", "Clockwise, clockwise, clockwise."),
        ("turns counter clockwise", "turns clockwise"),
        ("the leftover rights are upright", "the leftover rights are upright"),
        ("LEFT and left-handed", "RIGHT and right-handed"),
    ],
)
def test_mirror_caption_text(text: str, expected: str) -> None:
    assert mirror_caption_text(text) == expected


def test_caption_mirrored() -> None:
    caption = Caption("he waves his left hand.", ["he/PRON", "wave/VERB", "left/ADJ", "hand/NOUN"], 1.0, 2.0)
    mirrored = caption.mirrored()
    assert mirrored.text == "he waves his right hand." and mirrored.tokens[2] == "right/ADJ"
    assert (mirrored.start, mirrored.end) == (1.0, 2.0)
