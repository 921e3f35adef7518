"""A BVH reader and forward kinematics: joint positions of every frame, in the file's units and axes.

The format (Biovision Hierarchy; as described by Meredith & Maddock, "Motion Capture File Formats
Explained", 2001, and as Blender's and the CMU/LAFAN1 tools read it):

- ``HIERARCHY``, then one ``ROOT <name> { ... }``. Inside a joint's braces: ``OFFSET x y z`` (the joint's
  position in its parent's frame at rest), ``CHANNELS n <name> ...``, child ``JOINT <name> { ... }`` blocks
  and ``End Site { OFFSET x y z }`` (the tip of a bone without a child joint).
- Channel names are ``Xposition Yposition Zposition Xrotation Yrotation Zrotation`` (compared
  case-insensitively), any subset in any order on any joint. Rotations are in degrees.
- ``MOTION``, ``Frames: <n>``, ``Frame Time: <seconds>``, then one line per frame with one number per
  channel, joints in the order of the hierarchy, each joint's channels in its ``CHANNELS`` order.

Forward kinematics: a joint's local rotation is the product of its rotation channels' matrices in the
order the channels are listed (``Zrotation Xrotation Yrotation`` -> ``R = Rz(a) Rx(b) Ry(c)``, column
vectors); its translation from the parent is its OFFSET, with each axis that has a position channel
replaced by the channel's value (the root's position channels are its position; the convention of
Blender's importer and of the LAFAN1/Holden ``BVH.load`` code). World transforms chain from the root:
``R_w = R_w(parent) R``, ``p = p(parent) + R_w(parent) t``.

Errors are :class:`BvhFormatError` (a ValueError) naming the file and the line: an unknown keyword or
channel, a missing brace, a frame line with the wrong number of values, NaN or inf values (with the frame),
a ``Frames:`` count that the lines do not match.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "Bvh",
    "BvhFormatError",
    "BvhJoint",
    "euler_matrices",
    "forward_kinematics",
    "parse_bvh",
    "read_bvh",
]

_CHANNELS = {
    "xposition": "Xposition", "yposition": "Yposition", "zposition": "Zposition",
    "xrotation": "Xrotation", "yrotation": "Yrotation", "zrotation": "Zrotation",
}  # fmt: skip


class BvhFormatError(ValueError):
    """A malformed BVH file: the message names the file, then the line (and frame) where there is one."""

    def __init__(self, source: str, message: str, line: int | None = None) -> None:
        self.source, self.line = source, line
        where = source if line is None else f"{source} line {line}"
        super().__init__(f"{where}: {message}")


@dataclass
class BvhJoint:
    """One joint of the hierarchy: ``parent`` is an index into :attr:`Bvh.joints` (-1 for the root)."""

    name: str
    parent: int
    offset: np.ndarray
    channels: tuple[str, ...] = ()
    end_site: np.ndarray | None = None
    line: int = 0


@dataclass
class Bvh:
    """A parsed BVH file: joints in file order (parents first), ``motion`` (frames, channels) as written."""

    joints: list[BvhJoint]
    frame_time: float
    motion: np.ndarray
    source: str = "<bvh>"
    channel_start: list[int] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [joint.name for joint in self.joints]

    @property
    def num_frames(self) -> int:
        return int(self.motion.shape[0])

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    def channel_label(self, column: int) -> str:
        """``'<joint> <channel>'`` of a motion column, for messages."""
        for joint, start in zip(self.joints, self.channel_start, strict=True):
            if start <= column < start + len(joint.channels):
                return f"{joint.name} {joint.channels[column - start]}"
        return f"column {column}"


# ----------------------------------------------------------------------------------------- parsing


class _Tokens:
    """The hierarchy's words with their line numbers; braces are words of their own."""

    def __init__(self, lines: list[str], source: str) -> None:
        self.source = source
        self.items: list[tuple[str, int]] = []
        self.lines = lines
        self.pos = 0
        for number, line in enumerate(lines, 1):
            words = line.replace("{", " { ").replace("}", " } ").split()
            self.items.extend((word, number) for word in words)
            if words and words[0].upper() == "MOTION":
                break

    def peek(self) -> tuple[str, int]:
        if self.pos >= len(self.items):
            last = self.items[-1][1] if self.items else 1
            raise BvhFormatError(self.source, "unexpected end of file in the HIERARCHY", last)
        return self.items[self.pos]

    def next(self) -> tuple[str, int]:
        item = self.peek()
        self.pos += 1
        return item

    def expect(self, word: str) -> int:
        got, line = self.next()
        if got.upper() != word.upper():
            raise BvhFormatError(self.source, f"expected {word!r}, got {got!r}", line)
        return line

    def rest_of_line(self, line: int) -> list[str]:
        """The words after the current one that are on ``line`` (up to a brace)."""
        words = []
        while (
            self.pos < len(self.items) and self.items[self.pos][1] == line and self.items[self.pos][0] != "{"
        ):
            words.append(self.items[self.pos][0])
            self.pos += 1
        return words

    def numbers(self, count: int, what: str) -> np.ndarray:
        values = []
        for _ in range(count):
            word, line = self.next()
            try:
                value = float(word)
            except ValueError:
                raise BvhFormatError(self.source, f"{what}: expected a number, got {word!r}", line) from None
            if not math.isfinite(value):
                raise BvhFormatError(self.source, f"{what}: {word!r} is not a finite number", line)
            values.append(value)
        return np.array(values)


