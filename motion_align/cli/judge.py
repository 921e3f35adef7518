"""``motion-align judge``: an AI judge (a vision-language model behind the OpenAI-compatible protocol) on a
corpus split's motions or a ``generate`` run's, with its agreement with the event judge.

motion-align judge --judge openai --model gpt-4o-mini --base-url https://api.openai.com/v1 \
    --corpus data/corpus --split test --num-prompts 50 --frames 8 --out judge/gpt-4o-mini
motion-align judge --judge openai --model Qwen/Qwen2.5-VL-7B-Instruct --base-url http://localhost:8000/v1 \
    --corpus data/corpus --motions renders/gen --out judge/qwen   # a vLLM server; no key needed

Writes ``verdicts.jsonl`` (one row per motion: both judges' figures, the AI judge's answer or failure),
``judge_report.json`` and ``judge_report.md`` (verdicts, failures by kind, requests, retries, cache hits,
tokens, cost, and the per-category agreement of :mod:`motion_align.evaluation.ai_judge_agreement`).
:func:`add_ai_judge_flags` and :func:`ai_judge_from_args` give ``pairs judged --scorer ai-judge`` the same
flags with a ``--judge-`` prefix. See docs/methods/ai_judge.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

from motion_align.cli.generation import GENERATIONS_FILE, positive_int

LOG = logging.getLogger(__name__)
JUDGES = ("openai",)
VERDICTS_FILE, REPORT_FILE, MARKDOWN_FILE = "verdicts.jsonl", "judge_report.json", "judge_report.md"


def default_cache() -> str:
    """``$XDG_CACHE_HOME/motion-align/ai-judge`` (``~/.cache/...`` without it): shared by every run."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "motion-align", "ai-judge")


