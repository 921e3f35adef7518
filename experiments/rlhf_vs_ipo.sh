#!/usr/bin/env bash
# RLHF vs IPO on the benchmark (issue 8): from the demo's small LLaMA SFT policy, with the same LoRA and
# budget (100 updates/steps of 32 prompts, pairs or completions on 2 processes, seed 2222):
#   IPO-LoRA on the demo's preference pairs; PPO-LoRA with the learned reward model; PPO-LoRA with the event
#   judge's score; GRPO-LoRA with the event judge + retrieval score; then the full evaluation protocol.
# About 45 minutes on 2 CPU cores after `make demo` (plus about 8 for the LLaMA SFT if it is missing).
#   bash experiments/rlhf_vs_ipo.sh [DEMO_DIR] [OUT_DIR]
set -euo pipefail
DEMO=${1:-outputs/demo}
OUT=${2:-outputs/rlhf-vs-ipo}
mkdir -p "$OUT"
L=(accelerate launch --config_file accelerate_configs/multi_cpu.yaml --main_process_port 29537)
POLICY=$DEMO/policy-llama
if [ ! -f "$POLICY/model.safetensors" ]; then  # as `motion-align demo --policy-family llama` trains it
  POLICY=$OUT/policy-llama
  [ -f "$POLICY/model.safetensors" ] || "${L[@]}" recipes/sft.py --config recipes/llama/sft/config_small.yaml \
    --data_dir "$DEMO/tokenized" --output_dir "$POLICY" --disable_tqdm true
fi
COMMON=(--model_name_or_path "$POLICY" --disable_tqdm true)
python recipes/reward_model.py --config recipes/llama/reward_model/config_reward.yaml "${COMMON[@]}" \
  --dataset_name "$DEMO/preferences" --output_dir "$OUT/reward-model"
"${L[@]}" recipes/dpo_ipo.py --config recipes/llama/dpo_ipo/config_ipo_lora.yaml "${COMMON[@]}" \
  --dataset_name "$DEMO/preferences" --output_dir "$OUT/ipo-lora"
for kind in learned judge; do
  "${L[@]}" recipes/ppo.py --config "recipes/llama/ppo/config_ppo_$kind.yaml" "${COMMON[@]}" \
    --dataset_name "$DEMO/tokenized" --reward_model_path "$OUT/reward-model" --retrieval_model "$DEMO/retrieval" \
    --output_dir "$OUT/ppo-$kind"
done
"${L[@]}" recipes/grpo.py --config recipes/llama/grpo/config_grpo_lora.yaml "${COMMON[@]}" \
  --dataset_name "$DEMO/tokenized" --retrieval_model "$DEMO/retrieval" --output_dir "$OUT/grpo"
motion-align evaluate --data "$DEMO/corpus" --evaluator "$DEMO/evaluator" --motion-tokenizer "$DEMO/tokenizer" \
  --policy "LLaMA small SFT=$POLICY" --policy "IPO-LoRA=$OUT/ipo-lora" \
  --policy "PPO-LoRA, learned reward=$OUT/ppo-learned" --policy "PPO-LoRA, event-judge reward=$OUT/ppo-judge" \
  --policy "GRPO-LoRA=$OUT/grpo" --repeats 20 --generation-rounds 2 --mm-prompts 100 --mm-samples 30 \
  --out "$OUT/evaluation"
echo "tables: $OUT/evaluation/metrics.md; reward model: $OUT/reward-model/reward_report.json;" \
  "curves: $OUT/{ppo-learned,ppo-judge,grpo}/training_curves.png"
