"""Preference data: schema checks, local/Hub round trips, the InstructMotion importer, recipe knobs."""

import json
import re
from pathlib import Path

import datasets
import numpy as np
import pytest
from huggingface_hub import HfApi, constants

from motion_align.data.preference_import import import_instructmotion
from motion_align.data.preferences import (
    DEFAULT_SOURCE,
    DEGREE_LABEL_SMOOTHING,
    DEGREE_MARGINS,
    DEGREES,
    canonical_degree,
    load_preferences,
    save_preferences,
    select_preferences,
    split_preferences,
    to_trainer_rows,
    validate_preferences,
)
from motion_align.policy.model import format_prompt
from motion_align.policy.vocab import MotionVocab

K = 16
VOCAB = MotionVocab(K)


def motion(*codes: int) -> str:
    return VOCAB.codes_to_string(list(codes))


def pairs(n: int = 20) -> datasets.Dataset:
    """n valid pairs cycling through the degrees and None, with an extra `id` column."""
    cycle = [*DEGREES, None]
    return validate_preferences(
        [
            {"prompt": f"a person jumps {i} times.", "chosen": motion(i % K, 1), "rejected": motion(2, i % K),
             "degree": cycle[i % len(cycle)], "source": "human", "id": f"p{i}"}
            for i in range(n)
        ]
    )  # fmt: skip


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_constants_and_degree_labels():
    assert DEGREES == ("much_better", "better", "slightly_better", "unsure")
    assert DEGREE_MARGINS == {"much_better": 3.0, "better": 2.0, "slightly_better": 1.0, "unsure": 0.0}
    assert DEGREE_LABEL_SMOOTHING == {
        "much_better": 0.0,
        "better": 0.2,
        "slightly_better": 0.3,
        "unsure": 0.5,
    }
    labels = ["Much better", "Better", "SLIGHTLY BETTER", "Negligibly better/unsure", "slightly_better", None]
    assert [canonical_degree(x) for x in labels] == [*DEGREES[:3], "unsure", "slightly_better", None]
    with pytest.raises(ValueError, match="drop them"):
        canonical_degree("skipped")


def test_validation_normalises_records():
    ds = validate_preferences(
        [
            {"prompt": " a person waves. ", "chosen": [3, 4], "degree": "Much better", "chosen_score": 0.9,
             "rejected": "<motion_id_16> <motion_id_5> <motion_id_17>"},
            {"prompt": "a person kicks.", "chosen": motion(1), "rejected": motion(2), "source": "judge"},
        ],
        codebook_size=K,
    )  # fmt: skip
    assert ds.column_names == ["prompt", "chosen", "rejected", "degree", "source", "chosen_score"]
    assert ds[0] == {
        "prompt": "a person waves.", "chosen": motion(3, 4), "rejected": motion(5),
        "degree": "much_better", "source": DEFAULT_SOURCE, "chosen_score": 0.9,
    }  # fmt: skip
    assert ds[1]["degree"] is None and ds[1]["source"] == "judge" and ds[1]["chosen_score"] is None
    assert ds.features["degree"] == datasets.Value("string")


def test_codebook_size_is_inferred_from_strings():
    strings = [{"prompt": "a person runs.", "chosen": motion(1, 2), "rejected": motion(3)}]
    assert validate_preferences(strings)[0]["chosen"] == motion(1, 2)
    with pytest.raises(
        ValueError, match=r"<dataset> record 0: field 'chosen': a list of codes needs codebook_size"
    ):
        validate_preferences([{"prompt": "a person runs.", "chosen": [1], "rejected": [2]}])
    other = MotionVocab(32).codes_to_string([1])
    mixed = strings + [{"prompt": "a person runs.", "chosen": motion(1), "rejected": other}]
    with pytest.raises(
        ValueError, match=r"record 1: field 'rejected': starts with <motion_id_32> but record 0"
    ):
        validate_preferences(mixed)


