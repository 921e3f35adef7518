"""GRPO (Shao et al. 2024, arXiv 2402.03300) of a LLaMA policy through TRL's GRPOTrainer: the recipe YAML,
the prompts, the motion rewards as GRPO reward functions, the refusal of T5, a 2-step LoRA run whose
saved adapter loads with ``load_policy``, and a run that its KL budget stops, with the held-out reward."""

from __future__ import annotations

import json
import re
import runpy
import sys
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch
from conftest import REPO, parse_recipe

from motion_align.policy.model import load_policy
from motion_align.policy.vocab import MotionVocab
from motion_align.trainers.dpo_config import MotionDPOConfig
from motion_align.trainers.grpo_config import MotionGRPOConfig
from motion_align.trainers.grpo_trainer import (
    GRPO_RUN,
    GRPOMotionReward,
    MotionGRPOTrainer,
    get_grpo_prompts,
    get_heldout_prompts,
    get_reward_functions,
    save_grpo_result,
)
from motion_align.trainers.kl_budget import add_kl_budget
from motion_align.trainers.recipe import (
    get_policy,
    load_motion_tokenizer,
    require_decoder_only,
    training_info,
)

RECIPE = "recipes/llama/grpo/config_grpo_lora.yaml"
REWARD_NAMES = ["event_judge_reward", "retrieval_reward"]


def grpo_config(artifacts, tmp_path, *flags: str) -> MotionGRPOConfig:
    """The LLaMA GRPO recipe pointed at the test artifacts, plus flags."""
    paths = {"model_name_or_path": "llama", "dataset_name": "tokenized", "retrieval_model": "retrieval"}
    flags = [item for key, name in paths.items() for item in (f"--{key}", str(artifacts[name]))] + list(flags)
    return parse_recipe(MotionGRPOConfig, RECIPE, "--output_dir", str(tmp_path / "grpo"), "--disable_tqdm",
                        "true", *flags)  # fmt: skip


def test_recipe_yaml_parses_into_whole_groups_with_the_lora_of_the_dpo_recipes():
    config = parse_recipe(MotionGRPOConfig, RECIPE)
    assert config.generation_batch_size % config.num_generations == 0  # every batch holds whole groups
    ipo = parse_recipe(MotionDPOConfig, "recipes/llama/dpo_ipo/config_ipo_lora.yaml")
    lora = ("use_peft", "lora_r", "lora_alpha", "lora_dropout", "seed")
    assert [getattr(config, name) for name in lora] == [getattr(ipo, name) for name in lora]


def test_prompts_end_with_the_caption_and_carry_caption_and_events(policy_artifacts, tmp_path):
    config = grpo_config(policy_artifacts, tmp_path)
    _, tokenizer = load_policy(policy_artifacts["llama"])
    som = MotionVocab.from_tokenizer(tokenizer).som
    items = datasets.load_from_disk(str(policy_artifacts["tokenized"]))["train"]
    prompts = get_grpo_prompts(config, tokenizer)
    expected = [(caption, events) for captions, events in zip(items["captions"], items["events"])
                for caption in captions]  # fmt: skip
    assert list(zip(prompts["caption"], prompts["events"])) == expected
    # the prompt is the formatted caption: the completion starts the motion (its first token is <som>)
    assert all(som not in p and p.endswith(c) for p, c in zip(prompts["prompt"], prompts["caption"]))
    # whole clips carry their event spec; segment items (HumanML3D's timed sub-captions) have none
    assert all(json.loads(e) for e in prompts["events"] if e) and "" in prompts["events"]

    config.data_fraction = 0.5
    half = get_grpo_prompts(config, tokenizer)
    # half of the items (clips), as the SoPo and PPO recipes subsample, with all their captions
    assert 0 < len(half) < len(expected) and set(half["caption"]) <= set(prompts["caption"])

    items.remove_columns("events").save_to_disk(str(tmp_path / "no_events"))
    config.dataset_name = str(tmp_path / "no_events")
    with pytest.raises(ValueError, match=r"no_events.*missing \['events'\]"):
        get_grpo_prompts(config, tokenizer)


