"""Reading pickles of plain data (lists, dicts, strings, ints) without running anything they ask for.

T2M's vocabulary ships as two pickles (``our_vab_words.pkl``, a list of words, and ``our_vab_idx.pkl``, a
dict word -> row). ``pickle.load`` on a file from the internet runs whatever callable the file names, so
here the file is first read opcode by opcode (``pickletools.genops``, which executes nothing): any opcode
that is not building a list, a dict, a string or an int (a class or function reference, a call, a tuple, a
float, bytes, a persistent id...) is refused with its name and byte offset. Only then is it unpickled, by
an unpickler that refuses every global as a second lock, and the result is checked to hold nothing else.
"""

from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path
from typing import Any

__all__ = ["load_plain_pickle"]

#: Opcodes that only build lists, dicts, str and int values, or manage the stack and memo.
ALLOWED_OPCODES = frozenset(
    {
        "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP",
        "EMPTY_LIST", "LIST", "APPEND", "APPENDS", "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS",
        "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4",
        "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
        "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET",
    }
)  # fmt: skip
_WHAT = {
    "GLOBAL": "a reference to a class or function",
    "STACK_GLOBAL": "a reference to a class or function",
    "REDUCE": "a call",
    "BUILD": "an object's state",
    "INST": "an object",
    "OBJ": "an object",
    "NEWOBJ": "an object",
    "NEWOBJ_EX": "an object",
    "PERSID": "a persistent id",
    "BINPERSID": "a persistent id",
}


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused: {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused: a persistent id")


def _check_opcodes(data: bytes, path: Path) -> None:
    try:
        for opcode, arg, position in pickletools.genops(data):
            if opcode.name not in ALLOWED_OPCODES or (opcode.name == "INT" and isinstance(arg, bool)):
                what = _WHAT.get(opcode.name, "a value that is not a list, dict, string or int")
                detail = f" {arg}" if opcode.name == "GLOBAL" and arg else ""
                raise ValueError(
                    f"{path}: refused: byte {position} holds {what} (pickle opcode {opcode.name}{detail}); "
                    "only plain lists, dicts, strings and ints are read"
                )
    except ValueError as error:
        if str(error).startswith(f"{path}: refused"):
            raise
        raise ValueError(f"{path}: not a readable pickle ({error})") from None


def _check_values(value: Any, path: Path, where: str = "the top level", seen: set[int] | None = None) -> None:
    seen = set() if seen is None else seen
    if type(value) in (str, int):
        return
    if type(value) not in (list, dict):
        raise ValueError(f"{path}: refused: {where} is a {type(value).__name__}; only plain lists, dicts, "
                         "strings and ints are read")  # fmt: skip
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_values(item, path, f"item {i} of {where}", seen)
    else:
        for key, item in value.items():
            _check_values(key, path, f"a key of {where}", seen)
            _check_values(item, path, f"the value of {key!r} in {where}", seen)


def load_plain_pickle(path: str | Path) -> list | dict | str | int:
    """The list, dict, string or int pickled in ``path``; ValueError naming the file and the reason for
    anything else (a class, a function call, a float, a tuple...), before any of it is unpickled."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    data = path.read_bytes()
    _check_opcodes(data, path)
    try:
        value = _NoGlobals(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, IndexError, KeyError) as error:
        raise ValueError(f"{path}: not a readable pickle ({error})") from None
    _check_values(value, path)
    return value
