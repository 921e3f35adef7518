"""``motion-align judge`` and ``pairs judged --scorer ai-judge`` against a local chat-completions server:
verdicts, reports, agreement with the event judge, the cache on a second run, a generate folder as input,
and the key kept out of every output."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from chat_stand_in import ChatStandIn, answer, raw, truthful_answer

from motion_align.cli import main
from motion_align.cli.judge import MARKDOWN_FILE, REPORT_FILE, VERDICTS_FILE
from motion_align.data.preferences import load_preferences
from motion_align.data.text_motion import iter_items

KEY = "sk-cli-test-5d1e-keep-secret"


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    stand_in = ChatStandIn(KEY)
    yield stand_in
    stand_in.close()


def judge_argv(server, corpus, out, *extra: str) -> list[str]:
    return ["judge", "--judge", "openai", "--model", "stand-in-vl", "--base-url", server.url, "--corpus",
            str(corpus), "--split", "train", "--frames", "4", "--frame-size", "128", "--out", str(out),
            "--backoff", "0.01", "--price-in", "1", "--price-out", "4", *extra]  # fmt: skip


def test_judge_writes_verdicts_reports_and_agreement_then_reads_the_cache(
    server, tiny_corpus, tmp_path, capsys, caplog
):
    caplog.set_level(logging.DEBUG)
    out, cache = tmp_path / "judge", str(tmp_path / "cache")
    server.queue = [raw("{not json"), raw("{not json")]  # one request at a time: the first motion fails
    argv = judge_argv(server, tiny_corpus, out, "--num-prompts", "4", "--concurrency", "1", "--cache", cache)
    assert main(argv) == 0
    printed = capsys.readouterr()
    rows = [json.loads(line) for line in (out / VERDICTS_FILE).read_text().splitlines()]
    report = json.loads((out / REPORT_FILE).read_text())
    assert len(rows) == report["cases"] == 4 and server.problems == []
    assert [r["ai_judge"]["status"] for r in rows] == ["failed", "ok", "ok", "ok"]
    assert rows[0]["ai_judge"]["failure"] == "malformed_json" and rows[0]["ai_judge"]["score"] is None
    assert report["failures"] == {"malformed_json": 1} and report["verdicts"] == {"failed": 1, "ok": 3}
    usage = report["usage"]
    assert usage["requests"] == len(server.requests) == 5 and usage["retries"] == 1
    assert usage["prompt_tokens"] == 5000 and usage["cost"] == pytest.approx((5000 * 1 + 250 * 4) / 1e6)
    # the stand-in answers "all present, in order, counted right": where both judges give a category a
    # figure, the AI judge passes it, so the cells are the event judge's passes and fails
    agreement = report["agreement"]
    assert agreement["ai_failed"] == 1
    for name in ("integrity", "temporal", "frequency"):
        figures = [r["event_judge"][name] for r in rows[1:] if r["event_judge"][name] is not None]
        cell = agreement[name]
        assert cell["both_pass"] == sum(f == 1 for f in figures) and cell["ai_pass_judge_fail"] == sum(
            f < 1 for f in figures
        )
        assert cell["both_fail"] == cell["ai_fail_judge_pass"] == 0 and cell["cases"] == len(figures)
    markdown = (out / MARKDOWN_FILE).read_text()
    assert "failures by kind: malformed_json 1" in markdown and "| integrity | 3 |" in markdown
    outputs = printed.out + printed.err + caplog.text + markdown + json.dumps(report) + json.dumps(rows)
    assert KEY not in outputs

    assert main(argv) == 2 and "pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    again = json.loads((out / REPORT_FILE).read_text())
    assert (
        again["usage"]["cache_hits"] == 3 and again["usage"]["requests"] == 1
    )  # only the failed one re-asked
    assert again["verdicts"] == {"ok": 4} and len(server.requests) == 6


def test_judge_reads_a_generate_folder_and_names_bad_rows(server, tiny_corpus, tmp_path, capsys):
    items = list(iter_items(tiny_corpus, "train", segments=False))[:2]
    gen = tmp_path / "gen"
    gen.mkdir()
    rows = []
    for k, item in enumerate(items):
        np.save(gen / f"s{k}.npy", item.features)
        rows.append({"prompt": item.captions[0].text, "sample": 0, "valid": True, "files": [f"s{k}.npy"]})
    rows.append({"prompt": items[0].captions[0].text, "sample": 1, "valid": False, "files": []})
    (gen / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "judged"
    assert main(judge_argv(server, tiny_corpus, out, "--motions", str(gen), "--no-cache")) == 0
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["cases"] == 2 and report["skipped_invalid"] == 1 and report["verdicts"] == {"ok": 2}
    capsys.readouterr()

    rows[1]["prompt"] = "a caption the corpus does not have."
    (gen / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(judge_argv(server, tiny_corpus, tmp_path / "bad", "--motions", str(gen), "--no-cache")) == 2
    err = capsys.readouterr().err
    assert "generations.jsonl line 2: field 'prompt' 'a caption the corpus does not have.'" in err
    argv = judge_argv(server, tiny_corpus, tmp_path / "nokey", "--api-key-env", "NO_SUCH_KEY_VAR")
    assert main(argv) == 2
    assert "--api-key-env NO_SUCH_KEY_VAR: that environment variable is not set" in capsys.readouterr().err


@pytest.mark.slow
def test_pairs_judged_with_the_ai_judge_scorer(server, policy_artifacts, tiny_corpus, tmp_path, capsys):
    asked = iter(range(10_000))

    def every_other_misses_the_first_event(body):  # so that candidates differ in score
        reply = truthful_answer(body)
        if next(asked) % 2:
            reply["events"][0].update(
                present=False, times=0 if reply["events"][0]["times"] is not None else None
            )
        return reply

    server.default = answer(every_other_misses_the_first_event)
    out = tmp_path / "pairs"
    argv = ["pairs", "judged", "--model", str(policy_artifacts["llama"]), "--corpus", str(tiny_corpus),
            "--num-prompts", "6", "--num-samples", "8", "--temperature", "1.0", "--scorer", "ai-judge",
            "--judge-model", "stand-in-vl", "--judge-base-url", server.url, "--judge-frames", "4",
            "--judge-frame-size", "128", "--judge-no-cache", "--judge-concurrency", "1",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert KEY not in printed.out + printed.err and server.problems == []
    report = json.loads((out / "pairs_report.json").read_text())
    pairs = load_preferences(out)
    assert report["source"] == "ai-judge" and report["pairs"] == len(pairs) > 0 and report["unscored"] == 0
    assert all(c > r for c, r in zip(pairs["chosen_score"], pairs["rejected_score"]))
    usage = report["ai_judge"]["usage"]
    assert usage["requests"] == len(server.requests) == report["candidates"] and usage["prompt_tokens"] > 0
    assert main([*argv[:-2], "--judge-model", "x", "--scorer", "judge", "--out", str(tmp_path / "o")]) == 2
    assert "--judge-* flags are only read by --scorer ai-judge" in capsys.readouterr().err
