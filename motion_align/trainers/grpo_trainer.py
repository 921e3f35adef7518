"""GRPO of decoder-only motion policies through TRL's ``GRPOTrainer``, which is used as it is: what is ours
is the prompts (from a tokenized dataset), the motion rewards as GRPO reward functions, and the run record.

GRPO (Shao et al. 2024, "DeepSeekMath", arXiv 2402.03300) samples a group of G completions per prompt and
uses each completion's reward minus its group's mean (over the group's std) as its advantage, so it needs
no value model; TRL's ``GRPOTrainer`` implements it for causal LMs only, hence LLaMA-family policies here
(T5 policies take ``recipes/ppo.py``). A completion is a whole motion: the start-of-motion token, the codes,
the end token and eos; the rewards of :mod:`motion_align.rewards.motion_rewards` score it as a motion (an
unusable one scores 0). The saved folder is the same self-describing adapter folder as the DPO and SoPo
recipes write (see :mod:`motion_align.trainers.recipe`).

Two things TRL's defaults get wrong for motion policies, found when GRPO did not learn (docs/RESULTS.md):

- TRL samples from the whole vocabulary, text tokens included, so a group's completions could all be
  unusable and score 0 (no advantage, no gradient). Masking the text tokens in sampling only is not enough:
  the loss then pushes the probability that negative advantages take off motion tokens onto text tokens,
  which are never sampled, so never pushed back. :class:`MotionOnlyLogits` restricts the policy itself to
  motion tokens and eos, for sampling and for the log-probabilities of the loss and the KL alike.
- With prompts ending in the start-of-motion token (as PPO's queries do), the step that starts a motion is
  never in a completion: nothing trains it, and it drifts. On a tiny LLaMA the probability of starting a
  motion after the prompt fell from 0.82 to 0.014 in 20 full fine-tuning steps, so that its own sampler then
  rarely made a motion while TRL's rewards rose. Prompts here end with the caption; the completion starts
  the motion, and a completion that does not start one scores as an unusable motion.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from trl import GRPOTrainer

from motion_align.plots import plot_curves
from motion_align.policy.vocab import MotionVocab
from motion_align.rewards.motion_rewards import EventJudgeReward, MotionReward, build_motion_reward
from motion_align.trainers.checkpointing import AtomicCheckpoints
from motion_align.trainers.kl_budget import kl_budget_summary
from motion_align.trainers.recipe import check_input, load_tokenized_items, prompt_rows, save_aligned_policy

logger = logging.getLogger(__name__)

GRPO_RUN = "grpo_run.json"
CURVES_FILE = "training_curves.png"


class MotionGRPOTrainer(AtomicCheckpoints, GRPOTrainer):
    """TRL's ``GRPOTrainer`` with crash-safe checkpoints, on a policy restricted to motion tokens
    (:class:`MotionOnlyLogits`)."""

    def __init__(self, model: Any, *args: Any, **kwargs: Any) -> None:
        tokenizer = kwargs.get("processing_class")
        if tokenizer is None:
            raise ValueError("MotionGRPOTrainer needs processing_class: the policy's text tokenizer")
        self.motion_only = MotionOnlyLogits(model, tokenizer)
        super().__init__(model, *args, **kwargs)


def get_grpo_prompts(config: Any, tokenizer: Any) -> Any:
    """One row per caption of the tokenized dataset's ``dataset_split`` (items subsampled to
    ``data_fraction``, see :func:`~motion_align.trainers.recipe.load_tokenized_items`): ``prompt`` (the
    formatted caption; the completion starts the motion), ``caption`` and ``events`` (JSON, ``""`` for
    none)."""
    items = load_tokenized_items(config)
    if "event_judge" in config.reward_functions and "events" not in items.column_names:
        raise ValueError(
            f"{config.dataset_name}: the event_judge reward needs the column ['events']; missing ['events']"
        )
    prompts = prompt_rows(items, tokenizer, with_ids=False, with_start=False)
    if len(prompts) == 0:
        raise ValueError(f"{config.dataset_name}: split {config.dataset_split!r} has no captions")
    return prompts


class GRPOMotionReward:
    """A :class:`~motion_align.rewards.motion_rewards.MotionReward` as a GRPOTrainer reward function.

    TRL calls it with the prompts, the decoded completions (the text after the prompt: the motion, from its
    start token) and every other dataset column as keyword lists; it returns one reward per
    completion, logged under ``__name__`` (``rewards/<name>/mean``). The event-judge reward returns None
    for a prompt without an event spec (a HumanML3D caption): TRL then leaves that reward out for that
    completion rather than counting it as 0.
    """

    def __init__(self, reward: MotionReward, start_token: str) -> None:
        self.reward, self.start_token = reward, start_token
        self.__name__ = reward.__name__
        self.needs_events = isinstance(reward, EventJudgeReward)

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        caption: Sequence[str],
        events: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        # the motion is the completion; after a prompt that ended with the start token (as PPO's queries do)
        # it is the start token and the completion. A completion that does not start a motion is not one.
        starts = [self.start_token if p.endswith(self.start_token) else "" for p in prompts]
        motions = [start + completion for start, completion in zip(starts, completions, strict=True)]
        specs = list(events) if events is not None else [""] * len(motions)
        scored = [i for i, spec in enumerate(specs) if spec or not self.needs_events]
        out: list[float | None] = [None] * len(motions)
        if scored:
            values = self.reward([caption[i] for i in scored], [motions[i] for i in scored],
                                 [specs[i] for i in scored])  # fmt: skip
            for i, value in zip(scored, values, strict=True):
                out[i] = float(value)
        return out


class MotionOnlyLogits:
    """A forward hook that lowers every logit but the motion tokens' (codes, start, end) and eos by
    ``penalty``, so that the policy's distribution is the one ``motion-align generate`` samples from
    (:class:`~motion_align.policy.generation.SamplingConfig` ``motion_only``), in TRL's sampling and in the
    log-probabilities its loss and KL read alike. ``handle.remove()`` takes it off."""

    def __init__(self, model: Any, tokenizer: Any, penalty: float = 1e4) -> None:
        vocab = MotionVocab.from_tokenizer(tokenizer)
        allowed = [*vocab.ids(tokenizer)[: vocab.codebook_size + 2], tokenizer.eos_token_id]
        size = model.get_output_embeddings().weight.shape[0]
        self.offset = torch.full((size,), -float(penalty))
        self.offset[allowed] = 0.0
        self.handle = model.register_forward_hook(self)

    def __call__(self, module: Any, args: Any, output: Any) -> Any:
        output.logits = output.logits + self.offset.to(output.logits.device, output.logits.dtype)
        return output


def get_reward_functions(config: Any, tokenizer: Any, motion_tokenizer: Any) -> list[GRPOMotionReward]:
    """One :class:`GRPOMotionReward` per name in ``config.reward_functions`` (``retrieval`` loads the model
    at ``config.retrieval_model``, ``learned`` the one at ``config.reward_model_path``); TRL sums them with
    ``config.reward_weights``."""
    for name, path, flag in (("retrieval", config.retrieval_model, "--retrieval_model"),
                             ("learned", config.reward_model_path, "--reward_model_path")):  # fmt: skip
        if name in config.reward_functions and path:
            check_input(path, f"{name} reward model", flag)
    som = MotionVocab.from_tokenizer(tokenizer).som
    rewards = [build_motion_reward(name, tokenizer, motion_tokenizer, config.retrieval_model,
                                   config.reward_model_path) for name in config.reward_functions]  # fmt: skip
    return [GRPOMotionReward(reward, som) for reward in rewards]


def get_heldout_prompts(config: Any, tokenizer: Any) -> Any:
    """The held-out prompts, TRL's ``eval_dataset``: :func:`get_grpo_prompts` of the ``eval_split`` of the
    same tokenized dataset (all its items), a subset of ``eval_prompts`` seeded by ``config.seed``; None when
    the run measures none (``eval_prompts`` 0 or ``eval_strategy`` no). GRPOTrainer's evaluation samples
    ``num_generations_eval`` completions per prompt and logs their mean reward as ``eval_reward`` (each
    function's as ``eval_rewards/<name>/mean``)."""
    if not config.heldout_eval:
        return None
    prompts = get_grpo_prompts(config.heldout_config(), tokenizer)
    return prompts.shuffle(seed=config.seed).select(range(min(config.eval_prompts, len(prompts))))


def save_grpo_result(
    trainer: Any, tokenizer: Any, config: Any, info: dict[str, Any], train_metrics: dict[str, Any],
    push: bool = False,
) -> Path | None:  # fmt: skip
    """:func:`~motion_align.trainers.recipe.save_aligned_policy` with ``grpo_run.json`` (the world size, the
    train metrics, the logged rewards, the held-out rewards under ``eval`` and the KL budget's record under
    ``kl_budget``), then the curves PNG: KL to the reference, the summed reward and each reward function's
    mean, each beside its value on the held-out prompts. Every process calls it; the main process gets the
    folder, the others None."""
    history = trainer.state.log_history
    rewards = [entry for entry in history if "reward" in entry]
    heldout = [entry for entry in history if "eval_reward" in entry]
    run = {"world_size": trainer.accelerator.num_processes, "train": train_metrics, "rewards": rewards,
           "eval": heldout, "kl_budget": kl_budget_summary(trainer)}  # fmt: skip
    out = save_aligned_policy(trainer, tokenizer, config, info, GRPO_RUN, run, push)
    logs = [row for row in history if "kl" in row or "reward" in row or "eval_reward" in row]
    if out is not None and logs:
        keys = ["reward", *(f"rewards/{name}_reward/mean" for name in config.reward_functions)]
        panels = ["kl", *((key, f"eval_{key}") for key in keys)]  # TRL prefixes evaluation metrics "eval_"
        plot_curves(logs, out / CURVES_FILE, panels, title="GRPO")
    return out
