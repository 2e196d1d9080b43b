"""Cycle model of the accelerator top: how many clock cycles each phase of a mapped network
takes in the RTL, and the ideal bound it is measured against.

The model replays, one clock cycle at a time, the control of every block of the top
(controller, core loaders, macro-unit sequencers, and each unit's walk pipeline: decoders,
gather, macro, accumulator, writer) with the same handshakes as the RTL, but without any
data: a payload is just its position in the walk.  The data never changes the timing (no
stage waits on a value), so the count is exact; tests/tb check it against the RTL's own
per-phase counters on every network they run.

Why a replay and not a formula: the pipeline overlaps the writer of one pixel with the
macro steps of the next, and short pixels (few steps, many channels) make the writer the
bottleneck, so the steady state alternates between two limits; the replay gets every
boundary right by construction and still runs at well over 10^5 cycles per second.
"""

from __future__ import annotations

import dataclasses
import functools

from mars.contract.program import UnitFormat

__all__ = ["PhaseCycles", "walk_cycles", "phase_cycles", "network_cycles", "steady_cycles",
           "layer_walk_cycles", "ideal_cycles"]


@dataclasses.dataclass(frozen=True)
class PhaseCycles:
    layer: int
    cycles: int
    load_cycles: int     # cycles of the LOAD state (macro rows copied from weight SRAMs)
    walk_cycles: int     # cycles of the WALK state (the units computing)


class _Walk:
    """The walk pipeline of one macro unit (decoders .. writer), cycle by cycle."""

    def __init__(self, cps: int, lanes: int):
        self.cps, self.lanes = cps, lanes
        self.idle()

    def idle(self) -> None:
        self.total = self.steps = self.n_valid = 1
        self.active = False
        self.issued = 0
        self.s1 = self.s2 = self.out = None        # payload positions (None: empty)
        self.b = None
        self.busy, self.cyc, self.cur = False, 0, None
        self.result = None
        self.hold_full, self.hold_walk_last = False, False
        self.n_ch = 0
        self.w2_valid = self.w2_walk_last = False

    def start(self, steps: int, pixels: int, n_valid: int) -> None:
        self.steps, self.total, self.n_valid = steps, steps * pixels, n_valid
        self.active = self.total > 0
        self.issued = 0
        self.n_ch = 0

    def walk_done(self) -> bool:
        return self.w2_valid and self.w2_walk_last

    def tick(self) -> None:
        # -- combinational ------------------------------------------------------------
        last_step = self.busy and self.cyc == self.cps - 1
        is_last = self.result is not None and self.result % self.steps == self.steps - 1
        w_last = self.hold_full and self.n_ch + self.lanes >= self.n_valid
        hold_free = (not self.hold_full) or w_last
        r_ready = (not is_last) or hold_free
        out_free = self.result is None or r_ready
        finish = last_step and out_free
        req_ready = (not self.busy) or finish
        take = self.out is not None and (self.b is None or req_ready)
        advance = self.out is None or take
        issue = self.active and advance
        accept_req = self.b is not None and req_ready
        acc_accept = self.result is not None and r_ready

        # -- registers: writer, accumulator ----------------------------------------------
        self.w2_valid = self.hold_full
        self.w2_walk_last = w_last and self.hold_walk_last
        if self.hold_full:
            self.n_ch = 0 if w_last else self.n_ch + self.lanes
        if acc_accept and is_last:
            self.hold_full = True
            self.hold_walk_last = self.result == self.total - 1
        elif w_last:
            self.hold_full = False
        # -- macro ------------------------------------------------------------------------
        if acc_accept:
            self.result = None
        if self.busy and not last_step:
            self.cyc += 1
        if finish:
            self.busy = False
            self.result = self.cur
        if accept_req:
            self.busy, self.cyc, self.cur = True, 0, self.b
        # -- gather -----------------------------------------------------------------------
        taken = self.out if take else None
        if take:
            self.b = taken
        elif req_ready:
            self.b = None
        # -- decoders (all D in step) ---------------------------------------------------
        if advance:
            s0 = self.issued if issue else None
            self.out, self.s2, self.s1 = self.s2, self.s1, s0
        if issue:
            self.issued += 1
            if self.issued == self.total:
                self.active = False


