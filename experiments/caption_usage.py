"""How much a policy's motion tokens depend on the caption (docs/RESULTS.md, issue 4 item 6):

    python experiments/caption_usage.py --model outputs/demo/policy-t5 --data outputs/demo/tokenized

Teacher-forced NLL by label position, with each row's own caption and with another row's; see
motion_align/experiments/caption_usage.py.
"""

from motion_align.experiments.caption_usage import main

if __name__ == "__main__":
    main()
