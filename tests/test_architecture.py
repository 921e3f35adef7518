"""The layering of the package (docs/architecture.md): which subpackage may import which."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "motion_align"

#: subpackage -> the motion_align subpackages (and root modules) it must not import.
FORBIDDEN = {
    "motion": {"cli", "data", "demo", "evaluation", "experiments", "hub", "plots", "policy", "rewards",
               "trainers", "training"},
    "policy": {"cli", "data", "demo", "evaluation", "experiments", "hub", "rewards", "trainers", "training"},
    "evaluation": {"cli", "demo", "experiments", "hub", "trainers"},
    "rewards": {"cli", "demo", "experiments", "hub", "trainers"},
    "data": {"cli", "demo", "experiments", "hub", "trainers"},
    "training": {"cli", "demo", "experiments", "hub", "trainers"},
    "trainers": {"cli", "demo", "experiments"},
    "interop": {"cli", "demo", "experiments", "hub", "trainers"},
}  # fmt: skip
#: Modules of rewards/ that train a reward model; the evaluation never depends on them.
REWARD_TRAINING = {"motion_align.rewards.retrieval_training", "motion_align.rewards.retrieval_data",
                   "motion_align.rewards.retrieval_loss"}  # fmt: skip


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("motion_align.")}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_runs_upward(package):
    upward = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for name in _imports(path):
            if name.split(".")[1] in FORBIDDEN[package] or (
                package == "evaluation" and name in REWARD_TRAINING
            ):
                upward.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert not upward


def test_no_private_name_is_imported_across_modules():
    private = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("motion_align"):
                private += [f"{path.relative_to(PACKAGE.parent)}: {node.module}.{alias.name}"
                            for alias in node.names if alias.name.startswith("_")]  # fmt: skip
    assert not private


def test_at_most_five_modules_at_the_package_root():
    assert len(list(PACKAGE.glob("*.py"))) <= 5
