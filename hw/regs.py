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

from amaranth.hdl import Mux, Signal

__all__ = ["ring2", "valid_register"]


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


def ring2(m, layout, new, push, pop, *, name: str):
    """A 2-entry FIFO of wide registers whose clock enables are their own flags.

    An empty entry loads `new` every cycle and keeps it once `push` marks it taken, so the
    wide registers' enables are registers (``~taken``), not the handshakes: `push` and
    `pop` reach only the two flags, the pointers and the two output flags.  The consumer
    reads the older entry through a 2-way choice by the read pointer (a register).

    Parameters
    ----------
    m : Module
    layout : Shape or Layout
        One entry.
    new : Value of `layout`
        The value a push writes (taken in the push's cycle).
    push : Signal(1)
        Write `new` this cycle; only while not `full`.
    pop : Signal(1)
        The older entry leaves this cycle; only while `valid`.

    Returns
    -------
    payload : Value of `layout`
        The older entry (combinational: a choice of two registers by a register).
    valid : Signal(1)
        An entry is taken (a register, reset to 0).
    full : Signal(1)
        Both are taken (a register, reset to 0).
    """
    entries = [Signal(layout, name=f"{name}_entry{i}", reset_less=True) for i in range(2)]
    taken = [Signal(name=f"{name}_taken{i}") for i in range(2)]
    wp, rp = Signal(name=f"{name}_wp"), Signal(name=f"{name}_rp")
    valid, full = Signal(name=f"{name}_valid"), Signal(name=f"{name}_full")
    for i in range(2):
        with m.If(~taken[i]):                   # empty: follow the value a push would write
            m.d.sync += entries[i].eq(new)
    # `valid` (the older entry taken) and `full` are registers of the flags' next values,
    # so that neither is a choice or an AND in front of its consumers.
    taken_next = [Signal(name=f"{name}_taken{i}_next") for i in range(2)]
    rp_next = Signal(name=f"{name}_rp_next")
    for i in range(2):
        m.d.comb += taken_next[i].eq((taken[i] & ~(pop & (rp == i))) | (push & (wp == i)))
    m.d.comb += rp_next.eq(rp ^ pop)
    m.d.sync += [*(taken[i].eq(taken_next[i]) for i in range(2)),
                 rp.eq(rp_next), wp.eq(wp ^ push),
                 valid.eq(Mux(rp_next, taken_next[1], taken_next[0])),
                 full.eq(taken_next[0] & taken_next[1])]
    payload = Signal(layout, name=f"{name}_out")
    m.d.comb += payload.eq(Mux(rp, entries[1], entries[0]))
    return payload, valid, full