def test_reward_functions_score_motions_and_give_0_to_text(policy_artifacts, tmp_path):
    config = grpo_config(policy_artifacts, tmp_path)
    _, tokenizer = load_policy(policy_artifacts["llama"])
    vocab = MotionVocab.from_tokenizer(tokenizer)
    rewards = get_reward_functions(config, tokenizer, load_motion_tokenizer(config))
    assert [reward.__name__ for reward in rewards] == REWARD_NAMES

    item = datasets.load_from_disk(str(policy_artifacts["tokenized"]))["train"][0]
    motion = vocab.codes_to_string(item["codes"])  # start token, codes, end token
    codes_only = motion.removeprefix(vocab.som)
    completions = [motion, "a person walks forward.", "", codes_only]
    captions, events = [item["captions"][0]] * 4, [item["events"]] * 4
    for reward in rewards:
        scores = reward(prompts=["p"] * 4, completions=completions, caption=captions, events=events)
        assert len(scores) == 4 and all(isinstance(s, float) for s in scores)
        # a completion that does not start a motion is not one
        assert 0.0 <= scores[0] <= 1.0 and scores[1:] == [0.0, 0.0, 0.0]
        # after a prompt that ends with the start token (PPO's queries) the codes alone are the motion
        assert reward(prompts=["p" + vocab.som], completions=[codes_only], caption=captions[:1],
                      events=events[:1]) == scores[:1]  # fmt: skip
    # a caption without an event spec (HumanML3D): the event judge abstains, the retrieval model scores it
    judge, retrieval = rewards
    assert judge(prompts=["p"], completions=[motion], caption=captions[:1], events=[""]) == [None]
    assert retrieval(prompts=["p"], completions=[motion], caption=captions[:1], events=[""])[0] is not None


def test_t5_policy_is_refused(policy_artifacts, tmp_path):
    config = grpo_config(policy_artifacts, tmp_path, "--model_name_or_path", str(policy_artifacts["t5"]))
    model = get_policy(config)[0]
    with pytest.raises(ValueError, match=r"t5.*GRPOTrainer is decoder-only.*recipes/ppo\.py"):
        require_decoder_only(model, config, "GRPOTrainer", "recipes/ppo.py")


def test_grpo_lora_trains_the_adapter_only_and_saves_a_loadable_policy(policy_artifacts, tmp_path):
    # one prompt of 8 completions per step; up to 52 tokens, so that a group holds valid and invalid motions.
    # Three steps: a group whose 8 samples score alike gives no gradient, and with LoRA's zero-initialised
    # B the A matrices move only from the second step that has a signal (with OMP_NUM_THREADS=1 the first
    # step has none).
    flags = "--per_device_train_batch_size 8 --num_generations 8 --max_steps 3 --logging_steps 1"
    config = grpo_config(
        policy_artifacts, tmp_path, *flags.split(), "--save_strategy", "no", "--eval_strategy", "no"
    )
    model, tokenizer, peft_config = get_policy(config)
    rewards = get_reward_functions(config, tokenizer, load_motion_tokenizer(config))
    items = datasets.load_from_disk(str(policy_artifacts["tokenized"]))["train"]
    fitted = {captions[0] for captions in items["captions"][:6]}  # the captions the fixture fitted it on
    prompts = get_grpo_prompts(config, tokenizer).filter(lambda row: row["caption"] in fitted)
    base = {name: (p, p.detach().clone()) for name, p in model.named_parameters()}
    trainer = MotionGRPOTrainer(model=model, reward_funcs=rewards, args=config, train_dataset=prompts,
                                processing_class=tokenizer, peft_config=peft_config)  # fmt: skip
    trainable = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "trainable_tokens" in n for n in trainable)

    result = trainer.train()

    params = dict(trainer.model.named_parameters())
    assert all(not torch.equal(params[n], before) for n, before in trainable.items())
    in_model = {id(p) for p in params.values()}
    assert all(id(p) in in_model and torch.equal(p, before) for p, before in base.values())  # bit-identical
    logs = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert len(logs) == 3 and any(entry["reward_std"] > 0 for entry in logs)
    for entry in logs:
        for name in REWARD_NAMES:
            assert 0.0 <= entry[f"rewards/{name}/mean"] <= 1.0

    info = training_info(config, "GRPO", "recipes/grpo.py", len(prompts))
    out = save_grpo_result(trainer, tokenizer, config, info, result.metrics)
    saved = json.loads((out / "training_info.json").read_text())
    assert saved["method"] == "GRPO-LoRA" and saved["hyperparameters"]["num_generations"] == 8
    assert len(json.loads((out / GRPO_RUN).read_text())["rewards"]) == 3
    assert (out / "training_curves.png").is_file()  # KL and rewards
    _, aligned_tokenizer = load_policy(out)
    assert MotionVocab.from_tokenizer(aligned_tokenizer) == MotionVocab.from_tokenizer(tokenizer)
    assert load_motion_tokenizer(grpo_config(policy_artifacts, tmp_path, "--model_name_or_path", str(out)))


