"""The MARS accelerator top: N cores x M macro units, activation buffers, controller, host.

Structure (docs/architecture.md):

* ``cores`` cores, each with a weight SRAM (``weight_sram_rows`` macro rows), a
  `CoreLoader` and ``macros_per_core`` `MacroUnit` s (a CIM macro each, with its decoders,
  accumulators and writer);
* the activation memory: words of G activations in two ping-pong halves (each layer
  reads one half and writes the other), one block-RAM write port and a read port per
  word-line domain of every unit (docs/banking.md);
* the result memory (``result_words`` signed ``acc_bits`` words) for the last layer's raw
  accumulators;
* the controller (`Controller`): per phase, a LOAD part (the loaders copy the phase's macro
  rows) and a WALK part (the units compute), each ended by a SYNC of every participant; a
  cycle counter per phase;
* the host port (`HostPort`): a stream of word writes (and reads) into every memory and
  the control registers.

Every cycle's accesses hit distinct ports by construction: each word-line domain of each
unit has its own read port on its own copy of the memory (a block RAM each, written with
every word), and the single write port serves one unit a cycle (static slots, unit
``t mod U`` in cycle t), the same for the result memory.  With ``residual_adds`` one more
activation copy and a second result-memory read port serve the writer of the unit whose
slot is next (residual shortcuts, partial sums).  See docs/banking.md for the scheme and
what it costs.
"""

from __future__ import annotations

from typing import NamedTuple

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig
from mars.contract.banking import Banking
from mars.contract.host import ControlWrite, HostFormat, HostMemory, Region
from mars.contract.netlist import REPLICA

from .bram import block_ram
from .controller import Controller
from .host import HostPort
from .loader import CoreLoader
from .regs import idle_copy, run_reset, valid_register
from .unit import MacroUnit
from .writer import act_entry_layout, act_write_stage, res_entry_layout, result_write

__all__ = ["MarsTop"]


class HostWrite(NamedTuple):
    """A host write as one core or unit receives it (`MarsTop._host_copy`): region
    strobes (bit ``Region.X``, only that consumer's), domain, offset and data."""

    region: Signal
    domain: Signal
    offset: Signal
    data: Signal


