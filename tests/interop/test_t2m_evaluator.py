"""Importing Guo et al.'s released text-motion evaluator, against a reference written from their code.

Upstream (EricGuo5513/text-to-motion): ``networks/modules.py`` (``MovementConvEncoder``: ``main`` =
Conv1d(k4, s2, p1), Dropout, LeakyReLU, Conv1d, Dropout, LeakyReLU, then ``out_net``; ``TextEncoderBiGRUCo``
and ``MotionEncoderBiGRUCo``: ``pos_emb``, ``input_emb``, a BiGRU over ``pack_padded_sequence`` with a learnt
``hidden``, ``output_net`` on the concatenated final states), ``networks/evaluator_wrapper.py``
(``get_co_embeddings``: motions sorted by length, ``motions[..., :-4]``, ``m_lens // 4``),
``data/dataset.py`` (``Text2MotionDatasetV2``: sos/eos framing, ``unk/OTHER`` padding to 22, normalised
motions zero-padded to 196 frames) and ``utils/word_vectorizer.py``. The reference below re-implements that
path in this file with the same module names, so its state dicts have the released checkpoint's keys.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from motion_align.cli import main
from motion_align.evaluation.evaluator import MotionTextEvaluator
from motion_align.evaluation.text_features import KEYWORDS, POS_CLASSES
from motion_align.interop.plain_pickle import load_plain_pickle

WORDS = ["sos", "eos", "unk", "a", "person", "walk", "forward", "jump", "twice", "left", "hand", "wave",
         "the", "with", "slowly", "turn", "around", "man", "kick", "right", "Person"]  # fmt: skip
CAPTIONS = [
    ["a/DET", "person/NOUN", "walk/VERB", "forward/ADV"],
    ["a/DET", "man/NOUN", "jump/VERB", "twice/ADV"],
    ["the/DET", "person/NOUN", "wave/VERB", "with/ADP", "the/DET", "left/ADJ", "hand/NOUN"],
    ["someone/PRON", "turn/VERB", "around/ADV", "slowly/ADV"],  # 'someone' is out of the vocabulary
    ["Person/NOUN", "kick/VERB", "x/Loc_VIP", "right/ADJ"],  # as written: no lower-casing, a VIP tag kept
    ["a/DET", "person/NOUN"] * 12,  # 24 tokens: cut to 20
]


class GuoMovementEncoder(nn.Module):
    def __init__(self, inp: int, hidden: int, out: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv1d(inp, hidden, 4, 2, 1), nn.Dropout(0.2), nn.LeakyReLU(0.2),
            nn.Conv1d(hidden, out, 4, 2, 1), nn.Dropout(0.2), nn.LeakyReLU(0.2),
        )  # fmt: skip
        self.out_net = nn.Linear(out, out)

    def forward(self, x):
        return self.out_net(self.main(x.permute(0, 2, 1)).permute(0, 2, 1))


class GuoBiGRU(nn.Module):
    def __init__(self, inp: int, hidden: int, out: int, pos: int | None = None) -> None:
        super().__init__()
        if pos is not None:
            self.pos_emb = nn.Linear(pos, inp)
        self.input_emb = nn.Linear(inp, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
        self.output_net = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.LayerNorm(hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, out)
        )
        self.hidden = nn.Parameter(torch.randn(2, 1, hidden))

    def forward(self, x, lengths, pos_onehot=None):
        if pos_onehot is not None:
            x = x + self.pos_emb(pos_onehot)
        packed = pack_padded_sequence(self.input_emb(x), lengths.tolist(), batch_first=True)  # sorted, as T2M
        _, last = self.gru(packed, self.hidden.repeat(1, x.shape[0], 1))
        return self.output_net(torch.cat([last[0], last[1]], dim=-1))


def guo_token(word2vec: dict, token: str) -> tuple[np.ndarray, np.ndarray]:
    word, pos = token.split("/")
    one_hot = np.zeros(len(POS_CLASSES))
    if word in word2vec:
        vip = next((name for name, words in KEYWORDS.items() if word in words), None)
        one_hot[POS_CLASSES.index(vip or (pos if pos in POS_CLASSES else "OTHER"))] = 1
        return word2vec[word], one_hot
    one_hot[POS_CLASSES.index("OTHER")] = 1
    return word2vec["unk"], one_hot


def guo_text_embeddings(text_encoder, word2vec, captions) -> torch.Tensor:
    rows = []
    for tokens in captions:
        framed = ["sos/OTHER", *tokens[:20], "eos/OTHER"]
        padded = framed + ["unk/OTHER"] * (22 - len(framed))
        pairs = [guo_token(word2vec, t) for t in padded]
        rows.append((np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), len(framed)))
    order = sorted(
        range(len(rows)), key=lambda i: -rows[i][2]
    )  # collate_fn: by caption length, longest first
    words = torch.tensor(np.stack([rows[i][0] for i in order])).float()
    onehots = torch.tensor(np.stack([rows[i][1] for i in order])).float()
    lengths = torch.tensor([rows[i][2] for i in order])
    with torch.no_grad():
        emb = text_encoder(words, lengths, onehots)
    out = torch.empty_like(emb)
    out[order] = emb
    return out


def guo_motion_embeddings(movement, motion_encoder, motions, mean, std) -> torch.Tensor:
    normed = []
    for m in motions:
        x = (m - mean) / std  # float64, as the dataset
        normed.append(np.concatenate([x, np.zeros((196 - len(x), x.shape[1]))]) if len(x) < 196 else x)
    batch = torch.tensor(np.stack(normed)).float()
    lengths = np.array([len(m) for m in motions])
    align = np.argsort(lengths)[::-1].copy()
    with torch.no_grad():
        movements = movement(batch[align][..., :-4])
        emb = motion_encoder(movements, torch.tensor(lengths[align] // 4))
    out = torch.empty_like(emb)
    out[torch.tensor(align)] = emb
    return out


def write_release(root: Path, nfeats: int, sizes: tuple[int, int, int, int], seed: int = 0) -> dict:
    """finest.tar, glove/ and meta/ in T2M's layout; ``sizes`` = word dim, text hidden, movement, motion."""
    word_dim, text_hidden, movement, motion_hidden = sizes
    torch.manual_seed(seed)
    text = GuoBiGRU(word_dim, text_hidden, 512 if word_dim == 300 else 32, pos=15).eval()
    motion = GuoBiGRU(movement, motion_hidden, 512 if word_dim == 300 else 32).eval()
    move = GuoMovementEncoder(nfeats - 4, movement, movement).eval()
    optimizer = torch.optim.Adam(move.parameters())
    move(torch.randn(1, 8, nfeats - 4)).sum().backward()
    optimizer.step()  # an optimiser state, as the release has
    root.mkdir(parents=True, exist_ok=True)
    torch.save({"text_encoder": text.state_dict(), "motion_encoder": motion.state_dict(),
                "movement_encoder": move.state_dict(), "opt_movement_encoder": optimizer.state_dict(),
                "epoch": 31, "iter": 1200}, root / "finest.tar")  # fmt: skip
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(len(WORDS) + 3, word_dim))
    index = {w: i + 3 for i, w in enumerate(WORDS)}  # rows out of order, as a dict allows
    (root / "glove").mkdir()
    np.save(root / "glove" / "our_vab_data.npy", vectors)
    with open(root / "glove" / "our_vab_words.pkl", "wb") as f:
        pickle.dump(WORDS, f)
    with open(root / "glove" / "our_vab_idx.pkl", "wb") as f:
        pickle.dump(index, f)
    (root / "meta").mkdir()
    mean, std = rng.normal(size=nfeats), rng.uniform(0.5, 2.0, size=nfeats)
    np.save(root / "meta" / "mean.npy", mean)
    np.save(root / "meta" / "std.npy", std)
    return {"text": text, "motion": motion, "movement": move, "mean": mean, "std": std,
            "word2vec": {w: vectors[index[w]] for w in WORDS}}  # fmt: skip


