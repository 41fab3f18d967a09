"""Build the LM and its objective from a configuration; save and load weights in research layout."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import torch

from interfaces import LanguageModelInterface
from models import TransformerLM
from util import HierGenError

PREFIX = "model."  # research checkpoints nest the LM under `model`
IGNORED_PREFIX = "trafo.decoder."  # the research code's never-used decoder layers
StateDict = Mapping[str, torch.Tensor]


@dataclass
class ModelConfig:
    """Model hyper-parameters, named like the command-line flags (the vocabulary comes from the data)."""

    vec_dim: int = 512
    n_heads: int = 8
    ff_multiplier: int = 4
    encoder_n_layers: int = 6
    dropout: float = 0.1
    tied_embedding: bool = False
    no_pos_enc: bool = False
    pos_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("vec_dim", "n_heads", "ff_multiplier", "encoder_n_layers"):
            if getattr(self, name) < 1:
                raise HierGenError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.vec_dim % self.n_heads:
            raise HierGenError(f"vec_dim {self.vec_dim} is not divisible by n_heads {self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise HierGenError(f"dropout must be in [0, 1), got {self.dropout}")


def create_lm(cfg: ModelConfig, n_words: int) -> TransformerLM:
    """A freshly initialised LM for a vocabulary of n_words; its embedding has n_words + 2 rows (EOS, SOS)."""
    return TransformerLM(
        n_tokens=n_words + 2, d_model=cfg.vec_dim, n_heads=cfg.n_heads,
        n_layers=cfg.encoder_n_layers, d_ff=cfg.ff_multiplier * cfg.vec_dim, dropout=cfg.dropout,
        tied_embedding=cfg.tied_embedding, pos_enc=not cfg.no_pos_enc, pos_scale=cfg.pos_scale)


def create_model_interface(model: TransformerLM, is_prefix_lm: bool = False,
                           label_smoothing: float = 0.0) -> LanguageModelInterface:
    """The LM objective (or the prefix-LM objective) over `model`."""
    return LanguageModelInterface(model, prefix_lm=is_prefix_lm, label_smoothing=label_smoothing)


def research_state_dict(model: TransformerLM) -> dict[str, torch.Tensor]:
    """The model's state dict with `model.`-prefixed keys, as a checkpoint's `model_state_dict`."""
    return {PREFIX + key: value for key, value in model.state_dict().items()}


def load_checkpoint_file(path: str | os.PathLike) -> dict:
    """torch.load a checkpoint safely (tensors only, on CPU); HierGenError if it cannot be read."""
    if not os.path.exists(path):
        raise HierGenError(f"checkpoint {path} does not exist")
    if not os.path.isfile(path):
        raise HierGenError(f"checkpoint {path} is not a file")
    try:
        loaded = torch.load(path, weights_only=True, map_location="cpu")
    except OSError as e:
        raise HierGenError(f"cannot read checkpoint {path}: {e.strerror}") from None
    # torch.load reports malformed input with many unrelated exception types.
    except Exception as e:
        if "GLOBAL" in str(e):
            raise HierGenError(f"checkpoint {path} holds pickled code or objects other than "
                               "tensors; refusing to load it") from None
        raise HierGenError(f"{path} is not a readable PyTorch checkpoint "
                           "(truncated, corrupt or another kind of file)") from None
    if not isinstance(loaded, dict):
        kind = type(loaded).__name__
        raise HierGenError(f"{path} is not a checkpoint: it holds a {kind}, not a dict")
    return loaded


def load_model_weights(model: TransformerLM, source: str | os.PathLike | Mapping,
                       path: str | os.PathLike | None = None) -> None:
    """Load weights from our or a research checkpoint, a raw research state dict, or a loaded dict
    (read from `path`, named in errors).

    Keys may carry one leading `model.`; the research code's `trafo.decoder.*` keys are ignored.
    """
    if not isinstance(source, Mapping):
        path = source
    name = "state dict" if path is None else f"checkpoint {path}"
    loaded = source if isinstance(source, Mapping) else load_checkpoint_file(source)
    state = loaded.get("model_state_dict", loaded)
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise HierGenError(f"{name} holds no model state dict (names → tensors)")
    state = {_strip_prefix(k): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(IGNORED_PREFIX)}
    _check_fits(model, state, name)
    model.load_state_dict(state)


def _strip_prefix(key: str) -> str:
    return key[len(PREFIX):] if key.startswith(PREFIX) else key


def _check_fits(model: TransformerLM, state: StateDict, name: str) -> None:
    """Raise a one-line HierGenError saying how `state` differs from the model's own."""
    expected = model.state_dict()
    rows = expected["input_embedding.weight"].shape[0]
    if "input_embedding.weight" in state and state["input_embedding.weight"].shape[0] != rows:
        raise HierGenError(f"{name} has {state['input_embedding.weight'].shape[0]} token rows, "
                           f"this vocabulary needs {rows} (different vocabulary)")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = [f"{label} keys {_few(keys)}" for label, keys in
                 (("missing", missing), ("unexpected", unexpected)) if keys]
        raise HierGenError(f"{name} does not fit this model: {'; '.join(parts)}")
    for key, value in expected.items():
        if state[key].shape != value.shape:
            raise HierGenError(f"{name} does not fit this model: {key} has shape "
                               f"{list(state[key].shape)}, the model needs {list(value.shape)}")


def _few(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown if len(keys) <= limit else f"{shown} (+{len(keys) - limit} more)"
