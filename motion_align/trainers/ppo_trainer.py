"""``MotionPPOTrainer``: TRL's PPOTrainer (``trl.experimental.ppo``, TRL 1.12) for T5 and LLaMA policies.

TRL's PPO loop works on causal rows (query left-padded, then the response) and reads every model through
three narrow interfaces: the policy's ``generate`` and ``forward`` (logits), and ``getattr(model,
model.base_model_prefix)`` + ``model.score`` for the value and reward models. Queries here end with the
start-of-motion token (:mod:`motion_align.policy.causal_view`), so the loop stays TRL's and only those
interfaces are given:

- the policy: a LLaMA policy as it is, a T5 policy through
  :class:`~motion_align.policy.causal_view.EncoderDecoderAsCausalLM`; with LoRA the reference is the same
  module with the adapter disabled (no second copy);
- the value model: a :class:`~motion_align.rewards.reward_model.MotionRewardModel` (PPO reads its head at
  every response token);
- the reward: a learned reward model (the score at the row's last token) or any
  :class:`~motion_align.rewards.motion_rewards.MotionReward` on decoded motions (the event judge, the
  retrieval score), both as ``(score - reward_shift) * reward_scale``.

The recipe's inputs and record: the prompts (queries ending in the start-of-motion token, with captions and
event specs), the reward and the value model (:func:`get_reward_and_value`), and the saved result (a
loadable adapter folder, ``ppo_run.json`` and the curves PNG: :func:`save_ppo_result`).

Two guards against reward hacking that TRL's experimental PPO loop lacks (TRL 1.12): the loop never reads a
callback's ``control.should_training_stop``, so :class:`MotionPPOTrainer` ends it at the next update's batch
(what a :class:`~motion_align.trainers.kl_budget.KLBudgetCallback` asks for); and it has no reward on held-out
prompts, so with an ``eval_dataset`` and ``eval_strategy: steps`` it samples one response per held-out
prompt with the current policy every ``eval_steps`` updates (and at the last), scores it with the training
reward (and its ``missing_eos_penalty``) and logs the mean as ``eval/scores``, beside ``objective/scores``;
its random draws leave training's random state as it was, so a run trains the same with or without it.

TRL's own knobs keep their meaning: ``kl_coef`` (KL penalty per token, 0.05 here; fixed unless an adapting
KL budget raises it), ``whiten_rewards``, ``missing_eos_penalty``, ``cliprange``/``cliprange_value``,
``vf_coef``, ``gamma``/``lam`` (GAE). Dropout is off in every model (TRL's ``disable_dropout_in_model`` plus
LLaMA's functional attention dropout).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from accelerate.utils import gather_object
from peft import PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file
from torch import nn
from transformers import GenerationConfig
from transformers.modeling_outputs import BaseModelOutput
from trl.experimental.ppo import PPOTrainer
from trl.experimental.ppo.ppo_trainer import batch_generation, truncate_response
from trl.experimental.utils import get_reward
from trl.models.utils import unwrap_model_for_generation

from motion_align.plots import plot_curves
from motion_align.policy.causal_view import EncoderDecoderAsCausalLM, motion_boundary
from motion_align.policy.model import policy_family, set_dropout
from motion_align.policy.vocab import MotionVocab
from motion_align.rewards.motion_rewards import MotionReward, build_motion_reward
from motion_align.rewards.reward_guard import refuse_evaluator
from motion_align.rewards.reward_model import MotionRewardModel
from motion_align.trainers.checkpointing import (
    AtomicCheckpoints,
    checked_checkpoint,
    newest_complete_checkpoint,
)
from motion_align.trainers.kl_budget import kl_budget_summary
from motion_align.trainers.recipe import (
    check_input,
    distribution,
    load_motion_tokenizer,
    load_tokenized_items,
    prompt_rows,
    save_policy_folder,
    training_info,
)
from motion_align.training.loop import write_json

CURVES_FILE = "training_curves.png"
RUN_FILE = "ppo_run.json"
#: The logged mean reward of the held-out prompts (:meth:`MotionPPOTrainer.heldout_scores`).
HELDOUT_SCORES = "eval/scores"
#: The panels of the curves PNG: KL to the reference, the reward (training and held-out prompts), the value
#: and policy losses.
CURVES = ("objective/kl", ("objective/scores", HELDOUT_SCORES), "loss/value_avg", "loss/policy_avg")


class QueryCollator:
    """Prompt rows -> ``input_ids`` (B, S), left-padded: every query's ``<som>`` in the last column."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(e["input_ids"]) for e in examples)
        ids = torch.full((len(examples), longest), self.pad_token_id, dtype=torch.long)
        for row, e in enumerate(examples):
            ids[row, longest - len(e["input_ids"]) :] = torch.as_tensor(e["input_ids"], dtype=torch.long)
        return {"input_ids": ids}


