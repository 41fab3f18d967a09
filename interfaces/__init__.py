"""Training objectives over a model."""
from interfaces.classifier import ClassifierInterface
from interfaces.language_model import GatedLMInterface, LanguageModelInterface
from interfaces.output import LMOutput
from interfaces.seq2seq import Seq2SeqInterface

__all__ = ["ClassifierInterface", "GatedLMInterface", "LanguageModelInterface", "LMOutput",
           "Seq2SeqInterface"]