def test_round_trips(tmp_path):
    ds = pairs()
    out = save_preferences(ds, tmp_path / "prefs")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "data-00000-of-00001.arrow",
            "dataset_info.json",
            "state.json",
            "preferences.jsonl",
            "preferences.json",
        ]
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    summary = json.loads((out / "preferences.json").read_text())
    assert summary["rows"] == 20 and summary["sources"] == {"human": 20}
    assert summary["degrees"] == {"much_better": 4, "better": 4, "slightly_better": 4, "unsure": 4, "none": 4}
    ds.to_parquet(str(tmp_path / "prefs.parquet"))
    datasets.DatasetDict({"train": ds.select(range(5)), "test": ds.select(range(5, 20))}).save_to_disk(
        str(tmp_path / "dict")
    )
    for source in (out, out / "preferences.jsonl", tmp_path / "prefs.parquet", str(tmp_path / "dict")):
        loaded = load_preferences(source, split="test" if str(source).endswith("dict") else "train")
        expected = ds.select(range(5, 20)) if str(source).endswith("dict") else ds
        assert loaded.to_list() == expected.to_list(), source
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_preferences(ds, out)
    save_preferences(ds.select(range(3)), out, overwrite=True)
    assert len(load_preferences(out)) == 3 and len((out / "preferences.jsonl").read_text().splitlines()) == 3
    with pytest.raises(ValueError, match=r"no split 'eval'; the DatasetDict has \['test', 'train'\]"):
        load_preferences(tmp_path / "dict", split="eval")


def test_json_list_file_and_code_lists(tmp_path):
    path = tmp_path / "prefs.json"
    path.write_text(
        json.dumps([{"prompt": "a person sits.", "chosen": [1, 2], "rejected": [3], "degree": "Better"}])
    )
    ds = load_preferences(path, codebook_size=K)
    assert ds[0]["chosen"] == motion(1, 2) and ds[0]["rejected"] == motion(3) and ds[0]["degree"] == "better"
    with pytest.raises(
        ValueError,
        match=rf"{re.escape(str(path))} record 0: field 'chosen': a list of codes needs codebook_size",
    ):
        load_preferences(path)


GOOD = {"prompt": "a person jumps.", "chosen": motion(1, 2), "rejected": motion(3)}


@pytest.mark.parametrize(
    "bad, field, message",
    [
        ({"prompt": "  "}, "prompt", "expected a non-empty caption string"),
        ({"prompt": None}, "prompt", "expected a non-empty caption string"),
        ({"chosen": None}, "chosen", "missing"),
        ({"chosen": motion(1, 2)[:-15]}, "chosen", "missing end token <motion_id_17>"),
        ({"rejected": [3, 16]}, "rejected", "code 16 is outside the codebook of 16"),
        ({"rejected": [3, 1.5]}, "rejected", "must hold ints only"),
        ({"rejected": []}, "rejected", "empty list of codes"),
        ({"rejected": 7}, "rejected", "expected a motion-token string or a list of codes"),
        ({"degree": "very good"}, "degree", "'very good' is not one of"),
        ({"source": 3}, "source", "expected a non-empty string"),
    ],
)
def test_validation_errors_name_file_line_and_field(tmp_path, bad, field, message):
    path = write_jsonl(tmp_path / "prefs.jsonl", [GOOD, "", GOOD, {**GOOD, **bad}])
    with pytest.raises(ValueError) as info:
        load_preferences(path, codebook_size=K)
    assert str(info.value).startswith(f"{path} line 4: field '{field}': ")
    assert message in str(info.value)
    with pytest.raises(ValueError, match=rf"^mine record 2: field '{field}': "):
        validate_preferences([GOOD, GOOD, {**GOOD, **bad}], codebook_size=K, where="mine")


