"""The AI judge against a local chat-completions server: request shape, good answers, malformed and
out-of-schema answers, 429/500/timeouts with retries, failures never scored, the cache, the key kept
secret, the concurrency limit; the answer schema and figures; the agreement report on a hand-built case."""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time

import numpy as np
import pytest
from chat_stand_in import ChatStandIn, answer, raw, status, truthful_answer

from motion_align.data.synth import synthesize
from motion_align.evaluation.ai_judge_agreement import agreement_markdown, agreement_report, cohen_kappa
from motion_align.motion.events import Event
from motion_align.motion.features import features_from_joints
from motion_align.rewards.ai_judge import (
    AIJudge,
    AIJudgeScorer,
    answer_errors,
    asked_events,
    describe,
    figures_from_answer,
)
from motion_align.rewards.vlm_client import FatalServerError, VLMClient, VLMConfig, retry_delay

KEY = "sk-test-7f3a9c-never-print-me"
SPECS = {
    "a person jumps twice, waves the right hand 3 times.": [Event("jump", 2), Event("wave", 3, limb="right")],
    "someone turns left.": [Event("turn", direction="left", params={"angle": 90})],
    "a man kicks with the left leg.": [Event("kick", 1, limb="left")],
}  # fmt: skip


@pytest.fixture(scope="module")
def motions() -> dict[str, np.ndarray]:
    """Features (T, 263) of a synthesised motion per caption of SPECS."""
    return {c: features_from_joints(synthesize(s, np.random.default_rng(k)).joints)
            for k, (c, s) in enumerate(SPECS.items())}  # fmt: skip


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    stand_in = ChatStandIn(KEY)
    yield stand_in
    stand_in.close()


def make_judge(server, tmp_path, **overrides) -> AIJudge:
    settings = dict(concurrency=3, timeout=2.0, max_retries=2, answer_retries=1, backoff=0.01,
                    max_backoff=0.05, price_in=2.5, price_out=10.0)  # fmt: skip
    settings["cache_dir"] = str(tmp_path / "cache")
    settings.update(overrides)
    return AIJudge(VLMClient(VLMConfig(server.url, "stand-in-vl", **settings), seed=0), frames=4, size=128)


def judge_all(judge: AIJudge, motions, captions):
    return judge.judge(captions, [SPECS[c] for c in captions], [motions[c] for c in captions])


def test_questions_schema_and_figures_follow_the_event_judge():
    turn = Event("turn", direction="left", params={"angle": 90})
    spec = [Event("jump"), Event("jump"), Event("idle"), Event("wave", 3, limb="right"), turn]
    asked = asked_events([*spec, Event("walk", 4, direction="left")])
    assert [describe(e) for e in asked] == [  # neighbouring jumps merged, idle not asked
        "jumps, 2 times", "waves the right hand, 3 times", "turns to their left by about 90 degrees",
        "walks or runs sideways to their left (either gait counts)",
    ]  # fmt: skip
    good = {"events": [
        {"event": 1, "present": True, "times": 2, "after_previous": None, "reason": "two jumps"},
        {"event": 2, "present": True, "times": 1, "after_previous": True, "reason": "one wave"},
        {"event": 3, "present": False, "times": None, "after_previous": False, "reason": "no turn"},
        {"event": 4, "present": True, "times": None, "after_previous": True, "reason": "sidesteps"},
    ], "reason": "partly"}  # fmt: skip
    assert answer_errors(good, asked) == []
    # integrity 3/4; temporal: pairs (1,2) ok, (2,3) and (3,4) broken by the missing turn: 1/3;
    # frequency: jump count right, wave count wrong: 1/2
    figures = figures_from_answer(good, asked)
    assert figures == pytest.approx({"integrity": 0.75, "temporal": 1 / 3, "frequency": 0.5,
                                     "score": (0.75 + 1 / 3 + 0.5) / 3})  # fmt: skip
    bad = json.loads(json.dumps(good))
    bad["events"][0]["present"] = "yes"
    bad["events"][1]["times"] = None
    bad["extra"] = 1
    errors = answer_errors(bad, asked)
    assert "answer.events[0].present: expected boolean, got str 'yes'" in errors
    assert "answer.extra: not allowed" in errors
    assert answer_errors({**good, "events": good["events"][:3]}, asked) == [
        "answer.events: 3 items, expected 4..4"
    ]
    swapped = json.loads(json.dumps(good))
    swapped["events"][1]["times"] = None
    swapped["events"][2]["event"] = 2
    assert answer_errors(swapped, asked) == [
        "answer.events[1].times: null, but event 2 (wave) asks for a count",
        "answer.events[2].event: 2, expected 3 (the list's order)",
    ]


