"""The published preference-learning ablations on the benchmark, one table per command (docs/RESULTS.md).

    python experiments/ablations.py methods          # SFT vs RLHF (PPO) vs DPO vs IPO
    python experiments/ablations.py losses           # IPO, sigmoid, hinge, KTO
    python experiments/ablations.py lora             # LoRA vs full fine-tuning
    python experiments/ablations.py data_fraction    # 20% .. 100% of the pairs
    python experiments/ablations.py degrees          # preference-degree subsets
    python experiments/ablations.py beta             # beta 0.05 .. 0.2
    python experiments/ablations.py online           # offline vs online vs semi-online (SoPo)
    python experiments/ablations.py events           # gains per event category
    python experiments/ablations.py generalisation   # held-out compositions vs seen ones
    python experiments/ablations.py all

The runs, budgets and published claims are data: experiments/ablations.yaml. Needs the demo's artifacts
(`make demo`) and its LLaMA policy (`motion-align demo --policy-family llama`); --demo, --out, --seeds.
"""

import sys

from motion_align.experiments.ablate import main

if __name__ == "__main__":
    try:
        main()
    except FileNotFoundError as error:
        sys.exit(f"experiments/ablations.py: error: {error}")
