"""The motion sampler (motion_align.policy.sampler) against model.generate, on tiny policies of both families:
greedy tokens identical, sampled tokens from the same distribution, the grammar always kept, finished rows
leaving the batch, seeds reproducible."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from peft import get_peft_model
from scipy import stats
from transformers import (
    LogitsProcessorList,
    MistralConfig,
    MistralForCausalLM,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from motion_align.policy import sampler, sampler_weights
from motion_align.policy.generate_processors import AllowedTokensProcessor
from motion_align.policy.generation import SamplingConfig, generate_token_rows
from motion_align.policy.lora import get_peft_config
from motion_align.policy.model import build_policy, format_prompt
from motion_align.policy.sampler import MotionRules, draw, sample_tokens, warp
from motion_align.policy.sampler_forward import unsupported_reason
from motion_align.policy.sampler_weights import Projection, linear_weights
from motion_align.policy.text_tokenizer import train_text_tokenizer
from motion_align.policy.vocab import MotionVocab

FAMILIES = ("t5", "llama")
CODEBOOK = 16
# prompts of different lengths (the LLaMA pads them on the left, the T5 on the right)
CAPTIONS = [
    "a person jumps twice",
    "someone waves the left hand",
    "the man walks forward and stops",
    "a woman kicks with the right leg, then sits down",
    "a person turns around slowly and raises both arms high above the head",
    "jump",
]
# caption -> codes a fitted policy learns: motions of 12, 6, 15 and 3 codes
TARGETS = {CAPTIONS[0]: [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8], CAPTIONS[1]: [10, 11, 12, 13, 14, 15],
           CAPTIONS[2]: [2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4, 5, 9, 0, 4], CAPTIONS[5]: [7, 7, 7]}  # fmt: skip
GREEDY = SamplingConfig(do_sample=False, max_new_tokens=40)


def tiny_policy(family: str, seed: int = 0, stop_gain: float = 1.5):
    """An untrained tiny policy whose end-of-motion and eos output rows are scaled by ``stop_gain``, so that
    its rows stop at different steps."""
    torch.manual_seed(seed)
    tokenizer = train_text_tokenizer([format_prompt(c) for c in CAPTIONS], family)
    model, tokenizer = build_policy(family, "tiny", tokenizer, CODEBOOK)
    ids = MotionVocab(CODEBOOK).ids(tokenizer)
    with torch.no_grad():
        for row in (ids[CODEBOOK + 1], tokenizer.eos_token_id):
            model.lm_head.weight[row] *= stop_gain
    return model.eval(), tokenizer


def fitted_policy(family: str, steps: int = 40):
    """A tiny policy trained briefly (AdamW, lr 5e-3, one padded batch) towards TARGETS: motion-like rows of
    several lengths."""
    model, tokenizer = tiny_policy(family, stop_gain=1.0)
    vocab = MotionVocab.from_tokenizer(tokenizer)
    prompts, motions = [], []
    for caption, codes in TARGETS.items():
        prompts.append(tokenizer(format_prompt(caption)).input_ids)
        motions.append(vocab.codes_to_ids(codes, tokenizer) + [tokenizer.eos_token_id])
    if family == "t5":
        inputs, targets = prompts, motions
    else:
        inputs = [p + m for p, m in zip(prompts, motions)]
        targets = [[-100] * len(p) + m for p, m in zip(prompts, motions)]
    width, target_width = max(map(len, inputs)), max(map(len, targets))
    batch = {
        "input_ids": torch.tensor([i + [tokenizer.pad_token_id] * (width - len(i)) for i in inputs]),
        "attention_mask": torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in inputs]),
        "labels": torch.tensor([t + [-100] * (target_width - len(t)) for t in targets]),
    }
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(steps):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def fitted():
    return {family: fitted_policy(family) for family in FAMILIES}


def both_engines(model, tokenizer, captions, sampling):
    """(rows, codes) of ours and of model.generate."""
    vocab = MotionVocab.from_tokenizer(tokenizer)
    out = []
    for engine in ("ours", "generate"):
        rows, decoded = generate_token_rows(
            model, tokenizer, vocab, captions, replace(sampling, engine=engine)
        )
        out.append((rows, [d.codes for d in decoded]))
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("grammar", [False, True])
def test_greedy_tokens_are_those_of_generate(family, grammar, fitted):
    model, tokenizer = fitted[family]
    sampling = replace(GREEDY, motion_grammar=grammar)
    ours, theirs = both_engines(model, tokenizer, CAPTIONS, sampling)
    assert ours == theirs
    rows = ours[0]
    assert len(rows) == len(CAPTIONS) and all(r[-1] == tokenizer.eos_token_id for r in rows)
    assert len({len(r) for r in rows}) >= 3  # rows stop at different steps
    # caption-major samples (generate refuses several greedy samples per prompt; ours repeats the row)
    vocab = MotionVocab.from_tokenizer(tokenizer)
    twice, _ = generate_token_rows(model, tokenizer, vocab, CAPTIONS, replace(sampling, num_samples=2))
    assert twice[0::2] == twice[1::2] == rows
    untrained = tiny_policy(family, seed=3)
    for motion_only in (True, False):  # and over the whole vocabulary, text tokens included
        plain = replace(GREEDY, motion_grammar=grammar, motion_only=motion_only)
        ours, theirs = both_engines(*untrained, CAPTIONS, plain)
        assert ours == theirs


@pytest.mark.parametrize("family", FAMILIES)
def test_a_lora_wrapped_policy_samples_what_generate_samples(family, fitted):
    model, tokenizer = fitted[family]
    peft_model = get_peft_model(copy.deepcopy(model), get_peft_config(model, tokenizer))
    torch.manual_seed(5)
    with torch.no_grad():  # adapters that move the outputs: LoRA B and the motion-token rows
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name or "trainable_tokens_delta" in name:
                parameter.add_(torch.randn_like(parameter) * 0.3)
    peft_model.eval()
    sampling = replace(GREEDY, max_new_tokens=24)
    ours, theirs = both_engines(peft_model, tokenizer, CAPTIONS, sampling)
    assert ours == theirs
    with peft_model.disable_adapter():  # the reference model of DPO: the base, adapters off
        off = both_engines(peft_model, tokenizer, CAPTIONS, sampling)
    assert off[0] == off[1] and off[0] != ours
    # a layer wrapped by LoRA is read as the affine map it computes, then fused
    layer = peft_model.get_base_model().lm_head  # trainable tokens on the motion rows
    weight, bias = linear_weights(layer)
    x = torch.randn(3, weight.shape[1])
    torch.testing.assert_close(torch.nn.functional.linear(x, weight, bias), layer(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_layers_too_large_to_copy_are_called_as_they_are(family, fitted, monkeypatch):
    model, tokenizer = fitted[family]
    fused = both_engines(model, tokenizer, CAPTIONS, GREEDY)[0]
    monkeypatch.setattr(sampler_weights, "FUSE_LIMIT", 0)  # every layer then counts as too large
    assert Projection([model.lm_head]).modules == [model.lm_head]
    called, theirs = both_engines(model, tokenizer, CAPTIONS, GREEDY)
    assert called == fused == theirs


def test_a_layer_with_active_dropout_is_called_as_it_is():
    model, tokenizer = tiny_policy("llama")
    config = get_peft_config(model, tokenizer)
    config.lora_dropout = 0.5
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:  # zero at first: dropout before it would change nothing
                parameter.normal_(0, 0.5)
    attention = peft_model.get_base_model().model.layers[0].self_attn
    modules = [attention.q_proj, attention.k_proj, attention.v_proj]
    peft_model.eval()  # (new LoRA layers start in training mode)
    assert Projection(modules).modules is None  # eval mode: one fused matrix
    peft_model.train()
    fallback = Projection(modules)
    assert fallback.modules == modules and linear_weights(attention.q_proj) is None
    torch.manual_seed(0)
    x = torch.randn(2, model.config.hidden_size)
    assert fallback(x).shape == (2, 3 * model.config.hidden_size)


def exact_first_token(model, tokenizer, family, caption, temperature, top_k, top_p) -> np.ndarray:
    """The first token's distribution under the motion-only mask and the warpers, as transformers computes
    it: the model's forward, AllowedTokensProcessor, then Temperature, TopK and TopP warpers."""
    vocab = MotionVocab.from_tokenizer(tokenizer)
    ids = vocab.ids(tokenizer)
    prompt = tokenizer([format_prompt(caption)], return_tensors="pt")
    with torch.no_grad():
        if family == "t5":
            start = torch.tensor([[model.config.decoder_start_token_id]])
            logits = model(**prompt, decoder_input_ids=start).logits[:, -1]
        else:
            logits = model(**prompt).logits[:, -1]
    processors = LogitsProcessorList([
        AllowedTokensProcessor([*ids[: CODEBOOK + 2], tokenizer.eos_token_id]),
        TemperatureLogitsWarper(temperature), TopKLogitsWarper(top_k), TopPLogitsWarper(top_p),
    ])  # fmt: skip
    return processors(None, logits.float()).softmax(-1)[0].numpy()


