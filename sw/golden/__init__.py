"""NumPy golden models: the arithmetic every RTL block is checked against."""

from .decoder import DecoderTrace, decoder_walk
from .macro import macro_compute, macro_step, pack_row, popcounts, readout, unpack_row

__all__ = ["DecoderTrace", "decoder_walk", "macro_compute", "macro_step", "pack_row",
           "popcounts", "readout", "unpack_row"]
