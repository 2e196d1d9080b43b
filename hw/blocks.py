"""Every generated RTL block, by name: what `mars verilog`, synthesis and the testbenches
iterate over.  A new block (decoder, controller, top) is one more entry here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from amaranth.back import verilog
from amaranth.lib import wiring

from mars.config import MarsConfig

from .accumulator import Accumulator
from .controller import Controller
from .decoder import SparseDecoder
from .gather import ActivationGather
from .host import HostPort
from .loader import CoreLoader
from .macro import CimMacro
from .sequencer import UnitSequencer
from .top import MarsTop
from .unit import MacroUnit
from .writer import UnitWriter

__all__ = ["Block", "BLOCKS", "block", "to_verilog"]


@dataclass(frozen=True)
class Block:
    """A generated block: its Verilog module name and how to build it from a config."""

    name: str
    build: Callable[[MarsConfig], wiring.Component]
    description: str


BLOCKS: dict[str, Block] = {
    b.name: b for b in [
        Block("cim_macro", CimMacro, "one SRAM-CIM macro (storage + bit-serial compute)"),
        Block("sparse_decoder", SparseDecoder,
              "sparse-weight decoder: index code -> row slots and im2col buffer addresses"),
        Block("mars_top", MarsTop,
              "the accelerator: cores x macro units, buffers, controller, host port"),
        Block("activation_gather", ActivationGather,
              "a unit's activation gather: D decoder payloads -> word reads -> macro step"),
        Block("unit_sequencer", UnitSequencer,
              "a unit's sequencer: program/parameter fetch, decoder start, SYNC"),
        Block("core_loader", CoreLoader,
              "a core's loader: weight SRAM rows into the core's macros"),
        Block("controller", Controller, "the phase controller: LOAD/WALK, cycle counters"),
        Block("host_port", HostPort, "the host port: write strobes, read answers"),
        Block("macro_unit", MacroUnit,
              "one macro unit: sequencer, decoders, gather, macro, accumulator, writer"),
        Block("unit_writer", UnitWriter,
              "a unit's writer: requantisation, ReLU, lane groups, output words"),
        Block("accumulator", Accumulator,
              "a unit's accumulator: a pixel's macro steps summed from the bias"),
    ]
}


def block(name: str) -> Block:
    try:
        return BLOCKS[name]
    except KeyError:
        raise KeyError(f"unknown block {name!r} (blocks: {', '.join(BLOCKS)})") from None


def to_verilog(name: str, config: MarsConfig, platform=None) -> str:
    """Verilog text of block `name` for `config`.

    Source-location attributes are left out so that the text depends only on the
    configuration, not on where the repository is checked out.  `platform` is passed to
    ``elaborate``: None (the default) for simulation and any synthesis tool, or a
    `mars.hw.dsp.Target` whose family's primitives may then be instantiated (hw/dsp.py).
    """
    component = block(name).build(config)
    return verilog.convert(component, name=name, emit_src=False, platform=platform)
