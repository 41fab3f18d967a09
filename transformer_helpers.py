"""Build a model and its objective from a configuration; save and load weights in research layout."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn as nn

from interfaces import ClassifierInterface, GatedLMInterface, LanguageModelInterface, Seq2SeqInterface
from models import TransformerClassifier, TransformerEncDec, TransformerLM
from models.head_gates import head_gates
from util import HierGenError

PREFIX = "model."  # research checkpoints nest the LM under `model`
DECODER_PREFIX = "trafo.decoder."  # in research LM checkpoints: never-used decoder layers
GATE_KEY = ".gate."  # head-gate parameters and buffers of the gated LM
MODES = ("enc_dec", "enc")
DEFAULT_L0_PENALTY = 0.01
# 1e10 fp32 weights and their AdamW moments take 160 GB: more than any one machine this runs on.
MAX_PARAMETERS = 10**10
StateDict = Mapping[str, torch.Tensor]
Interface = LanguageModelInterface | Seq2SeqInterface | ClassifierInterface


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
    mode: str = "enc_dec"
    not_lm: bool = False
    decoder_n_layers: int = 2
    causal_encoder: bool = False
    gated_model: bool = False
    gate_l0_penalty: float = DEFAULT_L0_PENALTY  # λ: gated LM loss = LM loss + λ · Σ_heads P(gate ≠ 0)

    def __post_init__(self) -> None:
        for name in ("vec_dim", "n_heads", "ff_multiplier", "encoder_n_layers", "decoder_n_layers"):
            if getattr(self, name) < 1:
                raise HierGenError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.vec_dim % self.n_heads:
            raise HierGenError(f"vec_dim {self.vec_dim} is not divisible by n_heads {self.n_heads}")
        if self.approx_parameters() > MAX_PARAMETERS:
            raise HierGenError(f"vec_dim {self.vec_dim}, ff_multiplier {self.ff_multiplier} and the layer counts make "
                               f"a model of ~{self.approx_parameters():.1e} parameters; at most {MAX_PARAMETERS:.0e} "
                               "fit a machine's memory with their AdamW state")
        if not 0.0 <= self.dropout < 1.0:
            raise HierGenError(f"dropout must be in [0, 1), got {self.dropout}")
        self._check_family_flags()

    def _check_family_flags(self) -> None:
        """Refuse combinations that cannot work or whose flag would do nothing."""
        if self.mode not in MODES:
            raise HierGenError(f"--mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.not_lm and self.mode == "enc":
            raise HierGenError("--not_lm (seq2seq) and --mode enc (classifier) are different models; "
                               "choose one")
        if self.causal_encoder and self.mode != "enc":
            raise HierGenError("--causal_encoder applies to the classifier (--mode enc) only")
        if self.decoder_n_layers != 2 and not self.not_lm:
            raise HierGenError("--decoder_n_layers applies to the seq2seq model (--not_lm) only")
        if self.gated_model and self.family != "lm":
            raise HierGenError("--gated-model applies to the LM only, not to --not_lm or --mode enc")
        if not (math.isfinite(self.gate_l0_penalty) and self.gate_l0_penalty >= 0):
            raise HierGenError(f"--gate_l0_penalty must be a finite number >= 0, got {self.gate_l0_penalty}")
        if self.gate_l0_penalty != DEFAULT_L0_PENALTY and not self.gated_model:
            raise HierGenError("--gate_l0_penalty applies to the gated LM (--gated-model) only")

    def approx_parameters(self) -> int:
        """The weight matrices' entries: attention (4 d^2) and feed-forward (2 ff d^2) per layer."""
        layers = self.encoder_n_layers + (self.decoder_n_layers if self.not_lm else 0)
        return layers * (4 + 2 * self.ff_multiplier) * self.vec_dim ** 2

    @property
    def family(self) -> str:
        """The model family: "lm", "enc_dec" (the seq2seq model) or "enc" (the classifier)."""
        if self.mode == "enc":
            return "enc"
        return "enc_dec" if self.not_lm else "lm"


