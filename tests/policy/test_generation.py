"""Text-to-motion generation with tiny policies of both families, briefly trained to emit known codes."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from motion_align.cli import main
from motion_align.evaluation.protocol import policy_generator
from motion_align.policy.generation import (
    GeneratedMotion,
    SamplingConfig,
    generate_motions,
    load_generator,
    record_motion_tokenizer,
)
from motion_align.policy.model import build_policy, format_prompt, save_policy
from motion_align.policy.text_tokenizer import train_text_tokenizer
from motion_align.policy.validity import validity_report
from motion_align.policy.vocab import MotionVocab
from motion_tokenizer import MotionVQVAE

FAMILIES = ("t5", "llama")
# caption -> the codes the trained policy must reproduce: 48, 32 (too short) and 60 frames.
TARGETS = {
    "a person jumps twice": [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8],
    "someone waves the left hand": [10, 20, 30, 40, 50, 60, 7, 7],
    "the man walks forward and stops": [2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4, 5, 9, 0, 4],
}
CAPTIONS = list(TARGETS)
TEXTS = [format_prompt(c) for c in CAPTIONS] + ["a woman kicks with the right leg, then sits down."]
GREEDY = SamplingConfig(do_sample=False)


@pytest.fixture(scope="module")
def motion_tokenizer(motion_tokenizer_dir):
    return MotionVQVAE.from_pretrained(str(motion_tokenizer_dir)).eval()


def _examples(
    tokenizer, family: str, targets: dict[str, list[int]]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input ids, labels) per prompt: T5 input/target pairs, LLaMA prompt + motion + eos."""
    vocab = MotionVocab.from_tokenizer(tokenizer)
    out = []
    for text, codes in targets.items():
        prompt = tokenizer(text).input_ids
        motion = vocab.codes_to_ids(codes, tokenizer) + [tokenizer.eos_token_id]
        if family == "t5":
            out.append((torch.tensor([prompt]), torch.tensor([motion])))
        else:
            out.append((torch.tensor([prompt + motion]), torch.tensor([[-100] * len(prompt) + motion])))
    return out


def _fits(model, examples, family: str) -> bool:
    """True when teacher-forced argmax reproduces every target: greedy decoding then emits it."""
    with torch.no_grad():
        for ids, labels in examples:
            logits = model(input_ids=ids, labels=labels).logits
            if family == "llama":  # position t predicts token t + 1
                logits, labels = logits[:, :-1], labels[:, 1:]
            mask = labels != -100
            if not torch.equal(logits.argmax(-1)[mask], labels[mask]):
                return False
    return True


def _train_policy(
    family: str, codebook_size: int, max_steps: int = 200, extra_steps: int = 10, targets=None, texts=TEXTS
):
    """A tiny policy trained (AdamW, lr 5e-3) until greedy decoding gives ``targets`` (formatted prompt ->
    codes; default TARGETS), then a few steps more."""
    torch.manual_seed(0)
    targets = targets or {format_prompt(caption): codes for caption, codes in TARGETS.items()}
    model, tokenizer = build_policy(family, "tiny", train_text_tokenizer(texts, family), codebook_size)
    examples = _examples(tokenizer, family, targets)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    stop = max_steps
    for step in range(max_steps):
        if step == stop:
            break
        model.train()
        loss = sum(model(input_ids=ids, labels=labels).loss for ids, labels in examples)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if stop == max_steps and step % 5 == 4 and _fits(model.eval(), examples, family):
            stop = step + 1 + extra_steps  # a margin, so batching and padding cannot flip an argmax
    assert _fits(model.eval(), examples, family), f"the tiny {family} policy did not learn its targets"
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def policies(motion_tokenizer):
    K = motion_tokenizer.config.codebook_size
    return {family: _train_policy(family, K) for family in FAMILIES}


@pytest.fixture(scope="module")
def saved(policies, motion_tokenizer_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("policies")
    return {fam: save_policy(model, tok, root / fam) for fam, (model, tok) in policies.items()}


def test_sampling_config_refuses_bad_values():
    for bad in (dict(temperature=0), dict(top_p=0), dict(top_p=1.5), dict(top_k=-1), dict(num_samples=0),
                dict(max_new_tokens=0), dict(seed=1.5)):  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad))):
            SamplingConfig(**bad)
    assert SamplingConfig().max_new_tokens >= 49 + 2


