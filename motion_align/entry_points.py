"""One error path for every entry point: the ``motion-align`` commands and every ``recipes/*.py``.

An *expected* error — bad data, a bad config or flag, a missing or damaged file or artifact — is raised by
the code that finds it as a ``ValueError`` or an ``OSError`` (``FileNotFoundError``, ``FileExistsError``…)
whose message names the file, the record or line and the field. :func:`guarded` turns it into one line on
stderr, ``<prog>: error: <message>``, and exit status 2 (argparse's status for a usage error). Anything
else is a bug and keeps its traceback; ``--debug`` shows the traceback of an expected error too.

Recipes parse their config with :func:`parse_recipe_config`: TRL's parser (dataclass defaults < YAML
``--config`` < flags), with an unknown flag or YAML key reported in one line with the nearest known name,
instead of a stack under ``HfArgumentParser`` or a usage message hundreds of lines long. Command-line
flags share their argparse types from here (:func:`positive_int`).
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

DEBUG_FLAG = "--debug"
#: Exit status of an expected error (argparse uses 2 for a usage error).
EXIT_BAD_INPUT = 2


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1, so that ``--num-samples 0`` is refused as the command is parsed
    (with the usage line) instead of failing, or doing nothing, after the policy is loaded."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def expected_errors() -> tuple[type[BaseException], ...]:
    """The exception classes that mean bad input rather than a bug: ValueError (JSON, Arrow and our
    format errors are ValueErrors), OSError (missing, existing or unreadable files), YAML syntax errors,
    unreadable safetensors files, and a push the Hub refused (a recipe's ``--push_to_hub`` at the end of a
    run; its message says what to do about the token or the repo)."""
    from motion_align.hub import HubPushError

    errors: list[type[BaseException]] = [ValueError, OSError, HubPushError]
    try:
        import yaml

        errors.append(yaml.YAMLError)
    except ImportError:  # pragma: no cover - yaml comes with transformers
        pass
    try:
        from safetensors import SafetensorError

        errors.append(SafetensorError)
    except ImportError:  # pragma: no cover - safetensors comes with transformers
        pass
    return tuple(errors)


def take_debug_flag(argv: list[str]) -> bool:
    """Removes every ``--debug`` from ``argv`` (in place); whether there was one."""
    found = DEBUG_FLAG in argv
    argv[:] = [arg for arg in argv if arg != DEBUG_FLAG]
    return found


def one_line(error: BaseException) -> str:
    """The message of ``error`` on at most two lines (a YAML error spans several)."""
    text = str(error).strip() or type(error).__name__
    if isinstance(error, KeyError) and error.args:
        text = str(error.args[0])
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines[:2])


def report(prog: str, error: BaseException) -> None:
    """Prints ``<prog>: error: <message>`` on stderr, once: by the main process of a multi-process launch."""
    if os.environ.get("RANK", "0") == "0":
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr, flush=True)


def guarded(main: Callable[[], Any], prog: str, debug: bool = False) -> int:
    """Runs ``main``; an expected error (:func:`expected_errors`) becomes one line and status 2 (with its
    traceback when ``debug``). Returns ``main``'s status (0 for None)."""
    try:
        status = main()
    except expected_errors() as error:
        if debug:
            traceback.print_exc()
        report(prog, error)
        return EXIT_BAD_INPUT
    return int(status or 0)


def run_recipe(main: Callable[[], Any], prog: str) -> None:
    """What ``if __name__ == "__main__"`` of a recipe runs: ``--debug`` taken from the command line, then
    ``main`` under :func:`guarded`; exits with its status."""
    debug = take_debug_flag(sys.argv)
    status = guarded(main, prog, debug)
    if status:
        sys.exit(status)


def closest_flag(unknown: str, known: list[str]) -> str:
    """`` (did you mean --x?)`` for the known flag nearest ``unknown``, or nothing."""
    match = difflib.get_close_matches(unknown, known, n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def parse_recipe_config(config_class: type, argv: list[str] | None = None) -> Any:
    """``config_class`` from its defaults < the YAML of ``--config`` < flags, with TRL's parser.

    An unknown flag or YAML key, a ``--config`` without a file, a flag without its value and a value of the
    wrong type are ValueErrors that name them (``--betta: unknown flag (did you mean --beta?)``); the
    config's own ``__post_init__`` checks its values before anything is created.
    """
    from trl import TrlParser

    class RecipeParser(TrlParser):
        def error(self, message: str) -> None:  # argparse's: prints the whole usage, exits 2
            raise ValueError(f"{message} (see --help)")

    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[-1] == "--config":
        raise ValueError("--config: expected the path of a YAML file")
    if "--config" in args:
        path = args[args.index("--config") + 1]
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--config {path}: no such file")
    parser = RecipeParser((config_class,))
    try:
        config, from_yaml, from_flags = parser.parse_args_and_config(
            args, return_remaining_strings=True, separate_remaining_strings=True
        )
    except TypeError as error:  # a YAML value of the wrong type reaches the dataclass as it is
        raise ValueError(f"{config_class.__name__}: {error}") from error
    known = [option for action in parser._actions for option in action.option_strings]
    for source, remaining in (("YAML key", from_yaml), ("flag", from_flags)):
        flags = [arg for arg in remaining if arg.startswith("--")]
        if flags:
            where = f" in {args[args.index('--config') + 1]}" if source == "YAML key" else ""
            raise ValueError(
                f"{flags[0].removeprefix('--') if source == 'YAML key' else flags[0]}: unknown {source}"
                f"{where}{closest_flag(flags[0], known)}"
            )
        if remaining:
            raise ValueError(f"unexpected argument {remaining[0]!r} (flags are --name value)")
    return config
