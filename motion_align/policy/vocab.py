"""The motion vocabulary: motion codes <-> motion-token strings <-> text-tokenizer ids.

This is the one module that knows how motion tokens are spelled. It follows MotionGPT (Jiang et al.,
"MotionGPT: Human Motion as a Foreign Language", NeurIPS 2023; `mGPT/archs/mgpt_lm.py` in
github.com/OpenMotionLab/MotionGPT), which adds ``<motion_id_{i}>`` for ``i in range(K + 3)`` to the
text tokenizer of a codebook of K codes::

    <motion_id_0> ... <motion_id_{K-1}>   the K VQ-VAE codes
    <motion_id_K>                         start of motion
    <motion_id_{K+1}>                     end of motion
    <motion_id_{K+2}>                     mask

They are added as normal (not special) tokens: TRL decodes completions with
``skip_special_tokens=True``, which would drop special ones. Adding tokens grows the tokenizer only;
the policy's embeddings are resized where the policy is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

_MOTION_TOKEN = re.compile(r"<motion_id_(\d+)>")
_NO_TOKENS = "tokenizer has no motion tokens: call MotionVocab.add_to_tokenizer first"

# One piece of a sequence being decoded: ("m", n) for <motion_id_n>, ("t", text) for a text token,
# ("x", id) for an id outside the tokenizer's vocabulary.
_Item = tuple[str, Any]


@dataclass
class MotionDecoding:
    """Codes decoded from a generated motion, and every problem met on the way (empty when clean)."""

    codes: list[int]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the motion decoded without any problem."""
        return not self.problems