def _parse_joint(tokens: _Tokens, joints: list[BvhJoint], parent: int, keyword: str, line: int) -> None:
    source = tokens.source
    name = " ".join(tokens.rest_of_line(line))
    if not name:
        raise BvhFormatError(source, f"{keyword} without a name", line)
    if any(j.name == name for j in joints):
        raise BvhFormatError(source, f"joint name {name!r} appears twice", line)
    joint = BvhJoint(name, parent, np.zeros(3), line=line)
    index = len(joints)
    joints.append(joint)
    tokens.expect("{")
    seen_offset = seen_channels = False
    while True:
        word, at = tokens.next()
        upper = word.upper()
        if upper == "}":
            break
        if upper == "OFFSET":
            if seen_offset:
                raise BvhFormatError(source, f"joint {name!r}: a second OFFSET", at)
            joint.offset = tokens.numbers(3, f"joint {name!r} OFFSET")
            seen_offset = True
        elif upper == "CHANNELS":
            if seen_channels:
                raise BvhFormatError(source, f"joint {name!r}: a second CHANNELS", at)
            count_word, count_line = tokens.next()
            if not count_word.isdigit():
                raise BvhFormatError(source, f"joint {name!r} CHANNELS: expected a count, got {count_word!r}",
                                     count_line)  # fmt: skip
            channels = []
            for _ in range(int(count_word)):
                channel, channel_line = tokens.next()
                if channel.lower() not in _CHANNELS:
                    raise BvhFormatError(source, f"joint {name!r}: unknown channel {channel!r} (expected "
                                         f"{'/'.join(_CHANNELS.values())})", channel_line)  # fmt: skip
                channels.append(_CHANNELS[channel.lower()])
            if len(set(channels)) != len(channels):
                raise BvhFormatError(source, f"joint {name!r}: a channel is listed twice", count_line)
            joint.channels = tuple(channels)
            seen_channels = True
        elif upper == "JOINT":
            _parse_joint(tokens, joints, index, "JOINT", at)
        elif upper == "END":
            tokens.expect("Site")
            tokens.expect("{")
            tokens.expect("OFFSET")
            joint.end_site = tokens.numbers(3, f"End Site of {name!r} OFFSET")
            tokens.expect("}")
        else:
            raise BvhFormatError(source, f"joint {name!r}: unexpected {word!r} (expected OFFSET, CHANNELS, "
                                 "JOINT, End Site or '}')", at)  # fmt: skip
    if not seen_offset:
        raise BvhFormatError(source, f"joint {name!r} has no OFFSET", line)


def _header_value(lines: list[str], index: int, key: str, source: str) -> tuple[str, int]:
    """The value after ``key`` (``Frames:``, ``Frame Time:``) on the first non-blank line from ``index``
    (0-based), and the index after that line."""
    while index < len(lines) and not lines[index].strip():
        index += 1
    if index >= len(lines):
        raise BvhFormatError(source, f"missing {key!r} line after MOTION", len(lines))
    line = lines[index].strip()
    if not line.lower().replace(" ", "").startswith(key.lower().replace(" ", "")):
        raise BvhFormatError(source, f"expected {key!r}, got {line[:40]!r}", index + 1)
    return line.split(":", 1)[1].strip(), index + 1