def test_malformed_json_lines(tmp_path):
    path = write_jsonl(tmp_path / "prefs.jsonl", [GOOD, '{"prompt": "a person', GOOD])
    with pytest.raises(
        ValueError, match=rf"^{re.escape(str(path))} line 2: malformed JSON: Unterminated string"
    ):
        load_preferences(path)
    write_jsonl(path, [GOOD, "[1, 2]"])
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))} line 2: expected an object with fields"):
        load_preferences(path)
    (tmp_path / "prefs.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="unsupported preference file type '.csv'"):
        load_preferences(tmp_path / "prefs.csv")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_preferences(tmp_path / "missing.jsonl")


# --------------------------------------------------------------------------- InstructMotion importer
def instructmotion_folder(root: Path) -> Path:
    """A preference_data folder in InstructMotion's layout: preference_labels.jsonl + tokens/*_token.npy."""
    (root / "tokens").mkdir(parents=True)
    for pair in range(1, 7):
        for sample in (1, 2):  # codes (1, N) as MotionGPT saves them; sample 1 starts with 1, sample 2 with 2
            np.save(root / "tokens" / f"{pair}_{sample}_token.npy", np.array([[sample, pair, 10 + pair]]))

    def record(pair, *entries, features_dir="features"):
        samples = {f"sample_{s}": {"gif": f"gifs/{pair}_{s}.gif", "array": f"arrays/{pair}_{s}.npy",
                                   "features": f"{features_dir}/{pair}_{s}.npy", "from": "mgpt", "seed": s}
                   for s in (1, 2)}  # fmt: skip
        chosen = [{"choice": c, "degree of preference": d, "user": "u"} for c, d in entries]
        return {"id": pair, "prompt": f"a person does move {pair}.", **samples, "chosen": chosen}

    rows = [
        record(1, ("sample_1", "Much better")),
        record(2, ("sample_1", "Slightly better"), ("sample_2", "Better")),  # the last entry counts
        record(3, ("sample_1", "Better"), ("skipped", "skipped")),
        record(4, ("sample_2", "Negligibly better/unsure")),
        record(5, ("sample_1", "Slightly better"), features_dir="/data2/lab/preference_data/features"),
        record(6, ("skipped", "skipped")),
    ]
    return write_jsonl(root / "preference_labels.jsonl", rows)


def test_import_instructmotion(tmp_path):
    labels = instructmotion_folder(tmp_path / "preference_data")
    ds = import_instructmotion(labels, tmp_path / "preference_data", codebook_size=K)
    assert list(ds["id"]) == ["1", "2", "4", "5"]  # skipped pairs 3 and 6 dropped
    assert list(ds["degree"]) == ["much_better", "better", "unsure", "slightly_better"]
    assert ds[0]["chosen"] == motion(1, 1, 11) and ds[0]["rejected"] == motion(2, 1, 11)  # sample_1 won
    assert ds[1]["chosen"] == motion(2, 2, 12) and ds[1]["rejected"] == motion(1, 2, 12)  # sample_2 won
    assert ds[3]["chosen"] == motion(1, 5, 15)  # absolute /data2/... path found by name under tokens/
    assert set(ds["source"]) == {"instructmotion"} and ds[0]["prompt"] == "a person does move 1."
    assert ds.column_names == ["prompt", "chosen", "rejected", "degree", "source", "id"]
    sure = import_instructmotion(labels, tmp_path / "preference_data", codebook_size=K, include_unsure=False)
    assert list(sure["id"]) == ["1", "2", "5"]


def edit_line(labels: Path, number: int, change) -> None:
    lines = labels.read_text().splitlines()
    record = json.loads(lines[number - 1])
    change(record)
    lines[number - 1] = json.dumps(record)
    labels.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "change, field, message",
    [
        (lambda r: r["chosen"][-1].update(choice="sample_3"), "chosen[-1].choice", "'sample_3' is not one"),
        (lambda r: r.update(chosen=[]), "chosen", "expected a non-empty list of labelling entries"),
        (lambda r: r["chosen"][-1].pop("choice"), "chosen[-1].choice", "missing"),
        (lambda r: r["chosen"][-1].update({"degree of preference": "Meh"}), "chosen[-1].degree of preference",
         "'Meh' is not one of"),
        (lambda r: r["sample_2"].update(features="features/9_9.npy"), "sample_2.features", "file not found"),
        (lambda r: r["sample_1"].pop("features"), "sample_1.features", "expected the sample's features path"),
        (lambda r: r.update(prompt=""), "prompt", "expected a non-empty caption string"),
    ],
)  # fmt: skip
def test_import_errors_name_labels_file_line_and_field(tmp_path, change, field, message):
    labels = instructmotion_folder(tmp_path / "preference_data")
    edit_line(labels, 2, change)
    with pytest.raises(ValueError) as info:
        import_instructmotion(labels, tmp_path / "preference_data", codebook_size=K)
    assert str(info.value).startswith(f"{labels} line 2: field '{field}': ")
    assert message in str(info.value)