def _as_list(values: Any) -> list[int]:
    """Tensors, arrays and sequences of ints -> a list of Python ints."""
    return [int(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]


def _quote(pieces: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(p) for p in pieces[:limit])
    return shown + (f", ... ({len(pieces) - limit} more)" if len(pieces) > limit else "")


@dataclass(frozen=True)
class MotionVocab:
    """The K + 3 motion tokens of a codebook of ``codebook_size`` (K) codes."""

    codebook_size: int

    def __post_init__(self) -> None:
        if isinstance(self.codebook_size, bool) or not isinstance(self.codebook_size, int):
            raise TypeError(f"codebook_size must be an int, got {self.codebook_size!r}")
        if self.codebook_size < 1:
            raise ValueError(f"codebook_size must be >= 1, got {self.codebook_size}")

    # ----------------------------------------------------------------- token strings
    @property
    def tokens(self) -> list[str]:
        """All K + 3 token strings: the codes, then start, end and mask."""
        return [f"<motion_id_{i}>" for i in range(self.codebook_size + 3)]

    @property
    def som(self) -> str:
        """Start-of-motion token, ``<motion_id_K>``."""
        return f"<motion_id_{self.codebook_size}>"

    @property
    def eom(self) -> str:
        """End-of-motion token, ``<motion_id_{K+1}>``."""
        return f"<motion_id_{self.codebook_size + 1}>"

    @property
    def mask(self) -> str:
        """Mask token, ``<motion_id_{K+2}>``."""
        return f"<motion_id_{self.codebook_size + 2}>"

    # ----------------------------------------------------------------- tokenizer
    def add_to_tokenizer(self, tokenizer: Any) -> int:
        """Add the motion tokens to ``tokenizer`` as normal tokens; returns how many were added (0: present).

        Raises ValueError if the tokenizer already holds a different or incomplete motion vocabulary.
        """
        present = [_token_id(tokenizer, t) is not None for t in self.tokens]
        if all(present):
            self.ids(tokenizer)  # checks contiguity and that the tokenizer has no larger vocabulary
            return 0
        if any(present) or _token_id(tokenizer, f"<motion_id_{self.codebook_size + 3}>") is not None:
            raise ValueError(
                f"tokenizer already has motion tokens, not those of a codebook of {self.codebook_size} "
                "(see MotionVocab.from_tokenizer): refusing to mix two motion vocabularies"
            )
        added = tokenizer.add_tokens(self.tokens, special_tokens=False)
        self.ids(tokenizer)
        return added

    def ids(self, tokenizer: Any) -> list[int]:
        """The K + 3 token ids, in token order; checks they exist, are contiguous and match K."""
        ids = [_token_id(tokenizer, t) for t in self.tokens]
        missing = [t for t, i in zip(self.tokens, ids) if i is None]
        if len(missing) == len(ids):
            raise ValueError(_NO_TOKENS)
        if missing:
            raise ValueError(
                f"tokenizer has an incomplete motion vocabulary for a codebook of {self.codebook_size}: "
                f"missing {len(missing)} token(s): {_quote(missing)}"
            )
        if ids != list(range(ids[0], ids[0] + len(ids))):
            raise ValueError(f"motion token ids are not contiguous (first {ids[0]}, last {ids[-1]})")
        if _token_id(tokenizer, f"<motion_id_{self.codebook_size + 3}>") is not None:
            raise ValueError(
                f"tokenizer has motion tokens beyond <motion_id_{self.codebook_size + 2}>: its codebook is "
                f"larger than {self.codebook_size} (use MotionVocab.from_tokenizer)"
            )
        return ids

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> MotionVocab:
        """The vocabulary whose tokens ``tokenizer`` holds (K inferred); errors if absent or incomplete."""
        found = {int(m.group(1)) for t in tokenizer.get_vocab() if (m := _MOTION_TOKEN.fullmatch(t))}
        if not found:
            raise ValueError(_NO_TOKENS)
        size = max(found) - 2
        missing = [f"<motion_id_{i}>" for i in range(max(found) + 1) if i not in found]
        if size < 1 or missing:
            raise ValueError(
                f"tokenizer has an incomplete motion vocabulary (highest <motion_id_{max(found)}>): "
                f"missing {len(missing)} token(s): {_quote(missing)}"
            )
        vocab = cls(size)
        vocab.ids(tokenizer)
        return vocab

    # ----------------------------------------------------------------- encoding
    def _check_codes(self, codes: Any) -> list[int]:
        values = _as_list(codes)
        for c in values:
            if not 0 <= c < self.codebook_size:
                raise ValueError(f"code {c} is outside the codebook of {self.codebook_size}")
        return values

    def codes_to_string(self, codes: Any) -> str:
        """``[12, 7]`` -> ``"<motion_id_K><motion_id_12><motion_id_7><motion_id_{K+1}>"`` (no spaces)."""
        body = "".join(f"<motion_id_{c}>" for c in self._check_codes(codes))
        return f"{self.som}{body}{self.eom}"

    def codes_to_ids(self, codes: Any, tokenizer: Any) -> list[int]:
        """Token ids of the motion, start and end tokens included."""
        base = self.ids(tokenizer)[0]
        k = self.codebook_size
        return [base + k] + [base + c for c in self._check_codes(codes)] + [base + k + 1]

    # ----------------------------------------------------------------- decoding
    def decode(self, text_or_ids: Any, tokenizer: Any = None) -> MotionDecoding:
        """Codes between the first start token and the next end token, with every problem named.

        Accepts a generated string (whitespace between tokens is tolerated; with a tokenizer its
        special tokens are removed first) or a sequence/tensor of ids (tokenizer required; special
        ids such as pad/eos are skipped). Malformed generations never raise and are never clamped;
        only a tokenizer without this motion vocabulary (or ids without a tokenizer) is an error.
        """
        if isinstance(text_or_ids, str):
            return self._parse(self._string_items(text_or_ids, tokenizer))
        if tokenizer is None:
            raise ValueError("decoding token ids needs the tokenizer: decode(ids, tokenizer)")
        base = self.ids(tokenizer)[0]
        return self._parse(self._id_items(_as_list(text_or_ids), tokenizer, base))

    def batch_decode(self, sequences: Iterable[Any], tokenizer: Any) -> list[MotionDecoding]:
        """Decode a batch (2-D tensor, or a list of id lists or strings) in one go.

        Clean id rows (prefix, start, codes, end, then only special ids) are decoded with a lookup over
        the contiguous motion-id range; any other row goes through the same checks as :meth:`decode`.
        """
        base = self.ids(tokenizer)[0]
        special = set(tokenizer.all_special_ids)
        rows = sequences.tolist() if hasattr(sequences, "tolist") else sequences
        out = []
        for row in rows:
            if isinstance(row, str):
                out.append(self._parse(self._string_items(row, tokenizer)))
                continue
            row = _as_list(row)
            fast = self._fast_row(row, base, special)
            out.append(fast if fast is not None else self._parse(self._id_items(row, tokenizer, base)))
        return out

    def _fast_row(self, row: list[int], base: int, special: set[int]) -> MotionDecoding | None:
        """Decode a clean id row without building items; None when the row needs the full checks."""
        k = self.codebook_size
        som, eom = base + k, base + k + 1
        try:
            start = row.index(som)
            end = row.index(eom, start + 1)
        except ValueError:
            return None
        body = row[start + 1 : end]
        if not body or any(not base <= i < som for i in body):
            return None
        if any(i not in special for i in row[end + 1 :]):
            return None
        if any(base <= i <= som + 2 for i in row[:start]):
            return None
        return MotionDecoding([i - base for i in body])

    def _string_items(self, text: str, tokenizer: Any) -> list[_Item]:
        if tokenizer is not None:
            specials = sorted(set(tokenizer.all_special_tokens), key=len, reverse=True)
            if specials:
                text = re.sub("|".join(re.escape(s) for s in specials), " ", text)
        items: list[_Item] = []
        pos = 0
        for match in _MOTION_TOKEN.finditer(text):
            items += [("t", word) for word in text[pos : match.start()].split()]
            items.append(("m", int(match.group(1))))
            pos = match.end()
        items += [("t", word) for word in text[pos:].split()]
        return items

    def _id_items(self, ids: list[int], tokenizer: Any, base: int) -> list[_Item]:
        special = set(tokenizer.all_special_ids)
        size, top = len(tokenizer), base + self.codebook_size + 3
        items: list[_Item] = []
        for i in ids:
            if base <= i < top:
                items.append(("m", i - base))
            elif not 0 <= i < size:
                items.append(("x", i))
            elif i not in special:
                token = tokenizer.convert_ids_to_tokens(i)
                match = _MOTION_TOKEN.fullmatch(token)
                items.append(("m", int(match.group(1))) if match else ("t", token))
        return items

    def _parse(self, items: list[_Item]) -> MotionDecoding:
        """The decoding rules, shared by strings and ids: find the motion, then check its body."""
        k = self.codebook_size
        problems: list[str] = []
        starts = [n for n, item in enumerate(items) if item == ("m", k)]
        if starts:
            before = [item for item in items[: starts[0]] if item[0] == "m"]
            if before:
                problems.append(f"{len(before)} motion token(s) before the start token {self.som} ignored")
            begin = starts[0] + 1
        else:
            problems.append(f"missing start token {self.som}: decoded from the beginning")
            begin = 0
        end = next((n for n in range(begin, len(items)) if items[n] == ("m", k + 1)), None)
        if end is None:
            problems.append(f"missing end token {self.eom}: decoded to the end (truncated generation?)")
            body = items[begin:]
        else:
            body = items[begin:end]
            after = items[end + 1 :]
            if after:
                problems.append(f"{len(after)} token(s) after the end token ignored: {_quote(_show(after))}")
        codes = self._check_body(body, problems)
        if not codes:
            problems.append("empty motion: no codes between start and end")
        return MotionDecoding(codes, problems)

    def _check_body(self, body: list[_Item], problems: list[str]) -> list[int]:
        """Codes of the motion body; every other item is skipped and reported in ``problems``."""
        k = self.codebook_size
        codes: list[int] = []
        text: list[str] = []
        starts = masks = 0
        outside: list[int] = []
        unknown: list[int] = []
        for kind, value in body:
            if kind == "t":
                text.append(value)
            elif kind == "x":
                unknown.append(value)
            elif value < k:
                codes.append(value)
            elif value == k:
                starts += 1
            elif value == k + 2:
                masks += 1
            elif value > k + 2:
                outside.append(value)
        if text:
            problems.append(f"{len(text)} text token(s) between motion tokens skipped: {_quote(text)}")
        if starts:
            problems.append(f"second start token {self.som} inside the motion ({starts}x, skipped)")
        if masks:
            problems.append(f"mask token {self.mask} inside the motion ({masks}x, skipped)")
        for c in outside:
            problems.append(f"code {c} is outside the codebook of {k} (skipped)")
        for i in unknown:
            problems.append(f"id {i} is outside the tokenizer's vocabulary (skipped)")
        return codes


def _show(items: list[_Item]) -> list[str]:
    return [f"<motion_id_{v}>" if kind == "m" else str(v) for kind, v in items]


def _token_id(tokenizer: Any, token: str) -> int | None:
    """The id of ``token`` if the tokenizer really has it (not the unknown token standing in)."""
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or tokenizer.convert_ids_to_tokens(tid) != token:
        return None
    return tid
