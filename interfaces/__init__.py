"""Training objectives over a model."""
from interfaces.language_model import LanguageModelInterface, LMOutput

__all__ = ["LanguageModelInterface", "LMOutput"]