def test_kl_budget_stops_grpo_early_and_the_heldout_reward_is_drawn_beside_the_reward(
    policy_artifacts, tmp_path
):
    # The adapter starts at zero (KL 0 at step 1); once it moves, the k3 KL exceeds any tiny budget.
    flags = (
        "--per_device_train_batch_size 8 --num_generations 4 --max_steps 4 --logging_steps 1"
        " --save_strategy no --max_completion_length 20 --kl_budget 1e-9 --eval_strategy steps"
        " --eval_steps 3 --eval_prompts 2 --num_generations_eval 2 --per_device_eval_batch_size 4"
    )
    config = grpo_config(policy_artifacts, tmp_path, *flags.split())
    model, tokenizer, peft_config = get_policy(config)
    rewards = get_reward_functions(config, tokenizer, load_motion_tokenizer(config))
    items = datasets.load_from_disk(str(policy_artifacts["tokenized"]))["train"]
    fitted = {captions[0] for captions in items["captions"][:6]}
    prompts = get_grpo_prompts(config, tokenizer).filter(lambda row: row["caption"] in fitted)
    heldout = get_heldout_prompts(config, tokenizer)
    val = datasets.load_from_disk(str(policy_artifacts["tokenized"]))["val"]
    assert len(heldout) == 2 and set(heldout["caption"]) <= {c for caps in val["captions"] for c in caps}
    trainer = MotionGRPOTrainer(model=model, reward_funcs=rewards, args=config, train_dataset=prompts,
                                eval_dataset=heldout, processing_class=tokenizer,
                                peft_config=peft_config)  # fmt: skip
    add_kl_budget(trainer, config, "GRPO")
    result = trainer.train()

    stopped = trainer.state.global_step
    assert stopped < config.max_steps and stopped < config.eval_steps
    info = training_info(config, "GRPO", "recipes/grpo.py", len(prompts))
    out = save_grpo_result(trainer, tokenizer, config, info, result.metrics)
    run = json.loads((out / GRPO_RUN).read_text())
    budget = run["kl_budget"]
    assert budget["stopped_at_step"] == stopped and budget["max_kl"] > 1e-9 and budget["metric"] == "kl"
    assert budget["coefficients"] == [{"step": 0, "coefficient": 0.05}]
    assert [row["step"] for row in run["rewards"]] == list(range(1, stopped + 1))
    assert [row["step"] for row in run["eval"]] == [stopped]  # not an eval step: the stop asked for it
    assert all(0.0 <= row["eval_reward"] <= 2.0 for row in run["eval"])
    assert (out / "training_curves.png").is_file()


def run_recipe(monkeypatch, *flags: str) -> None:
    """``accelerate launch recipes/grpo.py --config <recipe> flags`` in this process (one process)."""
    monkeypatch.setattr(sys, "argv", ["recipes/grpo.py", "--config", str(REPO / RECIPE), *flags])
    runpy.run_path(str(REPO / "recipes/grpo.py"), run_name="__main__")


