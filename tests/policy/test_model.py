"""Policies and text tokenizers: build, vocabulary once, save/load, dropout, errors (tiny presets only)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from motion_align.policy.model import (
    PRESETS,
    build_policy,
    format_prompt,
    load_policy,
    policy_family,
    save_policy,
)
from motion_align.policy.text_tokenizer import corpus_captions, train_text_tokenizer
from motion_align.policy.vocab import MotionVocab

K = 16  # codebook size of every test policy
FAMILIES = ("t5", "llama")
_WHO = ["a person", "the man", "someone", "a woman"]
_WHAT = ["walks forward", "jumps twice", "waves the left hand", "kicks with the right leg", "turns around"]
_THEN = ["", ", then sits down", " and stops"]
TEXTS = [f"{w} {a}{t}." for w in _WHO for a in _WHAT for t in _THEN][:50]


def _hash_tokenizers() -> dict[str, str]:
    """The serialised backend of both families' tokenizers trained on TEXTS (what determinism compares)."""
    return {fam: train_text_tokenizer(TEXTS, fam).backend_tokenizer.to_str() for fam in FAMILIES}


@pytest.fixture(scope="module")
def built() -> dict[str, tuple]:
    torch.manual_seed(0)
    return {fam: build_policy(fam, "tiny", train_text_tokenizer(TEXTS, fam), K) for fam in FAMILIES}