def parse_bvh(text: str, source: str = "<bvh>") -> Bvh:
    """Parse BVH text (one skeleton); ``source`` names the file in error messages."""
    lines = text.splitlines()
    tokens = _Tokens(lines, source)
    tokens.expect("HIERARCHY")
    root_line = tokens.expect("ROOT")
    joints: list[BvhJoint] = []
    _parse_joint(tokens, joints, -1, "ROOT", root_line)
    word, line = tokens.next()
    if word.upper() == "ROOT":
        raise BvhFormatError(source, "a second ROOT: only one skeleton per file is supported", line)
    if word.upper() != "MOTION":
        raise BvhFormatError(source, f"expected MOTION after the hierarchy, got {word!r}", line)
    frames_text, after = _header_value(lines, line, "Frames:", source)
    if not frames_text.isdigit():
        raise BvhFormatError(source, f"Frames: expected a frame count, got {frames_text!r}", after)
    frame_time_text, after = _header_value(lines, after, "Frame Time:", source)
    try:
        frame_time = float(frame_time_text)
    except ValueError:
        frame_time = math.nan
    if not (math.isfinite(frame_time) and frame_time > 0):
        raise BvhFormatError(source, f"Frame Time: expected a positive number of seconds, got "
                             f"{frame_time_text!r}", after)  # fmt: skip
    starts, total = [], 0
    for joint in joints:
        starts.append(total)
        total += len(joint.channels)
    bvh = Bvh(joints, frame_time, np.zeros((0, total)), source, starts)
    bvh.motion = _parse_frames(lines, after, int(frames_text), total, bvh)
    return bvh


def _parse_frames(lines: list[str], first: int, frames: int, channels: int, bvh: Bvh) -> np.ndarray:
    """The frame lines from 0-based line ``first`` on, as a (frames, channels) float64 array."""
    source = bvh.source
    rows = []
    for index in range(first, len(lines)):
        words = lines[index].split()
        if not words:
            continue
        number = index + 1
        frame = len(rows)
        if frame >= frames:
            raise BvhFormatError(source, f"more frame lines than 'Frames: {frames}' says", number)
        if len(words) != channels:
            raise BvhFormatError(source, f"frame {frame}: {len(words)} values, expected {channels} (one per "
                                 "channel of the HIERARCHY)", number)  # fmt: skip
        try:
            row = np.array([float(w) for w in words])
        except ValueError:
            bad = next(w for w in words if not _is_float(w))
            raise BvhFormatError(source, f"frame {frame}: {bad!r} is not a number", number) from None
        if not np.isfinite(row).all():
            column = int(np.argmin(np.isfinite(row)))
            raise BvhFormatError(source, f"frame {frame}: NaN or inf value ({words[column]!r}) in channel "
                                 f"{bvh.channel_label(column)!r}", number)  # fmt: skip
        rows.append(row)
    if len(rows) != frames:
        raise BvhFormatError(source, f"'Frames: {frames}' but {len(rows)} frame lines", len(lines))
    return np.array(rows, dtype=np.float64).reshape(frames, channels)


def _is_float(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def read_bvh(path: str | os.PathLike[str]) -> Bvh:
    """Read and parse a BVH file (UTF-8, or Latin-1 when it is not UTF-8)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return parse_bvh(text, str(path))


# ------------------------------------------------------------------------------ forward kinematics


def euler_matrices(angles_deg: np.ndarray, axes: str) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of angles (..., k) in degrees about ``axes`` (k letters of XYZ),
    composed in the listed order: ``axes="ZXY"`` gives ``Rz(a0) @ Rx(a1) @ Ry(a2)``."""
    angles = np.radians(np.asarray(angles_deg, dtype=np.float64))
    out = np.broadcast_to(np.eye(3), angles.shape[:-1] + (3, 3)).copy()
    for k, axis in enumerate(axes):
        c, s = np.cos(angles[..., k]), np.sin(angles[..., k])
        m = np.zeros(angles.shape[:-1] + (3, 3))
        i = "XYZ".index(axis)
        j, l = (i + 1) % 3, (i + 2) % 3
        m[..., i, i] = 1.0
        m[..., j, j] = c
        m[..., l, l] = c
        m[..., j, l] = -s
        m[..., l, j] = s
        out = out @ m
    return out


def forward_kinematics(bvh: Bvh) -> np.ndarray:
    """World positions (frames, joints, 3) of every joint of ``bvh``, in the file's units and axes."""
    frames = bvh.num_frames
    count = len(bvh.joints)
    positions = np.zeros((frames, count, 3))
    rotations = np.zeros((frames, count, 3, 3))
    for index, (joint, start) in enumerate(zip(bvh.joints, bvh.channel_start, strict=True)):
        values = bvh.motion[:, start : start + len(joint.channels)]
        translation = np.broadcast_to(joint.offset, (frames, 3)).copy()
        axes, columns = [], []
        for k, channel in enumerate(joint.channels):
            axis = "XYZ".index(channel[0])
            if channel.endswith("position"):
                translation[:, axis] = values[:, k]
            else:
                axes.append(channel[0])
                columns.append(k)
        local = euler_matrices(values[:, columns], "".join(axes))
        if joint.parent < 0:
            positions[:, index] = translation
            rotations[:, index] = local
        else:
            parent_rotation = rotations[:, joint.parent]
            positions[:, index] = positions[:, joint.parent] + np.einsum("fij,fj->fi", parent_rotation,
                                                                         translation)  # fmt: skip
            rotations[:, index] = parent_rotation @ local
    return positions
