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

import numpy as np

from mars.contract.program import UnitFormat

__all__ = ["PhaseCycles", "walk_cycles", "phase_cycles", "network_cycles", "steady_cycles",
           "layer_walk_cycles", "ideal_cycles", "fetch_cycles", "READ_MARGIN",
           "read_margins"]


@dataclasses.dataclass(frozen=True)
class PhaseCycles:
    layer: int
    cycles: int
    load_cycles: int     # cycles of the LOAD state (macro rows copied from weight SRAMs)
    walk_cycles: int     # cycles of the WALK state (the units computing; with hide_loads
    #                      also the next phase's hidden loads, which may outlast the walks)
    # Cycles of the run (from its first): the first in which a gather takes a payload of
    # this phase (its first activation read follows at the next edge) and the last in
    # which a writer offers a word; None without walks.  The activation memory's read
    # copies need first_gather of a phase >= last_offer of the one before + READ_MARGIN
    # (mars.hw.writer.act_write_stage).
    first_gather: int | None = None
    last_offer: int | None = None


#: Cycles from a word's offer (its writer's output register) to the first gather take
#: that may read it from the units' read copies of the activation memory: the top's
#: offer register, its register of the slot's offer, the write stage's S0 .. S3 and the
#: copies' S4 register write it at the edge ending cycle offer + 6
#: (mars.hw.writer.act_write_stage); a payload taken in cycle T has its word read at the
#: edge ending T + 1.
READ_MARGIN = 6

#: Decoder stages behind the issue stage and before the output register (hw/decoder.py:
#: index read, index word + checks, k-table read, k-table word + lanes P/A, lanes B,
#: lanes C (a0, steps, pad test), lanes D (addresses)).
DECODER_STAGES = 7

#: Register stages of the writer's full pipeline from a lane group's issue to its offer
#: without residual adds (mars.hw.writer.WRITER_STAGES: S0 aligned choice, S1 the lanes'
#: rotation, S2 partial products, S3 product, S4 clamp inputs, the output register).
WRITER_STAGES = 6


def writer_latency(cfg) -> int:
    """Cycles from a lane group's issue to its offer (mars.hw.writer.writer_latency):
    the configuration's ``writer_stages``; with residual adds the next value 1 + d
    (mod U), so that the shortcut read, d cycles after the issue (1 with S0 registered,
    ``writer_stages`` 6; else 0), falls in the cycle before the unit's slot and the
    offer in the slot."""
    k = cfg.writer_stages
    d = 1 if k >= WRITER_STAGES else 0
    return k + (1 + d - k) % cfg.macros if cfg.residual_adds else k


@dataclasses.dataclass(frozen=True)
class _WalkInfo:
    """What a walk's timing depends on besides its size (docs/banking.md): the gather's
    extra word reads of each payload (None: none), the element address of each pixel's
    channel 0 (None: aligned, phase 0 everywhere) and whether it writes results."""

    extra: tuple[int, ...] | None = None
    starts: tuple[int, ...] | None = None
    acc_out: bool = False
    add: bool = False           # a fused residual add: every lane group reads the shortcut


