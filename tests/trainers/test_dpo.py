"""MotionDPOTrainer on tiny T5 and LLaMA policies: TRL parity, T5 encoder reuse, degrees, references."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import PAIR_CAPTIONS, PAIR_DEGREES, REPO, parse_recipe, random_pairs
from datasets import Dataset
from peft import PeftModel
from safetensors.torch import load_file
from transformers import TrainerCallback
from transformers.integrations.neftune import activate_neftune
from trl import DPOConfig, DPOTrainer

from motion_align.data.preferences import DEGREE_LABEL_SMOOTHING, DEGREE_MARGINS
from motion_align.policy.lora import get_peft_config
from motion_align.policy.model import build_policy, format_prompt, load_policy, save_policy
from motion_align.policy.text_tokenizer import train_text_tokenizer
from motion_align.trainers.dpo_config import MotionDPOConfig
from motion_align.trainers.dpo_trainer import MotionDPOTrainer

K = 16
CAPTIONS, DEGREES = PAIR_CAPTIONS, PAIR_DEGREES


def pairs(n: int = 16, seed: int = 0) -> Dataset:
    """Trainer rows (formatted prompts) with random motions of 3 to 8 codes and every degree."""
    rows = random_pairs(n, K, seed)
    return Dataset.from_list([{**r, "prompt": format_prompt(r["prompt"])} for r in rows]).remove_columns(
        "source"
    )


@pytest.fixture(scope="module")
def policies(tmp_path_factory) -> dict:
    """Saved tiny policies of both families (the SFT checkpoints alignment starts from)."""
    root = tmp_path_factory.mktemp("dpo_policies")
    out = {}
    for family in ("t5", "llama"):
        torch.manual_seed(0)
        tokenizer = train_text_tokenizer(CAPTIONS * 4, family, vocab_size=200)
        model, tokenizer = build_policy(family, "tiny", tokenizer, K, dropout=0.1)
        save_policy(model, tokenizer, root / family)
        out[family] = root / family
    return out


def args(tmp_path, **kw) -> MotionDPOConfig:
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        max_steps=2,
        use_cpu=True,
        logging_steps=1,
        disable_tqdm=True,
        save_strategy="no",
        report_to="none",
        seed=0,
    )
    return MotionDPOConfig(**{**defaults, **kw})


def trainer_for(policies, family, tmp_path, lora=True, data=None, **kw) -> MotionDPOTrainer:
    model, tokenizer = load_policy(policies[family])
    peft = get_peft_config(model, tokenizer) if lora else None
    return MotionDPOTrainer(
        model,
        args=args(tmp_path, **kw),
        train_dataset=data or pairs(),
        processing_class=tokenizer,
        peft_config=peft,
    )


class StopAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = state.global_step >= self.step


def first_batch(trainer) -> dict:
    return trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo"])
def test_loss_and_metrics_match_stock_trl_on_a_causal_policy(policies, tmp_path, loss_type):
    model, tokenizer = load_policy(policies["llama"], dropout=0.0)
    ref = copy.deepcopy(model)
    ours = MotionDPOTrainer(
        copy.deepcopy(model),
        ref_model=copy.deepcopy(ref),
        train_dataset=pairs(),
        args=args(tmp_path, loss_type=loss_type),
        processing_class=tokenizer,
    )
    stock_args = DPOConfig(
        str(tmp_path / "stock"),
        loss_type=loss_type,
        per_device_train_batch_size=4,
        seed=0,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
    )
    stock = DPOTrainer(
        copy.deepcopy(model),
        ref_model=ref,
        args=stock_args,
        train_dataset=pairs(),
        processing_class=tokenizer,
    )
    assert ours.train_dataset["chosen_ids"] == stock.train_dataset["chosen_ids"]
    batch = first_batch(stock)
    with torch.no_grad():
        loss_ours = ours.compute_loss(ours.model, batch)
        loss_stock = stock.compute_loss(stock.model, batch)
    torch.testing.assert_close(loss_ours, loss_stock, rtol=1e-5, atol=1e-6)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"):
        assert ours._metrics["train"][key] == pytest.approx(stock._metrics["train"][key], rel=1e-5, abs=1e-6)


def test_t5_encodes_each_prompt_once_and_scores_like_a_plain_forward(policies, tmp_path):
    trainer = trainer_for(policies, "t5", tmp_path, lora=False)
    ds = trainer.train_dataset
    batch = trainer.data_collator([ds[i] for i in range(4)])
    model = trainer.model.eval()
    rows = []
    hook = model.get_encoder().register_forward_hook(
        lambda m, i, o: rows.append(o.last_hidden_state.shape[0])
    )
    with torch.no_grad():
        logps, n_tokens, _, _ = trainer.completion_logps(model, batch)
    hook.remove()
    assert rows == [4]  # one encoder pass over the 4 prompts for 8 completions
    for i in range(4):  # chosen i and rejected i against a per-pair T5 forward with labels
        for j, key in ((i, "chosen_ids"), (4 + i, "rejected_ids")):
            labels = torch.tensor([ds[i][key]])
            with torch.no_grad():
                out = model(input_ids=torch.tensor([ds[i]["prompt_ids"]]), labels=labels)
            expected = -F.cross_entropy(out.logits[0], labels[0], reduction="sum")
            torch.testing.assert_close(logps[j], expected, rtol=1e-5, atol=1e-5)
            assert n_tokens[j] == labels.shape[1] and labels[0, -1] == trainer.processing_class.eos_token_id


@pytest.mark.parametrize("family", ["t5", "llama"])
@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_degree_margins_enter_the_loss(policies, tmp_path, family, loss_type):
    """At step 0 LoRA's policy equals its reference (h = 0): the loss is a function of the margins alone."""
    trainer = trainer_for(
        policies, family, tmp_path, degree_use="margin", margin_scale=0.5, loss_type=loss_type
    )
    assert trainer.train_dataset["margin"] == [0.5 * DEGREE_MARGINS[d] for d in pairs()["degree"]]
    batch = first_batch(trainer)
    m = batch["margin"]
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    expected = F.softplus(m).mean() if loss_type == "sigmoid" else (((0.5 + m) / 0.1) ** 2).mean()
    torch.testing.assert_close(loss, expected)
    assert trainer._metrics["train"]["rewards/margins"] == [0.0]


