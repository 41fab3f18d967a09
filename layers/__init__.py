"""Building blocks of the transformer LM."""
from layers.attention import MultiHeadAttention
from layers.positional_encoding import PositionalEncoding
from layers.tied_output import TiedOutputMap
from layers.transformer_layer import TransformerEncoder, TransformerEncoderLayer

__all__ = ["MultiHeadAttention", "PositionalEncoding", "TiedOutputMap",
           "TransformerEncoder", "TransformerEncoderLayer"]
