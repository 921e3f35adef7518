"""LoRA on tiny T5 and LLaMA policies: adapters + motion-token rows train, the base never moves."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch
from peft import PeftModel, TaskType, get_peft_model
from peft.utils.other import TrainableTokensWrapper
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from motion_align.policy.lora import (
    declare_untied_output,
    get_peft_config,
    motion_token_ids,
    trainable_parameter_report,
)
from motion_align.policy.vocab import MotionVocab

K = 8
CASES = ["t5_tied", "t5_untied", "llama_untied", "llama_tied"]
TEXT = ["a person jumps twice", "a person walks forward and turns", "someone waves a hand", "generate motion"]


def text_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(TEXT, trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"]))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    tok = text_tokenizer()
    MotionVocab(K).add_to_tokenizer(tok)
    return tok


def build_base(case: str, tokenizer, tmp_path_factory) -> torch.nn.Module:
    """A tiny policy with the motion vocabulary; 't5_untied' is saved and reloaded like a Flan-T5."""
    torch.manual_seed(0)
    tied = case.endswith("_tied")
    if case.startswith("t5"):
        config = T5Config(vocab_size=32, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2,
                          dropout_rate=0.0, feed_forward_proj="gated-gelu", decoder_start_token_id=0,
                          pad_token_id=0, eos_token_id=1)  # fmt: skip
        model = T5ForConditionalGeneration(config)
    else:
        config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=tied,
                             pad_token_id=0, eos_token_id=1)  # fmt: skip
        model = LlamaForCausalLM(config)
    model.resize_token_embeddings(len(tokenizer))
    if case == "t5_untied":  # transformers 5 builds T5 tied; a T5 v1.1 checkpoint loads untied
        model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight))
        path = tmp_path_factory.mktemp("t5_untied")
        model.save_pretrained(path)
        model = T5ForConditionalGeneration.from_pretrained(path)
    out, emb = model.get_output_embeddings(), model.get_input_embeddings()
    assert (out.weight is emb.weight) == tied
    return model.eval()


def batch(case: str, tokenizer) -> dict[str, torch.Tensor]:
    """Prompt -> motion targets: seq2seq labels for T5, prompt + motion with masked prompt for LLaMA."""
    vocab = MotionVocab(K)
    prompt = tokenizer(["a person jumps twice", "someone waves a hand"], return_tensors="pt")["input_ids"]
    motion = torch.tensor(
        [vocab.codes_to_ids([1, 2, 3], tokenizer), vocab.codes_to_ids([4, 4, 5], tokenizer)]
    )
    if case.startswith("t5"):
        return {"input_ids": prompt, "labels": motion}
    return {
        "input_ids": torch.cat([prompt, motion], 1),
        "labels": torch.cat([torch.full_like(prompt, -100), motion], 1),
    }


@dataclass
class Trained:
    base: torch.nn.Module  # untouched deep copy of the base, taken before wrapping
    peft_model: PeftModel
    snapshot: dict[str, torch.Tensor]  # the base's state dict before wrapping
    batch: dict[str, torch.Tensor]
    base_logits: torch.Tensor
    losses: list[float]
    before: dict[str, torch.Tensor]  # trainable parameters right after wrapping
    step0_logits: torch.Tensor  # adapted logits right after wrapping


def logits(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


@pytest.fixture(scope="module", params=CASES)
def trained(request, tokenizer, tmp_path_factory) -> Trained:
    case = request.param
    model = build_base(case, tokenizer, tmp_path_factory)
    base = copy.deepcopy(model)
    snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}
    inputs = batch(case, tokenizer)
    base_logits = logits(base, inputs)
    peft_model = get_peft_model(model, get_peft_config(model, tokenizer)).eval()
    step0_logits = logits(peft_model, inputs)
    params = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in params.items()}
    optimizer = torch.optim.AdamW(params.values(), lr=1e-2, weight_decay=0.0)
    peft_model.train()
    losses = []
    for _ in range(6):
        loss = peft_model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    peft_model.eval()
    return Trained(base, peft_model, snapshot, inputs, base_logits, losses, before, step0_logits)


def test_config_follows_the_published_setting_per_family(tokenizer, tmp_path_factory):
    for case in ("t5_tied", "llama_untied"):
        model = build_base(case, tokenizer, tmp_path_factory)
        config = get_peft_config(model, tokenizer)
        assert (config.r, config.lora_alpha, config.lora_dropout) == (8, 16, 0.05)
        ids = motion_token_ids(tokenizer)
        assert len(ids) == K + 3
        if case == "t5_tied":
            assert config.task_type == TaskType.SEQ_2_SEQ_LM
            assert set(config.target_modules) == {"q", "k", "v", "o", "wi_0", "wi_1", "wo"}
            assert config.trainable_token_indices == {"shared": ids}
        else:
            assert config.task_type == TaskType.CAUSAL_LM
            assert "gate_proj" in config.target_modules and "lm_head" not in config.target_modules
            assert config.trainable_token_indices == {"model.embed_tokens": ids, "lm_head": ids}


def test_only_lora_and_motion_rows_are_trainable(trained, tokenizer):
    ids = motion_token_ids(tokenizer)
    base_model = trained.peft_model.get_base_model()
    trainable = [n for n, p in trained.peft_model.named_parameters() if p.requires_grad]
    assert any("lora_A" in n for n in trainable) and any("lora_B" in n for n in trainable)
    assert all("lora_" in n or "trainable_tokens_delta" in n for n in trainable), trainable
    # The embedding and the output layer (and T5's per-stack embeddings) use the motion rows' delta.
    names = ["lm_head"] + (["shared", "encoder.embed_tokens", "decoder.embed_tokens"]
                           if hasattr(base_model, "shared") else ["model.embed_tokens"])  # fmt: skip
    for name in names:
        layer = base_model.get_submodule(name)
        assert isinstance(layer, TrainableTokensWrapper), name
        assert layer.token_adapter.token_indices["default"] == ids
        delta = layer.token_adapter.trainable_tokens_delta["default"]
        assert delta.requires_grad and delta.shape == (K + 3, 16)
    report = trainable_parameter_report(trained.peft_model)
    assert report["trainable"] == sum(
        p.numel() for p in {id(p): p for p in trained.peft_model.parameters() if p.requires_grad}.values()
    )
    assert 0 < report["share"] < 1 and set(report["modules"]) == {"lora", "trainable_tokens"}


def test_training_moves_every_trainable_parameter_and_motion_logits(trained, tokenizer):
    ids = motion_token_ids(tokenizer)
    assert trained.losses[-1] < trained.losses[0]
    for name, param in trained.peft_model.named_parameters():
        if param.requires_grad:
            assert not torch.equal(param, trained.before[name]), f"{name} did not change"
    adapted = logits(trained.peft_model, trained.batch)
    assert not torch.equal(adapted[..., ids], trained.base_logits[..., ids])


def test_base_weights_stay_bit_identical(trained):
    # PEFT keeps the original tensors under `<layer>.base_layer` (LoRA) or `<layer>.token_adapter.base_layer`
    # (trainable tokens; their new rows live apart in `trainable_tokens_delta`): compare those.
    originals = {}
    for name, value in trained.peft_model.get_base_model().state_dict().items():
        if "lora_" not in name and "trainable_tokens_" not in name:
            originals[name.replace(".token_adapter", "").replace(".base_layer", "")] = value
    assert set(originals) == set(trained.snapshot)
    changed = [n for n, v in trained.snapshot.items() if not torch.equal(originals[n], v)]
    assert not changed


def test_policy_equals_reference_before_training(trained):
    # Fails if PEFT ties an untied lm_head to the embedding delta (T5 v1.1 / Flan-T5 under transformers 5).
    assert torch.equal(trained.step0_logits, trained.base_logits)


def test_disabled_adapters_are_the_reference_and_enabled_ones_are_not(trained):
    with trained.peft_model.disable_adapter():
        reference = logits(trained.peft_model, trained.batch)
    assert torch.equal(reference, trained.base_logits)
    assert not torch.equal(logits(trained.peft_model, trained.batch), trained.base_logits)


def test_saved_adapter_carries_the_motion_rows(trained, tokenizer, tmp_path):
    ids = motion_token_ids(tokenizer)
    trained.peft_model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    rows = [k for k in saved if "trainable_tokens_delta" in k]
    tied = trained.base.get_output_embeddings().weight is trained.base.get_input_embeddings().weight
    assert len(rows) == (1 if tied else 2), rows
    assert all(saved[k].shape == (K + 3, 16) for k in rows)
    assert any("lm_head" in k for k in rows) != tied
    # A fresh base whose motion rows were never trained (e.g. resized anew) gets them from the adapter.
    fresh = copy.deepcopy(trained.base)
    assert declare_untied_output(fresh) == (trained.base.config.model_type == "t5" and not tied)
    with torch.no_grad():
        for layer in {fresh.get_input_embeddings(), fresh.get_output_embeddings()}:
            layer.weight[ids] = torch.randn_like(layer.weight[ids])
    loaded = PeftModel.from_pretrained(fresh, tmp_path).eval()
    assert torch.equal(logits(loaded, trained.batch), logits(trained.peft_model, trained.batch))


def test_errors_name_the_missing_vocabulary_or_resize(tokenizer, tmp_path_factory):
    model = build_base("llama_untied", tokenizer, tmp_path_factory)
    with pytest.raises(ValueError, match="motion vocabulary.*add_to_tokenizer"):
        get_peft_config(model, text_tokenizer())
    small = LlamaForCausalLM(LlamaConfig(vocab_size=8, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2))  # fmt: skip
    with pytest.raises(ValueError, match="resize_token_embeddings"):
        get_peft_config(small, tokenizer)


def test_biased_output_layer_falls_back_to_modules_to_save(tokenizer, tmp_path_factory, tmp_path):
    model = build_base("llama_untied", tokenizer, tmp_path_factory)
    model.lm_head = torch.nn.Linear(16, len(tokenizer), bias=True)  # F.linear in TrainableTokens drops bias
    inputs = batch("llama_untied", tokenizer)
    base_logits = logits(model, inputs)
    config = get_peft_config(model, tokenizer)
    assert config.modules_to_save == ["lm_head"]
    assert list(config.trainable_token_indices) == ["model.embed_tokens"]
    peft_model = get_peft_model(model, config).eval()
    assert torch.equal(logits(peft_model, inputs), base_logits)
    with torch.no_grad():
        peft_model.get_base_model().lm_head.modules_to_save["default"].bias.add_(1.0)
    with peft_model.disable_adapter():
        assert torch.equal(logits(peft_model, inputs), base_logits)
    peft_model.save_pretrained(tmp_path)
    assert "base_model.model.lm_head.bias" in load_file(tmp_path / "adapter_model.safetensors")