class _Affine(nn.Module):
    """``(head(h) - shift) * scale``: score scaling for any reward."""

    def __init__(self, head: nn.Module, scale: float, shift: float) -> None:
        super().__init__()
        self.head, self.scale, self.shift = head, scale, shift

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return (self.head(hidden) - self.shift) * self.scale


class _MotionScores(nn.Module):
    """Reads causal rows, decodes each response to a motion and returns its reward at every column, as
    ``hidden_states[-1]`` (B, L, 1): what TRL's ``get_reward`` reads from a backbone."""

    def __init__(self, reward: MotionReward, som_id: int, prompts: dict[tuple[int, ...], tuple[str, Any]]):
        super().__init__()
        self.reward, self.som_id, self.prompts = reward, som_id, prompts

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> BaseModelOutput:
        s = motion_boundary(input_ids, self.som_id)
        captions, events, completions = [], [], []
        for ids, mask in zip(input_ids.tolist(), attention_mask.bool().tolist()):
            query = tuple(i for i, m in zip(ids[: s + 1], mask[: s + 1]) if m)
            if query not in self.prompts:
                raise ValueError("a query is not one of the trainer's prompts: its caption is unknown")
            caption, spec = self.prompts[query]
            captions.append(caption)
            events.append(spec)
            completions.append([i for i, m in zip(ids[s:], mask[s:]) if m])  # <som>, codes, ...
        scores = torch.as_tensor(self.reward(captions, completions, events), dtype=torch.float32)
        hidden = scores.to(input_ids.device)[:, None, None].expand(-1, input_ids.shape[1], 1)
        return BaseModelOutput(last_hidden_state=hidden, hidden_states=(hidden,))


class PPOReward(nn.Module):
    """A reward in the shape TRL's PPO reads: ``backbone`` and ``score``."""

    base_model_prefix = "backbone"

    def __init__(self, backbone: nn.Module, head: nn.Module, scale: float = 1.0, shift: float = 0.0) -> None:
        super().__init__()
        self.backbone, self.score = backbone, _Affine(head, scale, shift)
        # TRL's prepare_deepspeed reads the model's config (its hidden size) before wrapping the reward
        self.config = getattr(backbone, "config", None) or SimpleNamespace(hidden_size=None)

    @classmethod
    def learned(cls, reward_model: nn.Module, scale: float = 1.0, shift: float = 0.0) -> PPOReward:
        return cls(reward_model.backbone, reward_model.score, scale, shift).eval().requires_grad_(False)

    @classmethod
    def from_function(cls, reward: MotionReward, tokenizer: Any, prompts: Any, scale=1.0, shift=0.0):
        """``prompts`` rows carry ``input_ids`` (the query), ``caption`` and ``events``."""
        som = tokenizer.convert_tokens_to_ids(MotionVocab.from_tokenizer(tokenizer).som)
        lookup = {}
        for dataset in prompts:
            events = dataset["events"] if "events" in dataset.column_names else [None] * len(dataset)
            for ids, caption, spec in zip(dataset["input_ids"], dataset["caption"], events):
                lookup[tuple(ids)] = (caption, spec)
        return cls(_MotionScores(reward, som, lookup), nn.Identity(), scale, shift).eval()


class _AdapterDisabled(nn.Module):
    """The reference policy: the policy with its LoRA adapter disabled (the same weights, no copy)."""

    def __init__(self, policy: nn.Module, peft_model: PeftModel) -> None:
        super().__init__()
        self.policy, self.peft_model = policy, peft_model
        self.config = policy.config  # read by TRL's prepare_deepspeed

    def forward(self, **kwargs: Any) -> Any:
        with self.peft_model.disable_adapter():
            return self.policy(**kwargs)


class TrainingStopped(Exception):
    """Raised where TRL's PPO loop draws an update's batch after a callback asked training to stop."""