@pytest.mark.parametrize("family", ["t5", "llama"])
def test_rpo_alpha_adds_the_chosen_motions_per_token_nll(policies, tmp_path, family):
    """DPO+NLL (Pang et al. 2024): the loss is the preference loss plus alpha times the chosen completions'
    mean per-token negative log-likelihood, computed here from a plain forward pass."""
    plain = trainer_for(policies, family, tmp_path, loss_type="ipo")
    weighted = trainer_for(policies, family, tmp_path, loss_type="ipo", rpo_alpha=0.5)
    batch = first_batch(weighted)
    with torch.no_grad():
        base, loss = plain.compute_loss(plain.model, batch), weighted.compute_loss(weighted.model, batch)
        logps, n_tokens, _, _ = weighted.completion_logps(weighted.model, batch)
    half = len(logps) // 2
    nll = -(logps[:half] / n_tokens[:half]).mean()
    assert nll > 0
    torch.testing.assert_close(loss, base + 0.5 * nll)
    torch.testing.assert_close(torch.tensor(weighted._metrics["train"]["nll_loss"][0]), nll)
    with pytest.raises(ValueError, match="rpo_alpha must be >= 0"):
        args(tmp_path, rpo_alpha=-1.0)


def test_label_smoothing_from_degree(policies, tmp_path):
    trainer = trainer_for(policies, "llama", tmp_path, degree_use="label_smoothing", loss_type="sigmoid")
    assert trainer.train_dataset["pair_smoothing"] == [DEGREE_LABEL_SMOOTHING[d] for d in pairs()["degree"]]
    trainer.train()  # after two steps h != 0: the loss is cDPO's mixture with each pair's own epsilon
    trainer.model.eval()  # LoRA's dropout off, so the three forwards below see the same network
    batch = first_batch(trainer)
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
        logps = trainer.completion_logps(trainer.model, batch)[0].chunk(2)
        ref = trainer.compute_ref_log_probs(trainer.model, batch)
    h = 0.1 * ((logps[0] - ref[0]) - (logps[1] - ref[1]))
    eps = batch["pair_smoothing"]
    assert h.abs().max() > 0 and eps.unique().numel() > 1
    torch.testing.assert_close(loss, ((1 - eps) * F.softplus(-h) + eps * F.softplus(h)).mean())


