"""Models built from `layers`: the LM and the other families of the research code."""
from models.classifier import TransformerClassifier
from models.seq2seq import TransformerEncDec
from models.transformer_lm import TransformerLM

__all__ = ["TransformerClassifier", "TransformerEncDec", "TransformerLM"]
