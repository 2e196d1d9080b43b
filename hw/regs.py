"""Which registers keep the run reset, and a register whose ``valid`` bit alone keeps it.

The top holds every core loader and macro unit in reset while the controller is idle
(`run_reset`, hw/top.py and hw/unit.py), so each run starts from the same control state.
Only control state needs that reset: valid and full flags, state machines, counters and
pointers whose value at the start of a run matters, handshake, error and done flags.
Every other register of those blocks (payloads, descriptors, parameters, instruction
words, pipeline data, accumulators) is ``reset_less``: its old value from the previous
run can never reach an output or a control decision before it is rewritten (each block
says why in a comment beside its registers).  The gather is the exception: it keeps the
reset on all its registers, since its reset-less version cost the unit 8 to 20 % of its
Fmax on the gather's `take` path (docs/synthesis.md); it takes it in parts, a copy per
word-line domain and one for its stages (hw/gather.py).  On the ECP5 a reset is the flip-flop's LSR
input: one net from a block's copy of ``~running`` to every flip-flop that keeps it, and
a slice packs only flip-flops of one reset, so the fewer the better (docs/synthesis.md,
"The run reset").  Simulation is unchanged: a reset-less register still starts from its ``init``
value; only a second run sees the first run's leftovers, where they are never used.
"""

from __future__ import annotations

from typing import NamedTuple

from amaranth.hdl import Cat, Mux, ResetInserter, Signal, Value

from mars.contract.netlist import REPLICA

__all__ = ["SELECT_FANOUT", "Ring", "idle_copy", "queue", "replicas", "ring2", "run_reset",
           "shares", "valid_register"]

#: The most flip-flops a control register (a select or an enable) drives before it is
#: copied (`replicas`): the default unit spreads over a quarter of an LFE5U-85F, and a
#: register driving a whole 500-bit hold crossed it in 5 to 10 ns of routing (issue 9,
#: docs/synthesis.md).  Ours: a quarter to an eighth of the wide holds.
SELECT_FANOUT = 128