@pytest.mark.parametrize("family", ["t5", "llama"])
def test_lora_trains_motion_rows_and_references_the_untouched_base(policies, tmp_path, family):
    base, _ = load_policy(policies[family], dropout=0.0)
    trainer = trainer_for(policies, family, tmp_path, max_steps=3)
    dropouts = {name: m.p for name, m in trainer.model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert dropouts and all(p == (0.05 if ".lora_dropout." in f"{n}." else 0.0) for n, p in dropouts.items())
    batch = first_batch(trainer)
    trainer.train()
    model = trainer.model
    deltas = {n: p for n, p in model.named_parameters() if "trainable_tokens_delta" in n}
    assert deltas and all(p.abs().sum() > 0 for p in deltas.values())  # motion-token rows moved
    frozen = {
        n.replace("base_model.model.", "").replace(".base_layer", ""): p
        for n, p in model.named_parameters()
        if not p.requires_grad
    }
    compared = [name for name in dict(base.named_parameters()) if name in frozen]
    assert len(compared) > 10
    for name in compared:
        assert torch.equal(frozen[name], base.get_parameter(name)), name  # bit-identical base
    with torch.no_grad():
        ref = torch.cat(trainer.compute_ref_log_probs(model, batch))
        fresh = trainer_for(policies, family, tmp_path)  # an untrained adapter is the base model exactly
        original = fresh.completion_logps(fresh.model.eval(), batch)[0]
        trained = trainer.completion_logps(model.eval(), batch)[0]
    assert torch.equal(ref, original) and not torch.allclose(trained, original)


def test_full_finetuning_references_a_frozen_copy(policies, tmp_path):
    live = dict(precompute_ref_log_probs=False)  # the reference run at every step (precomputed: no copy kept)
    trainer = trainer_for(policies, "t5", tmp_path, lora=False, learning_rate=1e-3, **live)
    assert trainer.ref_model is not None and not any(p.requires_grad for p in trainer.ref_model.parameters())
    batch = first_batch(trainer)
    with torch.no_grad():
        before = torch.cat(trainer.compute_ref_log_probs(trainer.model, batch))
    trainer.train()
    with torch.no_grad():
        after_ref = torch.cat(trainer.compute_ref_log_probs(trainer.model, batch))
        policy = trainer.completion_logps(trainer.model.eval(), batch)[0]
    assert torch.equal(before, after_ref) and not torch.allclose(policy, before)


def test_neftune_noise_stays_out_of_the_reference(policies, tmp_path):
    trainer = trainer_for(policies, "llama", tmp_path, neftune_noise_alpha=5.0)
    batch = first_batch(trainer)
    with torch.no_grad():
        clean = torch.cat(trainer.compute_ref_log_probs(trainer.model.eval(), batch))
        trainer.model.train()
        activate_neftune(trainer.model, 5.0, trainer.accelerator)
        noisy_policy = trainer.completion_logps(trainer.model, batch)[0]
        ref = torch.cat(trainer.compute_ref_log_probs(trainer.model, batch))
    assert torch.equal(ref, clean) and not torch.allclose(noisy_policy, clean)


def test_precomputed_reference_gives_the_same_loss(policies, tmp_path):
    live = trainer_for(policies, "t5", tmp_path)
    pre = trainer_for(policies, "t5", tmp_path / "pre", precompute_ref_log_probs=True)
    pre.precompute_reference_logps()  # train() would: the reference may still be set up after construction
    assert "ref_chosen_logps" in pre.train_dataset.column_names
    batch = first_batch(pre)
    with torch.no_grad():
        torch.testing.assert_close(pre.compute_loss(pre.model, batch), live.compute_loss(live.model, batch))


def test_resumed_run_ends_with_the_uninterrupted_adapter(policies, tmp_path):
    kw = dict(max_steps=4, save_strategy="steps", save_steps=2, learning_rate=1e-3)
    full = trainer_for(policies, "t5", tmp_path / "full", **kw)
    full.train()
    first = trainer_for(policies, "t5", tmp_path / "cut", **kw)
    first.add_callback(StopAt(2))  # killed after the checkpoint at step 2
    first.train()
    assert first.state.global_step == 2
    resumed = trainer_for(policies, "t5", tmp_path / "cut", **kw)
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "out" / "checkpoint-2"))
    full.save_model(str(tmp_path / "a"))
    resumed.save_model(str(tmp_path / "b"))
    a, b = (
        load_file(tmp_path / "a" / "adapter_model.safetensors"),
        load_file(tmp_path / "b" / "adapter_model.safetensors"),
    )
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_aligned_adapter_loads_as_a_policy(policies, tmp_path):
    trainer = trainer_for(policies, "llama", tmp_path)
    trainer.train()
    trainer.save_model(str(tmp_path / "adapter"))
    model, tokenizer = load_policy(tmp_path / "adapter")  # base from adapter_config.json, merged
    peft = trainer.model.eval()
    ids = tokenizer(["Generate motion: a man kicks."], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, peft(input_ids=ids).logits, rtol=1e-4, atol=1e-5)
    assert not isinstance(model, PeftModel)


