"""The learned reward model: a scalar head on the policy's backbone, for T5 and LLaMA policies.

As in RLHF (Stiennon et al. 2020, arXiv 2009.01325; Ouyang et al. 2022), the reward model starts from the
SFT policy without its LM head and reads a causal motion row (:mod:`motion_align.policy.causal_view`:
``[prompt..., <som>] + [codes..., <eom>, eos]``); a linear head maps the hidden state at the row's last
token to the reward. The same class is PPO's value model (a fresh head, read at every response token).

It is a ``PreTrainedModel`` (``save_pretrained`` / ``from_pretrained``, safetensors) whose config records
the backbone's config and the family; ``base_model_prefix`` ("backbone") and ``score`` follow
``AutoModelForSequenceClassification``, which is what TRL's reward and value code reads.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import LlamaConfig, LlamaModel, PretrainedConfig, PreTrainedModel, T5Config, T5Model
from transformers.modeling_outputs import SequenceClassifierOutput

from motion_align.policy.causal_view import EncoderDecoderTrunk, last_positions
from motion_align.policy.checkpoint_checks import checked_from_pretrained
from motion_align.policy.model import policy_family
from motion_align.policy.vocab import MotionVocab
from motion_tokenizer.checkpoint import CheckpointError, check_local_folder, read_json_object

_DROP = ("architectures", "transformers_version", "_name_or_path", "model_type", "torch_dtype", "dtype")


class MotionRewardConfig(PretrainedConfig):
    """``family`` ("t5" or "llama"), the backbone's config as a dict and the start-of-motion token id."""

    model_type = "motion_reward"

    def __init__(
        self, family: str = "t5", backbone: dict | None = None, som_token_id: int | None = None, **kwargs: Any
    ) -> None:
        kwargs["num_labels"] = 1
        super().__init__(**kwargs)
        self.family, self.backbone, self.som_token_id = family, backbone or {}, som_token_id

    def backbone_config(self) -> PretrainedConfig:
        return (T5Config if self.family == "t5" else LlamaConfig)(**self.backbone)


class MotionRewardModel(PreTrainedModel):
    """Scalar reward of causal motion rows: ``forward(input_ids, attention_mask).logits`` is (B, 1)."""

    config_class = MotionRewardConfig
    base_model_prefix = "backbone"

    def __init__(self, config: MotionRewardConfig) -> None:
        super().__init__(config)
        inner = config.backbone_config()
        if config.family == "t5":
            t5 = T5Model(inner)
            # one embedding module for encoder, decoder and `shared` (transformers 5 keeps three tied ones),
            # so that NEFTune's hook on the input embeddings reaches both the prompt and the motion
            t5.encoder.embed_tokens = t5.decoder.embed_tokens = t5.shared
            self.backbone = EncoderDecoderTrunk(t5, config.som_token_id, inner.decoder_start_token_id)
            hidden = inner.d_model
        else:
            self.backbone = LlamaModel(inner)
            hidden = inner.hidden_size
        self.score = nn.Linear(hidden, 1, bias=False)
        self.post_init()
        self.reset_head()

    def reset_head(self, seed: int | None = None) -> None:
        """A fresh head, normal with std 1 / sqrt(D + 1) (Stiennon et al. 2020): rewards start near 0."""
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        d = self.score.in_features
        with torch.no_grad():
            values = torch.randn(self.score.weight.shape, generator=generator) / (d + 1) ** 0.5
            self.score.weight.copy_(values.to(self.score.weight))

    def get_expanded_tied_weights_keys(self, all_submodels: bool = False) -> dict:
        """T5's encoder and decoder embed with its shared matrix: saved once, tied again on loading."""
        if self.config.family != "t5":
            return {}
        return {f"backbone.model.{part}.embed_tokens.weight": "backbone.model.shared.weight"
                for part in ("encoder", "decoder")}  # fmt: skip

    def _init_weights(self, module: nn.Module) -> None:  # the backbone comes from a policy; see from_policy
        pass

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any) -> Any:
        """``PreTrainedModel.from_pretrained``, whose bad inputs are one-line errors naming the path.

        A missing local folder is a ``FileNotFoundError`` (not a Hub lookup); a ``config.json`` that is
        not JSON or lacks ``family`` / ``backbone``, and weights that are unreadable, mis-sized or
        incomplete, are ``ValueError``s naming the file (:func:`~motion_align.policy.model.
        checked_from_pretrained`): transformers would otherwise fill a missing tensor at random.
        """
        name = str(pretrained_model_name_or_path)
        load = super().from_pretrained
        if args or kwargs.get("output_loading_info"):
            return load(name, *args, **kwargs)  # the full transformers interface, unchecked
        folder = check_local_folder(name, "reward model")
        config = kwargs.pop("config", None)
        if config is None:
            if folder is not None:
                file = folder / "config.json"
                missing = [key for key in ("family", "backbone") if key not in read_json_object(file)]
                if missing:
                    raise CheckpointError(f"{file}: lacks the fields {missing} of a motion reward model")
            shared = {
                k: kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only") if k in kwargs
            }
            config = MotionRewardConfig.from_pretrained(name, **shared)
        return checked_from_pretrained(cls, name, config, load=load, **kwargs)

    @classmethod
    def from_policy(cls, policy: PreTrainedModel, tokenizer: Any, seed: int | None = None) -> Any:
        """A reward model whose backbone is ``policy``'s (a copy, without the LM head) and a fresh head."""
        family = policy_family(policy)
        som = tokenizer.convert_tokens_to_ids(MotionVocab.from_tokenizer(tokenizer).som)
        backbone = {k: v for k, v in policy.config.to_dict().items() if k not in _DROP}
        model = cls(MotionRewardConfig(family=family, backbone=backbone, som_token_id=som,
                                       pad_token_id=tokenizer.pad_token_id))  # fmt: skip
        state = policy.state_dict()
        target = model.backbone.model if family == "t5" else model.backbone
        if family == "llama":
            state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
        missing, unexpected = target.load_state_dict(state, strict=False)
        unexpected = [k for k in unexpected if not k.startswith("lm_head")]
        if missing or unexpected:
            raise ValueError(f"policy weights do not fit the reward backbone: missing {missing[:4]}, "
                             f"unexpected {unexpected[:4]}")  # fmt: skip
        model.reset_head(seed)
        return model.to(policy.dtype)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)  # left padding: the prompt starts at 0
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state  # (B, L, D)
        rows = torch.arange(len(input_ids), device=input_ids.device)
        logits = self.score(hidden[rows, last_positions(attention_mask)])  # (B, 1)
        return SequenceClassifierOutput(logits=logits)
