"""Programmatic rewards on generated motions, for online RL (PPO, GRPO).

A :class:`MotionReward` turns completions (motion-token strings or ids, each starting with the start-of-motion
token) into motions with the policy's VQ-VAE, in one decode call per batch, and scores each against its
caption:

- :class:`RetrievalReward`: the TMR-style retrieval model's text-motion cosine, mapped to [0, 1]
  (:func:`~motion_align.rewards.retrieval.unit_score`), as SoPo's sampler scores candidates;
- :class:`EventJudgeReward`: the event judge's score in [0, 1] (integrity, order and counts, see
  :mod:`motion_align.rewards.event_judge`) against the prompt's event spec.

A completion that is not a usable motion (a decoding problem, or outside 40 to 196 frames) gets
``invalid_score`` (0 by default: the lowest reward either model gives), so RL learns to finish motions.

Neither is the benchmark's evaluator: training against the model that scores the benchmark rewards
hacking it (docs/design.md).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from motion_align.motion.events import Event
from motion_align.policy.generation import decode_features, usable_motion
from motion_align.policy.vocab import MotionVocab

#: Rewards on decoded motions (PPO's ``reward_function``).
REWARD_FUNCTIONS = ("retrieval", "event_judge")
#: GRPO's ``reward_functions``: those and the learned reward model's score.
GRPO_REWARD_FUNCTIONS = (*REWARD_FUNCTIONS, "learned")


def parse_events(spec: Any, where: str = "events") -> list[Event] | None:
    """An event spec from the corpus' ``events`` column (a JSON list, ``""`` for none) or a list of events."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not a JSON list of events ({err})") from None
    if not isinstance(spec, list):
        raise ValueError(f"{where}: expected a list of events, got {type(spec).__name__}")
    return [e if isinstance(e, Event) else Event.from_dict(e) for e in spec]


class MotionReward(ABC):
    """Base class: ``reward(captions, completions, events=None) -> np.ndarray`` of shape (B,); subclasses
    say how a valid motion is scored (:meth:`score_valid`)."""

    name = "motion"

    def __init__(self, tokenizer: Any, motion_tokenizer: Any, invalid_score: float = 0.0) -> None:
        self.tokenizer, self.motion_tokenizer, self.invalid_score = tokenizer, motion_tokenizer, invalid_score
        self.vocab = MotionVocab.from_tokenizer(tokenizer)
        if self.vocab.codebook_size != motion_tokenizer.config.codebook_size:
            raise ValueError(
                f"the policy's motion tokens cover {self.vocab.codebook_size} codes but the motion tokenizer "
                f"has {motion_tokenizer.config.codebook_size}"
            )

    @property
    def __name__(self) -> str:  # TRL's GRPOTrainer names each reward function's log column after this
        return f"{self.name}_reward"

    def motions(self, completions: Sequence[Any]) -> tuple[list[np.ndarray | None], np.ndarray]:
        """Raw features (4N, 263) of each completion (None where there are no codes) and which are valid."""
        decoded = self.vocab.batch_decode(list(completions), self.tokenizer)
        features = decode_features(self.motion_tokenizer, [d.codes for d in decoded])
        valid = np.array([usable_motion(d.problems, f) for d, f in zip(decoded, features)], dtype=bool)
        return features, valid

    @torch.no_grad()
    def __call__(
        self, captions: Sequence[str], completions: Sequence[Any], events: Sequence[Any] | None = None
    ) -> np.ndarray:
        if len(captions) != len(completions) or (events is not None and len(events) != len(captions)):
            raise ValueError(
                f"{len(captions)} captions, {len(completions)} completions and "
                f"{'no' if events is None else len(events)} event specs: expected one of each per sample"
            )
        features, valid = self.motions(completions)
        scores = np.full(len(captions), self.invalid_score, dtype=np.float64)
        where = np.flatnonzero(valid)
        if where.size:
            picked_events = None if events is None else [events[i] for i in where]
            scores[where] = self.score_valid(
                [captions[i] for i in where], [features[i] for i in where], picked_events
            )
        return scores

    @abstractmethod
    def score_valid(
        self, captions: list[str], features: list[np.ndarray], events: list[Any] | None
    ) -> np.ndarray:
        """Rewards (V,) of the valid motions (raw features) of ``captions``."""


