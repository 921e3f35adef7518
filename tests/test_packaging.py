"""The installed distribution holds every package folder of the source tree."""

import configparser
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