def add_ai_judge_flags(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The AI judge's flags (``--model``, ``--base-url``, ...), each named ``--{prefix}{name}``."""
    group = parser.add_argument_group("AI judge", "the vision-language model and how it is asked")

    def flag(name: str, **kwargs: Any) -> None:
        group.add_argument(f"--{prefix}{name}", dest=f"{prefix}{name}".replace("-", "_"), **kwargs)

    required = not prefix  # the judge command needs them; pairs checks them when --scorer ai-judge
    flag("model", required=required, default=None, help="model name the server knows, e.g. gpt-4o-mini")
    flag("base-url", required=required, default=None,
         help="OpenAI-compatible API root, e.g. https://api.openai.com/v1")  # fmt: skip
    flag("api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    flag("frames", type=positive_int, default=8, help="frames shown per motion, evenly spaced")
    flag("layout", choices=("grid", "frames"), default="grid", help="one grid image, or one image per frame")
    flag("frame-size", type=positive_int, default=256, help="pixels per frame (width)")
    flag("concurrency", type=positive_int, default=4, help="requests in flight at a time")
    flag("timeout", type=float, default=60.0, help="seconds per request")
    flag("retries", type=int, default=4, help="retries of a 429, 5xx, timeout or connection error")
    flag("answer-retries", type=int, default=1, help="new requests after a malformed or invalid answer")
    flag(
        "backoff", type=float, default=1.0, help="first retry's wait in seconds (doubles per retry, jittered)"
    )
    flag("temperature", type=float, default=0.0, help="sampling temperature sent (negative: not sent)")
    flag("max-tokens", type=positive_int, default=None, help="max_tokens sent (default: not sent)")
    flag("price-in", type=float, default=0.0, help="price per million prompt tokens, for the report")
    flag("price-out", type=float, default=0.0, help="price per million completion tokens, for the report")
    flag("cache", default=None, help=f"answer cache folder (default {default_cache()})")
    flag("no-cache", action="store_true", help="ask every motion, read and write no cache")


def ai_judge_from_args(args: argparse.Namespace, prefix: str = ""):
    """The :class:`~motion_align.rewards.ai_judge.AIJudge` the flags of :func:`add_ai_judge_flags` describe.
    Without a key in ``--api-key-env`` requests go without one (a local server), with a warning; a
    ``--api-key-env`` named on the command line must be set."""
    from motion_align.rewards.ai_judge import AIJudge
    from motion_align.rewards.vlm_client import VLMClient, VLMConfig

    def get(name: str) -> Any:
        return getattr(args, f"{prefix}{name}".replace("-", "_"))

    for name in ("model", "base-url"):
        if not get(name):
            raise ValueError(f"--{prefix}{name} is required by the AI judge")
    key_env = get("api-key-env")
    if not os.environ.get(key_env):
        if key_env != "OPENAI_API_KEY":
            raise ValueError(f"--{prefix}api-key-env {key_env}: that environment variable is not set")
        LOG.warning(
            "no API key in $%s: requests go without one (fine for a local vLLM or Ollama server)", key_env
        )
    temperature = get("temperature")
    config = VLMConfig(
        base_url=get("base-url"), model=get("model"), api_key_env=key_env, concurrency=get("concurrency"),
        timeout=get("timeout"), max_retries=get("retries"), answer_retries=get("answer-retries"),
        backoff=get("backoff"), temperature=None if temperature < 0 else temperature,
        max_tokens=get("max-tokens"), price_in=get("price-in"), price_out=get("price-out"),
        cache_dir=None if get("no-cache") else get("cache") or default_cache(),
    )  # fmt: skip
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    return AIJudge(VLMClient(config), frames=get("frames"), layout=get("layout"), size=get("frame-size"))


class Case(NamedTuple):
    """One motion to judge: an id, its caption, the events asked for, its features (T, 263)."""

    id: str
    caption: str
    spec: list
    features: Any


def corpus_cases(corpus: str, split: str, num: int | None, seed: int) -> list[Case]:
    """The whole-clip motions of a split with one caption each; the captions and the ``num`` subset are
    drawn as :func:`~motion_align.data.pair_builders.corpus_prompts` draws them (same seed, same pick)."""
    import numpy as np

    from motion_align.data.text_motion import iter_items

    items = list(iter_items(corpus, split, segments=False))
    if not items:
        raise ValueError(f"{corpus}: split {split!r} has no captioned clips of 40 to 196 frames")
    missing = [item.id for item in items if item.events is None]
    if missing:
        raise ValueError(f"{corpus}/events.jsonl: no events for {len(missing)} clip(s) of split {split!r} "
                         f"(first: {missing[0]}); both judges need the events asked for")  # fmt: skip
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, [len(item.captions) for item in items])
    keep = range(len(items))
    if num is not None and num < len(items):
        keep = sorted(rng.permutation(len(items))[:num].tolist())
    return [
        Case(items[i].id, items[i].captions[picks[i]].text, items[i].events, items[i].features) for i in keep
    ]


def generation_cases(
    folder: str, corpus: str, split: str, num: int | None, seed: int
) -> tuple[list[Case], int]:
    """The valid motions of a ``motion-align generate`` folder, each with the events of its prompt as a
    caption of the corpus split; and how many rows were skipped as invalid."""
    import numpy as np

    from motion_align.data.text_motion import iter_items

    specs: dict[str, list] = {}
    for item in iter_items(corpus, split, segments=False):
        for caption in item.captions:
            specs.setdefault(caption.text.strip().lower(), item.events)
    path = Path(folder) / GENERATIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (--motions takes a `motion-align generate --out` folder)")
    cases, skipped = [], 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            prompt, valid, files = row["prompt"], row["valid"], row["files"]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} line {number}: not a generations row ({error!r})") from None
        npy = [name for name in files if str(name).endswith(".npy")]
        if not valid or not npy:
            skipped += 1
            continue
        events = specs.get(str(prompt).strip().lower())
        if events is None:
            raise ValueError(f"{path} line {number}: field 'prompt' {prompt!r} is no caption of {corpus} "
                             f"split {split!r}, so its events are unknown")  # fmt: skip
        features = np.load(Path(folder) / npy[0], allow_pickle=False)
        cases.append(Case(f"{npy[0]}", str(prompt), events, features))
    if num is not None and num < len(cases):
        keep = sorted(np.random.default_rng(seed).permutation(len(cases))[:num].tolist())
        cases = [cases[i] for i in keep]
    if not cases:
        raise ValueError(f"{path}: no valid motion to judge ({skipped} invalid rows)")
    return cases, skipped


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty: pass --overwrite to replace its reports")
    out.mkdir(parents=True, exist_ok=True)


