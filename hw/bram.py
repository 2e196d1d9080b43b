"""Block-RAM memories: the one place that says how an Amaranth `Memory` becomes a block RAM.

Two synthesis attributes matter (Yosys 0.70, ``memory_libmap``):

* ``ram_style = "block"``: map the array to block RAM (DP16KD, SB_RAM40_4K); left to
  itself Yosys picks LUT RAM or flip-flops for the shallow arrays of the small presets.
* ``no_rw_check``: the memory is never read and written at one address in one cycle
  where the read's data is used.  Without it Yosys keeps the simulation semantics of
  such a collision (the read returns the old word) on a block RAM whose two ports leave
  it undefined: beside each block RAM a comparator of the write address with the read
  address and a register of the written word per data bit, and a multiplexer on the
  read data (on the default unit about 33 flip-flops and 33 LUTs per k-table memory).
  That comparator put the read address's carry chain and a die-crossing write address
  in front of one register: it was the whole top's critical path once the decoders'
  start was registered (issue 9, docs/synthesis.md).  The attribute changes nothing in
  simulation, only what a collision returns on the chip, so every caller says why its
  memory has none.
"""

from __future__ import annotations

from amaranth.lib.memory import Memory

__all__ = ["block_ram"]


def block_ram(shape, depth: int, *, init=(), collision_free: bool) -> Memory:
    """A memory mapped to block RAM.

    Parameters
    ----------
    shape : ShapeLike
        The word's shape.
    depth : int
        Words.
    init : iterable of int, optional
        Initial contents (zeros after them).
    collision_free : bool
        No cycle both writes a word and reads it where the read data is used: Yosys
        may then leave out its collision logic (``no_rw_check``, see the module
        docstring).  The caller states the reason beside the call.
    """
    attrs = {"ram_style": "block"}
    if collision_free:
        attrs["no_rw_check"] = 1
    return Memory(shape=shape, depth=depth, init=list(init), attrs=attrs)