def import_argv(
    root: Path, out: Path, dataset: str = "humanml3d", checkpoint: Path | None = None
) -> list[str]:
    return ["import", "t2m-evaluator", "--checkpoint", str(checkpoint or root / "finest.tar"),
            "--glove", str(root / "glove"), "--meta", str(root / "meta"), "--dataset", dataset,
            "--out", str(out)]  # fmt: skip


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("t2m")
    return root, write_release(root, 263, (300, 512, 512, 1024))  # the released sizes


def raw_motions(nfeats: int, lengths=(196, 40, 120, 196, 64, 100), seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, nfeats)).astype(np.float32) for n in lengths]


def test_imported_evaluator_gives_the_released_modules_embeddings_in_input_order(release, tmp_path):
    root, ref = release
    assert main(import_argv(root, tmp_path / "eval")) == 0
    evaluator = MotionTextEvaluator.from_pretrained(tmp_path / "eval")
    assert evaluator.config.t2m_exact and evaluator.config.word_dim == 300 and evaluator.config.nfeats == 263
    expected = guo_text_embeddings(ref["text"], ref["word2vec"], CAPTIONS)
    for batch_size in (256, 2):
        torch.testing.assert_close(evaluator.embed_texts(CAPTIONS, batch_size=batch_size), expected,
                                   atol=1e-5, rtol=0)  # fmt: skip
    motions = raw_motions(263)
    expected = guo_motion_embeddings(ref["movement"], ref["motion"], motions, ref["mean"], ref["std"])
    for batch_size in (64, 1, 4):  # a 196-frame motion embeds alike alone or beside shorter ones
        torch.testing.assert_close(evaluator.embed_motions(motions, batch_size=batch_size), expected,
                                   atol=1e-5, rtol=0)  # fmt: skip


