"""BVH joint names -> the 22 SMPL body joints of HumanML3D: built-in rig maps, detection, mapping files.

A map gives, for each SMPL-22 joint (:data:`motion_align.motion.skeleton.JOINT_NAMES`), its *source*:
a BVH joint's name (``"LeftUpLeg"``; ``"hip|root"`` lists alternatives, the first present wins), or
:class:`Between`, a point on the segment between two BVH joints (``(1 - t) * a + t * b``), for a joint the
rig has no counterpart of. A BVH joint's position is where its own transform's origin is (the start of the
bone that its OFFSET of the children describes), so a rig joint maps onto the SMPL joint at the same place.

Names are compared exactly first, then *normalised*: a namespace before the last ``:`` (Mixamo's
``mixamorig:``, ``mixamorig1:``...) and the ``m_avg_``/``f_avg_`` prefix of SMPL's FBX/Unity rigs are
dropped, then case and every character that is not a letter or a digit. ``mixamorig:LeftUpLeg``,
``leftupleg`` and ``Left_Up_Leg`` are all the same joint.

Built-in rigs (:data:`RIGS`, tried in this order; the one with every name present is used, see
:func:`detect_rig`):

- ``smpl``: SMPL's own joint names, ``pelvis``, ``left_hip``, ... ``right_wrist`` (smplx's
  ``JOINT_NAMES``), the HumanML3D skeleton itself.
- ``smpl-short``: the abbreviated SMPL names of the SMPL model files and their FBX/BVH exports, ``Pelvis``,
  ``L_Hip``, ``R_Hip``, ``Spine1``, ``L_Knee``, ... ``L_Collar``, ``L_Shoulder``, ``L_Elbow``, ``L_Wrist``.
- ``mixamo``: Adobe Mixamo's humanoid rig, ``mixamorig:Hips``, ``Spine``/``Spine1``/``Spine2``, ``Neck``,
  ``Head``, ``LeftShoulder`` (the clavicle), ``LeftArm``, ``LeftForeArm``, ``LeftHand``, ``LeftUpLeg``,
  ``LeftLeg``, ``LeftFoot``, ``LeftToeBase``. Mixamo's three spine joints are SMPL's spine1/2/3.
- ``lafan1``: Ubisoft La Forge's LAFAN1 (Harvey et al. 2020), the same names with ``LeftToe`` for the ball
  of the foot: its 22 joints are Hips, Left/Right UpLeg, Leg, Foot, Toe, Spine, Spine1, Spine2, Neck, Head,
  Left/Right Shoulder, Arm, ForeArm, Hand.
- ``cmu``: the CMU Graphics Lab Motion Capture Database in its usual BVH release (B. Hahne's conversion
  of the ASF/AMC files): ``Hips``, ``LHipJoint`` (a zero-offset joint at the root) -> ``LeftUpLeg`` ->
  ``LeftLeg`` -> ``LeftFoot`` -> ``LeftToeBase``; ``LowerBack`` (at the root) -> ``Spine`` -> ``Spine1``
  -> ``Neck`` -> ``Neck1`` -> ``Head``; ``Spine1`` -> ``LeftShoulder`` (the clavicle, starting where
  ``Neck`` does) -> ``LeftArm`` -> ``LeftForeArm`` -> ``LeftHand``. Its lengths are the ASF's units, inches
  divided by 0.45 (``:units length 0.45``).
- ``cmu-asf``: the same skeleton under the ASF bone names, as BVH files converted straight from ASF/AMC
  name them: ``hip`` (or ``root``), ``lhipjoint``, ``lfemur``, ``ltibia``, ``lfoot``, ``ltoes``;
  ``lowerback``, ``upperback``, ``thorax``, ``lowerneck``, ``upperneck``, ``head``; ``lclavicle``,
  ``lhumerus``, ``lradius``, ``lwrist`` (and ``r...``). In ASF each joint sits at the start of its bone.

The CMU skeletons: ``LowerBack``/``lowerback`` and ``LHipJoint``/``lhipjoint`` sit on the root, so SMPL's
spine1 is the joint above (``Spine``/``upperback``), spine2 the next (``Spine1``/``thorax``), spine3 the
base of the neck where the clavicles start (``Neck``/``lowerneck``), neck the next (``Neck1``/
``upperneck``) and head ``Head``/``head``. Their clavicle starts on the spine's midline, where SMPL's collar
joint sits beside it (13.7 cm to the side of spine3), so SMPL's collar is taken halfway along the clavicle
(``Between(clavicle, upper arm, 0.5)``). No other joint is interpolated: a joint without a source is an error.

A mapping file (``--mapping``, JSON or YAML) holds ``{"<SMPL joint>": "<BVH joint>", ...}``; a value may
also be ``{"between": ["<BVH joint a>", "<BVH joint b>"], "t": 0.5}``. Its entries replace those of the
built-in rig that matches the file best, so a file may hold just the joints a rig lacks or names otherwise.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from motion_align.motion.skeleton import JOINT_NAMES

__all__ = [
    "Between", "RIGS", "ResolvedMapping", "Rig", "Source", "detect_rig", "load_mapping",
    "normalize_joint_name", "resolve_mapping",
]  # fmt: skip

_NAMESPACE = re.compile(r"^.*:")
_SMPL_FBX_PREFIX = re.compile(r"^[mf]_avg_", re.IGNORECASE)
_NOT_ALNUM = re.compile(r"[^a-z0-9]")


@dataclass(frozen=True)
class Between:
    """A point between two BVH joints, ``(1 - t) * first + t * second`` (a name may list ``a|b``)."""

    first: str
    second: str
    t: float = 0.5

    def describe(self) -> str:
        return f"between({self.first}, {self.second}, t={self.t:g})"


Source = str | Between


@dataclass(frozen=True)
class Rig:
    """A built-in rig: a name, what it is, and the source of each SMPL-22 joint."""

    name: str
    description: str
    sources: Mapping[str, Source]


@dataclass(frozen=True)
class ResolvedMapping:
    """Where each SMPL-22 joint comes from in one BVH file: indices into its joint list and a weight.

    Joint ``j`` is ``(1 - weight[j]) * position[first[j]] + weight[j] * position[second[j]]``; ``rig`` names
    the built-in rig used (with ``+mapping`` when a mapping file changed it), ``labels`` the source of each
    joint for messages.
    """

    rig: str
    first: tuple[int, ...]
    second: tuple[int, ...]
    weight: tuple[float, ...]
    labels: tuple[str, ...]


def normalize_joint_name(name: str) -> str:
    """The comparison key of a joint name: no namespace, no ``m_avg_`` prefix, lower case, letters/digits."""
    name = _NAMESPACE.sub("", name.strip())
    name = _SMPL_FBX_PREFIX.sub("", name)
    return _NOT_ALNUM.sub("", name.lower())


def _sides(template: Mapping[str, Source], left: Mapping[str, str], right: Mapping[str, str]) -> dict:
    """Expand ``{side}`` placeholders of a one-sided template into left and right entries."""
    out: dict[str, Source] = {}
    for smpl, source in template.items():
        if "{side}" not in smpl:
            out[smpl] = source
            continue
        for side, words in (("left", left), ("right", right)):
            key = smpl.format(side=side)
            if isinstance(source, Between):
                out[key] = Between(source.first.format(**words), source.second.format(**words), source.t)
            else:
                out[key] = source.format(**words)
    return {name: out[name] for name in JOINT_NAMES}


def _smpl_short(name: str) -> str:
    """``left_hip`` -> ``L_Hip``, ``spine1`` -> ``Spine1``."""
    side, _, rest = name.partition("_")
    return f"{side[0].upper()}_{rest.capitalize()}" if side in ("left", "right") else name.capitalize()


_MIXAMO_LIKE = {
    "pelvis": "Hips", "spine1": "Spine", "spine2": "Spine1", "spine3": "Spine2", "neck": "Neck",
    "head": "Head", "{side}_hip": "{S}UpLeg", "{side}_knee": "{S}Leg", "{side}_ankle": "{S}Foot",
    "{side}_foot": "{S}ToeBase", "{side}_collar": "{S}Shoulder", "{side}_shoulder": "{S}Arm",
    "{side}_elbow": "{S}ForeArm", "{side}_wrist": "{S}Hand",
}  # fmt: skip
_LAFAN1 = dict(_MIXAMO_LIKE, **{"{side}_foot": "{S}Toe"})
_CMU = {
    "pelvis": "Hips", "spine1": "Spine", "spine2": "Spine1", "spine3": "Neck", "neck": "Neck1",
    "head": "Head", "{side}_hip": "{S}UpLeg", "{side}_knee": "{S}Leg", "{side}_ankle": "{S}Foot",
    "{side}_foot": "{S}ToeBase", "{side}_collar": Between("{S}Shoulder", "{S}Arm"),
    "{side}_shoulder": "{S}Arm", "{side}_elbow": "{S}ForeArm", "{side}_wrist": "{S}Hand",
}  # fmt: skip
_CMU_ASF = {
    "pelvis": "hip|root", "spine1": "upperback", "spine2": "thorax", "spine3": "lowerneck",
    "neck": "upperneck", "head": "head", "{side}_hip": "{s}femur", "{side}_knee": "{s}tibia",
    "{side}_ankle": "{s}foot", "{side}_foot": "{s}toes",
    "{side}_collar": Between("{s}clavicle", "{s}humerus"), "{side}_shoulder": "{s}humerus",
    "{side}_elbow": "{s}radius", "{side}_wrist": "{s}wrist",
}  # fmt: skip
_LEFT, _RIGHT = {"S": "Left", "s": "l"}, {"S": "Right", "s": "r"}

#: The built-in rigs, in detection order.
RIGS: tuple[Rig, ...] = (
    Rig("smpl", "SMPL joint names (pelvis, left_hip, ...)", {name: name for name in JOINT_NAMES}),
    Rig(
        "smpl-short",
        "SMPL's abbreviated names (Pelvis, L_Hip, ...)",
        {n: _smpl_short(n) for n in JOINT_NAMES},
    ),
    Rig(
        "mixamo", "Mixamo (mixamorig:Hips, LeftUpLeg, ..., LeftToeBase)", _sides(_MIXAMO_LIKE, _LEFT, _RIGHT)
    ),
    Rig("lafan1", "LAFAN1 / Ubisoft (Hips, LeftUpLeg, ..., LeftToe)", _sides(_LAFAN1, _LEFT, _RIGHT)),
    Rig("cmu", "CMU mocap BVH release (Hips, LHipJoint, LowerBack, ..., Neck1)", _sides(_CMU, _LEFT, _RIGHT)),
    Rig(
        "cmu-asf", "CMU ASF bone names (hip, lfemur, ltibia, ..., lclavicle)", _sides(_CMU_ASF, _LEFT, _RIGHT)
    ),
)


# ----------------------------------------------------------------------------------------- matching


def _find(wanted: str, names: Sequence[str], keys: Mapping[str, list[int]]) -> int | None:
    """Index of the BVH joint called ``wanted`` (``a|b`` alternatives), exactly or by normalised name."""
    for alternative in wanted.split("|"):
        alternative = alternative.strip()
        if alternative in names:
            return names.index(alternative)
        hits = keys.get(normalize_joint_name(alternative), [])
        if len(hits) == 1:
            return hits[0]
    return None


def _resolve(
    source: Source, names: Sequence[str], keys: Mapping[str, list[int]]
) -> tuple[int, int, float] | None:
    if isinstance(source, Between):
        first, second = _find(source.first, names, keys), _find(source.second, names, keys)
        return None if first is None or second is None else (first, second, float(source.t))
    index = _find(source, names, keys)
    return None if index is None else (index, index, 0.0)


def _keys(names: Sequence[str]) -> dict[str, list[int]]:
    keys: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        keys.setdefault(normalize_joint_name(name), []).append(i)
    return keys


def detect_rig(names: Sequence[str]) -> tuple[Rig, list[str]]:
    """The built-in rig that matches ``names`` best (fewest SMPL joints without a source) and those joints."""
    keys = _keys(names)
    best: tuple[Rig, list[str]] | None = None
    for rig in RIGS:
        missing = [smpl for smpl, source in rig.sources.items() if _resolve(source, names, keys) is None]
        if best is None or len(missing) < len(best[1]):
            best = (rig, missing)
        if not missing:
            break
    assert best is not None
    return best


def resolve_mapping(
    names: Sequence[str], mapping: Mapping[str, Source] | None = None, source: str = "the BVH file",
    mapping_path: str | None = None,
) -> ResolvedMapping:  # fmt: skip
    """Where each SMPL-22 joint is among the BVH joints ``names``: the best built-in rig, ``mapping`` on top.

    Raises ValueError naming the file and the SMPL joint that has no source (with the rig's expected name), or
    the mapping entry whose BVH joint is not in the file.
    """
    keys = _keys(names)
    rig, _ = detect_rig(names)
    sources: dict[str, Source] = dict(rig.sources)
    label = rig.name
    if mapping:
        label += "+mapping"
        where = mapping_path or "mapping"
        for smpl, value in mapping.items():
            if _resolve(value, names, keys) is None:
                what = value.describe() if isinstance(value, Between) else repr(value)
                raise ValueError(
                    f"{where}: {smpl!r} -> {what}: no such joint in {source} (its joints: "
                    f"{_short_list(names)})"
                )
            sources[smpl] = value
    first, second, weight, labels = [], [], [], []
    for smpl in JOINT_NAMES:
        value = sources[smpl]
        found = _resolve(value, names, keys)
        if found is None:
            expected = value.describe() if isinstance(value, Between) else repr(value)
            raise ValueError(
                f"{source}: no source joint for SMPL joint {smpl!r}: the closest built-in rig {rig.name!r} "
                f"expects {expected}, which is not in the file; pass --mapping FILE (JSON or YAML, "
                f"SMPL joint name -> BVH joint name). Its joints: {_short_list(names)}"
            )
        first.append(found[0])
        second.append(found[1])
        weight.append(found[2])
        labels.append(value.describe() if isinstance(value, Between) else names[found[0]])
    return ResolvedMapping(label, tuple(first), tuple(second), tuple(weight), tuple(labels))


def _short_list(names: Sequence[str], limit: int = 30) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


# ------------------------------------------------------------------------------------- mapping files


def _mapping_value(value: Any, key: str, path: str) -> Source:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, dict) and set(value) <= {"between", "t"} and "between" in value:
        pair, t = value["between"], value.get("t", 0.5)
        if (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) and p.strip() for p in pair)
            and isinstance(t, (int, float)) and not isinstance(t, bool) and 0.0 <= t <= 1.0
        ):  # fmt: skip
            return Between(pair[0].strip(), pair[1].strip(), float(t))
    raise ValueError(
        f'{path}: {key!r}: expected a BVH joint name or {{"between": [joint_a, joint_b], "t": 0..1}}, '
        f"got {value!r}"
    )


def load_mapping(path: str | os.PathLike[str]) -> dict[str, Source]:
    """Read a mapping file: a JSON or YAML object ``{SMPL joint name: BVH joint name or between}``.

    ``.json`` is read as JSON, ``.yaml``/``.yml`` as YAML, anything else as YAML (a superset of JSON).
    Raises ValueError naming the file and the key for an unknown SMPL joint (with the nearest name) or a bad
    value; OSError when the file cannot be read.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected an object of SMPL joint name -> BVH joint name")
    mapping: dict[str, Source] = {}
    for key, value in data.items():
        if key not in JOINT_NAMES:
            near = difflib.get_close_matches(str(key), JOINT_NAMES, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f" (SMPL joints: {', '.join(JOINT_NAMES)})"
            raise ValueError(f"{path}: {key!r} is not an SMPL-22 joint name{hint}")
        mapping[key] = _mapping_value(value, key, str(path))
    return mapping
