"""The ``motion-align`` command line: one module per group of commands, each registering its parsers.

- :mod:`~motion_align.cli.data`: synth, stats, render, tokenize
- :mod:`~motion_align.cli.generation`: length-estimator, generate, validity
- :mod:`~motion_align.cli.evaluation`: evaluate
- :mod:`~motion_align.cli.pairs`: pairs (judged, labels; the Hub push in :mod:`~motion_align.cli.pair_hub`)
- :mod:`~motion_align.cli.judge`: judge (an AI judge on rendered frames, against the event judge)
- :mod:`~motion_align.cli.label`: label (the labelling web app) and app (the demo page)
- :mod:`~motion_align.cli.push`: push
- :mod:`~motion_align.cli.interop`: import (MotionGPT, T2M-GPT, T2M evaluator, joints, BVH)
- :mod:`~motion_align.cli.export`: export (BVH, NPZ, JSON)
- :mod:`~motion_align.cli.demo`: demo

Handlers import what they need when they run, so ``motion-align --help`` starts without torch.
"""

from __future__ import annotations

import argparse
import logging
import sys

from motion_align.cli.data import add_data_commands
from motion_align.cli.demo import add_demo_commands
from motion_align.cli.evaluation import add_evaluation_commands
from motion_align.cli.export import add_export_command
from motion_align.cli.generation import add_generation_commands
from motion_align.cli.interop import add_import_command
from motion_align.cli.judge import add_judge_command
from motion_align.cli.label import add_app_command, add_label_command
from motion_align.cli.pairs import add_pairs_command
from motion_align.cli.push import add_push_command
from motion_align.entry_points import DEBUG_FLAG, EXIT_BAD_INPUT, guarded, take_debug_flag


class CommandParser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are one line (argparse prints the whole usage first); the
    parsers of the commands are of this class too."""

    def error(self, message: str) -> None:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    description = "motion-align: preference alignment for text-to-motion token models."
    parser = CommandParser(prog="motion-align", description=description)
    parser.add_argument(
        DEBUG_FLAG, action="store_true", help="show the traceback of an error about bad input or files"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_data_commands(commands)
    add_generation_commands(commands)
    add_evaluation_commands(commands)
    add_demo_commands(commands)
    add_pairs_command(commands)
    add_judge_command(commands)
    add_label_command(commands)
    add_app_command(commands)
    add_push_command(commands)
    add_import_command(commands)
    add_export_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command; bad input ends it with one line and status 2 (``--debug``: with the traceback)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = take_debug_flag(argv)  # accepted anywhere on the line, not only before the command
    args = build_parser().parse_args(argv)
    return guarded(lambda: args.func(args), f"motion-align {args.command}", debug)
