"""The model hyper-parameters (ModelConfig) and the model of each family built from them."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from models import TransformerClassifier, TransformerEncDec, TransformerLM
from util import HierGenError

MODES = ("enc_dec", "enc")
# 1e10 fp32 weights and their AdamW moments take 160 GB: more than any one machine this runs on.
MAX_PARAMETERS = 10**10


@dataclass(frozen=True)
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