def test_good_answers_are_scored_counted_and_then_served_from_the_cache(server, motions, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    captions = list(SPECS)
    judge = make_judge(server, tmp_path)
    verdicts = judge_all(judge, motions, captions)
    usage = judge.client.usage()
    assert server.problems == [] and len(server.requests) == 3
    assert [v.status for v in verdicts] == ["ok"] * 3 and all(v.score == 1.0 for v in verdicts)
    assert verdicts[0].frequency == 1.0 and verdicts[1].frequency is None  # a turn has no count
    body = server.requests[0]
    schema = body["response_format"]["json_schema"]["schema"]
    assert body["model"] == "stand-in-vl" and schema["properties"]["events"]["minItems"] in (1, 2)
    assert sum(p["type"] == "image_url" for p in body["messages"][1]["content"]) == 1  # one grid
    assert usage["requests"] == 3 and usage["answers"] == 3 and usage["cache_hits"] == 0
    assert usage["prompt_tokens"] == 3000 and usage["completion_tokens"] == 150
    assert usage["cost"] == pytest.approx((3000 * 2.5 + 150 * 10.0) / 1e6)

    again = judge_all(make_judge(server, tmp_path), motions, captions)
    assert len(server.requests) == 3  # nothing asked: every answer came from the cache
    assert [v.to_dict() | {"cached": False, "requests": 0} for v in again] == [
        v.to_dict() | {"cached": False, "requests": 0} for v in verdicts
    ]
    assert all(v.cached for v in again)
    other_model = make_judge(server, tmp_path)
    other_model.client.config.model = "another-vl"
    judge_all(other_model, motions, captions[:1])
    assert len(server.requests) == 4  # the model is part of the key
    logged = caplog.text + json.dumps(usage) + json.dumps([v.to_dict() for v in verdicts])
    assert KEY not in logged and KEY not in repr(judge.client)


def test_bad_answers_and_server_errors_are_retried_or_recorded_never_scored(server, motions, tmp_path):
    jump, turn, kick = SPECS
    cases = {"A": jump, "B": turn, "C": kick}
    server.plan = {jump: [raw('{"events": [ {"event": 1, "present": tru')],
                   turn: [answer(lambda body: {"events": [{"event": 1, "present": "yes"}], "reason": ""})],
                   kick: [status(429, retry_after="0"), answer()]}  # fmt: skip
    judge = make_judge(server, tmp_path)
    verdicts = judge_all(judge, motions, list(cases.values()))
    malformed, outside, throttled = verdicts
    assert (malformed.status, malformed.failure, malformed.requests) == ("failed", "malformed_json", 2)
    assert (outside.status, outside.failure, outside.requests) == ("failed", "schema", 2)
    assert "answer.events[0].times: missing" in outside.detail
    assert all(v.score is None and v.integrity is None for v in (malformed, outside))
    assert (throttled.status, throttled.score, throttled.requests) == ("ok", 1.0, 2)
    usage = judge.client.usage()
    assert usage["failures"] == {"malformed_json": 1, "schema": 1} and usage["retries"] == 3
    assert usage["requests"] == len(server.requests) == 6 and server.problems == []
    before = len(server.requests)  # failures are not cached: a second run asks again
    judge_all(make_judge(server, tmp_path), motions, [jump, kick])
    assert len(server.requests) == before + 2  # the malformed case twice more; the 429 case from the cache

    server.plan = {jump: [status(500), answer()], turn: [status(500)]}
    verdicts = judge_all(make_judge(server, tmp_path, cache_dir=None), motions, [jump, turn])
    assert (verdicts[0].status, verdicts[0].requests) == ("ok", 2)
    assert (verdicts[1].failure, verdicts[1].requests, verdicts[1].score) == (
        "http_500",
        3,
        None,
    )  # 1 + 2 retries


def test_a_reply_slower_than_the_timeout_is_retried_then_a_failure(server, motions, tmp_path):
    caption = next(iter(SPECS))
    server.default = answer(delay=1.0)
    start = time.perf_counter()
    (verdict,) = judge_all(make_judge(server, tmp_path, timeout=0.2, max_retries=1), motions, [caption])
    assert (verdict.status, verdict.failure, verdict.requests, verdict.score) == (
        "failed",
        "timeout",
        2,
        None,
    )
    assert time.perf_counter() - start < 1.5


def test_concurrency_limit_and_fatal_statuses(server, motions, tmp_path):
    captions = [c for c in SPECS for _ in range(2)]
    server.default = answer(delay=0.3)
    verdicts = judge_all(make_judge(server, tmp_path, concurrency=2, cache_dir=None), motions, captions)
    assert all(v.status == "ok" for v in verdicts) and server.max_in_flight == 2
    server.default = status(401, text=f'{{"error": "bad key {KEY}"}}')  # a server that echoes the key
    with pytest.raises(
        FatalServerError, match=r"HTTP 401 \(the key was refused; key from \$OPENAI_API_KEY"
    ) as err:
        judge_all(make_judge(server, tmp_path, cache_dir=None), motions, captions[:1])
    assert KEY not in str(err.value) and "<key>" in str(err.value)


def test_no_key_sends_no_authorization_header(monkeypatch, motions, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = ChatStandIn(None)
    try:
        (verdict,) = judge_all(make_judge(server, tmp_path), motions, [next(iter(SPECS))])
    finally:
        server.close()
    assert verdict.status == "ok" and server.problems == []


def test_retry_delay_honours_retry_after_and_jitters_the_backoff():
    rng = random.Random(0)
    assert retry_delay(0, "3", 1.0, 60.0, rng) == 3.0
    assert retry_delay(0, "120", 1.0, 60.0, rng) == 60.0  # capped
    date = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3.0 < retry_delay(0, date, 1.0, 60.0, rng) <= 5.0
    delays = [retry_delay(3, None, 1.0, 60.0, rng) for _ in range(50)]
    assert all(4.0 <= d <= 8.0 for d in delays) and len(set(delays)) > 1  # 2**3 scaled by [0.5, 1]
    assert retry_delay(10, "soon", 1.0, 30.0, rng) <= 30.0


def test_scorer_failures_are_left_out_of_the_pairs_never_rejected(server, tmp_path, motions):
    from motion_align.data.pair_builders import pair_candidates
    from motion_align.policy.generation import GeneratedMotion

    caption = "a person jumps twice, waves the right hand 3 times."
    features = motions[caption]
    samples = [GeneratedMotion(caption, 0, s, [s] * 12, [], features + 1e-3 * s) for s in range(3)]

    def missing_wave(body):
        reply = truthful_answer(body)
        reply["events"][1].update(present=False, times=0, after_previous=False)
        return reply

    # one request at a time, so the queue's replies go to samples 0, 1, 2 (2: twice, then a failure)
    server.queue = [answer(), answer(missing_wave), raw("not json"), raw("not json")]
    scorer = AIJudgeScorer(make_judge(server, tmp_path, concurrency=1, cache_dir=None))
    scores = scorer([caption] * 3, [SPECS[caption]] * 3, samples)
    assert scores[0] == 1.0 and scores[1] == pytest.approx((0.5 + 0 + 0.5) / 3) and np.isnan(scores[2])
    server.queue = [answer(), answer(missing_wave), raw("not json"), raw("not json")]
    pairs, report = pair_candidates([(caption, SPECS[caption])], samples, scorer, codebook_size=16,
                                    pairs_per_prompt=2, invalid_score=0.0)  # fmt: skip
    assert len(pairs) == 1 and report["unscored"] == 1 and report["candidates"] == 3
    assert pairs["chosen"][0].startswith("<motion_id_16><motion_id_0>")  # sample 0 over sample 1
    assert pairs["rejected"][0].startswith("<motion_id_16><motion_id_1>")  # never the failed sample 2
    assert scorer.report()["failures"] == {"malformed_json": 2} and scorer.report()["verdicts"]["ok"] == 4


def test_agreement_report_on_a_hand_built_case():
    def f(i, t, q):
        return {"integrity": i, "temporal": t, "frequency": q}

    judge = [f(1, 1, 1), f(1, 1, None), f(0.5, 0, 0), f(0, 0, 0), f(1, 1, 0.5), f(1, 1, 1)]
    ai = [f(1, 1, 1), f(1, 0, None), f(1, 1, 0), f(0, 0, 0), None, f(0.5, 0, 1)]
    report = agreement_report(judge, ai)
    assert report["motions"] == 6 and report["ai_failed"] == 1
    cells = ("cases", "both_pass", "both_fail", "ai_pass_judge_fail", "ai_fail_judge_pass", "not_applicable")
    expected = {"integrity": (5, 2, 1, 1, 1, 0), "temporal": (5, 1, 1, 1, 2, 0),
                "frequency": (4, 2, 2, 0, 0, 1), "all": (5, 1, 2, 0, 2, 0)}  # fmt: skip
    for name, counts in expected.items():
        assert tuple(report[name][c] for c in cells) == counts, name
    assert report["integrity"]["agreement"] == pytest.approx(0.6)
    assert report["integrity"]["kappa"] == pytest.approx((0.6 - 0.52) / 0.48)
    assert report["temporal"]["agreement"] == pytest.approx(0.4)
    assert report["temporal"]["kappa"] == pytest.approx((0.4 - 0.48) / 0.52)
    assert report["frequency"]["agreement"] == 1.0 and report["frequency"]["kappa"] == pytest.approx(1.0)
    assert report["all"]["kappa"] == pytest.approx((0.6 - 0.44) / 0.56)
    assert (
        cohen_kappa({"both_pass": 3, "both_fail": 0, "ai_pass_judge_fail": 0, "ai_fail_judge_pass": 0})
        is None
    )
    table = agreement_markdown(report)
    assert "| integrity | 5 | 0.600 | 0.167 | 2 | 1 | 1 | 1 | 0.600 | 0.600 |" in table


def test_a_bad_motion_or_setting_is_an_error_naming_it(server, tmp_path):
    judge = make_judge(server, tmp_path)
    caption = "a man kicks with the left leg."
    with pytest.raises(ValueError, match=r"motions\[1\] \(for 'a man kicks.*does not support KIT-ML"):
        judge.judge([caption] * 2, [SPECS[caption]] * 2, [np.zeros((60, 263)), np.zeros((60, 251))])
    assert server.requests == []  # nothing is asked before every motion is checked
    (nothing,) = judge.judge(["a person idles."], [[Event("idle")]], [np.zeros((60, 263))])
    assert (nothing.status, nothing.score, nothing.requests) == ("nothing_to_judge", 1.0, 0)
    with pytest.raises(ValueError, match="base_url: expected an http"):
        VLMConfig("localhost:8000/v1", "m")
    with pytest.raises(ValueError, match="layout must be one of"):
        AIJudge(judge.client, layout="video")