class StoppableLoader:
    """TRL's PPO loop (``PPOTrainer.train``, TRL 1.12) draws each update's batch from ``trainer.dataloader``,
    cycling over it, and never reads ``control.should_training_stop``: this loader raises
    :class:`TrainingStopped` at the draw that follows a stop, so the update that asked for it is complete
    (logged, its checkpoint saved) and no further batch is drawn."""

    def __init__(self, loader: Any, trainer: Any) -> None:
        self.loader, self.trainer = loader, trainer

    def stop_if_asked(self) -> None:
        if self.trainer.control.should_training_stop:
            raise TrainingStopped

    def __iter__(self) -> Any:
        self.stop_if_asked()
        for batch in self.loader:
            yield batch
            self.stop_if_asked()

    def __len__(self) -> int:
        return len(self.loader)


class MotionPPOTrainer(AtomicCheckpoints, PPOTrainer):
    """PPO for T5 and LLaMA motion policies with a learned or a programmatic motion reward."""

    def __init__(
        self,
        args: Any,
        processing_class: Any,
        model: Any,
        reward: Any,
        value_model: nn.Module,
        train_dataset: Any,
        eval_dataset: Any = None,
        peft_config: Any = None,
        callbacks: Any = None,
    ) -> None:
        """``reward``: a MotionRewardModel, or a MotionReward (which finds each query's caption and event
        spec in the rows of ``train_dataset`` and ``eval_dataset``). ``eval_dataset``: held-out prompts, whose
        reward is logged every ``eval_steps`` updates when ``args.eval_strategy`` is "steps"; without it TRL's
        sample tables (``num_sample_generations``) read the first 8 training prompts."""
        if "input_ids" not in train_dataset.column_names:
            raise ValueError("the PPO prompt dataset needs 'input_ids' (queries ending in <som>)")
        set_dropout(model, 0.0)
        self.family = policy_family(model)
        self.som_id = processing_class.convert_tokens_to_ids(MotionVocab.from_tokenizer(processing_class).som)
        strategy = str(getattr(args.eval_strategy, "value", args.eval_strategy))
        self.heldout = eval_dataset is not None and len(eval_dataset) > 0 and strategy == "steps"
        eval_dataset = eval_dataset or train_dataset.select(range(min(len(train_dataset), 8)))
        scale, shift = getattr(args, "reward_scale", 1.0), getattr(args, "reward_shift", 0.0)
        if isinstance(reward, MotionReward):
            prompts = [train_dataset, eval_dataset]
            reward_module = PPOReward.from_function(reward, processing_class, prompts, scale, shift)
        else:
            reward_module = PPOReward.learned(reward, scale, shift)
        # LoRA is applied here, not by TRL: TRL's adapter-disabled reference reads `model.policy` on the
        # DDP-wrapped model, which fails with more than one process (trl 1.12)
        if peft_config is not None:
            model = get_peft_model(model, peft_config)
        policy = EncoderDecoderAsCausalLM(model, self.som_id) if self.family == "t5" else model
        if isinstance(model, PeftModel):
            ref_model = _AdapterDisabled(policy, model)
        elif self.family == "t5":
            frozen = copy.deepcopy(model).eval().requires_grad_(False)
            ref_model = EncoderDecoderAsCausalLM(frozen, self.som_id)
        else:
            ref_model = None  # TRL makes a frozen copy
        collator = QueryCollator(processing_class.pad_token_id)
        super().__init__(args, processing_class, policy, ref_model, reward_module, train_dataset, value_model,
                         data_collator=collator, eval_dataset=eval_dataset, callbacks=callbacks)  # fmt: skip
        self.dataloader = StoppableLoader(self.dataloader, self)

    def train(self, resume_from_checkpoint: str | bool | None = None) -> None:
        """TRL's PPO loop. ``resume_from_checkpoint`` (a ``checkpoint-N`` folder, or True / "latest" for the
        newest in ``output_dir``) restores the policy (adapter), the value model, the optimizer and the
        learning-rate schedule, and runs the updates left. TRL's loop has no resume of its own: its step and
        episode counters restart at 0 in the logs, and prompts are drawn from the start of the seeded order
        again."""
        if resume_from_checkpoint in (True, "latest"):
            resume_from_checkpoint = newest_complete_checkpoint(self.args.output_dir)
        if resume_from_checkpoint:
            folder = checked_checkpoint(resume_from_checkpoint)
            self.args.num_total_batches -= self._load_checkpoint(folder)
        try:
            super().train()
        except TrainingStopped:
            self.end_stopped_training()

    def end_stopped_training(self) -> None:
        """What TRL's loop does after its last update, for a loop a callback stopped
        (:class:`StoppableLoader`): the train-end callbacks, and the checkpoint they ask for."""
        self.state.episode -= self.args.batch_size  # TRL counts an update's episodes before drawing its batch
        self.control = self.callback_handler.on_train_end(self.args, self.state, self.control)
        if self.control.should_save:
            self._save_checkpoint(self.model, trial=None)
            self.control = self.callback_handler.on_save(self.args, self.state, self.control)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """The Trainer's log; after an update's metrics, when held-out prompts are due (every ``eval_steps``
        updates, the last update, or one a callback stopped training at), their mean reward as a row of its
        own, ``eval/scores`` at the same step."""
        super().log(logs, start_time)
        if not (self.heldout and "objective/kl" in logs):
            return
        step = self.state.global_step
        due = step % self.state.eval_steps == 0 or step >= self.state.max_steps
        if due or self.control.should_training_stop:
            scores = self.heldout_scores()
            super().log({HELDOUT_SCORES: sum(scores) / len(scores)})

    @torch.no_grad()
    def heldout_scores(self) -> list[float]:
        """One response per held-out prompt (``eval_dataset``), sampled as in training (``temperature``,
        ``response_length``, cut at the stop token) from the current policy, and scored by the training
        reward less ``missing_eos_penalty`` for a response that never ends, as TRL scores the training
        responses. Each process samples its share of the prompts, under a generator seeded by the seed and
        the step (training's random state is left as it was); every process returns all the scores."""
        args, pad, eos = self.args, self.processing_class.pad_token_id, self.processing_class.eos_token_id
        accelerator, size = self.accelerator, args.per_device_eval_batch_size
        queries = self.eval_dataset["input_ids"][accelerator.process_index :: accelerator.num_processes]
        device = accelerator.device
        kwargs = {"max_new_tokens": args.response_length, "temperature": args.temperature + 1e-7,
                  "top_k": 0.0, "top_p": 1.0, "do_sample": True}  # fmt: skip
        gather = args.ds3_gather_for_generation
        unwrap = unwrap_model_for_generation(
            self.model, accelerator, gather_deepspeed3_params=gather, generation_kwargs=kwargs
        )
        scores: list[float] = []
        cuda = [torch.cuda.current_device()] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), unwrap as unwrapped:
            torch.manual_seed(args.seed + self.state.global_step)
            for start in range(0, len(queries), size):
                rows = [{"input_ids": ids} for ids in queries[start : start + size]]
                query = self.data_collator(rows)["input_ids"].to(device)
                context = query.shape[1]
                generated, _ = batch_generation(
                    unwrapped.policy, query, len(query), pad, GenerationConfig(**kwargs)
                )
                response = generated[:, context:]
                if self.stop_token_id is not None:
                    response = truncate_response(self.stop_token_id, pad, response)
                _, score, _ = get_reward(self.reward_model, torch.cat((query, response), 1), pad, context)
                if args.missing_eos_penalty is not None:
                    score[~(response == eos).any(-1)] -= args.missing_eos_penalty
                scores += score.float().cpu().tolist()
        return gather_object(scores)

    def _load_checkpoint(self, folder: Path) -> int:
        """Loads what :meth:`_save_checkpoint` wrote; returns the number of updates it had done."""
        policy = self.policy_model_for_saving()
        if isinstance(policy, PeftModel):
            set_peft_model_state_dict(policy, load_file(folder / "adapter_model.safetensors"))
        else:
            policy.load_state_dict(type(policy).from_pretrained(folder).state_dict())
        value = self.accelerator.unwrap_model(self.model).value_model
        value.load_state_dict(type(value).from_pretrained(folder / "value_model").state_dict())
        for name, target in (("optimizer.pt", self.optimizer), ("scheduler.pt", self.lr_scheduler)):
            # written by the Trainer with torch.save; tensors and numbers only, so no pickled code runs
            target.load_state_dict(torch.load(folder / name, map_location="cpu", weights_only=True))
        return int(json.loads((folder / "trainer_state.json").read_text())["global_step"])

    def policy_model_for_saving(self) -> nn.Module:
        """The policy as ``load_policy`` reads it: the PEFT model (an adapter) or the full model."""
        policy = self.accelerator.unwrap_model(self.model).policy
        return policy.model if isinstance(policy, EncoderDecoderAsCausalLM) else policy

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Only the policy (safetensors) and the tokenizer: the adapter folder other recipes load."""
        output_dir = output_dir or self.args.output_dir
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            self.policy_model_for_saving().save_pretrained(output_dir, safe_serialization=True)
            self.processing_class.save_pretrained(output_dir)

    def checkpoint_model(self) -> nn.Module:
        return self.policy_model_for_saving()

    def finish_checkpoint(self, folder: Path) -> None:
        """TRL's checkpoint (policy, optimizer, scheduler, state) plus the value model, for resuming."""
        value = self.accelerator.unwrap_model(self.model).value_model
        value.save_pretrained(folder / "value_model", safe_serialization=True)
        super().finish_checkpoint(folder)


