"""Atomic writers: a reader sees a file or folder whole or not at all, and a killed run leaves nothing that
the next one does not remove. Torch-free, so that the motion layer's writers (corpus folders, renders) use
them without loading model code.

An atomic writer writes beside its target, into `.<name>.tmp-<pid>`, and renames that onto the target when
done. A run killed midway cannot clean up, so its temporary stays; the pid in the name tells the next writer
of the same target whether the process that made it is gone. Temporaries of a live process (another run
writing the same target now) are left alone. Within one process, `_ACTIVE` holds the temporaries being
written, so that a leftover carrying this process's pid (a pid reused after a container restart) is still
recognised as stale.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TEMPORARY_KINDS = ("tmp", "old")

_ACTIVE: set[Path] = set()
_ACTIVE_LOCK = threading.Lock()


def _temporary_pattern(target: Path) -> re.Pattern[str]:
    kinds = "|".join(TEMPORARY_KINDS)
    suffix = f"(?:{re.escape(target.suffix)})?" if target.suffix else ""
    return re.compile(rf"\.{re.escape(target.name)}\.(?P<kind>{kinds})-(?P<pid>\d+)(?:-\d+)?{suffix}")


def _process_alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # no cheap, harmless liveness check: never remove another process's files
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # e.g. PermissionError: the process exists, under another user
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale_temporaries(target: str | os.PathLike[str]) -> list[Path]:
    """Remove what killed writers of ``target`` left beside it; return the paths removed.

    A leftover is a `.<name>.tmp-<pid>` or `.<name>.old-<pid>` sibling whose process is gone (or, with
    this process's pid, that this process is not writing). A run killed in the instant between moving
    the old folder aside and renaming the new one into place leaves no ``target`` but a complete
    `.old-` folder: that one is renamed back, so ``target`` keeps its previous content.
    """
    target = Path(target).absolute()
    if not target.parent.is_dir():
        return []
    pattern = _temporary_pattern(target)
    stale = []
    for entry in sorted(target.parent.iterdir()):
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        pid = int(match["pid"])
        with _ACTIVE_LOCK:
            active = entry in _ACTIVE
        if active or (pid != os.getpid() and _process_alive(pid)):
            continue
        if match["kind"] == "old" and not target.exists() and not target.is_symlink():
            entry.rename(target)  # the swap was cut between its two renames: keep the old content
            continue
        _remove(entry)
        stale.append(entry)
    return stale


def claim_temporary(target: str | os.PathLike[str], kind: str = "tmp", keep_suffix: bool = False) -> Path:
    """A free `.<name>.<kind>-<pid>` path beside ``target`` (with `-<n>` appended when this process
    already writes one), after removing stale leftovers of ``target``; hand it back with
    :func:`release_temporary`. Nothing is created: the writer makes the file or folder.

    ``keep_suffix`` ends the name with ``target``'s suffix too (`.clip.gif.tmp-<pid>.gif`), for writers
    that pick the format by the file name (images, videos).
    """
    if kind not in TEMPORARY_KINDS:
        raise ValueError(f"kind must be one of {TEMPORARY_KINDS}, got {kind!r}")
    target = Path(target).absolute()
    if kind == "tmp":
        remove_stale_temporaries(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    base, suffix = f".{target.name}.{kind}-{os.getpid()}", target.suffix if keep_suffix else ""
    with _ACTIVE_LOCK:
        n = 0
        path = target.parent / f"{base}{suffix}"
        while path in _ACTIVE or path.exists() or path.is_symlink():
            n += 1
            path = target.parent / f"{base}-{n}{suffix}"
        _ACTIVE.add(path)
    return path


def release_temporary(path: str | os.PathLike[str]) -> None:
    """Remove a temporary of :func:`claim_temporary` if it is still there (a write that failed, or was
    abandoned), and forget it."""
    path = Path(path)
    try:
        _remove(path)
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(path)


@contextmanager
def temporary_sibling(
    target: str | os.PathLike[str], kind: str = "tmp", keep_suffix: bool = False
) -> Iterator[Path]:
    """:func:`claim_temporary` for a ``with`` block; whatever was not renamed away is removed at its end,
    on success, on any exception and on KeyboardInterrupt alike."""
    path = claim_temporary(target, kind, keep_suffix)
    try:
        yield path
    finally:
        release_temporary(path)


def write_atomic(path: Path, write: Callable[[str], Any]) -> None:
    """Call write(tmp_path), then rename tmp_path to path: readers never see a half-written file.

    The temporary is `.<name>.tmp-<pid>` beside ``path``: removed if ``write`` fails, and removed by the
    next write of ``path`` if this process is killed.
    """
    path = Path(path)
    with temporary_sibling(path) as tmp:
        write(str(tmp))
        os.replace(tmp, path)


def write_dir_atomic(path: Path, write: Callable[[Path], Any], overwrite: bool = False) -> Path:
    """Call write(tmp_dir) on a fresh sibling folder, then rename it to ``path``: readers see the old folder
    or the whole new one, never a half-written one. A non-empty ``path`` needs ``overwrite=True`` (it is
    moved aside, replaced, then removed); a failed write leaves ``path`` as it was.

    The temporary folder is `.<name>.tmp-<pid>` beside ``path``; a killed run's is removed by the next
    write of ``path`` (see :func:`remove_stale_temporaries`).
    """
    path = Path(path)
    remove_stale_temporaries(path)  # first: it may restore `path` from a swap cut in the middle
    if path.exists() and not overwrite and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} exists and is not an empty folder: pass overwrite=True to replace it")
    with temporary_sibling(path) as tmp:
        tmp.mkdir()
        write(tmp)
        if not path.exists():
            tmp.rename(path)
            return path
        with temporary_sibling(path, "old") as old:
            path.rename(old)
            try:
                tmp.rename(path)
            except BaseException:
                old.rename(path)
                raise
    return path
