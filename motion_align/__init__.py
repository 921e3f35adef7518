"""motion-align: preference alignment for text-to-motion token models."""

import logging

__version__ = "0.1.0.dev0"

# bitsandbytes (imported by transformers and PEFT) warns at import, on every CPU without the optional
# `kernels` package, that it could not fetch a CPU kernel: noise above every message of ours.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
