"""Metrics: reconstruction (tokenizer), and the standard text-to-motion protocol as it arrives."""
