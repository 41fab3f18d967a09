"""Training objectives over a model."""
from interfaces.classifier import ClassifierInterface
from interfaces.language_model import GatedLMInterface, LanguageModelInterface
from interfaces.objective import DEFAULT_L0_PENALTY, Objective, ObjectiveConfig, make_objective
from interfaces.output import LMOutput
from interfaces.seq2seq import Seq2SeqInterface

__all__ = ["ClassifierInterface", "DEFAULT_L0_PENALTY", "GatedLMInterface", "LanguageModelInterface", "LMOutput",
           "Objective", "ObjectiveConfig", "Seq2SeqInterface", "make_objective"]
