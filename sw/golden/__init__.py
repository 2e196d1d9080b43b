"""NumPy golden models: the arithmetic every RTL block is checked against."""

from .macro import macro_compute, macro_step, pack_row, popcounts, readout, unpack_row

__all__ = ["macro_compute", "macro_step", "pack_row", "popcounts", "readout", "unpack_row"]