def expected(probs: np.ndarray, total: int) -> np.ndarray:
    """Expected counts of ``total`` draws (float64, summing to ``total`` as scipy's test wants)."""
    probs = probs.astype(np.float64)
    return probs / probs.sum() * total


@pytest.mark.parametrize("family", FAMILIES)
def test_samples_follow_the_warped_distribution(family):
    model, tokenizer = tiny_policy(family, seed=1, stop_gain=1.0)
    with torch.no_grad():
        model.lm_head.weight *= 5  # logits far apart, so that temperature, top-k and top-p all matter
    settings = dict(temperature=0.7, top_k=9, top_p=0.9)
    sampling = SamplingConfig(**settings, num_samples=3000, max_new_tokens=2, seed=None)
    vocab = MotionVocab.from_tokenizer(tokenizer)
    first = {}
    pairs = {}
    for engine in ("ours", "generate"):
        torch.manual_seed(11)
        rows, _ = generate_token_rows(model, tokenizer, vocab, CAPTIONS[:1], replace(sampling, engine=engine))
        first[engine] = np.bincount([r[0] for r in rows], minlength=model.config.vocab_size)
        pairs[engine] = [tuple(r[:2]) for r in rows]
    exact = exact_first_token(model, tokenizer, family, CAPTIONS[0], **settings)
    allowed = exact > 0
    assert 2 <= allowed.sum() <= 9  # top-k and top-p left several tokens
    for engine, counts in first.items():
        assert counts[~allowed].sum() == 0, engine  # never a token the mask or the warpers removed
        assert stats.chisquare(counts[allowed], expected(exact[allowed], counts.sum())).pvalue > 1e-4, engine
    # the same counts tell a wrong temperature apart
    wrong = exact_first_token(model, tokenizer, family, CAPTIONS[0], 1.0, 9, 0.9)
    assert stats.chisquare(first["ours"][wrong > 0], expected(wrong[wrong > 0], 3000)).pvalue < 1e-6
    # the first two tokens jointly: ours and generate's samples are one distribution
    cells = sorted(set(pairs["ours"]) | set(pairs["generate"]))
    table = np.array([[p.count(c) for c in cells] for p in (pairs["ours"], pairs["generate"])])
    table = table[:, table.sum(0) >= 10]
    assert table.shape[1] >= 4 and stats.chi2_contingency(table).pvalue > 1e-4