def create_model(cfg: ModelConfig, n_words: int) -> nn.Module:
    """A freshly initialised model of the family `cfg` selects, for a vocabulary of n_words
    (every family's embedding has n_words + 2 rows: EOS, SOS)."""
    if cfg.family == "lm":
        return create_lm(cfg, n_words)
    shared = dict(n_tokens=n_words + 2, d_model=cfg.vec_dim, n_heads=cfg.n_heads,
                  d_ff=cfg.ff_multiplier * cfg.vec_dim, dropout=cfg.dropout,
                  tied_embedding=cfg.tied_embedding, pos_enc=not cfg.no_pos_enc,
                  pos_scale=cfg.pos_scale)
    if cfg.family == "enc_dec":
        return TransformerEncDec(n_encoder_layers=cfg.encoder_n_layers,
                                 n_decoder_layers=cfg.decoder_n_layers, **shared)
    return TransformerClassifier(n_layers=cfg.encoder_n_layers, causal=cfg.causal_encoder, **shared)


def create_lm(cfg: ModelConfig, n_words: int) -> TransformerLM:
    """A freshly initialised LM (gated with `cfg.gated_model`) for a vocabulary of n_words."""
    return TransformerLM(
        n_tokens=n_words + 2, d_model=cfg.vec_dim, n_heads=cfg.n_heads,
        n_layers=cfg.encoder_n_layers, d_ff=cfg.ff_multiplier * cfg.vec_dim, dropout=cfg.dropout,
        tied_embedding=cfg.tied_embedding, pos_enc=not cfg.no_pos_enc, pos_scale=cfg.pos_scale,
        gated=cfg.gated_model)


def create_model_interface(model: nn.Module, is_prefix_lm: bool = False, label_smoothing: float = 0.0,
                           gate_l0_penalty: float = DEFAULT_L0_PENALTY) -> Interface:
    """The objective that fits `model`: seq2seq, classifier, gated LM (LM loss + penalty · L0) or LM
    (the prefix-LM objective with `is_prefix_lm`, which only the LMs have)."""
    if isinstance(model, (TransformerEncDec, TransformerClassifier)):
        if is_prefix_lm:
            raise HierGenError("--is_prefix_lm applies to the LM only, not to --not_lm or --mode enc")
        if isinstance(model, TransformerEncDec):
            return Seq2SeqInterface(model, label_smoothing)
        return ClassifierInterface(model, label_smoothing)
    if head_gates(model):
        return GatedLMInterface(model, gate_l0_penalty, is_prefix_lm, label_smoothing)
    return LanguageModelInterface(model, prefix_lm=is_prefix_lm, label_smoothing=label_smoothing)


def research_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
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


def load_model_weights(model: nn.Module, source: str | os.PathLike | Mapping,
                       path: str | os.PathLike | None = None) -> None:
    """Load weights from our or a research checkpoint, a raw research state dict, or a loaded dict
    (read from `path`, named in errors).

    Keys may carry one leading `model.`; `trafo.decoder.*` keys are ignored unless the model has
    a decoder (research LM checkpoints carry unused ones). A gated LM may load an ungated LM's
    weights: its gates then keep their fresh (open) values, for pruning a trained LM.
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
    expected = model.state_dict()
    if not any(k.startswith(DECODER_PREFIX) for k in expected):
        state = {k: v for k, v in state.items() if not k.startswith(DECODER_PREFIX)}
    keep_fresh_gates = not any(GATE_KEY in k for k in state)
    if keep_fresh_gates:
        expected = {k: v for k, v in expected.items() if GATE_KEY not in k}
    _check_fits(expected, state, name)
    model.load_state_dict(state, strict=not keep_fresh_gates)


def _strip_prefix(key: str) -> str:
    return key[len(PREFIX):] if key.startswith(PREFIX) else key


def _check_fits(expected: StateDict, state: StateDict, name: str) -> None:
    """Raise a one-line HierGenError saying how `state` differs from the model's own `expected`."""
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
        if state[key].is_floating_point() and not torch.isfinite(state[key]).all():
            raise HierGenError(f"{name} is damaged: {key} holds NaN or infinite values")


def _few(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown if len(keys) <= limit else f"{shown} (+{len(keys) - limit} more)"
