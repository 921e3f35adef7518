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


def parse_recipe(config_class, recipe: str, *flags: str):
    """A recipe YAML of the checkout parsed as ``accelerate launch recipes/...`` would, plus flags."""
    from trl import TrlParser

    (config,) = TrlParser((config_class,)).parse_args_and_config(["--config", str(REPO / recipe), *flags])
    return config


def tiny_tokenizer_config(data_dir, output_dir, **overrides):
    """The tiny tokenizer recipe pointed at ``data_dir``/``output_dir``, with attribute overrides."""
    from motion_align.configs import TokenizerTrainingConfig

    config = parse_recipe(TokenizerTrainingConfig, "recipes/tokenizer/tiny.yaml", "--data_dir", str(data_dir),
                          "--output_dir", str(output_dir), "--disable_tqdm", "true")  # fmt: skip
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


#: Captions and degrees of the tiny preference pairs of the DPO tests.
PAIR_CAPTIONS = [
    "a person jumps twice.",
    "a person walks forward.",
    "someone waves the right hand.",
    "a man kicks.",
]
PAIR_DEGREES = ["much_better", "better", "slightly_better", "unsure"]


def random_pairs(n: int, codebook_size: int, seed: int = 0) -> list[dict]:
    """``n`` pairs in the canonical schema: the captions in turn, random 3-8 code motions, every degree."""
    import random

    from motion_align.vocab import MotionVocab

    rng, vocab = random.Random(seed), MotionVocab(codebook_size)

    def motion() -> str:
        return vocab.codes_to_string([rng.randrange(codebook_size) for _ in range(rng.randint(3, 8))])

    rows = []
    for i in range(n):
        caption, degree = PAIR_CAPTIONS[i % 4], PAIR_DEGREES[i % 4]
        chosen, rejected = motion(), motion()
        rows.append(dict(prompt=caption, chosen=chosen, rejected=rejected, degree=degree, source="test"))
    return rows