def test_warpers_are_transformers_warpers():
    torch.manual_seed(0)
    scores = torch.randn(64, 40) * 3
    scores[:, ::7] = float("-inf")  # masked columns, as the motion-only mask leaves them
    for temperature, top_k, top_p in [
        (1.0, None, 1.0),
        (0.6, 5, 1.0),
        (1.3, None, 0.8),
        (0.9, 12, 0.5),
        (1, 100, 0.3),
    ]:
        expected = LogitsProcessorList(
            ([TemperatureLogitsWarper(temperature)] if temperature != 1.0 else [])
            + ([TopKLogitsWarper(top_k)] if top_k else [])
            + ([TopPLogitsWarper(top_p)] if top_p < 1.0 else [])
        )(None, scores.clone())
        assert torch.equal(warp(scores, temperature, top_k, top_p), expected)


def test_draw_follows_probabilities_and_never_draws_zero(monkeypatch):
    probs = torch.tensor([0.0, 0.5, 0.0, 0.2, 0.3, 0.0])
    torch.manual_seed(0)
    drawn = draw(probs.expand(20000, -1).contiguous())
    counts = np.bincount(drawn.numpy(), minlength=6)
    assert counts[[0, 2, 5]].sum() == 0
    assert stats.chisquare(counts[[1, 3, 4]], [10000, 4000, 6000]).pvalue > 1e-4
    # a uniform number rounded up to the top of the range falls back to the last column that can be drawn
    monkeypatch.setattr(torch, "rand", lambda *shape, **kwargs: torch.ones(*shape, **kwargs))
    assert draw(probs[None]).tolist() == [4]


def test_the_grammar_tables_state_the_motion_grammar():
    first, som, eom, eos = 10, 10 + CODEBOOK, 11 + CODEBOOK, 2
    columns = sorted([eos, *range(first, first + CODEBOOK + 2)])
    rules = MotionRules(columns, first, CODEBOOK, eos, min_codes=3, max_codes=5)
    index = {token: n for n, token in enumerate(columns)}
    state = torch.zeros(1, dtype=torch.long)

    def allowed() -> set[int]:
        return {columns[n] for n in rules.allowed[state[0]].nonzero().flatten().tolist()}

    assert allowed() == {som}
    state = rules.advance(state, torch.tensor([index[som]]))
    for drawn in range(5):
        assert allowed() == set(range(first, first + CODEBOOK)) | ({eom} if drawn >= 3 else set())
        state = rules.advance(state, torch.tensor([index[first + drawn]]))
    assert allowed() == {eom}  # five codes: the most
    state = rules.advance(state, torch.tensor([index[eom]]))
    assert allowed() == {eos}