def test_import_token_file_problems(tmp_path):
    root = tmp_path / "preference_data"
    labels = instructmotion_folder(root)
    expected = rf"{re.escape(str(labels))} line 1: field 'sample_1.features': token file .*1_1_token.npy: "
    with pytest.raises(ValueError, match=expected + "code 11 is outside the codebook of 8"):
        import_instructmotion(labels, root, codebook_size=8)
    np.save(root / "tokens" / "1_2_token.npy", np.array([[1, "x"]], dtype=object), allow_pickle=True)
    with pytest.raises(
        ValueError, match=r"line 1: field 'sample_2.features': .*cannot read it as a .npy array"
    ):
        import_instructmotion(labels, root, codebook_size=K)  # pickled arrays are refused, never loaded
    np.save(root / "tokens" / "1_2_token.npy", np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(
        ValueError, match=r"expected codes of shape \(1, N\) or \(N,\) with N > 0, got shape \(2, 3\)"
    ):
        import_instructmotion(labels, root, codebook_size=K)


# --------------------------------------------------------------------------- recipe knobs
def test_select_preferences():
    ds = pairs(20)
    assert (
        list(select_preferences(ds, degrees=("much_better", "better"))["degree"])
        == ["much_better", "better"] * 4
    )
    assert select_preferences(ds).to_list() == ds.to_list()  # unlabelled rows kept only without a filter
    assert None not in select_preferences(ds, degrees=DEGREES)["degree"]
    assert set(select_preferences(ds, include_unsure=False)["degree"]) == {
        "much_better",
        "better",
        "slightly_better",
        None,
    }
    half = select_preferences(ds, fraction=0.5, seed=3)
    assert len(half) == 10 and half.to_list() == select_preferences(ds, fraction=0.5, seed=3).to_list()
    assert list(half["id"]) != list(select_preferences(ds, fraction=0.5, seed=4)["id"])
    assert list(half["id"]) == sorted(half["id"], key=lambda x: int(x[1:]))  # subset keeps the order


def test_split_preferences():
    ds = pairs(20)
    parts = split_preferences(ds, eval_fraction=0.1, seed=42)
    assert {k: len(v) for k, v in parts.items()} == {"train": 18, "eval": 2}
    assert sorted([*parts["train"]["id"], *parts["eval"]["id"]]) == sorted(ds["id"])
    assert parts["eval"].to_list() == split_preferences(ds, 0.1, seed=42)["eval"].to_list()
    assert list(parts["eval"]["id"]) != list(split_preferences(ds, 0.1, seed=43)["eval"]["id"])
    # InstructMotion's split: Dataset.train_test_split(test_size=0.1, shuffle=True, seed=seed)
    assert (
        parts["eval"].to_list() == ds.train_test_split(test_size=0.1, shuffle=True, seed=42)["test"].to_list()
    )
    with pytest.raises(ValueError, match="too few pairs"):
        split_preferences(ds.select([0]))


def test_to_trainer_rows():
    ds = pairs(5)
    rows = to_trainer_rows(ds)
    assert rows.column_names == ["prompt", "chosen", "rejected", "degree"]
    assert rows[0] == {"prompt": format_prompt(ds[0]["prompt"]), "chosen": ds[0]["chosen"],
                       "rejected": ds[0]["rejected"], "degree": "much_better"}  # fmt: skip
    assert rows[4]["degree"] is None and rows[0]["prompt"] == "Generate motion: a person jumps 0 times."


# --------------------------------------------------------------------------- the Hub
def test_unreachable_hub_id_is_named(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # both libraries read the variables at import
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        ConnectionError, match=r"cannot reach Hugging Face Hub dataset 'someone/motion-prefs'.*offline"
    ):
        load_preferences("someone/motion-prefs")


def test_hub_dataset_round_trip(hub, tmp_path, monkeypatch):
    """A dataset repo on the local Hub stand-in, read by the real datasets.load_dataset."""
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", hub.endpoint)
    monkeypatch.setattr(
        datasets.config, "HUB_DATASETS_URL", hub.endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}"
    )
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")
    out = save_preferences(pairs(6), tmp_path / "prefs")
    api = HfApi()
    repo = api.create_repo("user/motion-prefs", repo_type="dataset").repo_id
    api.upload_file(path_or_fileobj=out / "preferences.jsonl", path_in_repo="data/train.jsonl", repo_id=repo,
                    repo_type="dataset")  # fmt: skip
    assert load_preferences(repo).to_list() == pairs(6).to_list()
    with pytest.raises(
        ValueError, match=r"cannot load preference dataset 'user/motion-prefs' \(split 'eval'\)"
    ):
        load_preferences(repo, split="eval")