# ----------------------------------------------------------------------------------------- recipe


def get_ppo_prompts(config: Any, tokenizer: Any) -> Any:
    """The PPO prompts; for the event-judge reward only those with an event spec (segment captions of
    HumanML3D-style timelines have none)."""
    prompts = prompt_rows(load_tokenized_items(config), tokenizer)
    if config.reward_function == "event_judge":
        prompts = prompts.filter(lambda row: bool(row["events"]), desc="Prompts with events")
        if len(prompts) == 0:
            raise ValueError(f"{config.dataset_name}: no prompt has an event spec for the event_judge reward")
    return prompts


def get_ppo_heldout_prompts(config: Any, tokenizer: Any) -> Any:
    """The held-out prompts (as :func:`get_ppo_prompts`, from the ``eval_split`` of the same tokenized
    dataset): a subset of ``eval_prompts``, seeded by ``config.seed``; None when the run measures none
    (``eval_prompts`` 0 or ``eval_strategy`` no)."""
    if not config.heldout_eval:
        return None
    prompts = get_ppo_prompts(config.heldout_config(), tokenizer)
    if len(prompts) == 0:
        raise ValueError(f"{config.dataset_name}: split {config.eval_split!r} has no held-out prompt")
    return prompts.shuffle(seed=config.seed).select(range(min(config.eval_prompts, len(prompts))))


