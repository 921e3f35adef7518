"""`motion-align pairs judged|labels --push-to-hub` and `push_pairs` through the real huggingface_hub client
against tests/hub_stand_in.py: `datasets.load_dataset(ID)` reads back every row, the dataset card says what
the pairs are and how they were made, the Hub's refusals are one line, and a failed build pushes nothing."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys

import datasets
import huggingface_hub
import numpy as np
import pytest
import torch
import yaml
from conftest import PAIR_CODEBOOK, random_pairs
from hub_stand_in import FAKE_TOKEN
from huggingface_hub import DatasetCard, constants
from test_pair_builders import fit_tiny_t5

from motion_align.cli import main
from motion_align.cli.pair_hub import DATA_FILE, PairCardInfo, build_pair_card, command_line, push_pairs
from motion_align.cli.pairs import REPORT_FILE, add_pairs_command
from motion_align.data.pair_builders import corpus_prompts
from motion_align.data.preferences import load_preferences, validate_preferences
from motion_align.hub import HubPushError
from motion_align.policy.generation import record_motion_tokenizer
from motion_align.policy.model import save_policy
from motion_align.rewards.retrieval import RetrievalConfig, TextMotionRetrieval
from motion_tokenizer import MotionVQVAE

PUSHED = {".gitattributes", "README.md", DATA_FILE}


@pytest.fixture
def hub_datasets(hub, tmp_path, monkeypatch):
    """The stand-in, also for `datasets` in this process (its endpoint is read once, at import)."""
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", hub.endpoint)
    url = hub.endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}"
    monkeypatch.setattr(datasets.config, "HUB_DATASETS_URL", url)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    return hub


def load_in_fresh_process(hub, repo_id: str, tmp_path) -> dict[str, list[dict]]:
    """``datasets.load_dataset(repo_id)`` in a new Python, with HF_ENDPOINT pointing at the stand-in:
    split -> rows."""
    code = (
        "import json, sys, datasets\n"
        "loaded = datasets.load_dataset(sys.argv[1])\n"
        "print(json.dumps({split: loaded[split].to_list() for split in loaded}))\n"
    )
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.endpoint,
        "HF_HOME": str(tmp_path / "fresh_hf_home"),
        "HF_TOKEN": FAKE_TOKEN,  # the repo may be private
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", code, repo_id], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def last_line(stderr: str) -> str:
    """The last line of ``stderr``, which must be the only one of the command (the others: progress bars)."""
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert sum(line.startswith("motion-align") for line in lines) == 1, lines
    return lines[-1]


def run_pairs(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="motion-align")
    add_pairs_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


def write_labels(root, records) -> list[str]:
    """InstructMotion labels (records of (id, choice, degree)) and their token files under ``root``;
    returns the ``pairs labels`` arguments up to --out."""
    (root / "tokens").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i, choice, degree in records:
        for s in (1, 2):
            np.save(root / "tokens" / f"{i}_{s}_token.npy", rng.integers(0, 8, size=(1, 3 + i % 4 + s)))
        rows.append(
            {
                "id": i,
                "prompt": f"a person does move number {i}.",
                "chosen": [{"choice": choice, "degree of preference": degree}],
                **{f"sample_{s}": {"features": f"features/{i}_{s}.npy"} for s in (1, 2)},
            }
        )
    labels = root / "preference_labels.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ["pairs", "labels", "--labels", str(labels), "--tokens", str(root), "--codebook-size", "8"]


LABELS = [
    (1, "sample_2", "Much better"),
    (2, "skipped", "skipped"),
    (3, "sample_1", "Better"),
    (4, "sample_1", "Negligibly better/unsure"),
    (5, "sample_2", "Slightly better"),
    (6, "sample_2", "Better"),
    (7, "sample_1", None),  # a label without a degree
]


def test_labels_push_round_trip_with_card(hub_datasets, tmp_path, capsys):
    hub, out, repo = hub_datasets, tmp_path / "pairs", "user/motion-pairs"
    argv = [*write_labels(tmp_path, LABELS), "--out", str(out), "--push-to-hub", repo, "--private"]
    run_pairs(argv)
    printed = capsys.readouterr().out
    assert f"pushed 6 pairs to the Hub dataset {repo}: {hub.endpoint}/datasets/{repo}/commit/" in printed
    assert hub.repos[("dataset", repo)].private
    assert set(huggingface_hub.list_repo_files(repo, repo_type="dataset")) == PUSHED
    assert "POST /api/validate-yaml -> 200" in hub.requests

    saved = datasets.load_from_disk(str(out)).to_list()
    assert len(saved) == 6 and saved[-1]["degree"] is None and saved[0]["id"] == "1"
    assert load_in_fresh_process(hub, repo, tmp_path) == {"train": saved}  # every row, in order
    loaded = datasets.load_dataset(repo, split="train")
    assert loaded.to_list() == saved and loaded.features == datasets.load_from_disk(str(out)).features
    assert load_preferences(repo, codebook_size=8).to_list() == saved  # what the recipes read

    card = DatasetCard.load(repo, repo_type="dataset")
    assert card.content == (hub.repo_path(repo, "dataset") / "README.md").read_text(encoding="utf-8")
    assert FAKE_TOKEN not in card.content
    assert card.data.tags == ["motion-align", "text-to-motion", "preference", "motion-tokens"]
    assert card.data.size_categories == ["n<1K"] and card.data.pretty_name == "motion-pairs"
    assert card.data.configs == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}
    ]
    assert card.data.dataset_info["splits"] == [
        {"name": "train", "num_bytes": card.data.dataset_info["splits"][0]["num_bytes"], "num_examples": 6}
    ]
    command = f"motion-align pairs labels --labels {tmp_path}/preference_labels.jsonl --tokens {tmp_path} "
    command += f"--codebook-size 8 --out {out} --push-to-hub {repo} --private"
    for text in (
        f"# {repo}",
        "6 preference pairs for aligning a text-to-motion token policy",
        "imported from InstructMotion's human preference labels",
        "| `prompt` | string | the caption",
        "| `chosen` | string | the preferred motion",
        "| `rejected` | string |",
        "| `degree` | string |",
        "| `source` | string | where the pair comes from",
        "| `id` | string | the pair's record id in InstructMotion's labels |",
        "codebook of 8 codes",
        "`<motion_id_8>` opens it, `<motion_id_c>` is code c (0 to 7) and `<motion_id_9>` closes it",
        "| `much_better` | Much better | 3 | 0 | 1 |",
        "| `better` | Better | 2 | 0.2 | 2 |",
        "| `slightly_better` | Slightly better | 1 | 0.3 | 1 |",
        "| `unsure` | Negligibly better/unsure | 0 | 0.5 | 1 |",
        "| null | not labelled |  |  | 1 |",
        "the degree is the annotator's label",
        command,
        f"| labels file | {tmp_path}/preference_labels.jsonl |",
        "| codebook size | 8 |",
        "| unsure pairs | kept |",
        "| labelled records | 7 |",
        "| pairs | 6 |",
        "| dropped (skipped by the annotator) | 1 |",
        "| dropped (unsure, --no-unsure) | 0 |",
        "| pairs better | 2 |",
        "| pairs without a degree | 1 |",
        f'pairs = load_dataset("{repo}", split="train")',
        f'pairs = load_preferences("{repo}", codebook_size=8)',
    ):
        assert text in card.text, text

    # --no-unsure, pushed again to the same repo: the data and the card are replaced
    run_pairs([*argv[:-5], "--no-unsure", "--out", str(tmp_path / "sure"), "--push-to-hub", repo])
    assert [r["degree"] for r in datasets.load_dataset(repo, split="train").to_list()] == [
        "much_better", "better", "slightly_better", "better", None
    ]  # fmt: skip
    card = DatasetCard.load(repo, repo_type="dataset")
    assert "| dropped (unsure, --no-unsure) | 1 |" in card.text and "| unsure pairs | dropped" in card.text
    assert set(huggingface_hub.list_repo_files(repo, repo_type="dataset")) == PUSHED


@pytest.fixture(scope="module")
def judged_policy(tiny_corpus, motion_tokenizer_dir, tmp_path_factory):
    """A tiny T5 policy trained briefly towards 12 to 14 codes per caption (it records its motion tokenizer),
    and a retrieval model (untrained) for the reward scorer."""
    vq = MotionVQVAE.from_pretrained(str(motion_tokenizer_dir))
    prompts = corpus_prompts(tiny_corpus, "train", max_prompts=3, seed=0)
    model, tokenizer = fit_tiny_t5(prompts, vq.config.codebook_size)
    folder = save_policy(model, tokenizer, tmp_path_factory.mktemp("pair_hub") / "policy")
    record_motion_tokenizer(folder, str(motion_tokenizer_dir))
    torch.manual_seed(0)
    TextMotionRetrieval(RetrievalConfig.preset("tiny")).save_pretrained(folder.parent / "retrieval")
    return folder, folder.parent / "retrieval"


def test_judged_push_records_the_policy_and_the_counts(
    hub_datasets, judged_policy, motion_tokenizer_dir, tiny_corpus, tmp_path, capsys
):
    hub, out, repo = hub_datasets, tmp_path / "judged", "user/judged-pairs"
    policy, retrieval = judged_policy
    run_pairs(
        ["pairs", "judged", "--policy", str(policy), "--corpus", str(tiny_corpus), "--num-prompts", "3",
         "--temperature", "1.2", "--batch-size", "2", "--scorer", "judge+reward", "--reward", str(retrieval),
         "--out", str(out), "--push-to-hub", repo]
    )  # fmt: skip
    report = json.loads((out / REPORT_FILE).read_text())
    saved = datasets.load_from_disk(str(out))
    assert report["pairs"] == len(saved) > 0 and f"pushed {len(saved)} pairs" in capsys.readouterr().out
    assert not hub.repos[("dataset", repo)].private
    loaded = datasets.load_dataset(repo, split="train")
    assert loaded.to_list() == saved.to_list()  # the scores too, as float64
    assert loaded.features["chosen_score"] == datasets.Value("float64")

    card = DatasetCard.load(repo, repo_type="dataset")
    K = MotionVQVAE.from_pretrained(str(motion_tokenizer_dir)).config.codebook_size
    degrees = report["degrees"]
    for text in (
        "sampled from a policy (8 motions per caption) and ranked by the event judge and the retrieval "
        "reward (the mean of their within-prompt ranks), as AToM does",
        "| `chosen_score` | float64 | the scorer's score of `chosen`, in [0, 1] |",
        f"codebook of {K} codes",
        f"| policy | {policy} |",
        f"| motion tokenizer | {motion_tokenizer_dir} |",  # from the policy's motion_tokenizer.json
        f"| corpus | {tiny_corpus} |",
        "| scorer | judge+reward (source judge+reward-rank) |",
        f"| reward model | {retrieval} |",
        "| temperature | 1.2 |",
        "| seed | 0 |",
        "| num_prompts | 3 |",
        f"| samples | {report['samples']} |",
        f"| invalid | {report['invalid']} |",
        f"| pairs | {report['pairs']} |",
        f"| dropped (score gap <= min gap) | {report['dropped_small_gap']} |",
        *(f"| pairs {d} | {n} |" for d, n in degrees.items()),
        "much_better from 0.5, better from 0.25, slightly_better from 0.1, unsure below",
        f"motion-align pairs judged --policy {policy} --corpus {tiny_corpus} --num-prompts 3 --scorer "
        f"judge+reward --reward {retrieval} --temperature 1.2 --batch-size 2 --out {out} "
        f"--push-to-hub {repo}",
        f'load_preferences("{repo}", codebook_size={K})',
    ):
        assert text in card.text, text
    assert f"| `much_better` | Much better | 3 | 0 | {degrees['much_better']} |" in card.text


def test_nothing_is_pushed_when_the_pairs_fail(hub, tmp_path, monkeypatch, capsys):
    out = tmp_path / "pairs"
    skipped = write_labels(tmp_path, [(1, "skipped", "skipped"), (2, "sample_1", "skipped")])
    with pytest.raises(ValueError, match="no preference pairs"):
        run_pairs([*skipped, "--out", str(out), "--push-to-hub", "user/empty"])
    broken = write_labels(tmp_path, [(3, "sample_1", "Better"), (8, "sample_2", "Better")])
    (tmp_path / "tokens" / "8_1_token.npy").unlink()
    with pytest.raises(ValueError, match="line 2: field 'sample_1.features': token file not found"):
        run_pairs([*broken, "--out", str(out), "--push-to-hub", "user/broken"])
    assert hub.requests == [] and not hub.repos and not out.exists()

    # a missing token is found before the pairs are built
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_token"))
    (tmp_path / "good").mkdir()
    good = write_labels(tmp_path / "good", LABELS[:1])
    for flags, why in (
        ([], "no Hub token found"),
        (["--token-env", "MY_HUB_TOKEN"], "environment variable MY_HUB_TOKEN is not set"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            run_pairs([*good, "--out", str(out), "--push-to-hub", "user/x", *flags])
        assert exit_info.value.code == 1
        err = capsys.readouterr().err
        assert err == (
            f"motion-align pairs labels: error: {why}: set HF_TOKEN or run `hf auth login`; the token needs "
            "write access to user/x (no pair was built)\n"
        )
    assert hub.requests == [] and not out.exists()
    for flag in (["--private"], ["--token-env", "MY_HUB_TOKEN"]):
        with pytest.raises(ValueError, match=f"{flag[0]} is only read with --push-to-hub ID"):
            run_pairs([*good, "--out", str(out), *flag])


def test_refused_push_is_one_line_and_keeps_the_pairs(hub, tmp_path, monkeypatch, capsys):
    out = tmp_path / "pairs"
    monkeypatch.setenv("MY_HUB_TOKEN", "hf_WrongTokenForThisTest")
    argv = [*write_labels(tmp_path, LABELS), "--out", str(out), "--push-to-hub", "user/nope"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--token-env", "MY_HUB_TOKEN"])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert last_line(captured.err) == (
        f"motion-align pairs labels: error: the Hub at {hub.endpoint} answered 401: set HF_TOKEN or run "
        "`hf auth login`; the token needs write access to user/nope "
        f"(the pairs are saved in {out}, not pushed)"
    )
    assert "hf_Wrong" not in captured.err + captured.out
    assert len(load_preferences(out)) == 6 and not hub.repos  # written, and nothing on the Hub

    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    with pytest.raises(SystemExit):
        main([*argv, "--overwrite"])
    err = last_line(capsys.readouterr().err)
    assert err.startswith(f"motion-align pairs labels: error: cannot reach the Hub at {endpoint} (Connect")
    assert err.endswith(f"(the pairs are saved in {out}, not pushed)")


def test_push_pairs_refusals_and_card_metadata(hub, tmp_path):
    pairs = validate_preferences(random_pairs(24, PAIR_CODEBOOK))
    info = PairCardInfo("made for a test", license="my-own-license")
    with pytest.raises(
        HubPushError, match='(?s)refused the dataset card of user/card.*"license" must be one of'
    ):
        push_pairs(pairs, "user/card", info)
    assert "POST /api/validate-yaml -> 400" in hub.requests
    assert huggingface_hub.list_repo_files("user/card", repo_type="dataset") == [".gitattributes"]
    with pytest.raises(HubPushError, match="the dataset card of user/card contains the Hub token"):
        push_pairs(pairs, "user/card", PairCardInfo(f"made with {FAKE_TOKEN}"))
    with pytest.raises(HubPushError, match="answered 401"):
        push_pairs(pairs, "user/card", PairCardInfo("made for a test"), token="hf_WrongTokenForThisTest")

    url = push_pairs(pairs, "card", PairCardInfo("made for a test", license="mit"))  # the token's namespace
    assert url.startswith(f"{hub.endpoint}/datasets/user/card/commit/")
    text = (hub.repo_path("user/card", "dataset") / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["license"] == "mit" and meta["pretty_name"] == "card"
    assert [f["name"] for f in meta["dataset_info"]["features"]] == [
        "prompt",
        "chosen",
        "rejected",
        "degree",
        "source",
    ]
    assert "codebook of 16 codes" in text and "# user/card" in text  # the size read from the motions


def test_card_without_degrees_and_the_command_line():
    rows = [{**r, "degree": None} for r in random_pairs(3, 8)]
    card = build_pair_card(
        validate_preferences(rows), PairCardInfo("made by hand", command="x --hub_token hf_abcdefghijkl")
    )
    assert (
        "| null | not labelled |  |  | 3 |" in card.text
        and "| `much_better` | Much better | 3 | 0 | 0 |" in card.text
    )
    assert "x --hub_token ***" in card.text and "hf_abcdefghijkl" not in card.text
    assert "# motion-align preference pairs" in card.text and 'load_dataset("<repo_id>"' in card.text

    parser = argparse.ArgumentParser(prog="motion-align")
    add_pairs_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["pairs", "labels", "--labels", "my labels.jsonl", "--tokens", "t", "--codebook-size", "512",
         "--out", "o", "--push-to-hub", "me/p", "--no-unsure"]
    )  # fmt: skip
    assert command_line(args.command_parser, args) == (
        "motion-align pairs labels --labels 'my labels.jsonl' --tokens t --codebook-size 512 --no-unsure "
        "--out o --push-to-hub me/p"
    )
