"""Iterative on-policy preference alignment (AToM's loop) of a T5 or LLaMA policy from its SFT policy: rounds
of sampling from the current policy, judging, pairing and DPO/IPO (motion_align.trainers.iterative_rounds).

    accelerate launch recipes/iterative_dpo.py --config recipes/llama/iterative_dpo/config_ipo_lora.yaml
    # two processes on one CPU (gloo): they share the sampling and the training
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 recipes/iterative_dpo.py \
        --config recipes/llama/iterative_dpo/config_ipo_lora.yaml
    # rerunning the same command carries on: finished rounds are reused, an interrupted one resumes

With no arguments it aligns the demo's LLaMA SFT policy (outputs/demo/policy-llama) on captions of the demo's
corpus (outputs/demo/corpus), ranked by the event judge. Writes round-N/ (pairs, policy, round.json),
iterative_run.json, training_curves.png and the policy the run ends with (an adapter) to <output_dir>.
"""

from motion_align.trainers import recipe
from motion_align.trainers.iterative_config import MotionIterativeDPOConfig
from motion_align.trainers.iterative_rounds import run_rounds


def main() -> None:
    config = recipe.parse_config(MotionIterativeDPOConfig)
    recipe.check_input(config.model_name_or_path, "policy", "--model_name_or_path")
    recipe.check_input(config.corpus, "corpus", "--corpus")
    run_rounds(config)


if __name__ == "__main__":
    recipe.run(main, "recipes/iterative_dpo.py")