def test_kit_evaluator_with_251_features_and_the_wrong_dataset_is_named(tmp_path, capsys):
    ref = write_release(tmp_path / "kit", 251, (300, 24, 16, 32), seed=3)
    assert main(import_argv(tmp_path / "kit", tmp_path / "kit-eval", "kit")) == 0
    evaluator = MotionTextEvaluator.from_pretrained(tmp_path / "kit-eval")
    motions = raw_motions(251, (24, 196, 48))
    torch.testing.assert_close(
        evaluator.embed_motions(motions), guo_motion_embeddings(ref["movement"], ref["motion"], motions,
                                                                ref["mean"], ref["std"]), atol=1e-5, rtol=0
    )  # fmt: skip
    assert main(import_argv(tmp_path / "kit", tmp_path / "wrong", "humanml3d")) == 2
    assert "reads 247 + 4 features, but --dataset humanml3d has 263" in capsys.readouterr().err
    assert not (tmp_path / "wrong").exists()


class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize(
    "value, reason",
    [
        ("code", "(pickle opcode STACK_GLOBAL)"),
        ((1, 2), "(pickle opcode TUPLE2)"),
        ([1.5], "(pickle opcode BINFLOAT)"),
        ({"a": b"x"}, "(pickle opcode SHORT_BINBYTES)"),
        ([True], "(pickle opcode NEWTRUE)"),
    ],
)
def test_the_vocabulary_loader_reads_only_plain_lists_dicts_strings_and_ints(tmp_path, value, reason):
    marker = tmp_path / "ran"
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(RunsCode(marker) if value == "code" else value))
    with pytest.raises(ValueError, match="only plain lists, dicts, strings and ints") as error:
        load_plain_pickle(path)
    assert str(path) in str(error.value) and reason in str(error.value)
    assert not marker.exists()  # nothing of the file ran
    path.write_bytes(pickle.dumps(RunsCode(marker), protocol=0))  # the GLOBAL opcode names its target
    with pytest.raises(
        ValueError, match=r"a reference to a class or function \(pickle opcode GLOBAL posix mkdir\)"
    ):
        load_plain_pickle(path)
    good = {"words": ["a", "b", 3], "n": 2**70}
    path.write_bytes(pickle.dumps(good))
    assert load_plain_pickle(path) == good


