"""The hand-written accelerate loop (and its checkpoints) of the trainings TRL has no trainer for: the
motion tokenizer, the evaluator and the retrieval reward."""