def get_reward_and_value(config: Any, tokenizer: Any) -> tuple[Any, Any]:
    """(reward, value model): the learned reward model or ``config.reward_function`` on decoded motions;
    the value model is the reward model with a fresh head (seeded). The benchmark's evaluator is refused as
    the reward model (:func:`~motion_align.rewards.reward_guard.refuse_evaluator`)."""
    path = config.reward_model_path
    check_input(path, "reward model (recipes/reward_model.py)", "--reward_model_path")
    refuse_evaluator(path, "--reward_model_path")
    value = MotionRewardModel.from_pretrained(path)
    value.reset_head(seed=config.seed)
    if config.reward_function is None:
        reward = MotionRewardModel.from_pretrained(path)
    else:
        motion_tokenizer = load_motion_tokenizer(config)
        reward = build_motion_reward(
            config.reward_function, tokenizer, motion_tokenizer, config.retrieval_model
        )
    return reward, value


def save_ppo_result(trainer: Any, tokenizer: Any, config: Any, prompts: int, seconds: float) -> Path | None:
    """Every process: the policy (an adapter or whole); main process: the folder description and training
    info (:func:`~motion_align.trainers.recipe.save_policy_folder`), the logged metrics (``ppo_run.json``:
    ``log`` the updates, ``eval`` the held-out rewards, ``kl_budget`` the KL budget's record) and the KL /
    reward (training and held-out) / value-loss curves. Returns the folder on the main process, None on the
    others."""
    trainer.save_model(config.output_dir)
    if not trainer.accelerator.is_main_process:
        return None
    info = training_info(config, "PPO", "recipes/ppo.py", prompts)
    budget = kl_budget_summary(trainer)
    if budget is not None and budget["coefficients"]:  # an adapting budget raised args.kl_coef (TRL reads it)
        info["hyperparameters"]["kl_coef"] = budget["coefficients"][0]["coefficient"]  # the configured one
    out = save_policy_folder(config.output_dir, trainer.policy_model_for_saving(), tokenizer, info)
    logs = [row for row in trainer.state.log_history if "objective/kl" in row]
    heldout = [row for row in trainer.state.log_history if HELDOUT_SCORES in row]
    run = {**distribution(trainer), "train_seconds": round(seconds, 1), "log": logs, "eval": heldout,
           "kl_budget": budget}  # fmt: skip
    write_json(out / RUN_FILE, run)
    if logs:
        title = f"PPO, reward: {Path(config.reward).name}"
        plot_curves(logs + heldout, out / CURVES_FILE, CURVES, title=title)
    return out
