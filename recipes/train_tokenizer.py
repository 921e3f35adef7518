"""Train the VQ-VAE motion tokenizer on a HumanML3D folder (the procedural corpus by default).

    accelerate launch recipes/train_tokenizer.py --config recipes/tokenizer/small.yaml
    # two processes on one CPU (gloo):
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 \
        recipes/train_tokenizer.py --config recipes/tokenizer/small.yaml
    # resume:  ... --resume_from_checkpoint latest

Writes <output_dir>/{config.json, model.safetensors, log.jsonl, eval_results.json, checkpoint-*}.
"""

from motion_align.training.loop import run_training_recipe
from motion_align.training.tokenizer_training import TokenizerTrainingConfig, train_tokenizer

if __name__ == "__main__":
    run_training_recipe(TokenizerTrainingConfig, train_tokenizer, "recipes/train_tokenizer.py")
