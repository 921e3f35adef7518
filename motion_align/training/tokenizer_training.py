"""Training the VQ-VAE motion tokenizer with accelerate (1 or N processes, CPU or GPU), on the shared loop of
:mod:`motion_align.training.loop`.

Batches are random 64-frame windows that depend only on (seed, step, rank). Optimisation follows T2M-GPT
(AdamW, beta2 0.99, warmup, EMA codebook with dead-code reset). The final record holds the MPJPE and the
codebook use on ``eval_split``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from accelerate import Accelerator

from motion_align.data.motion_windows import MotionWindows
from motion_align.evaluation.reconstruction import evaluate_reconstruction
from motion_align.motion.normalization import Normalizer
from motion_align.training.loop import LoopConfig, finish, start_run, train_loop
from motion_tokenizer import MotionVQVAE, VQVAEConfig

#: The VQVAEConfig fields a training config may override.
MODEL_FIELDS = ("codebook_size", "code_dim", "width", "depth", "joint_loss_weight", "commitment_weight",
                "dead_code_threshold")  # fmt: skip


@dataclass
class TokenizerTrainingConfig(LoopConfig):
    """Training the VQ-VAE motion tokenizer on a HumanML3D folder."""

    output_dir: str = field(
        default="outputs/tokenizer", metadata={"help": "Where checkpoints and the model go."}
    )
    preset: str = field(default="small", metadata={"help": "VQVAEConfig preset: tiny, small or base."})
    codebook_size: int | None = field(
        default=None, metadata={"help": "Override the preset's number of codes."}
    )
    code_dim: int | None = field(default=None, metadata={"help": "Override the preset's code dimension."})
    width: int | None = field(default=None, metadata={"help": "Override the preset's channel width."})
    depth: int | None = field(
        default=None, metadata={"help": "Override the preset's residual blocks per level."}
    )
    joint_loss_weight: float | None = field(
        default=None, metadata={"help": "Override the joint-position term."}
    )
    commitment_weight: float | None = field(
        default=None, metadata={"help": "Override the commitment weight."}
    )
    dead_code_threshold: float | None = field(
        default=None, metadata={"help": "Override the EMA count below which a code is reset."}
    )
    window: int = field(default=64, metadata={"help": "Frames per training window (T2M-GPT uses 64)."})
    max_steps: int = field(default=3000, metadata={"help": "Optimizer steps."})
    learning_rate: float = field(default=2e-4, metadata={"help": "AdamW peak learning rate."})
    adam_beta2: float = field(default=0.99, metadata={"help": "AdamW beta2 (T2M-GPT: 0.99)."})
    warmup_steps: int = field(default=200, metadata={"help": "Linear warmup steps."})
    eval_max_clips: int | None = field(
        default=None, metadata={"help": "Cap on clips in the final evaluation."}
    )

    def model_overrides(self) -> dict:
        """The VQVAEConfig fields this config sets explicitly."""
        return {name: getattr(self, name) for name in MODEL_FIELDS if getattr(self, name) is not None}


def build_model(config: TokenizerTrainingConfig) -> MotionVQVAE:
    """A fresh tokenizer of the configured preset for the data folder's feature width (263 HumanML3D, 251
    KIT-ML), normalised with its Mean/Std."""
    normalizer = Normalizer.load(config.data_dir)
    overrides = {"nfeats": len(normalizer.mean), **config.model_overrides()}
    model = MotionVQVAE(VQVAEConfig.preset(config.preset, **overrides))
    model.set_normalization_(*normalizer.as_tuple())
    return model


def _describe(output) -> dict:
    return {
        "loss": output.loss.item(),
        "recon_loss": output.recon_loss.item(),
        "joint_loss": output.joint_loss.item(),
        "commit_loss": output.commit_loss.item(),
        "perplexity": output.perplexity.item(),
        "live_codes": int(output.live_codes.item()),
    }


def train_tokenizer(config: TokenizerTrainingConfig, accelerator: Accelerator | None = None) -> dict:
    """Trains, saves the model to ``output_dir`` and returns the evaluation record (main process)."""
    accelerator = start_run(config, accelerator)
    model = build_model(config)
    windows = MotionWindows(config.data_dir, config.train_split, config.window, config.seed)

    def forward(model, step: int):
        features = windows.batch(step, config.per_device_train_batch_size, accelerator.process_index)
        output = model(features.to(accelerator.device))
        return output.loss, output

    model, seconds = train_loop(config, accelerator, model, forward, _describe, "tokenizer",
                                progress=("recon_loss", "perplexity", "live_codes"))  # fmt: skip

    def evaluate(tokenizer) -> dict:
        return evaluate_reconstruction(tokenizer, config.data_dir, config.eval_split, config.eval_max_clips)

    return finish(config, accelerator, model, {"train_seconds": round(seconds, 1)}, evaluate)
