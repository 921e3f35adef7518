"""``motion-align demo``: the pipeline on the built-in corpus, reusing finished stages; writes report.md.

motion-align demo --out outputs/demo
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from motion_align.cli.generation import positive_int


def _demo(args: argparse.Namespace) -> None:
    from motion_align.demo import DemoConfig, run_demo
    from motion_align.demo.common import DEMO_ALIGN_BUDGET

    config = DemoConfig(
        out=Path(args.out),
        num_clips=args.num_clips,
        seed=args.seed,
        force=args.force,
        reference=Path(args.reference) if args.reference else None,
        tokenizer_recipe=args.tokenizer_recipe,
        policy_family=args.policy_family,
        sft_recipe=args.sft_recipe or "",
        num_eval_prompts=args.eval_prompts,
        align_overrides=None if args.align_budget == "full" else dict(DEMO_ALIGN_BUDGET),
    )
    report = run_demo(config)
    print(f"report: {report}")


def add_demo_commands(commands: Any) -> None:
    """Register ``demo`` on an argparse subparsers object."""
    demo = commands.add_parser("demo", help="run the pipeline on the built-in corpus; writes report.md")
    demo.add_argument("--out", default="outputs/demo")
    demo.add_argument("--num-clips", type=positive_int, default=10000)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--force", action="store_true", help="redo finished stages")
    demo.add_argument(
        "--reference", default=None,
        help="a real HumanML3D folder: the corpus statistics are shown next to its Mean/Std and the "
        "tokenizer is measured on its clips too",
    )  # fmt: skip
    demo.add_argument(
        "--tokenizer-recipe", default="recipes/tokenizer/small.yaml", help="tokenizer YAML recipe"
    )
    demo.add_argument(
        "--policy-family", default="llama", choices=["t5", "llama"],
        help="the policy the demo trains and aligns (the LLaMA trains best from scratch on a CPU)",
    )  # fmt: skip
    demo.add_argument("--sft-recipe", default=None, help="default: recipes/<family>/sft/config_small.yaml")
    demo.add_argument(
        "--align-budget", choices=("demo", "full"), default="demo",
        help="iterative alignment: the demo's minutes-sized rounds, or the recipe's full budget",
    )  # fmt: skip
    demo.add_argument("--eval-prompts", type=positive_int, default=200, help="held-out prompts to generate")
    demo.set_defaults(func=_demo)