@pytest.fixture(scope="module")
def saved(built, tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("policies")
    return {fam: save_policy(model, tok, root / fam) for fam, (model, tok) in built.items()}


def _batch(tok, family: str) -> dict[str, torch.Tensor]:
    vocab = MotionVocab.from_tokenizer(tok)
    prompts = [format_prompt(c) for c in TEXTS[:3]]
    motions = [vocab.codes_to_string(codes) for codes in ([1, 2, 3], [15, 0], [7])]
    if family == "t5":
        batch = tok(prompts, padding=True, return_tensors="pt")
        labels = tok(motions, padding=True, return_tensors="pt").input_ids
        batch["labels"] = labels.masked_fill(labels == tok.pad_token_id, -100)
        return dict(batch)
    batch = tok([p + " " + m for p, m in zip(prompts, motions)], padding=True, return_tensors="pt")
    batch["labels"] = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    return dict(batch)


def _logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


# ----------------------------------------------------------------------------------- text tokenizer
def test_text_tokenizer_conventions() -> None:
    t5, llama = (train_text_tokenizer(TEXTS, fam) for fam in FAMILIES)
    assert (t5.pad_token_id, t5.eos_token_id, t5.unk_token_id, t5.bos_token) == (0, 1, 2, None)
    assert t5.padding_side == "right" and t5("jumps").input_ids[-1] == 1  # eos appended, no bos
    assert (llama.unk_token_id, llama.bos_token_id, llama.eos_token_id, llama.pad_token_id) == (0, 1, 2, 3)
    assert llama.padding_side == "left" and llama("jumps").input_ids[0] == 1  # bos prepended
    for tok in (t5, llama):
        ids = tok("the man jumps twice, then sits down.", add_special_tokens=False).input_ids
        assert tok.unk_token_id not in ids and len(ids) <= 10  # whole words, not letters
        assert tok.decode(ids) == "the man jumps twice, then sits down."
    assert t5.unk_token_id not in t5("Generate motion: XYZ!").input_ids  # every ASCII character known


def test_text_tokenizer_deterministic_across_processes() -> None:
    here = _hash_tokenizers()
    assert here == _hash_tokenizers()
    code = "import json, tests.policy.test_model as t; print(json.dumps(t._hash_tokenizers()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == here


@pytest.mark.parametrize("family", FAMILIES)
def test_motion_string_is_one_id_per_token(family: str) -> None:
    tok = train_text_tokenizer(TEXTS, family)
    vocab = MotionVocab(K)
    assert vocab.add_to_tokenizer(tok) == K + 3
    assert vocab.add_to_tokenizer(tok) == 0
    codes = [0, 15, 3, 3, 9]
    ids = tok(vocab.codes_to_string(codes), add_special_tokens=False).input_ids
    assert ids == vocab.codes_to_ids(codes, tok)
    prompt = tok(format_prompt("a man walks") + " " + vocab.codes_to_string(codes)).input_ids
    assert vocab.decode(prompt, tok).codes == codes


def test_train_text_tokenizer_saves_and_rejects_bad_input(tmp_path) -> None:
    tok = train_text_tokenizer(TEXTS, "llama", out_dir=tmp_path / "tok")
    again = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert again("a man waves").input_ids == tok("a man waves").input_ids and again.padding_side == "left"
    with pytest.raises(ValueError, match="unknown policy family 'gpt2'"):
        train_text_tokenizer(TEXTS, "gpt2")
    with pytest.raises(ValueError, match="non-empty text"):
        train_text_tokenizer(["", "  "], "t5")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        train_text_tokenizer(TEXTS, "t5", out_dir=tmp_path / "tok")


def test_corpus_captions_reads_train_split(tmp_path) -> None:
    (tmp_path / "texts").mkdir()
    (tmp_path / "train.txt").write_text("001\n002\n")
    (tmp_path / "test.txt").write_text("003\n")
    for clip, words in (("001", ["a man walks", "he walks"]), ("002", ["a woman jumps"]), ("003", ["no"])):
        lines = [f"{w}#{' '.join(x + '/X' for x in w.split())}#0.0#0.0" for w in words]
        (tmp_path / "texts" / f"{clip}.txt").write_text("\n".join(lines) + "\n")
    assert corpus_captions(tmp_path) == ["a man walks", "he walks", "a woman jumps"]


# ----------------------------------------------------------------------------------- build
@pytest.mark.parametrize("family", FAMILIES)
def test_build_forward_and_vocabulary(built, family: str) -> None:
    model, tok = built[family]
    assert policy_family(model) == policy_family(model.config) == family
    ids = MotionVocab.from_tokenizer(tok).ids(tok)
    assert len(ids) == K + 3 and MotionVocab.from_tokenizer(tok).codebook_size == K
    rows = model.get_input_embeddings().weight.shape[0]
    assert max(ids) < rows and len(tok) <= rows and rows % 8 == 0
    assert model.get_output_embeddings().weight.shape[0] == rows
    assert (model.config.pad_token_id, model.config.eos_token_id) == (tok.pad_token_id, tok.eos_token_id)
    if family == "t5":
        assert model.config.decoder_start_token_id == tok.pad_token_id == 0
    else:
        assert model.config.bos_token_id == tok.bos_token_id == model.generation_config.bos_token_id
    batch = _batch(tok, family)
    out = model(**batch)
    assert out.logits.shape[0] == 3 and out.logits.shape[-1] == rows
    assert 0 < out.loss < 1.5 * math.log(rows)  # sane initial scale (untied, unscaled T5 starts near 100)


@pytest.mark.parametrize("family", FAMILIES)
def test_vocabulary_added_once(saved, family: str) -> None:
    tok = AutoTokenizer.from_pretrained(saved[family])
    size = len(tok)
    model, tok2 = build_policy(family, "tiny", tok, K)
    assert tok2 is tok and len(tok) == size
    with pytest.raises(ValueError, match="refusing to mix two motion vocabularies"):
        build_policy(family, "tiny", AutoTokenizer.from_pretrained(saved[family]), K + 1)


# ----------------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_round_trip(built, saved, family: str) -> None:
    model, tok = built[family]
    info = json.loads((saved[family] / "motion_vocab.json").read_text())
    assert info["codebook_size"] == K and info["family"] == family
    assert (saved[family] / "model.safetensors").is_file()
    assert not [p for p in saved[family].parent.iterdir() if p.name.startswith(".")]  # no temp left
    loaded, tok2 = load_policy(saved[family])
    assert type(loaded) is type(model) and tok2.get_vocab() == tok.get_vocab()
    assert tok2.padding_side == tok.padding_side
    model.eval()
    batch = _batch(tok, family)
    assert torch.equal(_logits(model, batch), _logits(loaded, _batch(tok2, family)))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_policy(model, tok, saved[family])


def test_save_policy_overwrite_replaces(built, tmp_path) -> None:
    model, tok = built["llama"]
    save_policy(model, tok, tmp_path / "p")
    (tmp_path / "p" / "stale.txt").write_text("x")
    save_policy(model, tok, tmp_path / "p", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]
    assert not (tmp_path / "p" / "stale.txt").exists()


@pytest.mark.parametrize("family", FAMILIES)
def test_dropout_really_off(saved, family: str) -> None:
    on, tok = load_policy(saved[family], dropout=0.3)
    off, _ = load_policy(saved[family], dropout=0.0)
    batch = _batch(tok, family)
    on.train()
    off.train()
    torch.manual_seed(1)
    assert not torch.equal(_logits(on, batch), _logits(on, batch))
    assert torch.equal(_logits(off, batch), _logits(off, batch))
    field = "dropout_rate" if family == "t5" else "attention_dropout"
    assert (getattr(on.config, field), getattr(off.config, field)) == (0.3, 0.0)
    assert all(m.p == 0.0 for m in off.modules() if isinstance(m, torch.nn.Dropout))


def test_build_with_dropout_then_off(saved) -> None:
    tok = AutoTokenizer.from_pretrained(saved["t5"])
    model, _ = build_policy("t5", "tiny", tok, K, dropout=0.2)
    assert model.config.dropout_rate == 0.2
    model.train()
    batch = _batch(tok, "t5")
    assert not torch.equal(_logits(model, batch), _logits(model, batch))


# ----------------------------------------------------------------------------------- errors
def test_load_without_motion_tokens_is_named(built, tmp_path) -> None:
    model, _ = built["t5"]
    model.save_pretrained(tmp_path / "plain")
    train_text_tokenizer(TEXTS, "t5").save_pretrained(tmp_path / "plain")
    with pytest.raises(ValueError, match=r"plain: tokenizer has no motion tokens"):
        load_policy(tmp_path / "plain")
    with pytest.raises(ValueError, match="save_policy: tokenizer has no motion tokens"):
        save_policy(model, train_text_tokenizer(TEXTS, "t5"), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_embedding_too_small_is_named(saved, tmp_path) -> None:
    tok = AutoTokenizer.from_pretrained(saved["llama"])
    model, _ = load_policy(saved["llama"])
    model.resize_token_embeddings(len(tok) - K)
    model.save_pretrained(tmp_path / "small")
    tok.save_pretrained(tmp_path / "small")
    with pytest.raises(ValueError, match=r"small: the input embedding matrix has \d+ rows .* not resized"):
        load_policy(tmp_path / "small")


def test_preset_errors() -> None:
    with pytest.raises(ValueError, match="no default checkpoint: pass a Hub id or local path"):
        build_policy("llama", "base", None, K)
    with pytest.raises(ValueError, match="needs a text tokenizer"):
        build_policy("t5", "tiny", None, K)
    with pytest.raises(ValueError, match="unknown policy family"):
        build_policy("gpt2", "tiny", None, K)
    assert format_prompt("  a man jumps ") == "Generate motion: a man jumps."
    assert format_prompt("a man jumps.") == format_prompt("a man jumps") and format_prompt("jump!")[-1] == "!"
    assert format_prompt(" a man jumps", frames=96) == "Generate motion of 4.8 seconds: a man jumps."
    assert format_prompt("a man jumps", frames=np.int64(196)).startswith("Generate motion of 9.8 seconds:")
    for bad in (0, -4, 4.5, "96", True):
        with pytest.raises(ValueError, match="frames must be a positive number"):
            format_prompt("a man jumps", frames=bad)


def test_preset_sizes() -> None:
    counts = {}
    for family in FAMILIES:
        tok = train_text_tokenizer(TEXTS, family)
        for preset in ("tiny", "small"):
            model, tok = build_policy(family, preset, tok, 512)
            counts[family, preset] = sum(p.numel() for p in model.parameters())
    for family in FAMILIES:
        assert counts[family, "tiny"] < 200_000
        assert 1_000_000 < counts[family, "small"] < 10_000_000


def test_build_from_pretrained_checkpoint(tmp_path) -> None:
    """A Hub id or path goes through from_pretrained: vocabulary added, pad added, rows mean-resized."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = train_text_tokenizer(TEXTS, "llama")
    tok.pad_token = None  # as a real LLaMA tokenizer
    config = LlamaConfig(**PRESETS["llama"]["tiny"], vocab_size=len(tok), pad_token_id=None)
    plain = LlamaForCausalLM(config)
    plain.save_pretrained(tmp_path / "plain")
    tok.save_pretrained(tmp_path / "plain")
    with pytest.raises(ValueError, match="is a 'llama' model, not a 't5' one"):
        build_policy("t5", str(tmp_path / "plain"), None, K)
    model, tok2 = build_policy("llama", str(tmp_path / "plain"), None, K)
    rows = model.get_input_embeddings().weight
    assert AutoTokenizer.from_pretrained(tmp_path / "plain").pad_token is None
    assert tok2.pad_token == "<pad>" and model.config.pad_token_id == tok2.pad_token_id == 3  # existing row
    assert model.generation_config.pad_token_id == 3
    assert rows.shape[0] % 8 == 0 and rows.shape[0] >= len(tok2) == len(tok) + K + 3
    assert torch.equal(rows[: len(tok)], plain.get_input_embeddings().weight)
    assert rows[len(tok) :].abs().sum() > 0  # new rows initialised, not zero
    assert model.get_output_embeddings().weight.shape[0] == rows.shape[0]


def test_build_from_an_untied_t5_checkpoint_keeps_its_output_layer(tmp_path) -> None:
    """Flan-T5 has an untied lm_head; adding the motion vocabulary must not tie it to the embedding."""
    from transformers import T5Config, T5ForConditionalGeneration

    tok = train_text_tokenizer(TEXTS, "t5")
    torch.manual_seed(0)
    plain = T5ForConditionalGeneration(T5Config(**PRESETS["t5"]["tiny"], vocab_size=len(tok)))
    plain.lm_head.weight = torch.nn.Parameter(torch.randn_like(plain.lm_head.weight))
    plain.save_pretrained(tmp_path / "untied")
    tok.save_pretrained(tmp_path / "untied")
    reloaded = T5ForConditionalGeneration.from_pretrained(tmp_path / "untied")
    assert reloaded.lm_head.weight is not reloaded.shared.weight  # saved untied, as a T5 v1.1 checkpoint
    model, tok2 = build_policy("t5", str(tmp_path / "untied"), None, K)
    head, embedding = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    assert head is not embedding and head.shape[0] == embedding.shape[0] >= len(tok2)
    assert torch.equal(head[: len(tok)], reloaded.lm_head.weight[: len(tok)])
