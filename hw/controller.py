"""The accelerator's controller: runs the phases, counts their cycles, reports done.

A run is ``phases`` phases.  Every core loader runs, per phase, its LOADs then a SYNC;
every macro unit starts with a SYNC and runs, per phase, its WALKs then a SYNC.  A phase
has two parts:

* LOAD: wait until every loader waits at its SYNC (every unit already waits at its own),
  then release the units (``go_units`` for one cycle);
* WALK: wait until every unit waits at a SYNC again, then record the phase's cycle count
  (``phase_end``) and release the loaders (``go_loaders``) for the next phase, or finish.

With ``hide_loads`` the loaders run with the walks: each core loader's program has two
SYNCs a phase (the phase's own LOADs, SYNC, the next phase's hidden LOADs, SYNC), the LOAD
part releases the loaders together with the units, and the WALK part ends when every unit
and every loader waits.  The hidden LOADs write row slots the phase's walks do not read
(the mapper's guarantee, `mars.sw.mapper`), so a reload costs only what exceeds the walk.

``go_units`` and ``go_loaders`` are registers: each pulse comes the cycle after the
decision, which is the first cycle of the next state; that state ignores the waiting
flags in that cycle (the released blocks still wait), so each release costs one cycle
(two a phase; `mars.sw.golden.cycles` counts them).

The phase's cycle count runs from the first cycle of its LOAD part to the cycle its WALK
part ends, both included; ``total_cycles`` counts the whole run.  After the last phase
ends the controller spends `FINISH_CYCLES` cycles in FINISH and FINISH2 (counted nowhere:
the units and loaders all wait) before ``running`` falls and ``done`` rises, so that
``running`` is known two cycles ahead (``running_early``) from the controller's own
registers and ``start``, never from the units' waiting flags (issue 9: the units' flags
-> the end decision -> every block's copy of ``~running`` crossed the die twice in one
cycle).  A run starts two cycles after ``start`` (`START_LATENCY`).  While idle,
``running`` is low and the top holds the loaders and units in reset.  See
docs/architecture.md ("Phases and weights").
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig
from mars.contract.host import ControlWrite

from .regs import replicas

__all__ = ["Controller", "control_write_layout"]


def control_write_layout() -> data.StructLayout:
    """A write of a control register: ``addr`` is a `ControlWrite` (phases, skip_loads)."""
    return data.StructLayout({"addr": unsigned(1), "data": unsigned(32)})


class Controller(wiring.Component):
    """The phase controller; see the module docstring.

    Parameters
    ----------
    config : MarsConfig
        Sets the loader count (``cores``), the unit count (``macros``) and ``max_phases``.
    phases : int
        Initial value of the phase-count register (0: ``start`` does nothing until the host
        writes it).

    Members
    -------
    control : In(stream.Signature(control_write_layout()))
        Host writes of the phase count (``addr`` `ControlWrite.PHASES`) and of
        ``skip_loads`` (`ControlWrite.SKIP_LOADS`, bit 0); ``ready`` is always 1.
    start : In(1)
        Start a run `START_LATENCY` cycles later (ignored while the phase count is 0,
        and while a run is in progress up to its last cycle: a start in a run's last
        cycle starts the next run one idle cycle later).
    loaders_waiting : In(cores)
        Each core loader waits at a SYNC.
    units_waiting : In(macros)
        Each macro unit waits at a SYNC.
    go_loaders, go_units : Out(1)
        Release every loader / every unit from its SYNC (one cycle; registers).
    more : Out(1)
        A register: last cycle the controller was in a LOAD state, or in the WALK state
        of a phase that is not the run's last.  A unit waiting at a SYNC then knows that
        the WALK fetched behind it belongs to a phase of the run (hw/sequencer.py: its
        decoders may start it early); low while idle.
    more_next : Out(1)
        `more`'s next value (one LUT from the state and a register): each unit keeps
        its own copy of `more` beside its sequencer (hw/unit.py), so that no net from
        here crosses the die in front of the decoders' start.  (The phase count is
        written while idle: `more_next` would see a write during a run a cycle late.)
    skip_loads : Out(cores)
        The loaders copy nothing (the weights are already in the macros): one register
        per core loader (bit c for loader c, all equal), each placed beside its loader
        (one register reached the loaders in 10.8 ns of routing, issue 9).
    running : Out(1)
        A run is in progress (a register), until `FINISH_CYCLES` cycles after the last
        phase ends.
    running_next : Out(1)
        `running`'s next value (a register).  High with ``running`` low only in the
        cycle after an accepted ``start``.
    running_early : Out(1)
        `running_next`'s next value, `running` two cycles ahead (one LUT: `running_next`,
        a FINISH flag, a phase-count-set flag and ``start``).  The top registers it once
        per loader and unit, and each of those feeds the copies of ``~running`` its
        blocks take their run reset from (`mars.hw.regs.run_reset`): no one net from here
        reaches every block on the die.
    done : Out(1)
        The last run finished (cleared by the next start); rises with ``running``'s
        fall.
    phase : Out(range(max_phases + 1))
        The current phase (a register; 0 at the start of a run).
    phase_cycles : Out(unsigned(32))
        Cycles of the current phase before this one (a register); a phase that ends now
        took ``phase_cycles + 1`` cycles.
    phase_end : Out(1)
        The current phase ends this cycle (the top writes its cycle count).
    total_cycles : Out(unsigned(32))
        Cycles of the current (or last) run.
    """

    #: Cycles from a ``start`` to the run's first cycle (its first LOAD cycle).
    START_LATENCY = 2
    #: Cycles after the last phase's end before ``running`` falls and ``done`` rises.
    FINISH_CYCLES = 2

    def __init__(self, config: MarsConfig, *, phases: int = 0):
        self._config = config
        self._phases = phases
        super().__init__({
            "control": In(stream.Signature(control_write_layout())),
            "start": In(1),
            "loaders_waiting": In(config.cores),
            "units_waiting": In(config.macros),
            "go_loaders": Out(1),
            "go_units": Out(1),
            "more": Out(1),
            "more_next": Out(1),
            "skip_loads": Out(config.cores),
            "running": Out(1),
            "running_next": Out(1),
            "running_early": Out(1),
            "done": Out(1),
            "phase": Out(range(config.max_phases + 1)),
            "phase_cycles": Out(unsigned(32)),
            "phase_end": Out(1),
            "total_cycles": Out(unsigned(32)),
        })

    @property
    def config(self) -> MarsConfig:
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        m = Module()
        n_phases = Signal(range(cfg.max_phases + 1), init=self._phases)
        # The outputs are the registers themselves: a port assembled from comb slices of
        # a register that never changed would start undefined on event-driven simulators.
        phase, phase_cycles = self.phase, self.phase_cycles
        control = self.control
        m.d.comb += control.ready.eq(1)
        # n_phases != 0 as a register of its own, loaded with the phase count: `start`
        # then meets one flip-flop, not a wide compare, on its way to `running_early`.
        phases_set = Signal(init=self._phases != 0)
        with m.If(control.valid & (control.payload.addr == ControlWrite.PHASES)):
            m.d.sync += [n_phases.eq(control.payload.data),
                         phases_set.eq(control.payload.data != 0)]
        skip_write = control.valid & (control.payload.addr == ControlWrite.SKIP_LOADS)
        m.d.comb += self.skip_loads.eq(Cat(*replicas(
            m, Signal(), control.payload.data[0], cfg.cores, name="skip_loads",
            enable=skip_write)))

        all_loaders = self.loaders_waiting.all()
        all_units = self.units_waiting.all()

        def count():
            return [phase_cycles.eq(phase_cycles + 1),
                    self.total_cycles.eq(self.total_cycles + 1)]

        # The go pulses are registers (one cycle after the decision): the units and loaders
        # sit all over the die, and a path from their waiting flags through this decision
        # into every unit's instruction registers would cross it twice in one cycle.
        m.d.sync += [self.go_units.eq(0), self.go_loaders.eq(0),
                     self.more.eq(self.more_next), self.running.eq(self.running_next)]
        # `running` two cycles ahead (`running_early`), then once ahead (`running_next`),
        # then itself: a shift of registers.  `running_early` is one LUT of two
        # flip-flops, `phases_set` and `start`; the top copies it into a register per
        # unit and loader, each of which feeds that consumer's own copies of ``~running``
        # (`mars.hw.regs.run_reset`): two short hops, not one net from here to every
        # copy (issue 9: 84 sinks, the farthest 10 ns of routing away).  `running` is high
        # exactly outside IDLE, so `running_next` is high in IDLE only in the cycle a run
        # starts, and `finishing` exactly in FINISH (set on the way in): FINISH2 follows,
        # so that the fall of `running` is known two cycles ahead.
        finishing = Signal()
        m.d.sync += [finishing.eq(0), self.running_next.eq(self.running_early)]
        m.d.comb += self.running_early.eq(Mux(self.running_next, ~finishing,
                                              self.start & phases_set))
        # Not the last phase: a register (phase changes only as a LOAD state starts, at
        # least a cycle before the WALK state that reads it).
        not_last = Signal()
        m.d.sync += not_last.eq(phase + 1 != n_phases)
        with m.FSM(name="ctrl") as fsm:
            with m.State("IDLE"):
                with m.If(self.running_next):         # `start` and phases, last cycle
                    m.d.sync += [phase.eq(0), phase_cycles.eq(0),
                                 self.total_cycles.eq(0), self.done.eq(0)]
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.sync += count()
                # go_loaders is high in this state's first cycle: the loaders still wait
                with m.If(all_loaders & all_units & ~self.go_loaders):
                    m.d.sync += self.go_units.eq(1)
                    if cfg.hide_loads:      # the next phase's hidden LOADs, with the walks
                        m.d.sync += self.go_loaders.eq(1)
                    m.next = "WALK"
            with m.State("WALK"):
                m.d.sync += count()
                # go_units is high in this state's first cycle: the units still wait
                walked = all_units & all_loaders if cfg.hide_loads else all_units
                with m.If(walked & ~self.go_units):
                    m.d.comb += self.phase_end.eq(1)
                    m.d.sync += [phase.eq(phase + 1), phase_cycles.eq(0)]
                    with m.If(phase + 1 == n_phases):
                        m.d.sync += finishing.eq(1)
                        m.next = "FINISH"
                    with m.Else():
                        m.d.sync += self.go_loaders.eq(1)
                        m.next = "LOAD"
            with m.State("FINISH"):
                m.next = "FINISH2"
            with m.State("FINISH2"):
                m.d.sync += self.done.eq(1)
                m.next = "IDLE"
        m.d.comb += self.more_next.eq(fsm.ongoing("LOAD") | (fsm.ongoing("WALK") & not_last))
        return m