@pytest.mark.parametrize("family", FAMILIES)
def test_sampled_motions_always_keep_the_grammar(family):
    model, tokenizer = tiny_policy(family, seed=2, stop_gain=3.0)
    vocab = MotionVocab.from_tokenizer(tokenizer)
    ids = vocab.ids(tokenizer)
    sampling = SamplingConfig(temperature=3.0, num_samples=40, motion_grammar=True, max_new_tokens=60)
    torch.manual_seed(0)
    rows, decoded = generate_token_rows(model, tokenizer, vocab, CAPTIONS, sampling, fps=12.5)  # KIT: 6 codes
    codes = set(ids[:CODEBOOK])
    for row, decoding in zip(rows, decoded, strict=True):
        assert row[0] == ids[CODEBOOK] and row[-2:] == [ids[CODEBOOK + 1], tokenizer.eos_token_id]
        assert set(row[1:-2]) <= codes and 6 <= len(row) - 3 <= 49
        assert decoding.ok and decoding.codes == [t - ids[0] for t in row[1:-2]]
    assert len({len(r) for r in rows}) > 5


@pytest.mark.parametrize("family", FAMILIES)
def test_finished_rows_leave_the_batch(family, fitted, monkeypatch):
    model, tokenizer = fitted[family]
    vocab = MotionVocab.from_tokenizer(tokenizer)
    ids = vocab.ids(tokenizer)
    encoded = tokenizer([format_prompt(c) for c in CAPTIONS], padding=True, return_tensors="pt",
                        padding_side="right" if family == "t5" else "left")  # fmt: skip
    stops = [tokenizer.eos_token_id, ids[CODEBOOK + 1]]
    columns = sorted({*ids[: CODEBOOK + 2], tokenizer.eos_token_id})
    monkeypatch.setattr(sampler, "COMPACT_SHARE", 0.0)  # drop every finished row at once
    prompts, greedy = (encoded["input_ids"], encoded["attention_mask"]), replace(GREEDY, num_samples=4)
    out = sample_tokens(model, *prompts, greedy, stops, tokenizer.pad_token_id, columns)
    ids_out = out.ids
    stopped = torch.isin(ids_out, torch.tensor(stops))
    running = [int((~stopped[:, :step].any(1)).sum()) for step in range(ids_out.shape[1])]
    assert out.rows_per_step == running  # the forward ran exactly the unfinished rows
    assert running[0] == 4 * len(CAPTIONS) and running[-1] < running[0]
    # with the default share, rows leave in groups: never fewer rows than are running
    monkeypatch.setattr(sampler, "COMPACT_SHARE", 0.5)
    grouped = sample_tokens(model, *prompts, greedy, stops, tokenizer.pad_token_id, columns)
    assert torch.equal(grouped.ids, ids_out)  # finished rows still in the batch add nothing to the output
    assert all(g >= r for g, r in zip(grouped.rows_per_step, running)) and grouped.rows_per_step != running


@pytest.mark.parametrize("family", FAMILIES)
def test_seeds_reproduce_samples(family, fitted):
    model, tokenizer = fitted[family]
    vocab = MotionVocab.from_tokenizer(tokenizer)
    sampling = SamplingConfig(temperature=2.0, num_samples=3, max_new_tokens=20)
    runs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        runs.append(generate_token_rows(model, tokenizer, vocab, CAPTIONS, sampling)[0])
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_engine_is_checked_and_other_architectures_use_generate(caplog):
    with pytest.raises(ValueError, match="engine must be one of 'ours', 'generate'"):
        SamplingConfig(engine="fast")
    _, tokenizer = tiny_policy("llama")
    torch.manual_seed(0)
    special = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                   bos_token_id=tokenizer.bos_token_id)  # fmt: skip
    sizes = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    config = MistralConfig(vocab_size=len(tokenizer) + 8, num_key_value_heads=2, **sizes, **special)
    mistral = MistralForCausalLM(config).eval()
    assert "mistral" in unsupported_reason(mistral)
    vocab = MotionVocab.from_tokenizer(tokenizer)
    with caplog.at_level("WARNING"):
        rows, _ = generate_token_rows(mistral, tokenizer, vocab, CAPTIONS[:2], GREEDY)
    assert "sampling with model.generate" in caplog.text
    assert (
        rows
        == generate_token_rows(mistral, tokenizer, vocab, CAPTIONS[:2], replace(GREEDY, engine="generate"))[0]
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_tokens_on_cuda(family, fitted):
    model, tokenizer = fitted[family]
    model = model.to("cuda")
    try:
        ours, theirs = both_engines(model, tokenizer, CAPTIONS, replace(GREEDY, motion_grammar=True))
        assert ours == theirs
        torch.manual_seed(0)
        sampled = both_engines(model, tokenizer, CAPTIONS, SamplingConfig(num_samples=4, max_new_tokens=20))
        assert all(r[-1] == tokenizer.eos_token_id for r in sampled[0][0])
    finally:
        model.to("cpu")
