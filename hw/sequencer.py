"""A macro unit's sequencer: fetches its program ahead, starts the decoders, waits at SYNC.

The program memory holds WALK words (`instruction_layout`) and one SYNC at the end of each
phase; the parameter memory holds one parameter word (bias, multiplier and shift of every
channel, and for binary/ternary readouts its column scale factors, `param_layout`) per
block set.  Both words are far wider than a block RAM's port,
so each is stored as several `CONTROL_WORD_BITS`-bit words (``insn_chunks`` and
``param_chunks``, least significant first; `mars.contract.program.split_word`) and read
one a cycle.  Every block-RAM output is registered before it is used.

Two parts run side by side:

* the **fetch engine** reads the program in order, one instruction ahead of the
  executor, with one read stream per memory (each: read, the word on the read port, the
  registered word shifted into its shadow register).  An instruction's first stored word
  holds its ``op`` and ``param_addr`` (`instruction_layout` puts them there).  A SYNC
  shows in that word once registered: it counts up ``syncs`` and the engine drops the
  SYNC's other words and reads the next instruction from the next cycle.  A WALK's other
  instruction words go on being read while its parameter words are read from the cycle
  after, side by side; the shadows then stay full until the executor takes them.  Cycles
  per instruction, from the engine's first read (``ki``, ``kp``: ``insn_chunks``,
  ``param_chunks``): a SYNC 3, a WALK ``max(ki + 2, kp + 5)`` (`fetch_cycles`).
* the **decoders' early start**: a full shadow WALK's descriptor goes to the decoders
  (``starts``, from the shadow) as soon as they are free, that is once the current
  walk's last payload has left their stages, while that walk still drains through the
  gather, macro, accumulator and writer, or while the unit waits at a SYNC.  Its
  payloads then wait at the decoders' output (hw/unit.py holds a walk's first payload,
  ``walk_first``, until ``release``), so the decoders' fill (the start edge, issue and 6
  stages: 8 cycles) is off the walk's critical path.  The decoders read only the index
  and k-table memories, which no run writes; a WALK after a SYNC goes to them only while
  the controller's ``more`` says its phase exists (one SYNC ahead at most), so nothing
  the engine reads past the program's last SYNC is ever started.
* the **executor** (NEXT -> START -> RUN, or SYNC) takes the next instruction in the
  cycle it becomes free (``walk_done``, ``go`` at a SYNC, or in NEXT): a counted SYNC
  first, else a full shadow WALK whose descriptor every decoder has taken (instruction
  and parameters in ``insn`` and ``params``, held unchanged for the whole walk: they
  follow the shadow between walks, so they hold its words at the take; ``release``
  set), else it waits in NEXT.  START (one cycle) moves the writer to the
  walk's origin.

A walk that follows another walk or a SYNC therefore starts the cycle after the previous
one ends, as long as the engine has had ``max(ki + 2, kp + 5)`` cycles (plus 3 per SYNC
in between) to fetch it, and runs as if its decoders had started 8 cycles before its
START, or when they took it if that is later; at the start of a run (the sequencer
leaves reset with the loaders) it fetches the start SYNC and the first WALK in
``3 + max(ki + 2, kp + 5)`` cycles (32 on the default preset), during the LOAD state.
The cycle model (`mars.sw.golden.cycles`, `fetch_cycles`) replays all three.  See
docs/synthesis.md ("Block-RAM budget").
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig
from mars.contract.decoder import descriptor_layout
from mars.contract.program import (
    CONTROL_WORD_BITS,
    Op,
    UnitFormat,
    instruction_layout,
    param_layout,
)

from .bram import block_ram
from .regs import SELECT_FANOUT, replicas, shares

__all__ = ["UnitSequencer", "memory_write_layout", "program_write_layout",
           "param_write_layout"]

def memory_write_layout(depth: int, data_shape) -> data.StructLayout:
    """One host write into a memory of `depth` words of `data_shape`."""
    return data.StructLayout({"addr": unsigned(max(1, (depth - 1).bit_length())),
                              "data": data_shape})


def program_write_layout(config: MarsConfig) -> data.StructLayout:
    """One host write into a unit's program memory (a stored word of an instruction)."""
    return memory_write_layout(UnitFormat(config).program_depth, unsigned(CONTROL_WORD_BITS))


