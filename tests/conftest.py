"""Shared fixtures: one tiny procedural corpus per test session."""

from pathlib import Path

import pytest

from motion_align.data.corpus import CorpusConfig, build_corpus

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """24 clips of the procedural corpus, as a HumanML3D folder."""
    root = tmp_path_factory.mktemp("tiny_corpus") / "corpus"
    build_corpus(root, CorpusConfig(num_clips=24, seed=7, workers=1), progress=False)
    return root


from hub_stand_in import hub_fixture  # noqa: E402, F401  (the `hub` fixture: a local stand-in for the Hub)
