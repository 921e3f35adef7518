"""Shared fixtures: one tiny procedural corpus per test session."""

import atexit
import os
import runpy
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from motion_align.data.corpus import CorpusConfig, build_corpus
from motion_align.evaluation.reference_cache import CACHE_ENV

#: Evaluations keep their reference embeddings in a cache (motion_align.evaluation.reference_cache): the
#: tests' go to a folder of this session's (subprocesses inherit it), never to the user's ~/.cache.
os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="motion-align-test-cache-")
atexit.register(shutil.rmtree, os.environ[CACHE_ENV], ignore_errors=True)

REPO = Path(__file__).resolve().parents[1]
#: Real HumanML3D files (one clip, Mean.npy/Std.npy) in the project's workspace beside the checkout, outside
#: the repository: the tests that compare against them skip, saying so, where they are absent.
HUMANML3D = REPO.parent / "shared" / "humanml3d"


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """24 clips of the procedural corpus, as a HumanML3D folder."""
    root = tmp_path_factory.mktemp("tiny_corpus") / "corpus"
    build_corpus(root, CorpusConfig(num_clips=24, seed=7, workers=1), progress=False)
    return root


from hub_stand_in import hub_fixture  # noqa: E402, F401  (the `hub` fixture: a local stand-in for the Hub)


def run_script(script: str, argv: list[str], monkeypatch) -> int:
    """``python <script> argv`` (a path under the checkout, e.g. ``recipes/sft.py``) in this process, as
    ``__main__``; its exit status. Torch's thread count, which a recipe may set (``num_threads``), is put back
    afterwards, so that later tests in this process compute as they would alone."""
    monkeypatch.setattr(sys, "argv", [script, *argv])
    threads = torch.get_num_threads()
    try:
        runpy.run_path(str(REPO / script), run_name="__main__")
    except SystemExit as stop:
        return stop.code
    finally:
        torch.set_num_threads(threads)
    return 0


def lora_moved(folder: Path) -> bool:
    """Whether the LoRA adapter saved in ``folder`` trained: LoRA's B matrices start at zero."""
    from safetensors.torch import load_file

    adapter = load_file(Path(folder) / "adapter_model.safetensors")
    return any(name.endswith("lora_B.weight") and bool(w.abs().sum() > 0) for name, w in adapter.items())


def parse_recipe(config_class, recipe: str, *flags: str):
    """A recipe YAML of the checkout parsed as ``accelerate launch recipes/...`` would, plus flags."""
    from trl import TrlParser

    (config,) = TrlParser((config_class,)).parse_args_and_config(["--config", str(REPO / recipe), *flags])
    return config


def tiny_tokenizer_config(data_dir, output_dir, **overrides):
    """The tiny tokenizer recipe pointed at ``data_dir``/``output_dir``, with attribute overrides."""
    from motion_align.training.tokenizer_training import TokenizerTrainingConfig

    config = parse_recipe(TokenizerTrainingConfig, "recipes/tokenizer/tiny.yaml", "--data_dir", str(data_dir),
                          "--output_dir", str(output_dir), "--disable_tqdm", "true")  # fmt: skip
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


#: Motion codes of the tiny policies of the preference tests.
PAIR_CODEBOOK = 16
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

    from motion_align.policy.vocab import MotionVocab

    rng, vocab = random.Random(seed), MotionVocab(codebook_size)

    def motion() -> str:
        return vocab.codes_to_string([rng.randrange(codebook_size) for _ in range(rng.randint(3, 8))])

    rows = []
    for i in range(n):
        caption, degree = PAIR_CAPTIONS[i % 4], PAIR_DEGREES[i % 4]
        chosen, rejected = motion(), motion()
        rows.append(dict(prompt=caption, chosen=chosen, rejected=rejected, degree=degree, source="test"))
    return rows


# ----------------------------------------------------------------------------------------- policies


