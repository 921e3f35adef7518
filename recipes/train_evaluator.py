"""Train the Guo-style text-motion evaluator (the metrics model) on a HumanML3D folder.

    accelerate launch recipes/train_evaluator.py --config recipes/evaluator/small.yaml
    # two processes on one CPU (gloo):
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 \
        recipes/train_evaluator.py --config recipes/evaluator/small.yaml
    # resume:  ... --resume_from_checkpoint latest

Writes <output_dir>/{config.json, model.safetensors, log.jsonl, training_config.json, eval_results.json,
checkpoint-*}; eval_results.json holds held-out R@1/2/3 and MM-Dist of real pairs and R@1 of shuffled ones.
"""

from motion_align.evaluation.evaluator_training import EvaluatorTrainingConfig, train_evaluator
from motion_align.training.loop import run_training_recipe

if __name__ == "__main__":
    run_training_recipe(EvaluatorTrainingConfig, train_evaluator, "recipes/train_evaluator.py")
