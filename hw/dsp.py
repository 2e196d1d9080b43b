"""A multiplier registered at its inputs and its output, on the FPGA's DSP block.

`registered_product` is ``p = a * b`` two cycles after ``a`` and ``b`` are presented: a
register on each operand, the multiply, a register on the product.  On the ECP5
(``platform.family == "ecp5"``: an amaranth-boards Lattice platform, or `Target` for
``mars synth``) it is one MULT18X18D with its own input (REG_INPUTA/B_CLK) and output
(REG_OUTPUT_CLK) registers; elsewhere, and in simulation, the same registers and ``*`` in
Amaranth.  Both forms compute the same values cycle for cycle.

Why an instance: Yosys 0.70 maps ``*`` onto MULT18X18D but absorbs no flip-flops into it
on the ECP5 (only on Nexus, YosysHQ/yosys#5917), so the fabric registers around it are
reached over long routes to the DSP row.  In the whole default top (issue 9,
docs/synthesis.md) the writer's S1 register -> MULT18X18D -> S2 register path was the
critical path at seed 1: 4.75 ns of routing in, 3.93 ns through the multiplier, 3.31 ns
out.  With both register stages inside the block only one route lies on each path.
The block's registers follow Lattice TN1267 (ECP5 and ECP5-5G sysDSP Usage Guide):
REG_PIPELINE_CLK ``NONE`` bypasses the pipeline register, so the output is the product
of the registered operands one cycle later.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import ClockSignal, Const, Instance, Signal, Value, signed

__all__ = ["DSP_SIGNED_BITS", "Target", "fits_dsp", "registered_product"]

#: Operand width of the ECP5 MULT18X18D, in two's complement: an unsigned operand of up
#: to 17 bits or a signed one of up to 18 fits (both are extended to 18 bits, signed).
DSP_SIGNED_BITS = 18


@dataclass(frozen=True)
class Target:
    """The FPGA family a netlist is built for, passed to ``elaborate`` as its platform
    when there is no amaranth-boards platform (``mars synth``): ``"ecp5"`` or
    ``"ice40"``.  Only `registered_product` reads it."""

    family: str


def _signed_bits(value: Value) -> int:
    shape = value.shape()
    return shape.width + (0 if shape.signed else 1)


def fits_dsp(a: Value, b: Value) -> bool:
    """Whether ``a * b`` fits one MULT18X18D (`DSP_SIGNED_BITS` each, signed)."""
    return max(_signed_bits(a), _signed_bits(b)) <= DSP_SIGNED_BITS


def registered_product(m, a: Value, b: Value, *, platform, name: str,
                       enable: Value | None = None) -> Signal:
    """``a * b``, registered at the operands and at the product (latency 2 cycles).

    Parameters
    ----------
    m : Module
    a, b : Value
        The operands' next values (what a register on each would load), any signedness.
    platform
        ``elaborate``'s platform: with ``family == "ecp5"`` and both operands fitting
        (`fits_dsp`) the product is one MULT18X18D with its input and output registers;
        otherwise the registers and ``*`` are built in Amaranth (Yosys maps ``*`` onto
        DSPs where it can).
    name : str
        Stem of the registers' names (``<name>_a``, ``<name>_b``, ``<name>``).
    enable : Value(1), optional
        The clock enable of all three registers (the DSP's CE0): with it, the product
        register is the product of the operands the last enabled edge but one loaded,
        so the pair is two stages of a pipeline that advances under `enable`
        (hw/decoder_stages.py).  Always enabled when not given.

    Returns
    -------
    Signal
        The product register, the full width of ``a * b`` (signed if either operand
        is).  Reset-less (hw/regs.py): pipeline data, like the DSP's registers, which
        this uses with no reset (RST0 low, GSR disabled).
    """
    product = Signal((a * b).shape(), name=name, reset_less=True)
    ce = Const(1, 1) if enable is None else enable
    if getattr(platform, "family", None) == "ecp5" and fits_dsp(a, b):
        wide = [Signal(signed(DSP_SIGNED_BITS), name=f"{name}_{port.lower()}")
                for port in "AB"]
        p = Signal(signed(2 * DSP_SIGNED_BITS), name=f"{name}_p")
        m.d.comb += [wide[0].eq(a), wide[1].eq(b), product.eq(p)]
        ports = {f"i_{port}{k}": wide[j][k]
                 for j, port in enumerate("AB") for k in range(DSP_SIGNED_BITS)}
        ports.update({f"i_C{k}": Const(0, 1) for k in range(DSP_SIGNED_BITS)})
        ports.update({f"o_P{k}": p[k] for k in range(2 * DSP_SIGNED_BITS)})
        m.submodules[f"{name}_dsp"] = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK="CLK0", p_REG_INPUTB_CLK="CLK0", p_REG_OUTPUT_CLK="CLK0",
            p_REG_PIPELINE_CLK="NONE", p_GSR="DISABLED", p_RESETMODE="SYNC",
            i_SIGNEDA=Const(1, 1), i_SIGNEDB=Const(1, 1),
            i_SOURCEA=Const(0, 1), i_SOURCEB=Const(0, 1),
            i_CLK0=ClockSignal("sync"), i_CE0=ce, i_RST0=Const(0, 1),
            **ports)
        return product
    a_reg = Signal(a.shape(), name=f"{name}_a", reset_less=True)
    b_reg = Signal(b.shape(), name=f"{name}_b", reset_less=True)
    with m.If(ce):
        m.d.sync += [a_reg.eq(a), b_reg.eq(b), product.eq(a_reg * b_reg)]
    return product
