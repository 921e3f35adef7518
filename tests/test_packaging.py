"""The installed distribution holds every package folder of the source tree."""

import ast
import configparser
import importlib.metadata
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _listed_packages() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return {line.strip() for line in config["options"]["packages"].splitlines() if line.strip()}


def test_every_package_folder_is_listed_in_setup_cfg():
    found = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "motion_align").rglob("__init__.py")
    }
    found.add("motion_tokenizer")  # the tokenizer/ folder, mapped by package_dir
    assert not list((ROOT / "tokenizer").glob("*/__init__.py")), "subpackages of tokenizer/ need listing too"
    assert found == _listed_packages()


def test_motion_tokenizer_imports_under_its_own_name():
    import motion_tokenizer

    assert Path(motion_tokenizer.__file__).resolve().parent == ROOT / "tokenizer"


def _requirement_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("%"):
            names.add(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def _imported_modules(folder: Path) -> dict[str, str]:
    """Top-level names of every absolute import under ``folder`` -> the first file importing it."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_of_the_package_is_a_declared_requirement():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    declared = _requirement_names(config["options"]["install_requires"])
    for extra in config["options.extras_require"].values():  # optional features (spaCy tagging, DeepSpeed...)
        declared |= _requirement_names(extra)
    distributions = importlib.metadata.packages_distributions()  # module name -> distributions providing it
    ours = {"motion_align", "motion_tokenizer"}
    undeclared = []
    for folder in ("motion_align", "tokenizer"):
        for module, where in _imported_modules(ROOT / folder).items():
            if module in sys.stdlib_module_names or module in ours:
                continue
            providers = {name.lower().replace("_", "-") for name in distributions.get(module, [module])}
            if not providers & declared:
                undeclared.append(f"{module} ({where}; distribution {sorted(providers)})")
    assert not undeclared, f"imported but not in setup.cfg's install_requires or extras: {undeclared}"
