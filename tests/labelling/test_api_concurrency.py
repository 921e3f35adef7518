"""Two labellers label 1,000 pairs at once through one server's HTTP API: the store ends up holding exactly
the labels they were told were stored: none lost, none twice, no pair voted on twice (with retries and
undos on the way)."""

import random
import threading

import httpx
from labelling_helpers import Server, make_pairs

from motion_align.data.preferences import DEGREES
from motion_align.labelling.store import LabelStore

PAIRS = 1000
TOKEN = "shared-secret"


def _labeller(url: str, name: str, seed: int, acknowledged: dict, errors: list) -> None:
    """Label until no pair is left; what the server acknowledged goes to ``acknowledged[pair_id]``."""
    rng = random.Random(seed)
    headers = {"X-Label-Token": TOKEN}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            answer = client.get("/api/next", params={"labeller": name}).raise_for_status().json()
            count = 0
            while answer["pair"] is not None:
                pair = answer["pair"]
                side = rng.choice(["left", "right", "right", "skip"])
                body = {
                    "labeller": name,
                    "pair_id": pair["pair_id"],
                    "side": side,
                    "left_motion": pair["left_motion"],
                    "degree": None if side == "skip" else rng.choice(DEGREES),
                }
                answer = client.post("/api/label", json=body).raise_for_status().json()
                assert answer["stored"] is True
                count += 1
                if count % 25 == 0:  # a retry, as after a lost answer: acknowledged, not stored again
                    retry = client.post("/api/label", json=body).raise_for_status().json()
                    assert retry["stored"] is False and retry["label_id"] == answer["label_id"]
                if count % 40 == 0 and side != "skip":  # undo, then label the same pair again, the other way
                    # (not after a skip: the skipped pair may have gone to the other labeller since, and undo
                    # gives it back all the same, so that it would then have two votes where one is wanted)
                    undone = client.post("/api/undo", json={"labeller": name}).raise_for_status().json()
                    assert undone["undone"]["pair_id"] == pair["pair_id"] == undone["pair"]["pair_id"]
                    body = {**body, "side": "left" if side == "right" else "right", "degree": "unsure"}
                    answer = client.post("/api/label", json=body).raise_for_status().json()
                    assert answer["stored"] is True
                choice = (
                    "skip"
                    if body["side"] == "skip"
                    else (
                        pair["left_motion"]
                        if body["side"] == "left"
                        else "ab".replace(pair["left_motion"], "")
                    )
                )
                acknowledged[pair["pair_id"], name] = (choice, body["degree"], pair["left_motion"])
    except Exception as error:  # noqa: BLE001 - reported by the test
        errors.append(f"{name}: {type(error).__name__}: {error}")


def test_two_labellers_label_1000_pairs_and_nothing_is_lost_or_doubled(tmp_path):
    store = LabelStore(tmp_path / "labels.db")
    store.add_pairs(make_pairs(PAIRS))
    store.close()
    server = Server(
        [
            "--store",
            str(tmp_path / "labels.db"),
            "--labels-per-pair",
            "1",
            "--prefetch",
            "0",
            "--token-env",
            "LABEL_TOKEN",
        ],
        tmp_path / "server.log",
        env={"LABEL_TOKEN": TOKEN},
    )
    try:
        assert httpx.get(f"{server.url}/api/next", params={"labeller": "eve"}).status_code == 401
        wrong = httpx.get(
            f"{server.url}/api/next", params={"labeller": "eve"}, headers={"X-Label-Token": "no"}
        )
        assert wrong.status_code == 401 and wrong.json() == {"error": "wrong or missing access token"}
        acknowledged: dict = {}
        errors: list = []
        threads = [
            threading.Thread(target=_labeller, args=(server.url, name, seed, acknowledged, errors))
            for seed, name in enumerate(("ann", "bob"))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        # one labeller may have run out while the other skipped pairs later: each takes a last turn, alone
        for seed, name in enumerate(("ann", "bob"), start=2):
            _labeller(server.url, name, seed, acknowledged, errors)
        assert errors == []
        progress = httpx.get(
            f"{server.url}/api/progress", params={"labeller": "ann"}, headers={"X-Label-Token": TOKEN}
        ).json()
    finally:
        server.stop()
    store = LabelStore(tmp_path / "labels.db")
    labels = store.labels()
    stored = {
        (label.pair_id, label.labeller): (label.choice, label.degree, label.left_motion) for label in labels
    }
    assert len(labels) == len(stored)  # nobody labelled a pair twice
    assert stored == acknowledged  # none lost, none changed, none that was not acknowledged
    assert {name for _, name in stored} == {"ann", "bob"}  # the two really labelled side by side
    votes = {}
    for (pair_id, _), (choice, _, _) in stored.items():
        votes.setdefault(pair_id, []).append(choice)
    assert len(votes) == PAIRS  # every pair was labelled
    # one label wanted per pair: never two votes; a second label only after a skip (a skip is no vote)
    assert all(sum(c != "skip" for c in choices) <= 1 for choices in votes.values())
    assert all(len(choices) == 1 or "skip" in choices for choices in votes.values())
    voted = sum(any(c != "skip" for c in choices) for choices in votes.values())
    assert all(any(c != "skip" for c in choices) or len(choices) == 2 for choices in votes.values())
    assert progress["labels"] == len(labels) and progress["pairs_done"] == voted
    assert store.integrity_check() == "ok"