def _judge_command(args: argparse.Namespace) -> None:
    from collections import Counter

    from motion_align.evaluation.ai_judge_agreement import agreement_markdown, agreement_report
    from motion_align.rewards.event_judge import EventJudge
    from motion_tokenizer.atomic_files import write_atomic

    out = Path(args.out)
    _prepare_out(out, args.overwrite)
    judge = ai_judge_from_args(args)  # a missing key is an error before any work
    skipped = 0
    if args.motions:
        cases, skipped = generation_cases(args.motions, args.corpus, args.split, args.num_prompts, args.seed)
    else:
        cases = corpus_cases(args.corpus, args.split, args.num_prompts, args.seed)
    start = time.perf_counter()
    event_judge = EventJudge()
    event = []
    for case in cases:
        try:
            result = event_judge.compare(case.spec, case.features)
        except ValueError as error:
            raise ValueError(f"{case.id}: {error}") from error
        event.append({"integrity": result.integrity, "temporal": result.temporal,
                      "frequency": result.frequency, "score": result.score})  # fmt: skip
    with judge.client:
        verdicts = judge.judge(
            [c.caption for c in cases], [c.spec for c in cases], [c.features for c in cases]
        )
    rows = [{"id": c.id, "caption": c.caption, "event_judge": e, "ai_judge": v.to_dict()}
            for c, e, v in zip(cases, event, verdicts)]  # fmt: skip
    ai = [None if v.status == "failed" else {k: getattr(v, k) for k in ("integrity", "temporal", "frequency")}
          for v in verdicts]  # fmt: skip
    report = {
        "judge": args.judge, "model": args.model, "base_url": args.base_url, "corpus": args.corpus,
        "split": args.split, "motions": args.motions or "corpus", "skipped_invalid": skipped,
        "cases": len(cases), "frames": args.frames, "layout": args.layout, "seed": args.seed,
        "verdicts": dict(sorted(Counter(v.status for v in verdicts).items())),
        "failures": dict(sorted(Counter(v.failure for v in verdicts if v.failure).items())),
        "usage": judge.client.usage(), "agreement": agreement_report(event, ai),
        "seconds": round(time.perf_counter() - start, 2),
    }  # fmt: skip
    jsonl = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    write_atomic(out / VERDICTS_FILE, lambda tmp: Path(tmp).write_text(jsonl, encoding="utf-8"))
    text = json.dumps(report, indent=2) + "\n"
    write_atomic(out / REPORT_FILE, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    markdown = report_markdown(report) + "\n" + agreement_markdown(report["agreement"])
    write_atomic(out / MARKDOWN_FILE, lambda tmp: Path(tmp).write_text(markdown, encoding="utf-8"))
    print(markdown, end="")
    print(f"wrote {out}: {VERDICTS_FILE}, {REPORT_FILE}, {MARKDOWN_FILE}")


def report_markdown(report: dict[str, Any]) -> str:
    """The run's counts as markdown (the agreement table follows it)."""
    usage = report["usage"]
    failures = ", ".join(f"{kind} {n}" for kind, n in report["failures"].items()) or "none"
    verdicts = ", ".join(f"{status} {n}" for status, n in report["verdicts"].items())
    return (
        f"# AI judge: {report['model']} ({report['judge']}, {usage['url']})\n\n"
        f"- motions: {report['cases']} from {report['motions']} ({report['corpus']}, split "
        f"{report['split']}), {report['frames']} frames each as {report['layout']}\n"
        f"- verdicts: {verdicts}; failures by kind: {failures}\n"
        f"- requests {usage['requests']} (retries {usage['retries']}), cache hits {usage['cache_hits']}\n"
        f"- tokens: {usage['prompt_tokens']} prompt, {usage['completion_tokens']} completion; cost "
        f"{usage['cost']:.4f} (at {usage['price_in_per_million']:g} / {usage['price_out_per_million']:g} "
        f"per million tokens)\n"
    )


def add_judge_command(commands: Any) -> argparse.ArgumentParser:
    """Register ``motion-align judge`` on argparse subparsers; its handler runs as ``args.func(args)``."""
    judge = commands.add_parser(
        "judge",
        help="an AI judge (vision-language model) on rendered frames, and its agreement with the event judge",
    )
    judge.add_argument("--judge", choices=JUDGES, required=True, help="the protocol of the model's server")
    judge.add_argument(
        "--corpus", required=True, help="HumanML3D folder with events.jsonl (captions, events)"
    )
    judge.add_argument("--split", default="test")
    judge.add_argument(
        "--motions", default=None,
        help="a `motion-align generate --out` folder to judge instead of the corpus's motions (its prompts "
        "must be captions of --split, for their events)",
    )  # fmt: skip
    judge.add_argument("--num-prompts", type=positive_int, default=None, help="seeded subset (default: all)")
    judge.add_argument("--seed", type=int, default=0, help="captions and subset")
    judge.add_argument("--out", required=True, help="folder for verdicts.jsonl and the reports")
    judge.add_argument("--overwrite", action="store_true", help="replace the reports in a non-empty --out")
    add_ai_judge_flags(judge)
    judge.set_defaults(func=_judge_command)
    return judge
