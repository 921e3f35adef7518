"""Ground-truth events of a motion clip: what happens, with which limb, how often, and when.

An event is one primitive of a clip's timeline. The procedural corpus writes them next to the
motion (``events.jsonl``), captions are generated from them, and the event judge compares detected
events with them. The person's left is +X; "left"/"right" always mean the person's own side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Every action, with the values its fields may take. ``limb`` is the hand (wave, punch, raise_arms),
#: the leg (kick, hop) or None; ``direction`` is the travel direction (walk, run) or the turn side.
ACTIONS: dict[str, dict[str, Any]] = {
    "walk": {"limb": (None,), "direction": ("forward", "backward", "left", "right"),
             "params": {"speed": ("slow", "normal", "fast"), "path": ("straight", "curve", "circle"),
                        "curve": ("left", "right")}},
    "run": {"limb": (None,), "direction": ("forward",),
            "params": {"speed": ("slow", "normal", "fast"), "path": ("straight", "curve", "circle"),
                       "curve": ("left", "right")}},
    "turn": {"limb": (None,), "direction": ("left", "right"), "params": {"angle": (90, 180, 360)}},
    "jump": {"limb": (None,), "direction": (None, "forward"),
             "params": {"height": ("low", "normal", "high")}},
    "hop": {"limb": ("left", "right"), "direction": (None,), "params": {}},
    "squat": {"limb": (None,), "direction": (None,), "params": {"depth": ("shallow", "deep")}},
    "sit": {"limb": (None,), "direction": (None,), "params": {}},
    "wave": {"limb": ("left", "right", "both"), "direction": (None,), "params": {}},
    "raise_arms": {"limb": ("left", "right", "both"), "direction": (None,),
                   "params": {"mode": ("front", "side", "overhead")}},
    "clap": {"limb": (None,), "direction": (None,), "params": {}},
    "punch": {"limb": ("left", "right"), "direction": (None,), "params": {}},
    "kick": {"limb": ("left", "right"), "direction": (None,), "params": {"height": ("low", "high")}},
    "bend": {"limb": (None,), "direction": (None,), "params": {"mode": ("bend_over", "pick_up")}},
    "look_around": {"limb": (None,), "direction": (None,), "params": {}},
    "idle": {"limb": (None,), "direction": (None,), "params": {}},
}  # fmt: skip

#: Largest count per action (walk/run count steps; turn, sit, bend, look_around and idle are single).
MAX_COUNT = {"walk": 12, "run": 14, "jump": 4, "hop": 4, "squat": 3, "wave": 4, "raise_arms": 2,
             "clap": 5, "punch": 4, "kick": 3}  # fmt: skip


@dataclass
class Event:
    """One event of a clip. ``start``/``end`` are frames at 20 fps (end exclusive), -1 until known."""

    action: str
    count: int = 1
    limb: str | None = None
    direction: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    start: int = -1
    end: int = -1

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; expected one of {sorted(ACTIONS)}")
        spec = ACTIONS[self.action]
        if self.limb not in spec["limb"]:
            raise ValueError(f"{self.action}: limb {self.limb!r} not in {spec['limb']}")
        if self.direction not in spec["direction"]:
            raise ValueError(f"{self.action}: direction {self.direction!r} not in {spec['direction']}")
        if not 1 <= self.count <= MAX_COUNT.get(self.action, 1):
            raise ValueError(f"{self.action}: count {self.count} not in 1..{MAX_COUNT.get(self.action, 1)}")
        for key, value in self.params.items():
            allowed = spec["params"].get(key)
            if allowed is None:
                raise ValueError(f"{self.action}: unknown parameter {key!r}")
            if value not in allowed:
                raise ValueError(f"{self.action}: {key}={value!r} not in {allowed}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Event:
        return cls(**record)

    def mirrored(self) -> Event:
        """The same event performed by the mirror image (left and right swapped)."""
        swap = {"left": "right", "right": "left"}
        params = dict(self.params)
        if "curve" in params:
            params["curve"] = swap[params["curve"]]
        limb = swap.get(self.limb, self.limb) if self.limb else self.limb
        direction = self.direction
        if self.action in ("walk", "turn") and direction in swap:
            direction = swap[direction]
        return Event(self.action, self.count, limb, direction, params, self.start, self.end)
