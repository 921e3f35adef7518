"""The server is killed with SIGKILL while two labellers are labelling, then started again: every label it
acknowledged is in the store, the database passes ``PRAGMA integrity_check``, and labelling goes on (a label
sent when the server died is sent again and stored once)."""

import sqlite3
import threading
import time

import httpx
from labelling_helpers import Server, make_pairs

from motion_align.labelling.store import LabelStore


def choice_of(body: dict) -> str:
    """The motion ("a" or "b") a label request picks."""
    left = body["left_motion"]
    return left if body["side"] == "left" else "ab".replace(left, "")


class Labeller(threading.Thread):
    """Labels through the API as fast as it can until the server goes away; keeps what was acknowledged
    and the label it had sent without an answer."""

    def __init__(self, url: str, name: str) -> None:
        super().__init__(daemon=True)
        self.url, self.name = url, name
        self.acknowledged: dict[str, tuple] = {}
        self.unanswered: dict | None = None

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            try:
                answer = client.get("/api/next", params={"labeller": self.name}).raise_for_status().json()
                while answer["pair"] is not None:
                    pair = answer["pair"]
                    side = "left" if len(self.acknowledged) % 3 else "right"
                    self.unanswered = {
                        "labeller": self.name,
                        "pair_id": pair["pair_id"],
                        "side": side,
                        "degree": "better",
                        "left_motion": pair["left_motion"],
                    }
                    answer = client.post("/api/label", json=self.unanswered).raise_for_status().json()
                    self.acknowledged[pair["pair_id"]] = (
                        choice_of(self.unanswered),
                        "better",
                        pair["left_motion"],
                    )
                    self.unanswered = None
            except httpx.TransportError:  # the server was killed
                return


def test_labels_acknowledged_before_sigkill_survive_it(tmp_path):
    db = tmp_path / "labels.db"
    store = LabelStore(db)
    store.add_pairs(make_pairs(400))
    store.close()
    args, log = ["--store", str(db), "--labels-per-pair", "2", "--prefetch", "0"], tmp_path / "server.log"
    acknowledged: dict[tuple[str, str], tuple] = {}
    labellers: list[Labeller] = []
    for _ in range(2):
        server = Server(args, log)
        # the label each labeller sent as the server died (none in the first round): sent again, stored once
        for labeller in labellers:
            if labeller.unanswered is not None:
                body = labeller.unanswered
                retry = httpx.post(f"{server.url}/api/label", json=body, timeout=30)
                assert retry.status_code == 200, retry.text
                acknowledged[body["pair_id"], body["labeller"]] = (
                    choice_of(body),
                    "better",
                    body["left_motion"],
                )
        labellers = [Labeller(server.url, name) for name in ("ann", "bob")]
        for labeller in labellers:
            labeller.start()
        deadline = time.monotonic() + 120
        while sum(len(lb.acknowledged) for lb in labellers) < 60 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill()  # while both are sending labels
        for labeller in labellers:
            labeller.join(timeout=60)
            acknowledged.update(
                {(pair_id, labeller.name): label for pair_id, label in labeller.acknowledged.items()}
            )
        assert sum(len(lb.acknowledged) for lb in labellers) >= 60
        check = sqlite3.connect(db)
        assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = {
            (pair_id, name): (choice, degree, left)
            for pair_id, name, choice, degree, left in check.execute(
                "SELECT pair_id, labeller, choice, degree, left_motion FROM labels"
            )
        }
        check.close()
        missing = {key: label for key, label in acknowledged.items() if stored.get(key) != label}
        assert missing == {}  # every acknowledged label is there, as acknowledged
        # at most the one label each labeller had in flight is there without an acknowledgement
        assert len(stored) - len(acknowledged) <= sum(lb.unanswered is not None for lb in labellers)
    server = Server(args, log)  # and it goes on where it was
    try:
        answer = httpx.get(f"{server.url}/api/next", params={"labeller": "ann"}, timeout=30).json()
        assert answer["pair"] is not None and answer["progress"]["mine"] >= 1
    finally:
        server.stop()