def param_write_layout(config: MarsConfig) -> data.StructLayout:
    """One host write into a unit's parameter memory (a stored word of a parameter word)."""
    return memory_write_layout(UnitFormat(config).param_depth, unsigned(CONTROL_WORD_BITS))


def _shift_in(m, shadow: Signal, word: Value, like: Signal, like_next: Value, *,
              name: str) -> None:
    """Shift `word` into the top of `shadow` (its oldest word drops out at the bottom) in
    each cycle the register `like` is 1, enabled by copies of `like` (`replicas`, each
    loading `like_next`, its next value), one per share of at most SELECT_FANOUT bits."""
    shifted = Cat(shadow[len(word):], word)
    parts = shares(len(shadow), SELECT_FANOUT)
    for copy, part in zip(replicas(m, like, like_next, len(parts), name=name), parts):
        with m.If(copy):
            m.d.sync += shadow[part].eq(shifted[part])


class UnitSequencer(wiring.Component):
    """The program sequencer of one macro unit; see the module docstring.

    Parameters
    ----------
    config : MarsConfig
        Sets the program and parameter memory depths and the word layouts.
    program, params : list of int, optional
        Initial contents of the program and parameter memories, as stored words
        (`CONTROL_WORD_BITS` bits each; zeros by default).

    Members
    -------
    go : In(1)
        Leave the SYNC the sequencer waits at.
    waiting : Out(1)
        Waiting at a SYNC (a register).
    prog_write : In(stream.Signature(memory_write_layout(program_depth, 36 bits)))
        Host writes into the program memory (``ready`` always 1).
    param_write : In(stream.Signature(memory_write_layout(param_depth, 36 bits)))
        Host writes into the parameter memory (``ready`` always 1).
    starts : Out(stream.Signature(descriptor_layout(config))).array(D)
        The fetched WALK's descriptor for the decoder of each word-line domain, offered
        (``valid``) from the shadow as soon as no SYNC, or one SYNC and ``more``, lies
        between the executor and it, until that decoder takes it.
    starting : Out(1)
        A walk is being started (START, the cycle after the executor took it; a
        register): the writer moves its output position to the walk's origin.
    walk_done : In(1)
        The writer wrote the walk's last pixel: take the next instruction.
    walk_done_next : In(1)
        The value `walk_done` takes at the next clock edge (the writer's register's next
        value): the enables of `insn` and `params` are registers made from it.
    more : In(1)
        The phase after the SYNC the unit waits at (or, while it runs, after the
        current phase) exists: the decoders may start a WALK fetched behind one SYNC
        (the controller's ``more`` register).
    release : Out(D)
        The current walk's first payload may pass from the decoders to the gather (a
        register: set when the executor takes the WALK, cleared by ``first_passed``):
        one equal copy per word-line domain, placed beside its decoder, whose whole
        pipeline's advance it gates (hw/unit.py).
    first_passed : In(1)
        The current walk's first payload passes to the gather this cycle.
    insn : Out(instruction_layout(config))
        The current instruction: a register holding the walk's instruction from its
        take to its end (``walk_done``); between walks it follows the fetched words
        and means nothing.
    params : Out(param_layout(config))
        The current walk's parameter word, a register held and loaded with `insn`.
    """

    def __init__(self, config: MarsConfig, *, program: list | None = None,
                 params: list | None = None):
        self._config = config
        self._format = fmt = UnitFormat(config)
        self._program = list(program or [])
        self._params = list(params or [])
        for name, init, depth in (("program", self._program, fmt.program_depth),
                                  ("params", self._params, fmt.param_depth)):
            if len(init) > depth:
                raise ValueError(f"{name} has {len(init)} words, the memory {depth}")
        super().__init__({
            "go": In(1),
            "waiting": Out(1),
            "prog_write": In(stream.Signature(program_write_layout(config))),
            "param_write": In(stream.Signature(param_write_layout(config))),
            "starts": Out(stream.Signature(descriptor_layout(config))).array(
                config.wordline_domains),
            "starting": Out(1),
            "walk_done": In(1),
            "walk_done_next": In(1),
            "more": In(1),
            "release": Out(config.wordline_domains),
            "first_passed": In(1),
            "insn": Out(instruction_layout(config)),
            "params": Out(param_layout(config)),
        })

    @property
    def config(self) -> MarsConfig:
        return self._config

    def _memories(self, m):
        """The program and parameter memories with the host's write ports; returns their
        read ports.

        Block RAM without collision logic (`block_ram`): the host writes them while the
        accelerator is idle, when the unit is held in reset and its fetch engine's
        valid flags (``iv1``, ``pv1`` ...) are low, so no read data of those cycles is
        used; a run only reads them."""
        fmt = self._format
        ports = []
        for name, depth, init, port in (
                ("prog_mem", fmt.program_depth, self._program, self.prog_write),
                ("params", fmt.param_depth, self._params, self.param_write)):
            mem = block_ram(unsigned(CONTROL_WORD_BITS), depth, init=init,
                            collision_free=True)
            m.submodules[name] = mem
            write = mem.write_port()
            m.d.comb += [write.addr.eq(port.payload.addr), write.data.eq(port.payload.data),
                         write.en.eq(port.valid), port.ready.eq(1)]
            ports.append(mem.read_port())
        return ports

    def elaborate(self, platform):
        cfg, fmt = self._config, self._format
        m = Module()
        prog_read, param_read = self._memories(m)
        insn_bits = instruction_layout(cfg).size
        ki, kp = fmt.insn_chunks, fmt.param_chunks

        # -- fetch engine -------------------------------------------------------------------
        # Two read streams, one per memory, each with its own two-stage read pipeline
        # (v1: data on the read port, v2: data in the output register).
        # ``op`` and ``param_addr`` lie in an instruction's first stored word
        # (`instruction_layout`): a SYNC shows in it, and a WALK's parameter reads can
        # start once it is registered.
        op_field = instruction_layout(cfg)["op"]
        pa_field = instruction_layout(cfg)["param_addr"]
        assert op_field.offset == 0
        assert pa_field.offset + pa_field.width <= CONTROL_WORD_BITS
        fa = Signal(range(fmt.program_depth))          # next program word to read
        # first stored word of the instruction after the one being fetched
        nxt = Signal(range(fmt.program_depth), init=ki % fmt.program_depth)
        pa = Signal(range(fmt.param_depth))            # next parameter word to read
        # Stored words read / shifted in, and all of them shifted in, per memory.  (One
        # Signal a line: a tuple assignment can leave a register unnamed in the
        # Verilog, tests/test_hw_names.py.)
        i_issued = Signal(range(ki + 1))
        i_got = Signal(range(ki + 1))
        p_issued = Signal(range(kp + 1))
        p_got = Signal(range(kp + 1))
        i_done = Signal()
        p_done = Signal()
        p_on = Signal()                                 # param_addr is in pa: read on
        iv1 = Signal()
        iv2 = Signal()
        pv1 = Signal()
        pv2 = Signal()
        # The registered block-RAM outputs (one register per memory: no multiplexer
        # between a block RAM's output and its register).
        # Reset-less (hw/regs.py): words read only under iv2/pv2, shadows read only once
        # all their words are shifted in (full), insn/params only from the dispatch that
        # loads them (every use downstream is under a valid flag).
        q_insn = Signal(CONTROL_WORD_BITS, reset_less=True)
        q_prm = Signal(CONTROL_WORD_BITS, reset_less=True)
        next_insn = Signal(ki * CONTROL_WORD_BITS, reset_less=True)  # shadow instruction
        next_params = Signal(kp * CONTROL_WORD_BITS, reset_less=True)  # shadow parameters
        insn = Signal(instruction_layout(cfg), reset_less=True)       # drives `insn`
        params = Signal(param_layout(cfg), reset_less=True)           # drives `params`
        m.d.comb += [self.insn.eq(insn), self.params.eq(params)]
        shadow = data.View(instruction_layout(cfg), next_insn[:insn_bits])
        full = Signal()                                 # the shadow holds a WALK
        syncs = Signal(range(cfg.program_words + 2))    # SYNCs fetched, not yet taken
        # ``syncs == 0`` and ``syncs == 1`` kept as registers (next values from this
        # cycle's count and its in/out strobes), so no comparator of the count lies in
        # front of `take`, which clears the fetch engine's state (issue 9: the unit's
        # critical path at one seed ran syncs -> compare -> take -> p_done).
        syncs_zero = Signal(init=1)
        syncs_one = Signal()
        sync_in = Signal()
        sync_out = Signal()
        take = Signal()
        m.d.comb += full.eq(i_done & p_done)

        def wrap(addr, depth, step=1):
            return Mux(addr == depth - step, 0, addr + step)

        m.d.comb += [prog_read.addr.eq(fa), param_read.addr.eq(pa)]
        m.d.sync += [iv1.eq(0), iv2.eq(iv1), pv1.eq(0), pv2.eq(pv1),
                     syncs.eq(syncs + sync_in - sync_out)]
        with m.If(sync_in & ~sync_out):
            m.d.sync += [syncs_zero.eq(0), syncs_one.eq(syncs_zero)]
        with m.If(sync_out & ~sync_in):
            m.d.sync += [syncs_zero.eq(syncs_one), syncs_one.eq(syncs == 2)]
        # Instruction stream: its ki stored words, one read a cycle from its first cycle.
        with m.If(i_issued != ki):
            m.d.comb += prog_read.en.eq(1)
            m.d.sync += [iv1.eq(1), fa.eq(wrap(fa, fmt.program_depth)),
                         i_issued.eq(i_issued + 1)]
        with m.If(iv1):
            m.d.sync += q_insn.eq(prog_read.data)
        with m.If(iv2):
            m.d.sync += i_got.eq(i_got + 1)
            with m.If(i_got == ki - 1):
                m.d.sync += i_done.eq(1)
        # The first stored word in the output register: a SYNC, or a WALK whose parameter
        # reads start the next cycle.
        first = iv2 & (i_got == 0)
        is_sync = q_insn[:op_field.width] == Op.SYNC
        # The shadows shift in a stored word under a copy of `iv2` / `pv2` per share of
        # at most SELECT_FANOUT bits (`replicas`, `_shift_in`): the one `pv2` enabled
        # the 869 flip-flops of the default shadow parameters, a net across the unit
        # among the whole top's latest (issue 9: 9.96 ns at 9c391f5, seed 1).
        # (A SYNC's first word clears iv2, so its copies load that too.)
        _shift_in(m, next_insn, q_insn, iv2, iv1 & ~(first & is_sync), name="iv2_")
        with m.If(first & ~is_sync):
            m.d.sync += [pa.eq(q_insn[pa_field.offset:pa_field.offset + pa_field.width]),
                         p_on.eq(1)]
        with m.If(p_on & (p_issued != kp)):
            m.d.comb += param_read.en.eq(1)
            m.d.sync += [pv1.eq(1), pa.eq(wrap(pa, fmt.param_depth)),
                         p_issued.eq(p_issued + 1)]
        with m.If(pv1):
            m.d.sync += q_prm.eq(param_read.data)
        _shift_in(m, next_params, q_prm, pv2, pv1, name="pv2_")   # pv2 is pv1 delayed
        with m.If(pv2):
            m.d.sync += p_got.eq(p_got + 1)
            with m.If(p_got == kp - 1):
                m.d.sync += p_done.eq(1)
        # A SYNC: count it and fetch the next instruction from the next cycle, dropping the
        # SYNC's other stored words (read or in flight).
        with m.If(first & is_sync):
            m.d.comb += sync_in.eq(1)
            m.d.sync += [iv1.eq(0), iv2.eq(0), i_issued.eq(0), i_got.eq(0),
                         fa.eq(nxt), nxt.eq(wrap(nxt, fmt.program_depth, ki))]
        # The executor takes the WALK: fetch the next instruction from the next cycle.
        with m.If(take):
            m.d.sync += [i_issued.eq(0), i_got.eq(0), i_done.eq(0),
                         p_issued.eq(0), p_got.eq(0), p_done.eq(0), p_on.eq(0),
                         nxt.eq(wrap(nxt, fmt.program_depth, ki))]

        # -- executor -----------------------------------------------------------------------
        # The decoders take the fetched WALK's descriptor from the shadow as soon as they
        # are free (a decoder is ready once its previous walk's items have left its
        # stages), while the current walk drains through the gather, macro, accumulator
        # and writer: its payloads wait at the decoders' output (hw/unit.py) until the
        # executor takes the WALK (`release`).  The decoders read only the index and
        # k-table memories, which no run writes, so the one hazard is a WALK read past the
        # program's end: across a SYNC only while the controller says its phase exists.
        taken = Signal(cfg.wordline_domains)            # decoders that took the shadow's
        in_sync = Signal()
        ahead_ok = Signal()
        m.d.comb += ahead_ok.eq(Mux(in_sync, syncs_zero & self.more,
                                    syncs_zero | (syncs_one & self.more)))
        for d, start in enumerate(self.starts):
            m.d.comb += [start.payload.eq(shadow.desc),
                         start.payload.index_start.eq(shadow.index_start[d]),
                         start.payload.count.eq(shadow.count[d]),
                         start.valid.eq(full & ahead_ok & ~taken[d])]
            with m.If(start.valid & start.ready):
                m.d.sync += taken[d].eq(1)
        # `release` as the register's next value, one copy per domain (`replicas`):
        # each gates its decoder's stage advance, a net to about a thousand clock
        # enables spread over the decoder (issue 9: from one register in the whole top,
        # sequencer -> decoder took 2.8 ns of a 14.4 ns critical path).
        release = Signal()
        release_next = Signal()
        m.d.comb += release_next.eq(release)
        m.d.sync += release.eq(release_next)
        m.d.comb += self.release.eq(Cat(*replicas(m, release, release_next,
                                                   cfg.wordline_domains, name="release")))
        with m.If(self.first_passed):
            m.d.comb += release_next.eq(0)

        def dispatch():
            """Take the next instruction: a fetched SYNC, else a fetched WALK whose
            descriptor every decoder has taken."""
            with m.If(~syncs_zero):
                m.d.comb += sync_out.eq(1)
                m.next = "SYNC"
            with m.Elif(full & taken.all()):
                m.d.comb += [take.eq(1), release_next.eq(1)]
                m.d.sync += taken.eq(0)
                m.next = "START"
            with m.Else():
                m.next = "NEXT"

        # `insn` and `params` (about 1,200 flip-flops on default) follow the shadow while
        # the executor is between walks (NEXT, SYNC) and in the cycle its walk ends, and
        # hold from the take to the walk's end (START, RUN): so they hold the shadow's words
        # at every take, and their enable is a register (``~(walking & ~walk_done)``, from
        # the next values of both), not the dispatch decision (the controller's `go`, the
        # SYNC count, the shadow's flags).  What they load between walks is never used:
        # nothing reads them from one walk's end (its last pixel written: `walk_done`) to
        # the next walk's take, and the next walk's payloads wait at the decoders until then
        # (`release`).  A copy of the enable per share of at most SELECT_FANOUT bits
        # (`replicas`).  (Issue 9: in the whole top `go` -> the dispatch -> the parameters'
        # enable crossed a unit's quadrant, 16 ns of routing; at 05caebc the writer's
        # `walk_done` register lay 39 tiles from the LUT that made a share's enable from it
        # and a copy of `walking`, 20 of the whole top's late sinks.)
        # (`walking`: START, or RUN before the walk's end; only its next value is needed)
        walking_next = Signal()
        holding_next = walking_next & ~self.walk_done_next
        held = [(Value.cast(insn), Value.cast(shadow)),
                (Value.cast(params), next_params[:len(Value.cast(params))])]
        for k, (dst, src) in enumerate(held):
            parts = shares(len(dst), SELECT_FANOUT)
            copies = replicas(m, Signal(), holding_next, len(parts), name=f"holding{k}_")
            for copy, part in zip(copies, parts):
                with m.If(~copy):                  # ~(walking & ~walk_done)
                    m.d.sync += dst[part].eq(src[part])
        with m.FSM(name="seq") as fsm:
            with m.State("NEXT"):
                dispatch()
            with m.State("START"):
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(self.walk_done):
                    dispatch()
            with m.State("SYNC"):
                m.d.comb += in_sync.eq(1)
                with m.If(self.go):
                    dispatch()
        # `starting` (START) as a register of its own, loaded with the take: decoded from
        # the state it lay 18 tiles from the writer's position counters, whose enables
        # it is part of (issue 9, docs/synthesis.md, session 24).
        starting = Signal(name="starting_r")
        m.d.sync += starting.eq(take)
        m.d.comb += self.starting.eq(starting)
        # `waiting` (SYNC) likewise, loaded when the state goes to or stays in SYNC: the
        # controller ANDs every unit's across the die into its phase's enable (issue 9).
        waiting = Signal(name="waiting_r")
        m.d.sync += waiting.eq(sync_out | (in_sync & ~self.go))
        m.d.comb += self.waiting.eq(waiting)
        m.d.comb += walking_next.eq(take | fsm.ongoing("START")
                                    | (fsm.ongoing("RUN") & ~self.walk_done))
        return m