class _Fetch:
    """A sequencer's fetch engine (hw/sequencer.py): reads the program one instruction
    ahead of the executor; a SYNC takes ``ki + 3`` cycles and counts up ``syncs``, a WALK
    ``ki + kp + 5`` cycles and then stays ``full`` until the executor takes it."""

    def __init__(self, program: list[tuple], ki: int, kp: int):
        self.program, self.ki, self.kp = program, ki, kp
        self.fpc, self.t, self.full, self.syncs = 0, 0, False, 0

    def tick(self, take: bool, sync_out: bool) -> None:
        sync_in = False
        if self.full:
            if take:
                self.full, self.fpc, self.t = False, self.fpc + 1, 0
        else:
            # Past the program's end the RTL reads whatever the memory holds; the run
            # ends at the last SYNC before that could matter.
            sync = self.fpc < len(self.program) and self.program[self.fpc][0] == "sync"
            if sync and self.t == self.ki + 2:            # DECIDE of a SYNC
                sync_in, self.fpc, self.t = True, self.fpc + 1, 0
            elif not sync and self.t == self.ki + self.kp + 4:   # last parameter word in
                self.full = True
            else:
                self.t += 1
        self.syncs += int(sync_in) - int(sync_out)


class _Unit:
    """A macro unit's sequencer over its program: ('walk', steps, pixels, n_valid) or
    ('sync',); its fetch engine reads ``ki`` words per instruction and ``kp`` per
    parameter word."""

    def __init__(self, program: list[tuple], cps: int, lanes: int, ki: int, kp: int):
        self.program, self.ki, self.kp = program, ki, kp
        self.walk = _Walk(cps, lanes)
        self.reset()

    def reset(self) -> None:
        self.state, self.insn = "NEXT", None
        self.fetch = _Fetch(self.program, self.ki, self.kp)
        self.walk.idle()

    @property
    def waiting(self) -> bool:
        return self.state == "SYNC"

    def tick(self, go: bool) -> None:
        state, fetch = self.state, self.fetch
        done = self.walk.walk_done()
        free = state == "NEXT" or (state == "RUN" and done) or (state == "SYNC" and go)
        take = sync_out = False
        self.walk.tick()
        if state == "START":            # the decoders take the descriptor at this edge
            self.walk.start(*self.insn[1:])
            self.state = "RUN"
        if free:                        # dispatch: a fetched SYNC first, else the WALK
            if fetch.syncs:
                sync_out, self.state = True, "SYNC"
            elif fetch.full:
                take, self.state = True, "START"
                self.insn = fetch.program[fetch.fpc]
            else:
                self.state = "NEXT"
        fetch.tick(take, sync_out)


class _Loader:
    """A core loader over its program: ('load', rows) or ('sync',)."""

    def __init__(self, program: list[tuple]):
        self.program = program
        self.reset()

    def reset(self) -> None:
        self.state, self.pc, self.left = "FETCH", 0, 0

    @property
    def waiting(self) -> bool:
        return self.state == "SYNC"

    def tick(self, go: bool) -> None:
        state = self.state
        if state == "FETCH":
            self.state = "DECODE"
        elif state == "DECODE":
            insn = self.program[self.pc]
            if insn[0] == "sync":
                self.state = "SYNC"
            else:
                self.left = insn[1]
                self.state = "COPY"
        elif state == "COPY":
            if self.left == 0:
                self.pc += 1
                self.state = "FETCH"
            else:
                self.left -= 1
        elif state == "SYNC" and go:
            self.pc += 1
            self.state = "FETCH"