def shares(width: int, fanout: int) -> list[slice]:
    """Split `width` bits into ``ceil(width / fanout)`` equal slices (the last may be
    shorter), one per copy of a register that selects or enables at most `fanout` bits."""
    count = -(-width // fanout)
    size = -(-width // count)
    return [slice(lo, min(lo + size, width)) for lo in range(0, width, size)]


def replicas(m, like, value, count: int, *, name: str, enable=None) -> list[Signal]:
    """`count` copies of a register, each loading `value` (while `enable`, if given).

    A register that selects or enables hundreds of flip-flops spread over a block is one
    net across the block; each copy drives a share of them and is placed beside it.
    The names end in `mars.contract.netlist.REPLICA`, which the synthesis script marks
    ``keep``, so Yosys's ``opt_merge`` does not fold the copies back into one.

    Parameters
    ----------
    m : Module
    like : Signal
        The register copied: shape, ``init`` and ``reset_less`` are taken from it.
    value : Value
        What every copy loads: the copied register's next value (with `enable`, the
        value it loads under the same enable).
    count : int
        Number of copies.
    name : str
        The copies are ``{name}{k}{REPLICA}``.
    enable : Value, optional
        The copied register's load enable.

    Returns
    -------
    list of Signal
        The copies, equal to the copied register in every cycle.
    """
    copies = [Signal.like(like, name=f"{name}{k}{REPLICA}") for k in range(count)]
    for copy in copies:
        if enable is None:
            m.d.sync += copy.eq(value)
        else:
            with m.If(enable):
                m.d.sync += copy.eq(value)
    return copies


def run_reset(m, block, idle_next, *, name: str) -> Signal:
    """Add `block` to `m` as submodule `name`, held in reset while the controller is idle.

    The reset is a copy of ``~running`` of the block's own: a register loading
    `idle_next` (the controller's ``~running_next``), 1 from the domain's reset like
    ``~running``, so it equals ``~running`` in every cycle and no cycle changes.  Its
    name ends in `mars.contract.netlist.REPLICA` (``keep``: Yosys does not merge the
    copies), and the placer puts it beside the flip-flops it resets.  One net from the
    controller's ``running`` to the LSR input of every flip-flop that keeps the run reset
    was the whole default top's critical path: 13 ns of routing across the die (issue 9,
    docs/synthesis.md "The run reset"); `idle_next` reaches only a register per block.

    Parameters
    ----------
    m : Module
    block : Elaboratable
    idle_next : Value(1)
        The next cycle is idle: ``~running_next`` (`mars.hw.controller.Controller`).
    name : str
        The submodule's name; the copy is ``{name}_idle{REPLICA}``.

    Returns
    -------
    Signal(1)
        The copy (high while idle).
    """
    idle = idle_copy(m, idle_next, name=name)
    m.submodules[name] = ResetInserter(idle)(block)
    return idle


def idle_copy(m, idle_next, *, name: str) -> Signal:
    """A copy of ``~running`` (``{name}_idle{REPLICA}``): a register loading `idle_next`,
    1 from the domain's reset; the reset of `run_reset`, or of a register of `m` that
    keeps the run reset on its own."""
    idle = Signal(init=1, name=f"{name}_idle{REPLICA}")
    m.d.sync += idle.eq(idle_next)
    return idle


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


class Ring(NamedTuple):
    """What `ring2` returns."""
    payload: Value
    valid: Signal
    full: Signal
    full_next: Value


def ring2(m, layout, new, push, pop, *, name: str, fanout: int | None = None) -> Ring:
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

    fanout : int, optional
        The most bits of the output one register chooses: the read pointer gets
        ``ceil(bits / fanout)`` copies (`replicas`), each choosing an equal share of
        the entry, so that no one register selects all of a wide entry.  One read
        pointer when not given.

    Returns
    -------
    payload : Value of `layout`
        The older entry (combinational: a choice of two registers by a register).
    valid : Signal(1)
        An entry is taken (a register, reset to 0).
    full : Signal(1)
        Both are taken (a register, reset to 0).
    full_next : Value(1)
        The value `full` takes at the next clock edge (from this cycle's `push` and
        `pop`): for registers that copy an enable computed from `full` (hw/macro.py).
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
    # `full` and `valid` next from the entry count (full: 2, valid: at least 1; a push
    # only while not full, a pop only while valid): one LUT each behind `push` and `pop`,
    # not the flags' next values and a choice by the pointers.  `full_next` reaches the
    # copies of `full` across the accumulator behind the writer's `ready` (issue 9: the
    # whole top's critical path at 233fcf6 seed 3, 3.0 ns to the farthest copy).
    full_next = Signal(name=f"{name}_full_next")
    valid_next = Signal(name=f"{name}_valid_next")
    m.d.comb += [rp_next.eq(rp ^ pop), full_next.eq(~pop & (full | (valid & push))),
                 valid_next.eq(full | push | (valid & ~pop))]
    m.d.sync += [*(taken[i].eq(taken_next[i]) for i in range(2)),
                 rp.eq(rp_next), wp.eq(wp ^ push), valid.eq(valid_next), full.eq(full_next)]
    payload = Signal(layout, name=f"{name}_out")
    bits = len(Value.cast(payload))
    parts = [slice(0, bits)] if fanout is None else shares(bits, fanout)
    if len(parts) == 1:
        m.d.comb += payload.eq(Mux(rp, entries[1], entries[0]))
    else:
        rps = replicas(m, rp, rp_next, len(parts), name=f"{name}_rp")
        flat = [Value.cast(e) for e in entries]
        m.d.comb += payload.eq(Cat(*(Mux(rp_c, flat[1][part], flat[0][part])
                                     for rp_c, part in zip(rps, parts))))
    return Ring(payload, valid, full, full_next)


def queue(m, layout, new, push, pop, depth: int, *, name: str):
    """A FIFO of `depth` registers whose head is a register, with the head's next value.

    Entry 0 is the head; a pop moves every entry down one place and a push writes the
    entry after the last one kept.  Amaranth's `SyncFIFOBuffered` also keeps its head in a
    register, but does not give the head's next value, which the caller needs to copy the
    head (`replicas`) for the enables of registers spread over a block (hw/gather.py).
    Meant for a few narrow entries: every entry is a register and a 2-way choice.

    Parameters
    ----------
    m : Module
    layout : Shape or Layout
        One entry.
    new : Value of `layout`
        The value a push writes.
    push : Value(1)
        Write `new` this cycle; never while `depth` entries are kept and none pops (the
        caller guarantees it: nothing is checked).
    pop : Value(1)
        The head leaves this cycle; only while `valid`.
    depth : int
        Entries, at least 1.
    name : str
        The registers are ``{name}_entry{i}``, ``{name}_count`` and ``{name}_valid``.

    Returns
    -------
    head : Signal of `layout`
        The oldest entry (a register).
    valid : Signal(1)
        An entry is kept (a register, reset to 0).
    head_next : Signal of `layout`
        The value `head` takes at the next clock edge.
    """
    entries = [Signal(layout, name=f"{name}_entry{i}") for i in range(depth)]
    nexts = [Signal(layout, name=f"{name}_entry{i}_next") for i in range(depth)]
    count = Signal(range(depth + 1), name=f"{name}_count")
    valid = Signal(name=f"{name}_valid")
    at = Signal.like(count, name=f"{name}_at")      # where a push writes
    m.d.comb += at.eq(count - pop)
    for i in range(depth):
        kept = Value.cast(entries[i])
        if i + 1 < depth:                           # a pop moves the next one here
            kept = Mux(pop, Value.cast(entries[i + 1]), kept)
        m.d.comb += nexts[i].eq(Mux(push & (at == i), new, kept))
        m.d.sync += entries[i].eq(nexts[i])
    count_next = Signal.like(count, name=f"{name}_count_next")
    m.d.comb += count_next.eq(count + push - pop)
    m.d.sync += [count.eq(count_next), valid.eq(count_next != 0)]
    return entries[0], valid, nexts[0]
