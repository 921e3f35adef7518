"""`motion-align pairs labels --store labels.db`: the store's majorities as a pair dataset (folder, jsonl,
parquet, Hub push through the stand-in), the agreement and position-bias report, and its refusals."""

import json

import datasets
import huggingface_hub
from labelling_helpers import make_pairs

from motion_align.cli import main
from motion_align.cli.pair_hub import DATA_FILE
from motion_align.data.preferences import load_preferences
from motion_align.labelling.store import LabelStore


def _labelled_store(path):
    """Six pairs, three labellers; cy disagrees with ann and bob on the last two pairs."""
    store = LabelStore(path, labels_per_pair=3)
    store.add_pairs(make_pairs(6))
    for name in ("ann", "bob", "cy"):
        while (pair := store.next_pair(name)) is not None:
            motion = "b" if name == "cy" and pair.position >= 4 else "a"
            side = "left" if pair.left_motion == motion else "right"
            store.record_label(
                name, pair.pair_id, side, "much_better" if name == "ann" else "better", pair.left_motion
            )
    store.close()
    return path


def test_export_folder_and_push_with_report(hub, tmp_path, capsys):
    db = _labelled_store(tmp_path / "labels.db")
    out, repo = tmp_path / "human-pairs", "user/human-pairs"
    assert main(["pairs", "labels", "--store", str(db), "--out", str(out), "--push-to-hub", repo]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}: 6 pairs from 18 labels by 3 labellers; much_better 0, better 6" in printed
    assert "position bias:" in printed and f"pushed 6 pairs to the Hub dataset {repo}" in printed
    saved = load_preferences(out)
    assert saved["votes"] == [3] * 6 and sorted(saved["agreement"]) == [0.6667] * 2 + [1.0] * 4
    assert set(saved["source"]) == {"human-labels"}
    report = json.loads((out / "labels_report.json").read_text())
    assert report["unanimous"] == 4 and report["fleiss_kappa"]["pairs"] == 6
    kappas = {tuple(row["labellers"]): row["kappa"] for row in report["cohen_kappa"]["pairs_of_labellers"]}
    assert kappas[("ann", "bob")] is None  # they always agree on "a": chance agreement is 1, kappa undefined
    assert report["position_bias"]["votes"] == 18
    assert set(huggingface_hub.list_repo_files(repo, repo_type="dataset")) >= {"README.md", DATA_FILE}
    pushed = hub.repo_path(repo, "dataset") / DATA_FILE
    assert datasets.Dataset.from_parquet(str(pushed)).to_list() == saved.to_list()


def test_export_single_files_and_refusals(tmp_path, capsys):
    db = _labelled_store(tmp_path / "labels.db")
    assert (
        main(
            ["pairs", "labels", "--store", str(db), "--out", str(tmp_path / "p.parquet"), "--min-votes", "3"]
        )
        == 0
    )
    assert len(load_preferences(tmp_path / "p.parquet")) == 6
    assert json.loads((tmp_path / "p.labels_report.json").read_text())["min_votes"] == 3
    assert (
        main(["pairs", "labels", "--store", str(db), "--out", str(tmp_path / "p.jsonl"), "--min-votes", "4"])
        == 2
    )
    assert "no pair has a majority of at least 4 vote(s)" in capsys.readouterr().err
    assert not (tmp_path / "p.jsonl").exists()
    argv = ["pairs", "labels", "--store", str(db), "--tokens", "x", "--out", str(tmp_path / "q")]
    assert main(argv) == 2
    assert "--store exports the labelling app's labels" in capsys.readouterr().err
    assert main(["pairs", "labels", "--out", str(tmp_path / "q")]) == 2
    assert "needs --labels, --tokens, --codebook-size (or --store labels.db)" in capsys.readouterr().err
    assert main(["pairs", "labels", "--store", str(tmp_path / "none.db"), "--out", str(tmp_path / "q")]) == 2
    assert "none.db not found" in capsys.readouterr().err


def test_label_refuses_to_start_without_pairs_or_token(tmp_path, capsys, monkeypatch):
    assert main(["label", "--store", str(tmp_path / "labels.db")]) == 2
    assert "has no pairs yet: pass --candidates" in capsys.readouterr().err
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    assert main(["label", "--store", str(tmp_path / "labels.db"), "--token-env", "NO_SUCH_TOKEN"]) == 2
    assert "the environment variable NO_SUCH_TOKEN is not set or empty" in capsys.readouterr().err
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "generations.jsonl").write_text('{"prompt": "a person jumps."}\n')
    argv = ["label", "--store", str(tmp_path / "labels.db"), "--candidates", str(tmp_path / "gen")]
    assert main([*argv, "--codebook-size", "16"]) == 2
    assert "generations.jsonl line 1: field 'codes': missing" in capsys.readouterr().err