def test_valid_needs_clean_codes_and_40_to_196_frames():
    def motion(frames: int, problems=()) -> GeneratedMotion:
        return GeneratedMotion("c", 0, 0, [0] * (frames // 4), list(problems), np.zeros((frames, 263)))

    assert [motion(n).valid for n in (36, 40, 196, 200)] == [False, True, True, False]
    assert not motion(48, ["missing end token"]).valid
    empty = GeneratedMotion("c", 0, 0, [], ["empty motion"], None)
    assert empty.num_frames == 0 and empty.joints is None and not empty.valid
    report = validity_report([motion(36), motion(48), motion(200), empty])
    assert (report["valid"], report["too_short"], report["too_long"], report["no_codes"]) == (1, 1, 1, 1)
    assert "by_reference_length" not in report
    # Against the lengths of the prompts' corpus clips: where the invalid motions come from.
    motions = [motion(60), motion(36), motion(160), motion(200), motion(208), motion(196)]
    bands = validity_report(motions, [64, 44, 170, 180, 196, 192])["by_reference_length"]
    assert [b["reference_frames"] for b in bands] == ["40-99", "100-149", "150-191", "192-196"]
    assert [b["motions"] for b in bands] == [2, 0, 2, 2]
    assert [b["valid_share"] for b in bands] == [0.5, None, 0.5, 0.5]
    assert [b["too_long"] for b in bands] == [0, 0, 1, 1]
    assert [b["median_difference"] for b in bands] == [-6.0, None, 5.0, 8.0]
    with pytest.raises(ValueError, match="2 lengths for 6 motions"):
        validity_report(motions, [64, 44])


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_generation_reproduces_the_trained_codes(family, policies, motion_tokenizer):
    model, tokenizer = policies[family]
    motions = generate_motions(model, tokenizer, motion_tokenizer, CAPTIONS, GREEDY)
    assert [m.codes for m in motions] == list(TARGETS.values())
    assert [m.prompt for m in motions] == CAPTIONS and [m.prompt_index for m in motions] == [0, 1, 2]
    for m in motions:
        assert m.problems == [] and m.features.shape == (4 * len(m.codes), 263)
        assert m.num_frames == 4 * len(m.codes) and m.joints.shape == (m.num_frames, 22, 3)
    assert [m.valid for m in motions] == [True, False, True]  # 48, 32 (< 40) and 60 frames
    alone = [generate_motions(model, tokenizer, motion_tokenizer, [c], GREEDY)[0] for c in CAPTIONS]
    batched = generate_motions(model, tokenizer, motion_tokenizer, CAPTIONS, GREEDY, batch_size=2)
    for a, b, c in zip(alone, batched, motions):
        assert a.codes == b.codes == c.codes
        np.testing.assert_allclose(a.features, c.features, atol=1e-5)
    report = validity_report(motions)
    assert report["motions"] == 3 and report["valid"] == 2 and report["too_short"] == 1
    assert report["frames"] == {"min": 32, "max": 60, "mean": pytest.approx(140 / 3), "median": 48}


@pytest.mark.parametrize("family", FAMILIES)
def test_sampling_is_seeded_and_gives_num_samples_per_prompt(family, policies, motion_tokenizer):
    model, tokenizer = policies[family]
    hot = dict(temperature=5.0, num_samples=3, max_new_tokens=20)
    runs = [
        generate_motions(model, tokenizer, motion_tokenizer, CAPTIONS[:2], SamplingConfig(seed=s, **hot))
        for s in (1, 1, 2)
    ]
    assert [(m.prompt_index, m.sample) for m in runs[0]] == [(i, k) for i in range(2) for k in range(3)]
    assert [m.codes for m in runs[0]] == [m.codes for m in runs[1]]
    assert [m.codes for m in runs[0]] != [m.codes for m in runs[2]]


# One caption, two asked lengths, two motions: 48 and 60 frames.
LENGTH_TARGETS = {
    format_prompt(CAPTIONS[0], 48): TARGETS[CAPTIONS[0]],
    format_prompt(CAPTIONS[0], 60): TARGETS[CAPTIONS[2]],
}


@pytest.mark.parametrize("family", FAMILIES)
def test_frames_ask_a_length_conditioned_policy_for_its_length(
    family, motion_tokenizer, motion_tokenizer_dir, tmp_path, capsys
):
    K = motion_tokenizer.config.codebook_size
    model, tokenizer = _train_policy(family, K, targets=LENGTH_TARGETS, texts=[*LENGTH_TARGETS, TEXTS[-1]])
    captions = [CAPTIONS[0], CAPTIONS[0]]
    motions = generate_motions(model, tokenizer, motion_tokenizer, captions, GREEDY, frames=[48, 60])
    assert [m.num_frames for m in motions] == [48, 60]
    assert [m.codes for m in motions] == list(LENGTH_TARGETS.values())
    with pytest.raises(ValueError, match="2 lengths for 1 prompts"):
        generate_motions(model, tokenizer, motion_tokenizer, captions[:1], GREEDY, frames=[48, 60])
    # one length per sample: both samples of the one caption, each with its own length
    two = replace(GREEDY, num_samples=2)
    motions = generate_motions(model, tokenizer, motion_tokenizer, captions[:1], two, frames=[48, 60])
    assert [(m.prompt, m.prompt_index, m.sample, m.num_frames) for m in motions] == [
        (CAPTIONS[0], 0, 0, 48),
        (CAPTIONS[0], 0, 1, 60),
    ]
    with pytest.raises(ValueError, match="one per prompt or one per sample"):
        generate_motions(model, tokenizer, motion_tokenizer, captions[:1], two, frames=[48, 60, 60])
    saved_dir = save_policy(model, tokenizer, tmp_path / "policy")
    argv = ["generate", "--model", str(saved_dir), "--tokenizer", str(motion_tokenizer_dir), "--prompt",
            CAPTIONS[0], "--greedy", "--num-samples", "1", "--out", str(tmp_path / "out"),
            "--formats", "png"]  # fmt: skip
    assert main([*argv, "--frames", "60"]) == 0
    row = json.loads((tmp_path / "out" / "generations.jsonl").read_text())
    assert row["num_frames"] == 60 and row["codes"] == TARGETS[CAPTIONS[2]]
    with pytest.raises(SystemExit):  # one way of asking for a length at a time
        main([*argv, "--frames", "60", "--length-estimator", str(tmp_path)])
    assert "not allowed with" in capsys.readouterr().err


def test_llama_outputs_exclude_the_prompt(policies, motion_tokenizer, monkeypatch):
    model, tokenizer = policies["llama"]
    seen = []
    original = MotionVocab.batch_decode
    monkeypatch.setattr(
        MotionVocab, "batch_decode", lambda self, rows, tok: seen.append(rows) or original(self, rows, tok)
    )
    motions = generate_motions(model, tokenizer, motion_tokenizer, CAPTIONS[:2], GREEDY)
    assert [m.codes for m in motions] == [TARGETS[c] for c in CAPTIONS[:2]] and not motions[0].problems
    rows = seen[0].tolist()
    som = MotionVocab.from_tokenizer(tokenizer).ids(tokenizer)[-3]
    assert [row[0] for row in rows] == [som, som]  # generated tokens only: no bos, prompt or left padding
    assert all(tokenizer.bos_token_id not in row for row in rows)


@pytest.mark.parametrize("family", FAMILIES)
def test_an_untrained_policy_gives_problems_not_crashes(family, motion_tokenizer):
    torch.manual_seed(1)
    K = motion_tokenizer.config.codebook_size
    model, tokenizer = build_policy(family, "tiny", train_text_tokenizer(TEXTS, family), K)
    sampling = SamplingConfig(seed=0, num_samples=2, max_new_tokens=12, motion_only=False)
    motions = generate_motions(model.eval(), tokenizer, motion_tokenizer, CAPTIONS, sampling)
    assert len(motions) == 6 and all(isinstance(m, GeneratedMotion) for m in motions)
    assert all(m.problems and not m.valid for m in motions)
    report = validity_report(motions)
    assert report["valid_share"] == 0.0 and sum(report["problems"].values()) >= 6
    assert any("text token" in problem for m in motions for problem in m.problems)
    # Restricted to motion tokens (the default), the same model can no longer mix text in.
    motions = generate_motions(
        model, tokenizer, motion_tokenizer, CAPTIONS, replace(sampling, motion_only=True)
    )
    assert not any("text token" in problem for m in motions for problem in m.problems)


@pytest.mark.parametrize("family", FAMILIES)
def test_motion_grammar_makes_even_an_untrained_policy_valid(family, motion_tokenizer):
    torch.manual_seed(1)
    K = motion_tokenizer.config.codebook_size
    model, tokenizer = build_policy(family, "tiny", train_text_tokenizer(TEXTS, family), K)
    sampling = SamplingConfig(seed=0, num_samples=4, motion_grammar=True)
    motions = generate_motions(model.eval(), tokenizer, motion_tokenizer, CAPTIONS, sampling)
    assert all(m.valid for m in motions) and validity_report(motions)["valid_share"] == 1.0
    lengths = {len(m.codes) for m in motions}
    assert min(lengths) >= 10 and max(lengths) <= 49 and len(lengths) > 1
    unconstrained = generate_motions(
        model, tokenizer, motion_tokenizer, CAPTIONS, replace(sampling, motion_grammar=False)
    )
    assert not all(m.valid for m in unconstrained)  # the grammar, not the model, made them valid
    # `motion-align evaluate --grammar NAME` decodes the policy's samples the same way
    for grammar in (True, False):
        generate = policy_generator(model, tokenizer, motion_tokenizer, motion_grammar=grammar)
        features = generate(CAPTIONS, 4, 0)
        frames = [0 if f is None else len(f) for f in features]
        assert len(frames) == 4 * len(CAPTIONS)
        assert all(40 <= n <= 196 for n in frames) is grammar


def test_a_t5_with_a_deeper_decoder_samples_as_without_the_cache(motion_tokenizer, tmp_path, monkeypatch):
    """Encoder and decoder depths differ (as in byt5 or t5-efficient checkpoints): cached sampling works
    and draws what uncached sampling draws."""
    torch.manual_seed(2)
    K = motion_tokenizer.config.codebook_size
    model, tokenizer = build_policy("t5", "tiny", train_text_tokenizer(TEXTS, "t5"), K)
    config = replace(model.config, num_decoder_layers=3)
    save_policy(type(model)(config), tokenizer, tmp_path / "deep")
    model, tokenizer = build_policy("t5", str(tmp_path / "deep"), tokenizer, K)
    assert (model.config.num_layers, len(model.decoder.block)) == (2, 3)
    sampling = SamplingConfig(seed=0, num_samples=2, max_new_tokens=12, engine="generate")
    cached = generate_motions(model.eval(), tokenizer, motion_tokenizer, CAPTIONS, sampling)
    uncached = {**sampling.generate_kwargs(), "use_cache": False}
    with monkeypatch.context() as patch:
        patch.setattr(SamplingConfig, "generate_kwargs", lambda self: dict(uncached))
        plain = generate_motions(model, tokenizer, motion_tokenizer, CAPTIONS, sampling)
    assert [m.codes for m in cached] == [m.codes for m in plain]
    assert len({tuple(m.codes) for m in cached}) > 1
    # the motion sampler runs the deeper decoder too, picking generate's greedy tokens
    greedy = [replace(GREEDY, max_new_tokens=12, engine=engine) for engine in ("ours", "generate")]
    ours, theirs = (generate_motions(model, tokenizer, motion_tokenizer, CAPTIONS, g) for g in greedy)
    assert [m.codes for m in ours] == [m.codes for m in theirs]


def test_mismatched_codebooks_are_refused(motion_tokenizer):
    model, tokenizer = build_policy("t5", "tiny", train_text_tokenizer(TEXTS, "t5"), 8)
    with pytest.raises(ValueError, match="codebook of 8"):
        generate_motions(model, tokenizer, motion_tokenizer, CAPTIONS, GREEDY)


def test_load_generator_reads_the_recorded_motion_tokenizer(saved, motion_tokenizer_dir, tmp_path):
    with pytest.raises(ValueError, match="motion_tokenizer.json"):
        load_generator(saved["t5"])
    record_motion_tokenizer(saved["t5"], str(motion_tokenizer_dir))
    model, tokenizer, motion_tokenizer = load_generator(saved["t5"])
    assert not model.training and not motion_tokenizer.training
    (saved["t5"] / "motion_tokenizer.json").unlink()


@pytest.mark.parametrize("family", FAMILIES)
def test_cli_generate_writes_files_and_jsonl(family, saved, motion_tokenizer_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"# held-out captions\n{CAPTIONS[0]}\n\n{CAPTIONS[1]}\n")
    out = tmp_path / "out"
    argv = ["generate", "--model", str(saved[family]), "--tokenizer", str(motion_tokenizer_dir),
            "--prompts-file", str(prompts), "--num-samples", "2", "--out", str(out), "--temperature", "0.01",
            "--seed", "3", "--formats", "png"]  # fmt: skip
    assert main(argv) == 0
    assert "valid" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert [(r["prompt"], r["sample"]) for r in rows] == [(c, k) for c in CAPTIONS[:2] for k in range(2)]
    assert rows[0]["codes"] == TARGETS[CAPTIONS[0]] and rows[0]["valid"] and rows[0]["num_frames"] == 48
    assert rows[2]["valid"] is False and rows[2]["num_frames"] == 32
    folder = out / "0_a-person-jumps-twice"
    assert sorted(p.name for p in folder.iterdir()) == [
        "sample_0.npy", "sample_0.png", "sample_1.npy", "sample_1.png"]  # fmt: skip
    assert np.load(folder / "sample_0.npy").shape == (48, 263)
    assert all((out / f).is_file() for f in rows[3]["files"])


def test_cli_generate_refuses_an_empty_prompts_file(saved, motion_tokenizer_dir, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    argv = ["generate", "--model", str(saved["t5"]), "--tokenizer", str(motion_tokenizer_dir),
            "--prompts-file", str(empty), "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    assert "empty.txt" in capsys.readouterr().err
    argv[5:7] = ["--prompt", CAPTIONS[0]]
    assert main([*argv, "--greedy", "--num-samples", "1", "--formats", "gif"]) == 0
    assert "1 valid (100.0%" in capsys.readouterr().out
    assert (tmp_path / "out" / "0_a-person-jumps-twice" / "sample_0.gif").is_file()


def test_cli_validity_reports_by_corpus_clip_length(
    saved, motion_tokenizer_dir, tiny_corpus, tmp_path, capsys
):
    out = tmp_path / "validity.json"
    argv = ["validity", "--model", str(saved["llama"]), "--tokenizer", str(motion_tokenizer_dir),
            "--data", str(tiny_corpus), "--split", "train", "--num-prompts", "5",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["motions"] == 5 and report["split"] == "train" and report["sampling"]["seed"] == 0
    assert sum(band["motions"] for band in report["by_reference_length"]) == 5
    assert f"{report['valid']} of 5 motions valid" in printed and "corpus clip frames" in printed
    assert f"frames: min {report['frames']['min']}, median " in printed
    assert main([*argv, "--grammar"]) == 0  # valid by construction
    assert json.loads(out.read_text())["valid"] == 5
    assert main([*argv, "--reference-lengths"]) == 0  # each prompt asks for its clip's length
    assert json.loads(out.read_text())["lengths"] == "reference" and report["lengths"] is None
    assert main([*argv, "--frames", "60"]) == 0  # every prompt asks for 60 frames
    assert json.loads(out.read_text())["lengths"] == 60
    assert main([*argv, "--length-estimator", str(tmp_path / "no-estimator")]) == 2
    assert "no-estimator" in capsys.readouterr().err
    assert main([*argv[:-2], "--split", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