class _Walk:
    """The walk pipeline of one macro unit (decoders .. writer), cycle by cycle.

    ``group``: G (activations per word), ``slot``: the unit's write slot, ``units``: U.
    """

    def __init__(self, cps: int, lanes: int, *, group: int = 1, slot: int = 0,
                 units: int = 1, latency: int = WRITER_STAGES):
        self.cps, self.lanes, self.latency = cps, lanes, latency
        self.per_word = max(1, group // lanes)
        self.slot, self.units = slot, units
        self.idle()

    def idle(self) -> None:
        self.total = self.steps = self.n_valid = 1
        self.info = _WalkInfo()
        self.active = False                        # the decoders issue (their walk)
        self.issued = self.d_total = 0
        self.release = False                       # the walk's first payload may pass
        self.dec = [None] * DECODER_STAGES         # payload positions (None: empty)
        self.out = None
        self.spare = None                          # gather stage A: the decoders' spare
        self.ripe = False                          # the spare held since the cycle before
        self.b = None
        self.b_wait = 0
        self.c = None                              # gather stage C: the offered step
        self.busy, self.cyc, self.cur = False, 0, None
        self.r_item = self.p_item = None           # macro stages R, P: (step, last)
        self.results = []                          # macro: result register, its spare
        self.s = None                              # accumulator stage S: its step
        self.hold = []                             # accumulator: (pixel, walk's last) x 2
        self.n_grp = 0
        self.w_done = [False] * self.latency      # the writer's stages: walk's last group
        self.first_gather = self.last_offer = None  # cycles of the phase (PhaseCycles)

    def decoders_ready(self) -> bool:
        """The decoders take a descriptor (no walk issuing, no item in their stages)."""
        return not self.active and all(item is None for item in self.dec)

    def start_decoders(self, steps: int, pixels: int) -> None:
        """The decoders take a walk's descriptor at this edge (they issue from the next
        cycle); its payloads wait at their output until `start` lets the first pass."""
        self.d_total = steps * pixels
        self.active = self.d_total > 0
        self.issued = 0

    def start(self, steps: int, pixels: int, n_valid: int,
              info: _WalkInfo | None = None) -> None:
        """The walk becomes the unit's current one (the executor takes it): the gather,
        macro, accumulator and writer work on it, and its first payload may pass."""
        self.steps, self.total, self.n_valid = steps, steps * pixels, n_valid
        self.info = info or _WalkInfo()
        self.n_grp = 0
        self.release = True

    def begin(self, steps: int, pixels: int, n_valid: int,
              info: _WalkInfo | None = None) -> None:
        """Both at once (`walk_cycles`: one walk on its own)."""
        self.start_decoders(steps, pixels)
        self.start(steps, pixels, n_valid, info)

    def walk_done(self) -> bool:
        return self.w_done[-1]

    def _writer_issue(self, t: int) -> tuple[bool, bool]:
        """(a lane group issues, it is the pixel's last) in cycle t (mars.hw.writer)."""
        if not self.hold:
            return False, False
        L, info = self.lanes, self.info
        start = info.starts[self.hold[0][0]] if info.starts else 0
        phase = start % L
        last_group = self.n_grp * L + L >= self.n_valid + phase
        group = start // L + self.n_grp
        ends_word = last_group or group % self.per_word == self.per_word - 1
        if info.acc_out or info.add or ends_word:
            # a word is offered in the unit's slot: issue `latency` cycles before it (a
            # shortcut read, issued with the group, then falls in the cycle before a slot)
            return (t + self.latency) % self.units == self.slot % self.units, last_group
        return True, last_group

    def tick(self, t: int = 0) -> None:
        # -- combinational ------------------------------------------------------------
        last_step = self.busy and self.cyc == self.cps - 1
        result = self.results[0] if self.results else None
        s_last = self.s is not None and self.s % self.steps == self.steps - 1
        w_issue, w_group_last = self._writer_issue(t)
        w_last = w_issue and w_group_last
        # The accumulator's stage S holds a pixel's last step while both pixel registers
        # are full, else takes the macro's older result (if any); the macro stalls only
        # when a step's last item would finish into a full result register and a full
        # spare: both from registers (no ready runs through two blocks).
        s_hold = s_last and len(self.hold) == 2
        m_adv = not (self.p_item is not None and self.p_item[1] and len(self.results) == 2)
        req_ready = m_adv and ((not self.busy) or last_step)
        # gather: B (words being read) moves into C (offered to the macro) when C is
        # empty at the start of the cycle; neither looks at the macro's ready.  B takes
        # from the spare (stage A) only, the cycle after it loaded the decoders' payload
        # at the earliest (`ripe`); the spare loads while empty, the decoders stall only
        # on a full spare
        move = self.b is not None and self.b_wait == 0 and self.c is None
        # A walk's first payload (position 0) waits at the decoders' output until the walk
        # is the unit's current one (hw/unit.py): its decoders may start early.
        out = self.out if self.out is not None and (self.out or self.release) else None
        avail = self.spare if self.ripe else None   # held since the cycle before
        take = avail is not None and (self.b is None or move)
        if take and self.first_gather is None:
            self.first_gather = t
        if self.w_done[-1]:
            self.last_offer = t                    # a walk's last word is offered now
        advance = self.out is None or (self.spare is None and out is not None)
        issue = self.active and advance
        accept_req = self.c is not None and req_ready
        acc_accept = self.s is not None and not s_hold   # S's step adds to the sums

        # -- registers: writer, accumulator ----------------------------------------------
        self.w_done = [w_last and self.hold[0][1]] + self.w_done[:-1]
        if w_issue:
            self.n_grp = 0 if w_group_last else self.n_grp + 1
        if w_last:
            self.hold.pop(0)
        if acc_accept and s_last:
            self.hold.append((self.s // self.steps, self.s == self.total - 1))
        if not s_hold:
            self.s = result
        # -- macro ------------------------------------------------------------------------
        if result is not None and not s_hold:
            self.results.pop(0)
        if m_adv:
            if self.p_item is not None and self.p_item[1]:
                self.results.append(self.p_item[0])
            self.p_item = self.r_item
            self.r_item = (self.cur, last_step) if self.busy else None
            if self.busy:
                self.cyc += 1
                self.busy = not last_step
        if accept_req:
            self.busy, self.cyc, self.cur = True, 0, self.c
        # -- gather (extra word reads of a payload, mars.hw.gather) ----------------------
        if accept_req:
            self.c = None
        if move:
            self.c = self.b
        taken = avail if take else None
        if self.spare is None and out == 0:
            self.release = False                   # the first payload passed
        if self.spare is None and out is not None:
            self.spare, self.ripe = out, False     # stage A loads while empty
        elif take:
            self.spare, self.ripe = None, False
        elif self.spare is not None:
            self.ripe = True                       # its compares are registered
        if take:
            self.b = taken
            # one cycle to register the payload, one word read a cycle, the last word
            # registered as it leaves the read port
            self.b_wait = 2 + (self.info.extra[taken] if self.info.extra else 0)
        elif move:
            self.b = None
        elif self.b is not None and self.b_wait:
            self.b_wait -= 1
        # -- decoders (all D in step) ---------------------------------------------------
        if advance:
            self.out = self.dec[-1]
            self.dec = [self.issued if issue else None] + self.dec[:-1]
        if issue:
            self.issued += 1
            if self.issued == self.d_total:
                self.active = False


class _Fetch:
    """A sequencer's fetch engine (hw/sequencer.py): reads the program one instruction
    ahead of the executor, an instruction in `fetch_cycles`: a SYNC then counts up
    ``syncs``, a WALK stays ``full`` until the executor takes it."""

    def __init__(self, program: list[tuple], ki: int, kp: int):
        self.program, self.ki, self.kp = program, ki, kp
        self.sync_time, self.walk_time = fetch_cycles(ki, kp)
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
            if sync and self.t == self.sync_time - 1:     # its first word registered
                sync_in, self.fpc, self.t = True, self.fpc + 1, 0
            elif not sync and self.t == self.walk_time - 1:   # every word in
                self.full = True
            else:
                self.t += 1
        self.syncs += int(sync_in) - int(sync_out)


def fetch_cycles(ki: int, kp: int) -> tuple[int, int]:
    """(S, F): cycles the sequencer's fetch engine (hw/sequencer.py) takes for a SYNC and
    for a WALK with its parameter word, from its first read, for ``ki`` and ``kp`` stored
    words an instruction and a parameter word.  A SYNC shows in its first stored word
    (``op``): read, on the read port, registered: S = 3.  A WALK's words are read one a
    cycle from cycle 0, the last registered in ki + 1 and shifted in (there from ki + 2);
    its parameter words from cycle 3 (``param_addr`` is in the first stored word,
    registered in cycle 2), the last registered in kp + 4 (there from kp + 5): the WALK is
    there from F = max(ki + 2, kp + 5)."""
    return 3, max(ki + 2, kp + 5)


class _Unit:
    """A macro unit's sequencer over its program: ('walk', steps, pixels, n_valid, info)
    or ('sync',); its fetch engine reads ``ki`` words per instruction and ``kp`` per
    parameter word.

    The decoders take the fetched WALK's descriptor as soon as they are free (hw/
    sequencer.py: its payloads then wait at their output until the executor takes the
    WALK), unless a SYNC lies between the executor and that WALK; across one SYNC they
    take it too while ``more`` (the controller: the WALK's phase exists)."""

    def __init__(self, program: list[tuple], cps: int, lanes: int, ki: int, kp: int,
                 **walk):
        self.program, self.ki, self.kp = program, ki, kp
        self.walk = _Walk(cps, lanes, **walk)
        self.reset()

    def reset(self) -> None:
        self.state, self.insn = "NEXT", None
        self.fetch = _Fetch(self.program, self.ki, self.kp)
        self.early = False              # the decoders took the fetched WALK's descriptor
        self.walk.idle()

    @property
    def waiting(self) -> bool:
        return self.state == "SYNC"

    def tick(self, go: bool, t: int = 0, more: bool = False) -> None:
        state, fetch = self.state, self.fetch
        done = self.walk.walk_done()
        free = state == "NEXT" or (state == "RUN" and done) or (state == "SYNC" and go)
        ahead = fetch.syncs + (state == "SYNC")       # SYNCs before the fetched WALK
        early = (fetch.full and not self.early and self.walk.decoders_ready()
                 and (ahead == 0 or (ahead == 1 and more)))
        take = sync_out = False
        self.walk.tick(t)
        if state == "START":
            self.state = "RUN"
        if free:                        # dispatch: a fetched SYNC first, else the WALK
            if fetch.syncs:
                sync_out, self.state = True, "SYNC"
            elif fetch.full and self.early:
                take, self.state = True, "START"
                self.insn = fetch.program[fetch.fpc]
                self.walk.start(*self.insn[1:])
                self.early = False
            else:
                self.state = "NEXT"
        if early:                       # the decoders take the descriptor at this edge
            insn = fetch.program[fetch.fpc]
            self.walk.start_decoders(insn[1], insn[2])
            self.early = True
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
    units: list[list[tuple]] = [[("sync",)] for _ in range(cfg.macros)]
    loaders = [[] for _ in range(cfg.cores)]
    fetches: dict[int, np.ndarray | None] = {}
    for phase in mapping.phases:
        plan = mapping.layers[phase.layer]     # None in hand-made schedules (tests)
        if plan is not None and phase.layer not in fetches:
            fetches[phase.layer] = _layer_fetches(plan.node.geometry, cfg)
        for walk in phase.walks:
            info = (_walk_info(cfg, plan, walk, fetches[phase.layer]) if plan is not None
                    else _WalkInfo())
            units[walk.unit].append(("walk", walk.steps, walk.pixels, walk.n_valid, info))
        for program in units:
            program.append(("sync",))
    # A loader program segment a SYNC: per phase its LOAD part's loads; with hide_loads
    # also the next phase's hidden loads, which run during this phase's walks.
    phases = mapping.phases
    for p, phase in enumerate(phases):
        segments = [[ld for ld in phase.loads if not getattr(ld, "hidden", False)]]
        if cfg.hide_loads:
            after = phases[p + 1].loads if p + 1 < len(phases) else []
            segments.append([ld for ld in after if getattr(ld, "hidden", False)])
        for segment in segments:
            for ld in segment:
                loaders[ld.unit // cfg.macros_per_core].append(
                    ("load", 0 if skip_loads else ld.count))
            for program in loaders:
                program.append(("sync",))
    return units, loaders


def _layer_fetches(geometry, cfg) -> np.ndarray | None:
    """Word reads a domain makes for each (output pixel, K-group) of a layer: the distinct
    activation words among the group's unpadded lanes (mars.hw.gather); None when every
    group is at most one word (an aligned layer)."""
    g, G = geometry, cfg.rows_per_step
    if g.cin % G == 0:
        return None          # every K-group is one aligned run of G channels: one word
    k_groups = -(-g.k // G)
    k = np.arange(k_groups * G)
    words = np.empty((g.out_h * g.out_w, k_groups, G), dtype=np.int64)
    for oy in range(g.out_h):
        for ox in range(g.out_w):
            offset, padding = g.im2col(oy, ox, np.minimum(k, g.k - 1))
            lane = np.where(padding | (k >= g.k), -1,
                            (offset % cfg.act_buffer_words) // G)
            words[oy * g.out_w + ox] = lane.reshape(k_groups, G)
    ordered = np.sort(words, axis=2)
    new = np.concatenate([ordered[..., :1] >= 0,
                          (ordered[..., 1:] != ordered[..., :-1]) & (ordered[..., 1:] >= 0)],
                         axis=2)
    counts = new.sum(axis=2)
    return counts if counts.max() > 1 else None


def _walk_info(cfg, plan, walk, fetches: np.ndarray | None) -> _WalkInfo:
    """The gather's extra reads per payload and the writer's pixel starts of `walk`."""
    extra = None
    if fetches is not None:
        D, steps, packed = cfg.wordline_domains, walk.steps, plan.packed
        g = plan.node.geometry
        pixels = np.arange(walk.row0 * g.out_w, (walk.row0 + walk.rows) * g.out_w)
        reads = np.ones((len(pixels), steps), dtype=np.int64)
        for d in range(D):
            cb = walk.block_set * D + d
            code = packed.index_codes[cb] if cb < packed.n_blocks else []
            code = code[walk.first:walk.first + steps]       # the walk's part (K-splitting)
            if len(code):
                reads[:, :len(code)] = np.maximum(reads[:, :len(code)],
                                                  fetches[pixels][:, np.asarray(code)])
        extra = tuple((reads - 1).reshape(-1).tolist())
    return _WalkInfo(extra, _pixel_starts(cfg, walk), bool(walk.word["acc_out"]),
                     bool(walk.word.get("add", 0) or walk.word.get("psum", 0)))


def _pixel_starts(cfg, walk) -> tuple[int, ...] | None:
    """Element address of channel 0 of each pixel of `walk`, as the writer's position
    counters produce it (mars.hw.writer._position); None when all are multiples of G
    (then every pixel starts a word and only the channel count sets its lane groups)."""
    w, G = walk.word, cfg.rows_per_step
    if all(w[f] % G == 0 for f in ("out_base", "out_pitch", "out_row_pitch")):
        return None
    mask = (1 << (UnitFormat(cfg).value_bits + 1)) - 1
    out_w, k = w["desc"]["out_w"], w["pool_k"]
    ox = kx = ky = row = pix = 0
    starts = []
    for _ in range(walk.pixels):
        starts.append((w["out_base"] + pix) & mask)
        if ox == out_w - 1:
            ox = kx = 0
            if ky == k - 1:
                ky, row = 0, (row + w["out_row_pitch"]) & mask
                pix = row
            else:
                ky, pix = ky + 1, row
        else:
            ox += 1
            if kx == k - 1:
                kx, pix = 0, (pix + w["out_pitch"]) & mask
            else:
                kx += 1
    return tuple(starts)


def network_cycles(mapping, *, skip_loads: bool = False) -> list[PhaseCycles]:
    """Cycles of every phase of one inference of `mapping` (a `mars.sw.mapper.Mapping`),
    as the top's per-phase counters report them.  `skip_loads`: the weights are already
    in the macros (a resident mapping after its first inference).  With the
    configuration's ``hide_loads`` the loaders run the next phase's hidden loads
    (`Load.hidden`) during each WALK state, which ends when the units and the loaders
    wait (hw/controller.py)."""
    cfg = mapping.config
    unit_programs, loader_programs = _programs(mapping, skip_loads)
    fmt = UnitFormat(cfg)
    units = [_Unit(p, cfg.cycles_per_step, fmt.write_lanes, fmt.insn_chunks, fmt.param_chunks,
                   group=cfg.rows_per_step, slot=u, units=cfg.macros,
                   latency=writer_latency(cfg))
             for u, p in enumerate(unit_programs)]
    clock = [0]                 # cycles since the run started (the top's write slots)
    loaders = [_Loader(p) for p in loader_programs]
    # The controller's go pulses are registers (hw/controller.py): high the cycle after
    # its decision, the first cycle of the next state, which ignores the waiting flags
    # then (the released blocks still wait).
    go = {"units": False, "loaders": False}
    hide = bool(cfg.hide_loads)
    # hw/controller.py's ``more`` register: last cycle, the controller was in a LOAD
    # state or in the WALK state of a phase that is not the run's last.
    more = [False]
    ctrl = {"load": True, "phase": 0}

    def state_until(done, *, release_units: bool) -> int:
        """Cycles of one controller state: tick everything until `done()` holds (not in
        the cycle of the go pulse that started the state), then release the units (with
        hide_loads the loaders too) or the loaders from their SYNC (their go pulse comes
        the next cycle)."""
        cycles = 0
        while True:
            cycles += 1
            last = done() and not go["loaders" if release_units else "units"]
            for ld in loaders:
                ld.tick(go["loaders"])
            for u in units:
                u.tick(go["units"], clock[0], more[0])
            clock[0] += 1
            more[0] = ctrl["load"] or ctrl["phase"] + 1 < len(mapping.phases)
            go["units"] = last and release_units
            go["loaders"] = last and (hide or not release_units)
            if last:
                return cycles

    def all_loaders() -> bool:
        return all(ld.waiting for ld in loaders)

    def all_units() -> bool:
        return all(u.waiting for u in units)

    results = []
    for p, phase in enumerate(mapping.phases):
        ctrl["phase"] = p
        for u in units:
            u.walk.first_gather = u.walk.last_offer = None
        # LOAD: every loader (and unit) at a SYNC -> release the units (and, with
        # hide_loads, the loaders: the next phase's hidden loads); WALK: every unit (and,
        # with hide_loads, every loader) back at a SYNC -> release the loaders.
        ctrl["load"] = True
        load = state_until(lambda: all_loaders() and all_units(), release_units=True)
        ctrl["load"] = False
        walk = state_until(lambda: all_units() and (not hide or all_loaders()),
                           release_units=False)
        gathers = [u.walk.first_gather for u in units if u.walk.first_gather is not None]
        offers = [u.walk.last_offer for u in units if u.walk.last_offer is not None]
        results.append(PhaseCycles(phase.layer, load + walk, load, walk,
                                   min(gathers, default=None), max(offers, default=None)))
    return results


def read_margins(phases: list[PhaseCycles]) -> list[int]:
    """Cycles from the last word offered before each phase to that phase's first gather
    take (``first_gather`` minus the latest earlier ``last_offer``), for every phase
    that gathers after some phase offered; the RTL is exact only where each is at least
    `READ_MARGIN`."""
    margins, offered = [], None
    for phase in phases:
        if phase.first_gather is not None and offered is not None:
            margins.append(phase.first_gather - offered)
        if phase.last_offer is not None:
            offered = phase.last_offer
    return margins


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
def walk_cycles(cps: int, lanes: int, steps: int, pixels: int, n_valid: int, *,
                group: int = 1, slot: int = 0, units: int = 1, t0: int = 0,
                latency: int = WRITER_STAGES) -> int:
    """Cycles from a walk's START to its last write (for reports and quick estimates):
    an aligned walk (phase 0, one word read a payload) of a unit with write slot `slot`
    of `units`, whose first cycle after START is cycle `t0` of the run; `latency`: the
    writer's (`writer_latency`)."""
    walk = _Walk(cps, lanes, group=group, slot=slot, units=units, latency=latency)
    walk.begin(steps, pixels, n_valid)
    cycles = 1
    walk.tick(t0)
    while not walk.walk_done():
        walk.tick(t0 + cycles)
        cycles += 1
    return cycles