def test_recipe_script_checkpoints_resumes_and_explains_missing_inputs(
    policy_artifacts, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "recipe"
    flags = ["--model_name_or_path", str(policy_artifacts["llama"]), "--dataset_name",
             str(policy_artifacts["tokenized"]), "--retrieval_model", str(policy_artifacts["retrieval"]),
             "--output_dir", str(out), "--per_device_train_batch_size", "4", "--num_generations", "4",
             "--max_completion_length", "20", "--save_steps", "1", "--disable_tqdm", "true",
             "--kl_budget", "10"]  # fmt: skip
    run_recipe(monkeypatch, *flags, "--max_steps", "1")
    for folder in (out, out / "checkpoint-1"):  # every checkpoint is a loadable policy folder too
        assert {"motion_vocab.json", "motion_tokenizer.json"} <= {p.name for p in folder.iterdir()}
        load_policy(folder)
    run_recipe(monkeypatch, *flags, "--max_steps", "2", "--resume_from_checkpoint", "latest")
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2
    run = json.loads((out / GRPO_RUN).read_text())
    assert (out / "checkpoint-2").is_dir() and run["world_size"] == 1
    assert run["kl_budget"]["budget"] == 10.0 and run["kl_budget"]["metric"] == "kl"  # the recipe adds it

    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        run_recipe(monkeypatch, *flags, "--model_name_or_path", str(tmp_path / "nowhere"))
    assert stop.value.code == 2
    assert re.search(r"grpo\.py: error: policy .*nowhere. not found.*`make demo`", capsys.readouterr().err)


class ChunkCodebook(torch.nn.Module):
    """A motion tokenizer whose code i decodes to the i-th 4-frame chunk of one motion's features: the codes
    0, 1, ..., N-1 in order are that motion, other sequences are cut-and-pasted pieces of it. With a
    synthesised "jump twice" the event judge scores its samples as it scores real motions (the tiny VQ-VAE
    of the other tests decodes every code to about the mean pose, where the judge sees no event)."""

    def __init__(self, features: np.ndarray, chunk: int = 4) -> None:
        super().__init__()
        n = len(features) // chunk
        chunks = torch.tensor(features[: n * chunk], dtype=torch.float32).reshape(n, chunk, -1)
        self.chunks = torch.nn.Parameter(chunks, requires_grad=False)
        self.config = SimpleNamespace(codebook_size=n, downsample_factor=chunk, nfeats=features.shape[1])

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.chunks[codes.clamp(min=0)].reshape(codes.shape[0], -1, self.chunks.shape[-1])


def test_grpo_with_the_event_judge_raises_the_reward_of_a_tiny_policy(tmp_path):
    """GRPO learns from the event judge: a tiny LLaMA fitted briefly to "jump twice" (about half of its
    samples usable motions, judge reward 0.27 over 64 samples of its own sampler) gains at least 0.1 in
    20 steps of one prompt x 8 completions. Without the prompt layout and the motion-only policy of
    MotionGRPOTrainer (prompts ending with the start token, text tokens masked in sampling only) a run like
    this one fell from 0.27 to 0.05 in 20 steps: the start of a motion drifted away (see grpo_trainer)."""
    from conftest import fit

    from motion_align.data.synth import synthesize
    from motion_align.motion.events import Event
    from motion_align.motion.features import features_from_joints
    from motion_align.policy.generation import SamplingConfig, generate_motions
    from motion_align.policy.model import build_policy, format_prompt
    from motion_align.policy.text_tokenizer import train_text_tokenizer
    from motion_align.rewards.event_judge import EventJudge
    from motion_align.rewards.motion_rewards import EventJudgeReward
    from motion_align.trainers.recipe import prompt_rows

    spec, caption = [Event("jump", count=2)], "a person jumps twice."
    clip = synthesize([Event("idle"), *spec, Event("idle")], np.random.default_rng(0))
    codebook = ChunkCodebook(features_from_joints(clip.joints))
    torch.manual_seed(0)
    tokenizer = train_text_tokenizer([format_prompt(caption), format_prompt("a person waves.")], "llama", 300)
    model, tokenizer = build_policy("llama", "tiny", tokenizer, codebook.config.codebook_size, dropout=0.0)
    fit(model, tokenizer, [caption], [list(range(codebook.config.codebook_size))], steps=40)
    judge = EventJudge()

    def judged(policy) -> tuple[float, float]:
        """Mean judge reward (an unusable motion 0) and share of usable motions, over 64 samples."""
        policy.eval()
        motions = generate_motions(
            policy, tokenizer, codebook, [caption], SamplingConfig(num_samples=64, seed=1)
        )
        return float(np.mean([judge.score(spec, m.features) if m.valid else 0.0 for m in motions])), float(
            np.mean([m.valid for m in motions])
        )

    before, valid_before = judged(model)
    events = json.dumps([event.to_dict() for event in spec])
    items = datasets.Dataset.from_dict({"captions": [[caption]] * 64, "events": [events] * 64})
    prompts = prompt_rows(items, tokenizer, with_ids=False, with_start=False)
    config = MotionGRPOConfig(
        output_dir=str(tmp_path / "grpo"), reward_functions=["event_judge"], use_peft=False, beta=0.0,
        per_device_train_batch_size=8, num_generations=8, max_steps=20, learning_rate=2e-3,
        lr_scheduler_type="constant", warmup_steps=0, max_completion_length=52, logging_steps=1,
        save_strategy="no", report_to="none", disable_tqdm=True, seed=0, eval_strategy="no",
    )  # fmt: skip
    som = MotionVocab.from_tokenizer(tokenizer).som
    reward = GRPOMotionReward(EventJudgeReward(tokenizer, codebook), som)
    trainer = MotionGRPOTrainer(model=model, reward_funcs=[reward], args=config, train_dataset=prompts,
                                processing_class=tokenizer)  # fmt: skip
    trainer.train()
    trainer.motion_only.handle.remove()  # the policy as saved, sampled by motion-align's own sampler
    after, valid_after = judged(trainer.model)
    assert 0.15 < before < 0.4 and after >= before + 0.1, (before, after)
    assert valid_after >= valid_before - 0.05  # it still starts and finishes motions
