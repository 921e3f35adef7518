"""motion-align: preference alignment for text-to-motion token models."""

__version__ = "0.1.0.dev0"
