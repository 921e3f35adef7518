"""What every demo stage shares: the settings, paths, and small file helpers."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

#: The repository checkout (recipes/ lives there).
REPO = Path(__file__).resolve().parents[2]


#: The demo's budget for the iterative alignment stage, within 6 minutes on 2 CPU cores: fewer captions,
#: samples and steps per round than the recipe's (`motion-align demo --align-budget full` runs the recipe as
#: it is, the budget of docs/RESULTS.md's on-policy table).
DEMO_ALIGN_BUDGET = {"prompts_per_round": 192, "num_samples": 6, "max_steps": 24, "heldout_prompts": 64}


@dataclass
class DemoConfig:
    out: Path = Path("outputs/demo")
    num_clips: int = 10000
    seed: int = 0
    num_samples: int = 6
    force: bool = False
    #: A real HumanML3D folder (Mean.npy/Std.npy, new_joint_vecs/): the corpus statistics are shown next to
    #: its statistics and the tokenizer is also measured on its clips. None: neither.
    reference: Path | None = None
    #: Tokenizer recipe (relative to the checkout) and optional overrides, e.g. {"max_steps": 20}.
    tokenizer_recipe: str = "recipes/tokenizer/small.yaml"
    tokenizer_overrides: dict | None = None
    #: Policy family of the SFT stage ("t5" or "llama"), its recipe (default: the family's small one),
    #: recipe overrides, and how many held-out prompts measure the share of valid generations.
    policy_family: str = "llama"
    sft_recipe: str = ""
    sft_overrides: dict | None = None
    num_eval_prompts: int = 200
    #: Evaluator recipe and overrides; the evaluation protocol's settings (ProtocolConfig fields): every
    #: test item, 20 repetitions, MultiModality over 100 prompts x 30 samples as published, but 2
    #: generation rounds (cycled over the repetitions) instead of 20, to stay within minutes on a CPU.
    evaluator_recipe: str = "recipes/evaluator/small.yaml"
    evaluator_overrides: dict | None = None
    #: Alignment: the retrieval reward recipe, the judged pairs of the offline ablations (train prompts x
    #: samples, best vs worst, pairs whose score gap is at most min_gap dropped) and the iterative IPO-LoRA
    #: recipe (default: the family's recipes/<family>/iterative_dpo/config_ipo_lora.yaml).
    reward_recipe: str = "recipes/retrieval/small.yaml"
    reward_overrides: dict | None = None
    pairs: dict = field(
        default_factory=lambda: dict(num_prompts=1500, num_samples=6, pairs_per_prompt=2, min_gap=0.02)
    )
    align_recipe: str = ""
    align_overrides: dict | None = field(default_factory=lambda: dict(DEMO_ALIGN_BUDGET))
    #: SoPo-LoRA recipe (default: the family's config_sopo_lora.yaml) and overrides.
    sopo_recipe: str = ""
    sopo_overrides: dict | None = None
    protocol: dict = field(
        default_factory=lambda: dict(
            num_prompts=None, repeats=20, generation_rounds=2, mm_prompts=100, mm_samples=30
        )
    )

    def __post_init__(self) -> None:
        if self.policy_family not in ("t5", "llama"):
            raise ValueError(f"policy_family must be 't5' or 'llama', got {self.policy_family!r}")
        self.sft_recipe = self.sft_recipe or f"recipes/{self.policy_family}/sft/config_small.yaml"


def rel(path: str | Path, root: Path) -> str:
    """``path`` relative to ``root``, as report.md links it."""
    return os.path.relpath(path, root)


def write_json(path: Path, record: dict) -> None:
    """Writes ``record`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None