class RetrievalReward(MotionReward):
    """The retrieval model's caption-motion agreement in [0, 1]."""

    name = "retrieval"

    def __init__(self, tokenizer: Any, motion_tokenizer: Any, retrieval: Any, invalid_score: float = 0.0):
        super().__init__(tokenizer, motion_tokenizer, invalid_score)
        self.retrieval = retrieval

    def score_valid(self, captions, features, events):
        return self.retrieval.score(captions, features).cpu().numpy()


class EventJudgeReward(MotionReward):
    """The event judge's score in [0, 1] against each prompt's event spec (the ``events`` column)."""

    name = "event_judge"

    def __init__(self, tokenizer: Any, motion_tokenizer: Any, judge: Any = None, invalid_score: float = 0.0):
        from motion_align.rewards.event_judge import EventJudge

        super().__init__(tokenizer, motion_tokenizer, invalid_score)
        self.judge = judge or EventJudge()

    def score_valid(self, captions, features, events):
        if events is None:
            raise ValueError("the event-judge reward needs each prompt's event spec: an 'events' column")
        out = np.empty(len(captions))
        for i, (caption, spec, motion) in enumerate(zip(captions, events, features)):
            parsed = parse_events(spec, where=f"events of {caption!r}")
            if parsed is None:
                raise ValueError(f"prompt {caption!r} has no event spec: the event judge cannot score it")
            out[i] = self.judge.score(parsed, motion)
        return out


class LearnedReward:
    """The learned reward model's score (:mod:`motion_align.rewards.reward_model`) as a reward function of
    captions and completions (motion strings starting with the start token); events are not used."""

    name = "learned"
    __name__ = "learned_reward"

    def __init__(self, tokenizer: Any, reward_model: Any, batch_size: int = 64) -> None:
        self.tokenizer, self.reward_model, self.batch_size = tokenizer, reward_model.eval(), batch_size
        self.vocab = MotionVocab.from_tokenizer(tokenizer)

    @torch.no_grad()
    def __call__(self, captions: Sequence[str], completions: Sequence[str], events: Any = None) -> np.ndarray:
        from motion_align.policy.causal_view import pad_rows, query_ids, response_ids

        device = next(self.reward_model.parameters()).device
        out = []
        for start in range(0, len(captions), self.batch_size):
            part = slice(start, start + self.batch_size)
            queries = [query_ids(self.tokenizer, c, self.vocab) for c in captions[part]]
            responses = [response_ids(self.tokenizer, m, self.vocab) for m in completions[part]]
            batch = pad_rows(queries, responses, self.tokenizer.pad_token_id)
            logits = self.reward_model(**{k: v.to(device) for k, v in batch.items()}).logits
            out.append(logits[:, 0].float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)


def build_motion_reward(
    name: str,
    tokenizer: Any,
    motion_tokenizer: Any,
    retrieval_model: str | None = None,
    reward_model_path: str | None = None,
):
    """A reward by name (:data:`GRPO_REWARD_FUNCTIONS`); ``retrieval`` loads the model at
    ``retrieval_model``, ``learned`` the reward model at ``reward_model_path``, neither of which may be the
    metrics evaluator (:func:`~motion_align.rewards.reward_guard.refuse_evaluator`)."""
    from motion_align.rewards.reward_guard import refuse_evaluator

    if name == "learned":
        if not reward_model_path:
            raise ValueError("the learned reward needs a reward model: pass --reward_model_path")
        refuse_evaluator(reward_model_path, "--reward_model_path")
        from motion_align.rewards.reward_model import MotionRewardModel

        return LearnedReward(tokenizer, MotionRewardModel.from_pretrained(reward_model_path))
    if name == "event_judge":
        return EventJudgeReward(tokenizer, motion_tokenizer)
    if name == "retrieval":
        if not retrieval_model:
            raise ValueError("the retrieval reward needs a retrieval model: pass --retrieval_model")
        refuse_evaluator(retrieval_model, "--retrieval_model")
        from motion_align.rewards.retrieval import TextMotionRetrieval

        model = TextMotionRetrieval.from_pretrained(retrieval_model).eval()
        return RetrievalReward(tokenizer, motion_tokenizer, model)
    raise ValueError(f"unknown reward function {name!r}: expected one of {GRPO_REWARD_FUNCTIONS}")
