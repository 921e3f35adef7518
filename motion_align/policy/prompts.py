"""The text a policy reads before a motion: its prompt template, recorded with its text tokenizer.

A template says how a caption (and, for a policy trained with lengths, the asked number of frames) becomes
the prompt. A policy folder records its template in ``tokenizer_config.json`` under
``motion_prompt_template``, as Hugging Face tokenizers record their chat template. Saving the tokenizer saves
it, and loading the tokenizer restores it (:func:`template_of`). So generation, SFT, DPO, KTO, SoPo, PPO and
GRPO build the prompts the policy was trained on. A recipe's ``prompt_template`` names a preset that
overrides it (:func:`set_template`), and the run's output then records the preset.

Presets:

- ``default``: the toolkit's. ``"Generate motion: {caption}"``, which is MotionGPT's test-time prompt; the
  length prompt gives seconds at the dataset's frame rate, HumanML3D's 20 fps unless told (KIT-ML: 12.5)
  (``"Generate motion of 4.8 seconds: ..."``; MotionGPT's
  instruction set has such templates too, ``caption_framelen``); a caption without a final sentence mark
  gets a full stop. (A decoder-only policy learns to start the motion after the caption's
  last token. For a last token it never saw there it has no such habit, and sampling then often skips the
  start-of-motion token.)
- ``motiongpt``: MotionGPT's own (``mGPT/archs/mgpt_lm.py``, ``generate_conditional``). The same prompt,
  the length prompt ``"Generate motion with {frames} frames: ..."``, and captions as they are.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from motion_align.motion.skeleton import FPS

TEMPLATE_KEY = "motion_prompt_template"


@dataclass(frozen=True)
class PromptTemplate:
    """``prompt`` holds ``{caption}``; ``length_prompt`` holds ``{caption}`` and ``{frames}`` or
    ``{seconds}``; ``full_stop`` ends a caption without a sentence mark with one."""

    prompt: str = "Generate motion: {caption}"
    length_prompt: str = "Generate motion of {seconds:.1f} seconds: {caption}"
    full_stop: bool = True

    def __post_init__(self) -> None:
        if "{caption}" not in self.prompt:
            raise ValueError(f"prompt template {self.prompt!r}: no {{caption}} placeholder")
        if "{caption}" not in self.length_prompt or not any(
            key in self.length_prompt for key in ("{frames}", "{seconds")
        ):
            raise ValueError(
                f"length prompt template {self.length_prompt!r}: needs {{caption}}, and {{frames}} or "
                "{seconds}"
            )

    def format(self, caption: str, frames: int | None = None, fps: float | None = None) -> str:
        """The prompt of ``caption``; with ``frames``, the length-conditioned one (seconds at ``fps``, the
        dataset's frame rate: HumanML3D's 20 when None, 12.5 for KIT-ML)."""
        caption = caption.strip()
        if self.full_stop and caption and caption[-1] not in ".!?":
            caption += "."
        if frames is None:
            return self.prompt.format(caption=caption)
        if isinstance(frames, bool) or not isinstance(frames, numbers.Integral) or frames < 1:
            raise ValueError(f"frames must be a positive number of frames, got {frames!r}")
        return self.length_prompt.format(caption=caption, frames=int(frames), seconds=frames / (fps or FPS))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT = PromptTemplate()
MOTIONGPT = PromptTemplate(
    prompt="Generate motion: {caption}",
    length_prompt="Generate motion with {frames} frames: {caption}",
    full_stop=False,
)
PRESETS = {"default": DEFAULT, "motiongpt": MOTIONGPT}


def preset(name: str) -> PromptTemplate:
    """The template a recipe's ``prompt_template`` names."""
    if name not in PRESETS:
        raise ValueError(f"prompt_template: one of {sorted(PRESETS)}, not {name!r}")
    return PRESETS[name]


def template_of(tokenizer: Any) -> PromptTemplate:
    """The template ``tokenizer`` records (the default one when it records none)."""
    recorded = getattr(tokenizer, "init_kwargs", {}).get(TEMPLATE_KEY)
    if recorded is None:
        return DEFAULT
    if not isinstance(recorded, dict):
        raise ValueError(f"tokenizer_config.json: {TEMPLATE_KEY} must be an object, got {recorded!r:.80}")
    try:
        return PromptTemplate(**recorded)
    except (TypeError, ValueError) as error:
        raise ValueError(f"tokenizer_config.json: {TEMPLATE_KEY}: {error}") from None


def set_template(tokenizer: Any, template: PromptTemplate) -> None:
    """Record ``template`` in ``tokenizer`` (saved with it in ``tokenizer_config.json``)."""
    tokenizer.init_kwargs[TEMPLATE_KEY] = template.to_dict()


# ----------------------------------------------------------------------------------------- checks


def prompt_token_limit(model: Any, tokenizer: Any) -> int | None:
    """Most tokens a prompt may have: the text tokenizer's ``model_max_length`` when it sets one, else the
    model's ``max_position_embeddings`` / ``n_positions``; None when neither bounds it (T5's relative
    positions)."""
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 10**9:  # transformers marks "unset" with int(1e30)
        return limit
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_captions(prompts: Sequence[str]) -> None:
    """Refuse a blank caption (empty or whitespace): its prompt would ask for a motion of nothing.
    Prompts are numbered from 0, as ``prompt_index`` in the results."""
    for index, caption in enumerate(prompts):
        if not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"prompt {index} is blank: give a caption")


def check_prompt_lengths(
    model: Any, tokenizer: Any, prompts: Sequence[str], frames: Sequence[int | None] | None = None
) -> None:
    """Refuse, before anything is generated, a caption whose formatted prompt has more tokens than
    :func:`prompt_token_limit`: the tokenizer would cut it silently, or the model fail mid-batch.

    Prompts are numbered from 0, as ``prompt_index`` in the results. ``frames`` as for
    :func:`~motion_align.policy.generation.generate_motions` (one per caption or one per sample); each asked
    length is checked.
    """
    limit = prompt_token_limit(model, tokenizer)
    if limit is None or not prompts:
        return
    template = template_of(tokenizer)
    per_caption = 1 if frames is None else max(1, len(frames) // len(prompts))
    for index, caption in enumerate(prompts):
        asked = [None] if frames is None else frames[index * per_caption : (index + 1) * per_caption]
        texts = [template.format(caption, n) for n in asked]
        count = max(len(tokenizer(text, verbose=False)["input_ids"]) for text in texts)
        if count > limit:
            raise ValueError(
                f"prompt {index} has {count} tokens, more than the policy's limit of {limit}: shorten it"
            )
