"""Models built from `layers`."""
from models.transformer_lm import TransformerLM

__all__ = ["TransformerLM"]