def test_every_dpo_recipe_parses():
    paths = sorted((REPO / "recipes").glob("*/dpo_ipo/config_*.yaml"))
    assert paths
    for path in paths:  # each file is what its name says: config_<loss>_<lora | qlora | full>.yaml
        config = parse_recipe(MotionDPOConfig, str(path.relative_to(REPO)))
        loss, tuning = path.stem.split("_")[1:]
        assert {"dpo": "sigmoid"}.get(loss, loss) == config.loss_type[0] and not config.bf16, path
        assert (config.use_peft, config.load_in_4bit) == {"lora": (True, False), "qlora": (True, True),
                                                         "full": (False, False)}[tuning], path  # fmt: skip
    with pytest.raises(ValueError, match="degree_use"):
        MotionDPOConfig(output_dir="x", degree_use="weights")


def test_bad_loss_settings_are_refused_by_the_config(tmp_path):
    with pytest.raises(ValueError, match="loss_type must be one of"):
        MotionDPOConfig(output_dir=str(tmp_path), loss_type="kto")
    with pytest.raises(ValueError, match="loss_type must be one of"):
        MotionDPOConfig(output_dir=str(tmp_path), loss_type=["ipo", "sigmoid"])
    with pytest.raises(ValueError, match="beta must be > 0"):
        MotionDPOConfig(output_dir=str(tmp_path), beta=0.0)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 0.5\]"):
        MotionDPOConfig(output_dir=str(tmp_path), label_smoothing=0.6)


def test_data_settings_are_refused_by_the_config(tmp_path):
    for fraction in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"data_fraction must be in \(0, 1\]"):
            MotionDPOConfig(output_dir=str(tmp_path), data_fraction=fraction)
    with pytest.raises(ValueError, match=r"preference_degrees: unknown degree\(s\) \['Better'\]"):
        MotionDPOConfig(output_dir=str(tmp_path), preference_degrees=["Better"])
    with pytest.raises(ValueError, match=r"eval_fraction must be in \[0, 1\)"):
        MotionDPOConfig(output_dir=str(tmp_path), eval_fraction=1.0)
