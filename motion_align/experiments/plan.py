"""The ablation plan (``experiments/ablations.yaml``) as objects: the runs, the tables read from them, and the
command line that trains one run for one seed.

A run names a recipe, its YAML and the arguments that override it (``extends`` copies another run's fields
first). A table names its rows (label -> run), its metrics and the published claim it mirrors, written as
pairwise orderings ``"A > B"`` ("A is better than B on the table's metric").
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LOWER_IS_BETTER = frozenset({"FID", "MM-Dist"})
TABLE_KINDS = ("metrics", "gains", "splits")


@dataclass
class Run:
    """One training run of the plan; ``recipe`` None is the starting policy itself."""

    name: str
    recipe: str | None = None
    config: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    needs: list[str] = field(default_factory=list)
    seeded: bool = True
    #: Processes of its ``accelerate launch`` (1: ``python <recipe>``, as every published ablation run).
    processes: int = 1

    def folder(self, runs: Path, seed: int) -> Path:
        return runs / (f"{self.name}-seed{seed}" if self.seeded else self.name)


@dataclass
class Published:
    """The published result a table mirrors: where, what, and the orderings that claim implies."""

    source: str
    claim: str
    confidence: str = "-"
    metric: str | list[str] = "R@1"
    order: list[str] = field(default_factory=list)

    @property
    def metrics(self) -> list[str]:
        return [self.metric] if isinstance(self.metric, str) else list(self.metric)

    def pairs(self) -> list[tuple[str, str]]:
        """``[(better, worse), ...]`` from the ``"A > B"`` strings."""
        out = []
        for text in self.order:
            better, sep, worse = text.partition(" > ")
            if not sep:
                raise ValueError(f"published order {text!r} is not of the form 'A > B'")
            out.append((better.strip(), worse.strip()))
        return out


@dataclass
class Table:
    name: str
    title: str
    rows: dict[str, str]
    metrics: list[str]
    published: Published
    kind: str = "metrics"
    splits: list[str] = field(default_factory=list)
    seeds: list[int] | None = None  # None: the plan's


@dataclass
class Plan:
    policy: str
    seeds: list[int]
    evaluation: dict[str, Any]
    metrics: list[str]
    common_args: dict[str, Any]
    runs: dict[str, Run]
    tables: dict[str, Table]

    def runs_for(self, table: Table) -> list[Run]:
        """The runs a table reads, after the runs they need (a reward model before PPO), each once."""
        ordered: list[Run] = []

        def add(name: str) -> None:
            run = self.runs[name]
            for need in run.needs:
                add(need)
            if run not in ordered:
                ordered.append(run)

        for name in table.rows.values():
            add(name)
        return ordered

    def command(self, run: Run, seed: int, demo: Path, runs: Path) -> list[str]:
        """``python <recipe> --config <yaml> --flag value ...`` for ``run`` at ``seed`` (``accelerate launch
        --multi_gpu --num_processes N <recipe> ...`` for a run of several processes)."""
        if run.recipe is None:
            raise ValueError(f"run {run.name!r} has no recipe: it is the starting policy")
        fill = {"demo": str(demo), "runs": str(runs), "seed": str(seed)}
        args = {**self.common_args, **run.args, "output_dir": str(run.folder(runs, seed))}
        if not run.seeded:
            args.pop("seed", None)
        argv = [sys.executable, run.recipe, "--config", run.config]
        if run.processes > 1:  # on CPUs gloo processes (ACCELERATE_USE_CPU, set by runs.train)
            launcher = str(Path(sys.executable).with_name("accelerate"))
            argv = [launcher, "launch", "--multi_gpu", "--num_processes", str(run.processes), *argv[1:]]
        for key, value in args.items():
            argv.append(f"--{key}")
            values = value if isinstance(value, list) else [value]
            argv.extend(_text(v).format(**fill) for v in values)
        return argv

    def missing_files(self, runs: list[Run], root: Path) -> list[str]:
        """The recipes and recipe YAMLs of ``runs`` that do not exist under the repository ``root``."""
        files = {file for run in runs for file in (run.recipe, run.config) if file is not None}
        return sorted(file for file in files if not (root / file).is_file())

    def policy_path(self, demo: Path) -> Path:
        return Path(self.policy.format(demo=demo))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _resolve_runs(raw: dict[str, dict]) -> dict[str, Run]:
    resolved: dict[str, dict] = {}

    def fields(name: str, chain: tuple[str, ...] = ()) -> dict:
        if name in chain:
            raise ValueError(f"runs: 'extends' loops through {' -> '.join(chain + (name,))}")
        if name not in raw:
            raise ValueError(
                f"runs: unknown run {name!r}" + (f" (extended by {chain[-1]!r})" if chain else "")
            )
        if name not in resolved:
            spec = dict(raw[name] or {})
            parent = spec.pop("extends", None)
            base = fields(parent, chain + (name,)) if parent else {}
            merged = {**base, **spec, "args": {**base.get("args", {}), **spec.get("args", {})}}
            resolved[name] = merged
        return resolved[name]

    runs = {}
    for name in raw:
        spec = fields(name)
        unknown = set(spec) - {"recipe", "config", "args", "needs", "seeded", "processes"}
        if unknown:
            raise ValueError(f"runs.{name}: unknown field(s) {sorted(unknown)}")
        runs[name] = Run(name=name, **spec)
    return runs


def load_plan(path: str | Path) -> Plan:
    """The plan in ``path``, checked: every row and need names a run, every published ordering names rows of
    its table (:meth:`Plan.missing_files` checks the recipes and their YAMLs)."""
    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    runs = _resolve_runs(data["runs"])
    for run in runs.values():
        for name in run.needs:
            if name not in runs:
                raise ValueError(f"{path}: runs.{run.name}.needs names unknown run {name!r}")
    tables = {}
    for name, spec in data["tables"].items():
        published = Published(**spec["published"])
        table = Table(
            name=name,
            title=spec["title"],
            rows=dict(spec["rows"]),
            metrics=list(spec.get("metrics", data["metrics"])),
            published=published,
            kind=spec.get("kind", "metrics"),
            splits=list(spec.get("splits", [])),
            seeds=spec.get("seeds"),
        )
        if table.kind not in TABLE_KINDS:
            raise ValueError(f"{path}: tables.{name}.kind must be one of {TABLE_KINDS}, got {table.kind!r}")
        for label, run in table.rows.items():
            if run not in runs:
                raise ValueError(f"{path}: tables.{name}.rows[{label!r}] names unknown run {run!r}")
        for better, worse in published.pairs():
            for label in (better, worse):
                if label not in table.rows and not (table.kind == "gains" and label == "SFT"):
                    raise ValueError(f"{path}: tables.{name}.published.order names unknown row {label!r}")
        tables[name] = table
    return Plan(
        policy=data["policy"],
        seeds=list(data["seeds"]),
        evaluation=dict(data["evaluation"]),
        metrics=list(data["metrics"]),
        common_args=dict(data.get("common_args", {})),
        runs=runs,
        tables=tables,
    )
