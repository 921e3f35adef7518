"""Alignment the TRL way: for each method (sft, dpo for DPO / IPO / hinge, kto, sopo for SoPo and online DPO,
reward, ppo, grpo) a ``<method>_config.py`` extending TRL's config beside a ``<method>_trainer.py`` with the
narrow TRL subclass, or the data and rewards TRL's own trainer needs; ``config_fields.py`` (the field groups
the configs share), ``losses.py`` (pure functions) and ``recipe.py`` (the plumbing of
``recipes/<method>.py``). The only code of motion-align that touches TRL internals."""