def test_a_vocabulary_pickle_that_runs_code_or_a_checkpoint_with_a_class_is_refused(
    release, tmp_path, capsys
):
    root, _ = release
    glove = tmp_path / "glove"
    glove.mkdir()
    for name in ("our_vab_data.npy", "our_vab_idx.pkl"):
        (glove / name).write_bytes((root / "glove" / name).read_bytes())
    (glove / "our_vab_words.pkl").write_bytes(pickle.dumps(RunsCode(tmp_path / "ran")))
    argv = import_argv(root, tmp_path / "out")
    argv[argv.index("--glove") + 1] = str(glove)
    assert main(argv) == 2
    assert "our_vab_words.pkl: refused" in capsys.readouterr().err and not (tmp_path / "ran").exists()
    state = torch.load(root / "finest.tar", weights_only=True)
    state["opt"] = RunsCode(tmp_path / "ran2")
    torch.save(state, tmp_path / "finest.tar")
    assert main(import_argv(root, tmp_path / "out", checkpoint=tmp_path / "finest.tar")) == 2
    err = capsys.readouterr().err
    assert "finest.tar: unpickling it needs the class" in err and not (tmp_path / "ran2").exists()
    assert not (tmp_path / "out").exists()


def test_a_missing_meta_file_or_a_word_without_a_row_is_named(release, tmp_path, capsys):
    root, _ = release
    argv = import_argv(root, tmp_path / "out")
    argv[argv.index("--meta") + 1] = str(tmp_path)
    assert main(argv) == 2
    assert "mean.npy: the evaluator's mean not found" in capsys.readouterr().err
    glove = tmp_path / "glove"
    glove.mkdir()
    (glove / "our_vab_data.npy").write_bytes((root / "glove" / "our_vab_data.npy").read_bytes())
    (glove / "our_vab_words.pkl").write_bytes(pickle.dumps([*WORDS, "ghost"]))
    (glove / "our_vab_idx.pkl").write_bytes((root / "glove" / "our_vab_idx.pkl").read_bytes())
    argv = import_argv(root, tmp_path / "out")
    argv[argv.index("--glove") + 1] = str(glove)
    assert main(argv) == 2
    assert "our_vab_idx.pkl: word 21 'ghost' of our_vab_words.pkl has no row" in capsys.readouterr().err


def test_evaluate_with_the_imported_evaluator_runs_the_t2m_protocol(release, tmp_path):
    root, _ = release
    assert main(import_argv(root, tmp_path / "eval")) == 0
    data = tmp_path / "hml"
    (data / "new_joint_vecs").mkdir(parents=True)
    (data / "texts").mkdir()
    rng = np.random.default_rng(0)
    ids = [f"{i:06d}" for i in range(40)]
    for i, clip_id in enumerate(ids):
        np.save(
            data / "new_joint_vecs" / f"{clip_id}.npy", rng.normal(size=(40 + 4 * i, 263)).astype(np.float32)
        )
        tokens = " ".join(CAPTIONS[i % len(CAPTIONS)])
        (data / "texts" / f"{clip_id}.txt").write_text(f"caption {i}#{tokens}#0.0#0.0\n", encoding="utf-8")
    (data / "test.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
    argv = ["evaluate", "--protocol", "t2m", "--data", str(data), "--evaluator", str(tmp_path / "eval"),
            "--out", str(tmp_path / "out"), "--repeats", "2", "--diversity-pairs", "8"]  # fmt: skip
    assert main(argv) == 0
    table = (tmp_path / "out" / "metrics.md").read_text(encoding="utf-8")
    assert "T2M protocol (Guo et al. 2022), Guo et al.'s released evaluator (263 features)" in table
    assert "| real |" in table
    record = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert record["protocol"]["name"] == "t2m" and record["protocol"]["batch_size"] == 32
    assert record["rows"]["real"]["metrics"]["R@1"]["n"] == 2
    assert main([*argv, "--num-prompts", "8"]) == 2  # not a rule of the published protocol