def fit(model, tokenizer, captions: list[str], codes: list[list[int]], steps: int) -> None:
    """A few steps of teacher forcing towards ``codes`` (both families), so that samples vary but many
    are valid motions."""
    from motion_align.policy.model import format_prompt
    from motion_align.policy.vocab import MotionVocab

    vocab = MotionVocab.from_tokenizer(tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    prompts = [tokenizer(format_prompt(c))["input_ids"] for c in captions]
    motions = [vocab.codes_to_ids(c, tokenizer) + [tokenizer.eos_token_id] for c in codes]
    for _ in range(steps):
        if model.config.is_encoder_decoder:
            inputs = tokenizer([format_prompt(c) for c in captions], padding=True, return_tensors="pt")
            labels = torch.nn.utils.rnn.pad_sequence([torch.tensor(m) for m in motions], True, -100)
            loss = model(**inputs, labels=labels).loss
        else:
            rows = [p + m for p, m in zip(prompts, motions)]
            ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(r) for r in rows], True, 0)
            labels = torch.nn.utils.rnn.pad_sequence(
                [torch.tensor([-100] * len(p) + m) for p, m in zip(prompts, motions)], True, -100
            )
            mask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(r), dtype=torch.long) for r in rows], True)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


@pytest.fixture(scope="session")
def motion_tokenizer_dir(tiny_corpus, tmp_path_factory) -> Path:
    """A VQ-VAE trained 2 steps on the tiny corpus (the tiny recipe), saved."""
    from motion_align.training.tokenizer_training import train_tokenizer

    out = tmp_path_factory.mktemp("motion_tokenizer") / "vq"
    train_tokenizer(tiny_tokenizer_config(tiny_corpus, out, max_steps=2, eval_max_clips=2, save_steps=100))
    return out


@pytest.fixture(scope="session")
def policy_artifacts(tiny_corpus, motion_tokenizer_dir, tmp_path_factory) -> dict:
    """What the SoPo, reward-model, PPO and GRPO tests read: a motion tokenizer, a tokenized dataset, a
    retrieval model and a policy per family that records its motion tokenizer (fitted briefly, so that
    some samples are valid)."""
    from motion_align.data.tokenized import tokenize_folder
    from motion_align.policy.generation import record_motion_tokenizer
    from motion_align.policy.model import build_policy, format_prompt, save_policy
    from motion_align.policy.text_tokenizer import train_text_tokenizer
    from motion_align.rewards.retrieval import RetrievalConfig, TextMotionRetrieval
    from motion_tokenizer import MotionVQVAE

    root = tmp_path_factory.mktemp("policy_artifacts")
    vq = MotionVQVAE.from_pretrained(str(motion_tokenizer_dir)).eval()
    tokenized = tokenize_folder(vq, tiny_corpus, root / "tokenized", tokenizer_path=motion_tokenizer_dir)
    train = tokenized["train"]
    captions = [item[0] for item in train["captions"]][:6]
    codes = [c[:14] for c in train["codes"]][:6]
    torch.manual_seed(0)  # the retrieval model's weights, whatever ran before in this process
    TextMotionRetrieval(RetrievalConfig.preset("tiny")).save_pretrained(root / "retrieval")
    out = {
        "root": root,
        "vq": motion_tokenizer_dir,
        "tokenized": root / "tokenized",
        "retrieval": root / "retrieval",
    }
    texts = [format_prompt(c) for caps in train["captions"] for c in caps]
    for family in ("t5", "llama"):
        torch.manual_seed(0)
        tokenizer = train_text_tokenizer(texts, family, vocab_size=300)
        model, tokenizer = build_policy(family, "tiny", tokenizer, vq.config.codebook_size, dropout=0.0)
        fit(model, tokenizer, captions, codes, steps=40)
        save_policy(model, tokenizer, root / family)
        record_motion_tokenizer(root / family, str(motion_tokenizer_dir))
        out[family] = root / family
    return out


@pytest.fixture(scope="session")
def preference_inputs(tmp_path_factory) -> dict[str, Path]:
    """A saved tiny policy per family (16 motion codes) and 24 preference pairs in the canonical schema: what
    the DPO and KTO recipe tests align."""
    from datasets import Dataset

    from motion_align.data.preferences import save_preferences
    from motion_align.policy.model import build_policy, save_policy
    from motion_align.policy.text_tokenizer import train_text_tokenizer

    root = tmp_path_factory.mktemp("preference_inputs")
    for family in ("t5", "llama"):
        torch.manual_seed(0)
        tokenizer = train_text_tokenizer(PAIR_CAPTIONS * 4, family, vocab_size=200)
        save_policy(*build_policy(family, "tiny", tokenizer, PAIR_CODEBOOK, dropout=0.0), root / family)
    save_preferences(Dataset.from_list(random_pairs(24, PAIR_CODEBOOK)), root / "prefs")
    return {"t5": root / "t5", "llama": root / "llama", "prefs": root / "prefs"}
