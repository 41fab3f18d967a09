"""Building blocks of the transformer models."""
from layers.attention import MultiHeadAttention
from layers.head_gate import HardConcreteGate
from layers.internals import Internals
from layers.packing import Packing
from layers.positional_encoding import PositionalEncoding
from layers.tied_output import TiedOutputMap
from layers.transformer_layer import (TransformerDecoder, TransformerDecoderLayer,
                                      TransformerEncoder, TransformerEncoderLayer)

__all__ = ["HardConcreteGate", "Internals", "MultiHeadAttention", "Packing", "PositionalEncoding", "TiedOutputMap",
           "TransformerDecoder", "TransformerDecoderLayer", "TransformerEncoder",
           "TransformerEncoderLayer"]