def _programs(mapping, skip_loads: bool) -> tuple[list[list[tuple]], list[list[tuple]]]:
    cfg = mapping.config
    units = [[("sync",)] for _ in range(cfg.macros)]
    loaders = [[] for _ in range(cfg.cores)]
    for phase in mapping.phases:
        for walk in phase.walks:
            units[walk.unit].append(("walk", walk.steps, walk.pixels, walk.n_valid))
        for ld in phase.loads:
            loaders[ld.unit // cfg.macros_per_core].append(
                ("load", 0 if skip_loads else ld.count))
        for program in units:
            program.append(("sync",))
        for program in loaders:
            program.append(("sync",))
    return units, loaders


def network_cycles(mapping, *, skip_loads: bool = False) -> list[PhaseCycles]:
    """Cycles of every phase of one inference of `mapping` (a `mars.sw.mapper.Mapping`),
    as the top's per-phase counters report them.  `skip_loads`: the weights are already
    in the macros (a resident mapping after its first inference)."""
    cfg = mapping.config
    unit_programs, loader_programs = _programs(mapping, skip_loads)
    fmt = UnitFormat(cfg)
    units = [_Unit(p, cfg.cycles_per_step, fmt.write_lanes, fmt.insn_chunks, fmt.param_chunks)
             for p in unit_programs]
    loaders = [_Loader(p) for p in loader_programs]

    def state_until(done, *, release_units: bool) -> int:
        """Cycles of one controller state: tick everything until `done()` holds, then
        (in that last cycle) release the units or the loaders from their SYNC."""
        cycles = 0
        while True:
            cycles += 1
            last = done()
            for ld in loaders:
                ld.tick(last and not release_units)
            for u in units:
                u.tick(last and release_units)
            if last:
                return cycles

    results = []
    for phase in mapping.phases:
        # LOAD: every loader (and unit) at a SYNC -> release the units; WALK: every unit
        # back at a SYNC -> release the loaders.
        load = state_until(lambda: all(ld.waiting for ld in loaders)
                           and all(u.waiting for u in units), release_units=True)
        walk = state_until(lambda: all(u.waiting for u in units), release_units=False)
        results.append(PhaseCycles(phase.layer, load + walk, load, walk))
    return results


def steady_cycles(mapping) -> list[PhaseCycles]:
    """The phases of an inference in the steady state: resident weights stay loaded."""
    return network_cycles(mapping, skip_loads=mapping.resident)


def layer_walk_cycles(mapping, phases: list[PhaseCycles]) -> list[int]:
    """WALK cycles of each layer (the compute part of its phases, without loads)."""
    walk = [0] * len(mapping.layers)
    for phase in phases:
        walk[phase.layer] += phase.walk_cycles
    return walk


def ideal_cycles(mapping) -> list[float]:
    """The bound each layer is measured against: stored (kept) groups x output pixels x
    cycles per step, spread over every macro's word-line domains, one group each per
    step: ``sum_blocks(kept) * pixels * Ab/b / (macros * D)``."""
    cfg = mapping.config
    lanes = cfg.macros * cfg.wordline_domains
    out = []
    for plan in mapping.layers:
        g = plan.node.geometry
        kept = plan.packed.stored_groups
        out.append(kept * g.out_h * g.out_w * cfg.cycles_per_step / lanes)
    return out


def phase_cycles(mapping) -> list[int]:
    return [p.cycles for p in network_cycles(mapping)]


@functools.lru_cache(maxsize=None)
def walk_cycles(cps: int, lanes: int, steps: int, pixels: int, n_valid: int) -> int:
    """Cycles from a walk's START to its last write (for reports and quick estimates)."""
    walk = _Walk(cps, lanes)
    walk.start(steps, pixels, n_valid)
    cycles = 1
    walk.tick()
    while not walk.walk_done():
        walk.tick()
        cycles += 1
    return cycles
