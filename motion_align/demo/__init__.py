"""`make demo`: the whole pipeline on the built-in corpus, with a report a person reads first.

Each stage writes an artifact folder under ``outputs/demo/`` and is skipped on a second run when
its folder holds a finished artifact made with the same settings. ``summary.json`` lists every
stage with its path, the command that produced it and its headline figures; ``report.md`` shows
them with pictures.
"""

from motion_align.demo.common import DemoConfig
from motion_align.demo.runner import STAGES, run_demo

__all__ = ["STAGES", "DemoConfig", "run_demo"]
