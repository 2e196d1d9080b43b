"""Which registers keep the run reset, and a register whose ``valid`` bit alone keeps it.

The top holds every core loader and macro unit in reset while the controller is idle
(``ResetInserter(~running)``, hw/top.py), so each run starts from the same control state.
Only control state needs that reset: valid and full flags, state machines, counters and
pointers whose value at the start of a run matters, handshake, error and done flags.
Every other register of those blocks (payloads, descriptors, parameters, instruction
words, pipeline data, accumulators) is ``reset_less``: its old value from the previous
run can never reach an output or a control decision before it is rewritten (each block
says why in a comment beside its registers).  The gather is the exception: it keeps the
reset on all its registers, since its reset-less version cost the unit 8 to 20 % of its
Fmax on the gather's `take` path (docs/synthesis.md).  On the ECP5 a reset is the flip-flop's LSR
input: one net from ``~running`` to every flip-flop that keeps it, and a slice packs
only flip-flops of one reset, so the fewer the better (docs/synthesis.md, "The run
reset").  Simulation is unchanged: a reset-less register still starts from its ``init``
value; only a second run sees the first run's leftovers, where they are never used.
"""

from __future__ import annotations

from amaranth.hdl import Signal

__all__ = ["valid_register"]


def valid_register(m, layout, *, name: str):
    """A register of a struct `layout` with a ``valid`` field: only ``valid`` keeps the
    reset.

    Parameters
    ----------
    m : Module
    layout : data.StructLayout
        Must have a one-bit ``valid`` field.
    name : str
        Name of the combined value; the registers are ``{name}_data`` and
        ``{name}_valid``.

    Returns
    -------
    reg : data.View of `layout`
        The register as read (combinational: ``valid`` from `valid`, the other fields
        from `payload`).
    payload : data.View of `layout`
        The reset-less register of the other fields (its own ``valid`` bit is unused);
        assign it in a clocked domain.
    valid : Signal(1)
        The register of the ``valid`` field (reset to 0).
    """
    reg = Signal(layout, name=name)
    payload = Signal(layout, name=f"{name}_data", reset_less=True)
    valid = Signal(name=f"{name}_valid")
    m.d.comb += [reg.eq(payload), reg.valid.eq(valid)]
    return reg, payload, valid
