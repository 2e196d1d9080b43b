"""Out-of-context wrapper: any block behind shift registers, for place-and-route on its own.

Timing a block alone on an FPGA needs two things its own ports do not give: few enough pins
to fit the package (the `tiny` decoder alone has over 300 port bits), and logic that cannot
be optimised away (an input tied to a constant or an output left unread lets Yosys delete
the cone behind it).  `OutOfContext` gives a block both, with three data pins:

- ``sin`` feeds a serial-in shift register as wide as all the block's inputs together; the
  register drives every input bit.
- ``load`` high captures all the block's outputs, in parallel, into a second shift register;
  ``load`` low shifts that register one bit towards ``sout``.

Every input bit is thus a flip-flop and every output bit reaches a pin, so place-and-route
times the block as it would sit between registers in a larger design: input register ->
block -> output register, with no logic of the wrapper on the path other than the 2:1
``load`` multiplexer in front of each output flip-flop.  The wrapper costs ``in_bits +
out_bits`` flip-flops and about ``out_bits`` LUTs (the multiplexers); `mars.sw.synth`
records both widths beside the figures it reports.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["OutOfContext", "port_bits"]


def port_bits(block: wiring.Component) -> tuple[list[Value], list[Value]]:
    """The block's input and output port values, flattened, in signature order.

    Parameters
    ----------
    block : wiring.Component
        Any component (stream payloads and other `amaranth.lib.data` views included).

    Returns
    -------
    tuple of (list of Value, list of Value)
        Inputs (flow ``In``) and outputs (flow ``Out``) as plain Amaranth values.
    """
    inputs: list[Value] = []
    outputs: list[Value] = []
    for _path, member, value in block.signature.flatten(block):
        (inputs if member.flow == In else outputs).append(Value.cast(value))
    return inputs, outputs


class OutOfContext(wiring.Component):
    """`block` behind an input and an output shift register (three data pins).

    Parameters
    ----------
    block : wiring.Component
        The block to wrap; it becomes submodule ``block`` and runs in the ``sync`` domain.

    Attributes
    ----------
    sin : Signal(1), in
        Serial data into the input shift register (towards its most significant bit).
    load : Signal(1), in
        1: capture every output of the block into the output register; 0: shift it.
    sout : Signal(1), out
        Least significant bit of the output register.
    in_bits, out_bits : int
        Total width of the block's inputs and outputs (= flip-flops of each register).
    """

    def __init__(self, block: wiring.Component):
        self.block = block
        self._inputs, self._outputs = port_bits(block)
        self.in_bits = sum(len(value) for value in self._inputs)
        self.out_bits = sum(len(value) for value in self._outputs)
        super().__init__({"sin": In(1), "load": In(1), "sout": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.block = self.block

        shift_in = Signal(max(self.in_bits, 1))
        m.d.sync += shift_in.eq(Cat(shift_in[1:], self.sin))
        offset = 0
        for value in self._inputs:
            m.d.comb += value.eq(shift_in[offset:offset + len(value)])
            offset += len(value)

        shift_out = Signal(max(self.out_bits, 1))
        with m.If(self.load):
            m.d.sync += shift_out.eq(Cat(*self._outputs))
        with m.Else():
            m.d.sync += shift_out.eq(shift_out >> 1)
        m.d.comb += self.sout.eq(shift_out[0])
        return m