class MarsTop(wiring.Component):
    """The accelerator.

    Parameters
    ----------
    config : MarsConfig
    init : dict, optional
        Initial memory contents keyed like `mars.sw.mapper.Mapping.memories`:
        ``(HostMemory, unit, domain)`` to a list of words; ``"phases"`` presets the
        number of phases.  Empty by default (the host port loads everything).

    Members
    -------
    host : In(stream.Signature(HostFormat(config).layout()))
        Writes (``write`` = 1) into any memory or control register; reads (``write`` = 0)
        of the activation, result, control and cycle registers answer on `host_read`.
    host_read : Out(stream.Signature(unsigned(data_bits)))
    start : In(1)
        Pulse: run the programs from the start (the phase count the host wrote).
    busy, done, error : Out(1)
        Running (from the cycle after ``start``, `START_LATENCY`); finished (until the
        cycle after the next start); a decoder reported an error.
    """

    #: Cycles from a ``start`` pulse to the first cycle of the run (its first LOAD cycle,
    #: cycle 0 of the write slots): one more than the host's writes take to reach the
    #: cores and units (`_host_copy`), as without those registers.
    START_LATENCY = Controller.START_LATENCY

    def __init__(self, config: MarsConfig, *, init: dict | None = None):
        self._config = config
        self._init = init or {}
        self._host = HostFormat(config)
        #: The top's own memories (activations, results, cycle counters), once elaborated.
        self.memories: dict[HostMemory, Memory] = {}
        super().__init__({
            "host": In(stream.Signature(self._host.layout())),
            "host_read": Out(stream.Signature(unsigned(self._host.data_bits))),
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
        })

    @property
    def config(self) -> MarsConfig:
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        m = Module()
        m.submodules.host_port = port = HostPort(cfg)
        m.submodules.controller = ctrl = Controller(cfg, phases=self._init.get("phases", 0))
        wiring.connect(m, wiring.flipped(self.host), port.host)
        wiring.connect(m, port.host_read, wiring.flipped(self.host_read))
        loaders, units = self._cores(m, port, ctrl.running_early)
        self.units = units              # for testbenches that watch the units' ports
        slot = self._slots(m, ctrl.running, units)
        sc_read = self._shortcut_read(m, units, slot) if cfg.residual_adds else None
        # The units' offered words are registered at the unit boundary; the write stages
        # take the word the slot's unit offered the cycle before (`slot_d`).
        slot_d = Signal.like(slot)
        m.d.sync += slot_d.eq(slot)
        self._activation_memory(m, port, units, slot_d, sc_read)
        self._result_memory(m, port, units, slot_d, sc_read)
        self._cycle_memory(m, port, ctrl)

        # The status's error bit a cycle late, registered: the OR of the units' flags
        # crosses the die, and ran on through the host's read choice (issue 9: the whole
        # top's critical path at 9e67c99, docs/synthesis.md).  A decoder's error ends no
        # run at once (its walk drains first), so a status that says done says the error.
        error_r = Signal(name="error_r")
        m.d.sync += error_r.eq(self.error)
        m.d.comb += [
            # Writes past the control registers are ignored.
            ctrl.control.valid.eq(port.region[Region.CONTROL]
                                  & (port.offset < len(ControlWrite))),
            ctrl.control.payload.addr.eq(port.offset),
            ctrl.control.payload.data.eq(port.data),
            # A run starts START_LATENCY cycles after `start`, one cycle later than the
            # host's writes reach the memories, so it starts after the host's last write
            # as it did before those writes were registered: the memories that rely on
            # no read meeting a host write (`block_ram`) still meet none.  In the cycle
            # between, the status already says busy, not done: a host that polls right
            # after its start never reads the last run's done.
            ctrl.start.eq(self.start),
            self.busy.eq(ctrl.running | ctrl.running_next),
            self.done.eq(ctrl.done & ~ctrl.running_next),
            self.error.eq(Cat(*(u.error for u in units)).any()),
            port.status.eq(Cat(self.busy, self.done, error_r)),
            port.total_cycles.eq(ctrl.total_cycles),
        ]
        for c, loader in enumerate(loaders):
            m.d.comb += [ctrl.loaders_waiting[c].eq(loader.waiting),
                         loader.go.eq(ctrl.go_loaders), loader.skip.eq(ctrl.skip_loads[c])]
        for u, unit in enumerate(units):
            m.d.comb += [ctrl.units_waiting[u].eq(unit.waiting), unit.go.eq(ctrl.go_units),
                         unit.more_next.eq(ctrl.more_next)]
        return m

    def _cores(self, m, port, running_early) -> tuple[list[CoreLoader], list[MacroUnit]]:
        """Each core's weight SRAM, loader and macro units, with their host writes.

        Loaders and units are held in reset (program counters at 0) while the controller
        is idle; their memories keep what the host wrote.  Each loader, and each block of
        a unit (`MacroUnit`), takes that reset from a copy of ``~running`` of its own
        (`run_reset`), which loads the loader's or unit's own copy of the controller's
        ``running_next`` (`_running_copy`).
        """
        cfg, init = self._config, self._init
        loaders, units = [], []
        for c in range(cfg.cores):
            write = self._host_copy(m, port, port.unit[c], name=f"core{c}")
            loader = CoreLoader(cfg, init=init.get((HostMemory.LOADER, c, 0)))
            run_reset(m, loader, ~self._running_copy(m, running_early, f"loader{c}"),
                      name=f"loader{c}")
            loaders.append(loader)
            # The host writes the weight SRAM while the accelerator is idle (the loader
            # held in reset reads nothing), so Yosys may leave out its collision logic.
            sram = block_ram(unsigned(cfg.cols), cfg.weight_sram_rows,
                             init=init.get((HostMemory.WEIGHTS, c, 0), []),
                             collision_free=True)
            m.submodules[f"weights{c}"] = sram
            sw = sram.write_port()
            sr = sram.read_port()
            m.d.comb += [sw.addr.eq(write.offset), sw.data.eq(write.data),
                         sw.en.eq(write.region[Region.WEIGHTS]),
                         sr.addr.eq(loader.sram_addr), sr.en.eq(loader.sram_en),
                         loader.sram_data.eq(sr.data),
                         loader.prog_write.valid.eq(write.region[Region.LOADER]),
                         loader.prog_write.payload.addr.eq(write.offset),
                         loader.prog_write.payload.data.eq(write.data)]
            for j in range(cfg.macros_per_core):
                unit = self._unit(m, port, c * cfg.macros_per_core + j, running_early)
                wiring.connect(m, loader.loads[j], unit.load)
                units.append(unit)
        return loaders, units

    def _unit(self, m, port, u: int, running_early) -> MacroUnit:
        """Macro unit `u` with its memories' initial contents and host writes."""
        init, D = self._init, self._config.wordline_domains
        unit = MacroUnit(self._config, init={
            "program": init.get((HostMemory.PROGRAM, u, 0), []),
            "params": init.get((HostMemory.PARAMS, u, 0), []),
            **{("index", d): init.get((HostMemory.INDEX, u, d)) for d in range(D)},
            **{("ktable", d): init.get((HostMemory.KTABLE, u, d)) for d in range(D)}})
        m.submodules[f"unit{u}"] = unit
        m.d.comb += unit.idle_next.eq(~self._running_copy(m, running_early, f"unit{u}"))
        write = self._host_copy(m, port, port.unit[u], name=f"unit{u}")
        for target, region in ((unit.prog_write, Region.PROGRAM),
                               (unit.param_write, Region.PARAMS)):
            m.d.comb += [target.valid.eq(write.region[region]),
                         target.payload.addr.eq(write.offset),
                         target.payload.data.eq(write.data)]
        for target, region in ((unit.index_write, Region.INDEX),
                               (unit.ktable_write, Region.KTABLE)):
            m.d.comb += [target.valid.eq(write.region[region]),
                         target.payload.domain.eq(write.domain),
                         target.payload.write.addr.eq(write.offset),
                         target.payload.write.data.eq(write.data)]
        return unit

    @staticmethod
    def _running_copy(m, running_early, name: str) -> Signal:
        """A loader's or unit's own copy of the controller's ``running_next``: a register
        loading ``running_early`` (``{name}_running_next{REPLICA}``).  The copies of
        ``~running`` of its blocks load from it; the controller's net reaches six of
        these, not every block's copy (issue 9, `Controller.running_early`)."""
        copy = Signal(name=f"{name}_running_next{REPLICA}")
        m.d.sync += copy.eq(running_early)
        return copy

    @staticmethod
    def _host_copy(m, port, selected, *, name: str) -> HostWrite:
        """The host's write, registered for one core or unit (`selected`: its strobe of
        the unit field): the region strobes (ANDed with `selected`), domain, offset and
        data a cycle after the host port decoded them.

        The host port sits in one place and the cores' and units' memories (weight SRAM,
        loader program, sequencer program and parameters, every decoder's index and
        k-table) all over the die: written straight from the port, its offset reached
        the far k-tables' write address through 12.5 ns of routing, the whole top's
        critical path (issue 9, docs/synthesis.md).  Each copy sits beside its consumer;
        the names end in `mars.contract.netlist.REPLICA` so Yosys keeps every copy (the
        offsets and data of all copies are equal).  A run starts a cycle later to match
        (`Controller.START_LATENCY`).  Only the strobes keep the reset."""
        strobe = Signal(len(port.region), name=f"{name}_host_strobe{REPLICA}")
        domain = Signal.like(port.domain, name=f"{name}_host_domain{REPLICA}",
                             reset_less=True)
        offset = Signal.like(port.offset, name=f"{name}_host_offset{REPLICA}",
                             reset_less=True)
        data = Signal.like(port.data, name=f"{name}_host_data{REPLICA}", reset_less=True)
        m.d.sync += [strobe.eq(port.region & selected.replicate(len(port.region))),
                     domain.eq(port.domain), offset.eq(port.offset), data.eq(port.data)]
        return HostWrite(region=strobe, domain=domain, offset=offset, data=data)

    def _slots(self, m, running, units: list[MacroUnit]):
        """The write slot counter: unit ``t mod U`` owns the write stages in cycle t of a
        run (t = 0 in the first cycle ``running`` is high); each unit is told the cycle
        before its slot (``slot_next``).

        The write stages read the counter here; each unit compares a copy of its own,
        beside it (``slot{u}_replica``, held at 0 by a copy of ``~running`` loading the
        unit's ``idle_next``, `idle_copy`), so no net from one counter crosses the die
        into four writers."""
        U = len(units)

        def counter(slot, idle):
            with m.If(idle):
                m.d.sync += slot.eq(0)
            with m.Elif(slot == U - 1):
                m.d.sync += slot.eq(0)
            with m.Else():
                m.d.sync += slot.eq(slot + 1)

        slot = Signal(range(max(2, U)))
        counter(slot, ~running)
        for u, unit in enumerate(units):
            own = Signal.like(slot, name=f"slot{u}{REPLICA}")
            counter(own, idle_copy(m, unit.idle_next, name=f"slot{u}"))
            m.d.comb += unit.slot_next.eq(own == (u - 1) % U)
        return slot

    @staticmethod
    def _offers(m, units: list[MacroUnit], slot_d, layout, name: str):
        """The word the units offer a write stage: each unit's `name` registered at its
        boundary (a register beside the unit, not a path across the die from its writer's
        arithmetic into a shared memory), then the one of the unit whose slot was the
        previous cycle (`slot_d`).  Every write lands a cycle later than offered (the
        activation memory's two: `_activation_memory` registers the choice again); no
        read of a walk depends on a write of the same phase except the shortcut reads of
        an in-place add, which come before the write anyway (docs/banking.md)."""
        entry = Signal(layout, name=name)
        for u, unit in enumerate(units):
            # payload read only under its valid bit, which alone keeps the reset
            held, payload, valid = valid_register(m, layout, name=f"{name}{u}")
            offered = getattr(unit, name)
            m.d.sync += [payload.eq(offered), valid.eq(offered.valid)]
            with m.If(slot_d == u):
                m.d.comb += entry.eq(held)
        return entry

    def _shortcut_read(self, m, units: list[MacroUnit], slot):
        """Residual adds: the shortcut read of the unit whose write slot is next (a writer
        issues a residual lane group only the cycle before its slot, so at most one unit
        reads a cycle and the ports below never conflict: docs/banking.md)."""
        from .writer import sc_read_layout

        U = len(units)
        read = Signal(sc_read_layout(self._config))
        for u, unit in enumerate(units):
            with m.If(slot == (u - 1) % U):
                m.d.comb += read.eq(unit.sc_read)
        return read

    def _activation_memory(self, m, port, units: list[MacroUnit], slot,
                           sc_read=None) -> None:
        """The activation memory (docs/banking.md): words of G activations, both ping-pong
        halves, ONE write port and a read port per word-line domain of every unit plus
        one for the write stage and the host.

        The write stage takes the word of the slot's unit, reads the stored word (with
        bypasses of the merges written since, so back-to-back updates of one word are
        exact: `act_write_stage`) and writes the merge: the offered fields replace the
        stored ones (or keep the larger, for a later pixel of a pooling window).  The
        host writes words through the same write port and reads through the same read
        port while the accelerator is idle."""
        cfg, bank = self._config, Banking(self._config)
        init = self._init.get((HostMemory.ACT, 0, 0), [])

        def copy(collisions=True):
            # A unit's copy is never read and written at one address in one cycle: a
            # phase's walks read region in_bank and write out_bank != in_bank (the
            # mapper's liveness rule, `mars.sw.mapper._places`; tests/test_mapper.py), and
            # the next phase reads a word only after it has landed (docs/banking.md).  So
            # Yosys may leave out the collision logic it otherwise builds around each
            # DP16KD (`block_ram`): a comparator of the broadcast write address with
            # the unit's read address, and registers, on the die-crossing write path.
            return block_ram(unsigned(bank.word_bits), bank.words, init=init,
                             collision_free=not collisions)

        # One copy per read port, each with one write port and one read port (a block
        # RAM): Yosys 0.70 replicates a memory per read port by itself, but aborts on the
        # default top's 17 read ports (docs/synthesis.md), so the copies are explicit.
        # `act` itself (the write stage's read and write ports, the host's) has no
        # collision logic either: a read of the word written in the same cycle (S0's read
        # beside S3's write, pooled pixels of one word) is never used, S1's bypass of the
        # merge written in S0's cycle replaces it (`act_write_stage`; tests/
        # test_hw_writer.py poisons such reads), and the host reads only in cycles it does
        # not write.  Yosys's comparator of the offer's address with the write address,
        # in front of the register of the read data, was 10.01 ns on the whole top at
        # d6346c9, seed 3 (issue 9).
        m.submodules.act = act = copy(collisions=False)
        self.memories[HostMemory.ACT] = act
        copies = []
        for u, unit in enumerate(units):
            for d in range(cfg.wordline_domains):
                m.submodules[f"act_read{len(copies)}"] = mem = copy(collisions=False)
                copies.append(mem)
                read = mem.read_port()
                m.d.comb += [read.addr.eq(unit.act_addr[d]), read.en.eq(unit.act_en[d]),
                             unit.act_data[d].eq(read.data)]
        # S4 of the write stage: one register per unit's copies, one for the shortcut's.
        groups = [copies[u * cfg.wordline_domains:(u + 1) * cfg.wordline_domains]
                  for u in range(len(units))]
        if sc_read is not None:
            # The shortcut's copy: one more read port, for the slot's unit's writer.
            m.submodules[f"act_read{len(copies)}"] = mem = copy()
            copies.append(mem)
            groups.append([mem])
            read = mem.read_port()
            m.d.comb += [read.addr.eq(sc_read.act_addr), read.en.eq(sc_read.act_en)]
            for unit in units:
                m.d.comb += unit.sc_act_data.eq(read.data)
        offer = self._offers(m, units, slot, act_entry_layout(cfg), "act_entry")
        # The slot's offer registered once more, beside the write stage: the four units'
        # offer registers lie across the die, and their choice by `slot_d` ran on into
        # the block RAM's read address and Yosys's register of its top address bit (issue
        # 9: the whole top's critical path at d31e33c, seed 1, 11.9 ns, 9.6 of them
        # routing).  The write lands a cycle later (READ_MARGIN; no cycle count changes).
        entry, entry_data, entry_valid = valid_register(m, act_entry_layout(cfg),
                                                        name="act_offer")
        m.d.sync += [entry_data.eq(offer), entry_valid.eq(offer.valid)]
        m.d.comb += port.act_data.eq(act_write_stage(
            m, act, entry, host_addr=port.offset, host_data=port.data,
            host_write=port.region[Region.ACT], copy_groups=groups))

    def _result_memory(self, m, port, units: list[MacroUnit], slot, sc_read=None) -> None:
        """The result memory: words of L raw accumulators, one write port (the slot's
        unit, a write enable per field), the host's read port (element addressed)."""
        cfg, bank = self._config, Banking(self._config)
        L, acc = bank.lanes, cfg.acc_bits
        result = Memory(shape=unsigned(L * acc), depth=bank.result_depth, init=[])
        m.submodules.result = result
        self.memories[HostMemory.RESULT] = result
        entry = self._offers(m, units, slot, res_entry_layout(cfg), "res_entry")
        result_write(m, result, entry)
        if sc_read is not None:
            # Residual adds: the raw accumulators of a conv shortcut, for the slot's unit.
            read = result.read_port()
            m.d.comb += [read.addr.eq(sc_read.res_addr), read.en.eq(sc_read.res_en)]
            for unit in units:
                m.d.comb += unit.sc_res_data.eq(read.data)
        # The host's read: the word registered as it leaves the block RAM (`HostPort`:
        # READ_LATENCY), then its field chosen by the offset's low bits, kept as long.
        host_read = result.read_port()
        word = Signal.like(host_read.data, name="result_host_word", reset_less=True)
        fields = [Signal(max(1, bank.lane_bits), name=f"result_host_field{i}",
                         reset_less=True) for i in range(2)]
        m.d.sync += [word.eq(host_read.data), fields[1].eq(fields[0]),
                     fields[0].eq(port.offset[:bank.lane_bits] if bank.lane_bits else 0)]
        m.d.comb += [host_read.addr.eq(port.offset >> bank.lane_bits),
                     port.result_data.eq(word.word_select(fields[1], acc)
                                         if bank.lane_bits else word)]

    def _cycle_memory(self, m, port, ctrl) -> None:
        """The per-phase cycle counts, written by the controller, read by the host."""
        cycles = Memory(shape=unsigned(32), depth=self._config.max_phases, init=[])
        m.submodules.cycle_mem = cycles
        self.memories[HostMemory.CYCLES] = cycles
        write = cycles.write_port()
        host_read = cycles.read_port()
        data = Signal.like(host_read.data, name="cycles_host_word", reset_less=True)
        m.d.sync += data.eq(host_read.data)       # registered: `HostPort`, READ_LATENCY
        m.d.comb += [write.addr.eq(ctrl.phase), write.data.eq(ctrl.phase_cycles + 1),
                     write.en.eq(ctrl.phase_end),
                     host_read.addr.eq(port.offset), port.cycles_data.eq(data)]
