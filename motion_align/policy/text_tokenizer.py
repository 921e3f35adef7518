"""Text tokenizers trained locally, for policies built without a pretrained checkpoint.

A policy built from a config (the ``tiny``/``small`` presets of :mod:`motion_align.policy.model`) still needs
a text tokenizer. With no network there is no Flan-T5 or LLaMA tokenizer to download, so this module trains
one on the captions of the corpus with the ``tokenizers`` library, following each family's conventions:

- ``"t5"``: Unigram over Metaspace pieces (``▁the``; scores counted, see ``_unigram_pieces``),
  ``<pad>`` = 0, ``</s>`` = 1 (eos, appended to every sequence), ``<unk>`` = 2, no bos, padding on the
  right (as ``google/flan-t5-*``).
- ``"llama"``: byte-level BPE, ``<unk>`` = 0, ``<s>`` = 1 (bos, prepended), ``</s>`` = 2 (eos), and a
  dedicated ``<pad>`` = 3 (LLaMA has none), padding on the left for batched generation.

Training is deterministic: the same texts give the same vocabulary, merges and ids. The motion tokens
are not added here: :meth:`motion_align.policy.vocab.MotionVocab.add_to_tokenizer` does that, once, when the
policy is built.
"""

from __future__ import annotations

import math
import os
import re
import string
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from motion_tokenizer.atomic_files import write_dir_atomic

FAMILIES = ("t5", "llama")
DEFAULT_VOCAB_SIZE = 2000
MODEL_MAX_LENGTH = 512

_SPACE = "\u2581"  # SentencePiece's word-start mark
_WORD = re.compile(rf"{_SPACE}?[^\W_]+|[^\w\s{_SPACE}]|_")
_ASCII = string.ascii_letters + string.digits + string.punctuation
_CHAR_PENALTY = 10.0  # spelling a word letter by letter must cost more than any whole-word piece


def _check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown policy family {family!r}: expected one of {FAMILIES}")
    return family


def _unigram_pieces(texts: list[str], vocab_size: int) -> list[tuple[str, float]]:
    """Unigram pieces and log-probability scores counted on ``texts``, in a fixed order.

    Pieces are every printable ASCII character (so nothing English is ``<unk>``), the characters seen,
    and the most frequent ``▁word`` and punctuation pieces, up to ``vocab_size``. Counting replaces the
    ``tokenizers`` Unigram EM trainer, whose result varies between processes (hash-map order).
    """
    words: Counter[str] = Counter()
    chars: Counter[str] = Counter()
    for text in texts:
        for word in _WORD.findall(text.replace(" ", _SPACE)):
            words[word] += 1
        chars.update(text.replace(" ", _SPACE))
    alphabet = sorted(set(chars) | set(_ASCII) | {_SPACE})
    total = sum(words.values()) + sum(chars.values()) + len(alphabet)
    pieces = {c: math.log((chars[c] + 1) / total) - _CHAR_PENALTY for c in alphabet}
    room = max(vocab_size - 3 - len(pieces), 0)
    frequent = sorted(((n, w) for w, n in words.items() if len(w) > 1), key=lambda x: (-x[0], x[1]))
    for n, word in frequent[:room]:
        pieces[word] = math.log(n / total)
    return [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + sorted(
        pieces.items(), key=lambda x: (-x[1], x[0])
    )


def _t5_backend(texts: list[str], vocab_size: int) -> Tokenizer:
    """A T5-style Unigram tokenizer: NFKC, collapsed spaces, Metaspace pieces, ``</s>`` appended."""
    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok = Tokenizer(
        models.Unigram(_unigram_pieces([normalizer.normalize_str(t) for t in texts], vocab_size), 2)
    )
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_SPACE, prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement=_SPACE, prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return tok


def _llama_backend(texts: list[str], vocab_size: int) -> Tokenizer:
    """A LLaMA-style byte-level BPE tokenizer: no unknown bytes, ``<s>`` prepended, no eos appended."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return tok


def train_text_tokenizer(
    texts: Iterable[str],
    family: str,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    out_dir: str | os.PathLike[str] | None = None,
) -> PreTrainedTokenizerFast:
    """Train a ``family``-style text tokenizer on ``texts``; save it to ``out_dir`` when given.

    ``vocab_size`` is an upper bound: a small caption corpus may yield fewer pieces. The saved folder
    loads back with ``AutoTokenizer.from_pretrained(out_dir)`` and is written atomically.
    """
    _check_family(family)
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ValueError("train_text_tokenizer needs at least one non-empty text")
    if family == "t5":
        backend = _t5_backend(texts, vocab_size)
        specials = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
        side = "right"
    else:
        backend = _llama_backend(texts, vocab_size)
        specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
        side = "left"
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, padding_side=side, model_max_length=MODEL_MAX_LENGTH, **specials
    )
    if out_dir is not None:
        save_tokenizer(tokenizer, out_dir)
    return tokenizer


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir: str | os.PathLike[str]) -> Path:
    """Save ``tokenizer`` to ``out_dir`` through a temporary sibling folder renamed into place."""
    return write_dir_atomic(Path(out_dir), tokenizer.save_pretrained)


def corpus_captions(data_dir: str | os.PathLike[str], split: str = "train") -> list[str]:
    """Every caption text of the clips of ``split`` in a HumanML3D folder, in split/file order."""
    from motion_align.motion.humanml3d import read_captions, read_split  # numpy-heavy: import lazily

    return [c.text for clip_id in read_split(data_dir, split) for c in read_captions(data_dir, clip_id)]
