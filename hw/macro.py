"""Behavioural model of one SRAM-CIM macro, as synthesizable Amaranth.

The macro holds R rows of C one-bit cells, split into D *word-line domains* of C/D
columns (D = P at partition skip granularity, 1 at macro granularity).  Each domain
switches on its own row slot (G consecutive rows) with its own G unsigned Ab-bit
activations, so the stored groups of different partitions can come from different K-rows.
A compute step takes a row slot and G activations per domain and returns one signed
partial sum per output channel (C/Wb of them), computed exactly as
`mars.sw.golden.macro_step` computes each domain's channels.

Storage is one `amaranth.lib.memory.Memory` per domain, of R/G x Q words of G/Q rows
(G/Q x C/D bits, ``Q = config.macro_read_chunks = gcd(G, Ab / act_bits_per_cycle)``): a
step's G rows come out row-serially, G/Q rows a cycle over the step's first Q cycles,
and synthesis maps the arrays to block RAM.  Rows are written one at a time (all C
columns, every domain) through a write port with C/D-bit granularity.

Binary/ternary readouts (HCiM): each column's popcount goes through a comparator,
``c = [p >= readout_threshold]``, and a digital unit adds the column's scale factor code
(input `scales`, held by the macro unit for a whole walk: its parameter word) where
``c`` is one: ``+a[n, j]``, or for ternary ``-a[n, j]`` on the sign column; where ``c``
is zero the adder input is gated to zero (nothing is added).  The result is the scaled
sum in units of ``2**-scale_frac_bits`` (docs/macro.md).

Pipeline (docs/macro.md): a step occupies the front of the macro for ``Ab /
act_bits_per_cycle`` cycles (stage F, one item per cycle; the first Q items carry G/Q rows
each, read one a cycle from the accept on); each item then passes R (the storage read
data and the item's rows' activations, all Ab bits, registered), P (per pair of weight
bits the weighted sum of the activations of the rows whose bit is set, or for the
non-linear readouts the running per-bit-plane popcounts and their readout, registered)
and S (weighted sum into the accumulators; the last item of a step writes the result
register).  The next step is
accepted in the last F cycle of the current one, so back-to-back steps sustain one step
per ``Ab / act_bits_per_cycle`` cycles; the result appears three cycles after the step's
last F cycle.  The results wait in a ring of two registers (the pipeline stalls only when
both are full; an empty one follows the sums, `mars.hw.regs.ring2`), so the `ready` of
``result`` reaches only the ring's flags and pointer: ``adv`` and ``request.ready`` come
from the macro's own registers, and so do the wide registers' enables.  At most five steps are in
flight (accepted, result not yet taken).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig, ReadoutMode

from .bram import block_ram
from .regs import SELECT_FANOUT, replicas, ring2, shares

__all__ = ["CimMacro", "write_layout", "request_layout", "result_layout",
           "scales_layout"]


def write_layout(config: MarsConfig) -> data.StructLayout:
    """One row write: row ``slot * G + lane`` gets the C-bit `data` (see `pack_row`)."""
    return data.StructLayout({
        "slot": range(config.row_slots),
        "lane": range(config.rows_per_step),
        "data": unsigned(config.cols),
    })


def request_layout(config: MarsConfig) -> data.StructLayout:
    """One compute step: per word-line domain, the row slot to switch on and the G
    activations for its rows."""
    D = config.wordline_domains
    return data.StructLayout({
        "slots": data.ArrayLayout(range(config.row_slots), D),
        "acts": data.ArrayLayout(
            data.ArrayLayout(unsigned(config.act_bits), config.rows_per_step), D),
    })


def scales_layout(config: MarsConfig) -> data.ArrayLayout:
    """Binary/ternary readouts: the column scale factor codes, ``[n][j]`` signed
    ``scale_bits`` wide (channel n, weight bit column j), flattened LSB first."""
    return data.ArrayLayout(data.ArrayLayout(signed(config.scale_bits), config.weight_bits),
                            config.channels_per_macro)


def result_layout(config: MarsConfig) -> data.ArrayLayout:
    """One partial sum per output channel of the macro."""
    return data.ArrayLayout(signed(config.psum_bits), config.channels_per_macro)


def _sum_tree(values: list) -> object:
    """Balanced adder tree (popcounts of one-bit values, weighted sums; shorter paths than
    a chain)."""
    values = list(values)
    while len(values) > 1:
        paired = [a + b for a, b in zip(values[0::2], values[1::2])]
        values = paired + values[len(paired) * 2:]
    return values[0]


class CimMacro(wiring.Component):
    """One CIM macro.

    Parameters
    ----------
    config : MarsConfig
        Geometry and readout of the macro.

    Members
    -------
    write : In(stream.Signature(write_layout(config)))
        Row writes; one per cycle, `ready` is always high.
    request : In(stream.Signature(request_layout(config)))
        Compute steps: a row slot and G activations per word-line domain.
    result : Out(stream.Signature(result_layout(config)))
        Partial sums, one payload per accepted request, in order.
    scales : In(scales_layout(config))
        Binary/ternary readouts only: the column scale factor codes, stable during a step.
    """

    def __init__(self, config: MarsConfig):
        self._config = config
        members = {
            "write": In(stream.Signature(write_layout(config))),
            "request": In(stream.Signature(request_layout(config))),
            "result": Out(stream.Signature(result_layout(config))),
        }
        if config.scaled_readout:
            members["scales"] = In(scales_layout(config))
        super().__init__(members)

    @property
    def config(self) -> MarsConfig:
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        G, Ab = cfg.rows_per_step, cfg.act_bits
        steps = cfg.cycles_per_step
        Q, r = cfg.macro_read_chunks, cfg.rows_per_read
        m = Module()

        D, Cd = cfg.wordline_domains, cfg.cols_per_domain
        n_per_domain = cfg.channels_per_macro // D

        # -- storage: one memory per word-line domain, G/Q rows a word -------------------
        # Row-serial (issue 9): a step's rows come out G/Q a cycle over its first Q cycles,
        # so each domain's array is Q times deeper and Q times narrower than one word per
        # row slot: on default 32 bits x 256 words, one DP16KD instead of four, and a
        # quarter of the read wires (docs/macro.md, "Storage").
        read_ports = []
        for d in range(D):
            # Block RAM without collision logic (`block_ram`): the loader writes a row
            # slot only while no walk reads it (a LOAD state, when every unit waits at
            # its SYNC, or a hidden load into slots the phase's walks leave alone:
            # `mars.sw.mapper`, tests/test_mapper.py), and a read with no step accepted
            # is never used (below).
            storage = block_ram(unsigned(r * Cd), cfg.row_slots * Q, collision_free=True)
            m.submodules[f"storage{d}"] = storage
            write_port = storage.write_port(granularity=Cd)
            read_ports.append(storage.read_port(domain="sync"))
            lane = self.write.payload.lane
            m.d.comb += [
                write_port.addr.eq(self.write.payload.slot * Q + lane // r),
                write_port.data.eq(self.write.payload.data[d * Cd:(d + 1) * Cd].replicate(r)),
            ]
            for sub in range(r):
                m.d.comb += write_port.en[sub].eq(self.write.valid & (lane % r == sub))
        m.d.comb += self.write.ready.eq(1)

        # -- compute-step control (stage F: one item per cycle of a step) ----------------
        # Every register below advances together (``adv``); the only stall is a step's
        # last item that would finish into two full result registers, which freezes the
        # whole pipeline (the storage read data included: no read is issued meanwhile).
        # Reset-less (hw/regs.py): the activations, the read rows and the counts travel
        # with an item and are used only with its valid bit; the accumulators restart
        # from 0 (a step's last item and every empty slot clear them); the result
        # registers are read only
        # under their valid.  The items' markers and the counters keep it.
        busy = Signal()
        cycle = Signal(range(steps))
        acts = Signal.like(self.request.payload.acts, reset_less=True)  # shifted by G/Q rows
        slots = Signal.like(self.request.payload.slots, reset_less=True)
        item = data.StructLayout({"valid": 1, "last": 1})
        r_item = Signal(item)     # the items in stages R and P
        p_item = Signal(item)
        # The item's G/Q rows' activations, all Ab bits (zero for the items after the
        # step's Q reads: they add nothing).
        rows_r = Signal(data.ArrayLayout(unsigned(r * Cd), D), reset_less=True)
        accs = Signal(data.ArrayLayout(signed(cfg.psum_bits), cfg.channels_per_macro),
                      reset_less=True)

        # Two result registers in a ring (`ring2`): the pipeline stalls only when a
        # step's last item would finish while both are full (`full`, a register), so the
        # accumulator's `ready` reaches neither `adv`, which enables every pipeline
        # register and makes `request.ready`, nor the result registers' enables (an
        # empty one follows the sums; the ready moves only the ring's flags and pointer).
        push = Signal()
        pop = Signal()
        new = Signal(result_layout(cfg))
        ring = ring2(m, result_layout(cfg), new, push, pop, name="results",
                     fanout=SELECT_FANOUT)
        full_next = ring.full_next
        m.d.comb += [self.result.payload.eq(ring.payload), self.result.valid.eq(ring.valid)]
        # ``adv = ~(p_item.valid & p_item.last & full)`` kept as a register, from the next
        # values of `p_item` and `full`, with a copy per word-line domain for the enables
        # of its wide registers (`advs`: front, stages R and P) and one for its
        # channels' accumulators (`acc_ens`).  As a LUT of three
        # registers it enabled some 700 flip-flops spread over the macro: in the whole
        # top, 8.9 ns of routing into the accumulators' enable (issue 9,
        # docs/synthesis.md, session 18).  1 from the reset, as `p_item.valid` is 0.
        adv = Signal(init=1)
        p_valid_next = Mux(adv, r_item.valid, p_item.valid)
        p_last_next = Mux(adv, r_item.last, p_item.last)
        adv_next = ~(p_valid_next & p_last_next & full_next)
        m.d.sync += adv.eq(adv_next)
        advs = replicas(m, adv, adv_next, D, name="adv")
        acc_ens = replicas(m, adv, adv_next, D, name="acc_en")
        last = busy & (cycle == steps - 1)
        accept = self.request.valid & self.request.ready
        # ``~busy | last`` (the front takes a step now) kept as a register, `free`, from
        # the next values of `busy` and `cycle`, and a copy per domain for the enables of
        # its activations and slots (`replicas`): no compare of `cycle` lies in front of
        # `request.ready` or those enables (issue 9: in the whole top `cycle` -> `last`
        # -> the slots' enable crossed the unit's quadrant, 14.9 ns of routing).
        busy_next = Signal()
        cycle_next = Signal.like(cycle)
        m.d.comb += [busy_next.eq(Mux(accept, 1, Mux(adv & last, 0, busy))),
                     cycle_next.eq(Mux(accept, 0, Mux(adv & busy, cycle + 1, cycle)))]
        free = Signal(init=1)
        free_next = ~busy_next | (cycle_next == steps - 1)
        m.d.sync += free.eq(free_next)
        frees = replicas(m, free, free_next, D, name="free") if D > 1 else [free]
        m.d.comb += self.request.ready.eq(adv & free)
        # Chunk 0 is read as a request is accepted, chunk c + 1 in the step's cycle c; with
        # `en` low afterwards the last chunk's data holds.  `more` (registers only) and an
        # accept never coincide: an accept needs an idle front or the step's last cycle.
        # The read is enabled whenever a request could be accepted (`request.ready`),
        # valid or not: an unaccepted read is never used (the front is idle next cycle,
        # its items invalid), and the enable then comes from the macro's registers only,
        # not from the gather's offer (docs/synthesis.md, "Registered enables").
        more = Signal()
        m.d.comb += more.eq(busy & (cycle < Q - 1)) if Q > 1 else more.eq(0)
        for d, read_port in enumerate(read_ports):
            m.d.comb += [
                read_port.addr.eq(Mux(more, slots[d] * Q + cycle + 1,
                                      self.request.payload.slots[d] * Q)),
                read_port.en.eq(self.request.ready | (adv & more)),
            ]

        # -- stage R: register the storage read and the item's G/Q rows' activations -------
        with m.If(adv):
            m.d.sync += [r_item.valid.eq(busy),
                         r_item.last.eq(cycle == steps - 1), p_item.eq(r_item)]
        for d in range(D):
            with m.If(advs[d]):
                m.d.sync += rows_r[d].eq(read_ports[d].data)
        # The item's activations (row i's Ab bits at ``i * Ab``), a copy per channel
        # (`replicas`), beside the channel's AND and popcounts: one register per domain
        # fed every channel of the domain, across the macro, and was the whole top's
        # critical path (issue 9, docs/synthesis.md, session 23: 6.8 ns of routing, its
        # sinks 26 tiles away on average, the storage reads' 11).
        x_r = []                                        # per channel
        for d in range(D):
            x_next = Cat(*(Mux(cycle < Q, acts[d][i], 0) for i in range(r)))
            x_r += replicas(m, Signal(r * Ab, reset_less=True), x_next, n_per_domain,
                            name=f"x_r{d}_", enable=advs[d])

        # -- stage P: AND with the activation bits, sums over the item's rows (registered) --
        # -- stage S: weighted sum into the accumulators -------------------------------------
        linear = not cfg.scaled_readout and not (
            cfg.readout_mode is ReadoutMode.SATURATING and cfg.readout_max < G)
        # The running sums start every step from 0: a step's last item, and every
        # empty slot, clear them (``mid``: a valid item that is not its step's last), so
        # each adder is running sum + the item's share, and 0-or-sum is chosen after
        # the carry chain, in front of the register, where the `first` of a step chose
        # between 0 and the running sum at the head of hundreds of carry chains (issue 9:
        # the whole top's critical paths, 6 to 10 ns of routing before the chain,
        # docs/synthesis.md, sessions 16 to 19).  A copy of ``mid`` per SELECT_FANOUT
        # bits of those registers (`replicas`); copy c serves channel n when
        # ``c == n * copies // N``.  The count is a multiple of D, so that every copy
        # serves channels of one word-line domain only: a domain's datapath gathers
        # around its storage (a copy shared by two domains lay 9.9 ns of routing from
        # its far sinks, session 18).
        N = cfg.channels_per_macro

        def per_domain(bits: int) -> int:               # at most one per channel
            return min(D * -(-len(shares(bits, SELECT_FANOUT)) // D), N)

        if linear:
            # stage S's: the item in P, from its next value (the register is loaded
            # every cycle, as `adv`)
            copies = per_domain(N * cfg.psum_bits)
            mids = replicas(m, Signal(), p_valid_next & ~p_last_next, copies, name="p_mid")
            next_accs = self._linear(m, advs, x_r, rows_r, accs)
        else:
            # stage P's counts: the item in R
            count_bits = Shape.cast(range(G + 1)).width
            copies = per_domain(N * cfg.act_bits * cfg.weight_bits * count_bits)
            mids = replicas(m, Signal(), busy & (cycle != steps - 1), copies, name="r_mid",
                            enable=adv)
            next_accs = self._per_bit_plane(m, advs, mids, x_r, rows_r)

        m.d.comb += [push.eq(adv & p_item.valid & p_item.last),
                     pop.eq(self.result.valid & self.result.ready),
                     *(new[n].eq(v) for n, v in enumerate(next_accs))]
        m.d.sync += [busy.eq(busy_next), cycle.eq(cycle_next)]
        # The step's activations and slots load whenever a request could be accepted
        # (`request.ready`), valid or not, else shift: their enable is `adv` (a copy per
        # domain) and the choice `free` (a copy per domain), so the gather's offer
        # (`request.valid`) reaches only `busy`, `cycle` and `free`, not the N x Ab-bit
        # enables.  What an unaccepted load writes is never used: the front is idle
        # until the next accept loads them again.
        for d in range(D):
            with m.If(advs[d]):
                with m.If(frees[d]):
                    m.d.sync += [acts[d].eq(self.request.payload.acts[d]),
                                 slots[d].eq(self.request.payload.slots[d])]
                if Q > 1:                       # the next G/Q rows move to the front
                    with m.Else():
                        for g in range(G - r):
                            m.d.sync += acts[d][g].eq(acts[d][g + r])
        if linear:
            for n, value in enumerate(next_accs):
                with m.If(acc_ens[n // n_per_domain]):
                    m.d.sync += accs[n].eq(Mux(mids[n * copies // N], value, 0))
        return m

    def _row_bits(self, rows_r, n: int, j: int) -> list:
        """Bit ``j`` of channel ``n``'s weight in each of the item's G/Q rows."""
        cfg = self._config
        Cd, Wb = cfg.cols_per_domain, cfg.weight_bits
        d, col = divmod(n, cfg.channels_per_macro // cfg.wordline_domains)
        return [rows_r[d][i * Cd + col * Wb + j] for i in range(cfg.rows_per_read)]

    def _linear(self, m, advs, x_r, rows_r, accs) -> list:
        """Exact (and unclamped saturating) readouts: the sum is linear in the rows, so
        each item adds its G/Q rows' share and the accumulators sum the Q shares.

        P: per channel n and weight bit j, ``t[n][j] = sum_i w_i[j] * x_i`` over the
        item's rows (the AND of every bit plane with the weight bit, i.e. the popcounts
        of all Ab bit planes weighted ``2**k`` at once), and at once the weighted sums of
        the weight bits in pairs, ``u[n][p] = sum_{j in {2p, 2p+1}} s_j * t[n][j] << j``
        (``s_j = -1`` on the sign column), registered; S: ``acc + sum_p u[n][p]``
        (``acc`` is 0 at a step's first item): over the step the same sum as
        docs/macro.md's ``sum_i sum_j 2^i s_j 2^j p[i][j][n]``.  The pairs split the
        adder levels evenly between P and S (2 and 2 on default, was 1 and 3: S's carry
        chains into the accumulators were among the whole top's latest paths, issue 9)."""
        cfg = self._config
        Wb, Ab, N = cfg.weight_bits, cfg.act_bits, cfg.channels_per_macro
        next_accs = []
        for n in range(N):
            d = n // (N // cfg.wordline_domains)
            pairs = []
            for p in range(0, Wb, 2):
                plus, minus = [], []
                for j in range(p, min(p + 2, Wb)):
                    bits = self._row_bits(rows_r, n, j)
                    t = _sum_tree([Mux(w, x_r[n][i * Ab:(i + 1) * Ab], 0)
                                   for i, w in enumerate(bits)])
                    (minus if j == Wb - 1 else plus).append(t << j)
                if not minus:
                    value = _sum_tree(plus)
                else:
                    value = _sum_tree(plus) - minus[0] if plus else -minus[0]
                reg = Signal(Value.cast(value).shape(), name=f"pairsum_{n}_{p // 2}",
                             reset_less=True)
                with m.If(advs[d]):
                    m.d.sync += reg.eq(value)
                pairs.append(reg)
            next_accs.append(accs[n] + _sum_tree(pairs))
        return next_accs

    def _per_bit_plane(self, m, advs, mids, x_r, rows_r) -> list:
        """Clamped saturating and binary/ternary readouts: non-linear in the popcount, so
        each bit plane's popcount is summed whole before the readout.

        P: per channel n, input bit k and weight bit j, ``whole = cnt + the popcount
        over the item's rows``, whose readout (the clamp or the comparator bit) is
        registered and is the step's at its last item; ``cnt`` takes ``whole`` of an
        item in mid-step, 0 of a step's last item or an empty slot (``mids``); S (the
        last item's result): the weighted sum of the Ab x Wb readouts, docs/macro.md's
        ``y[n]``."""
        cfg = self._config
        Wb, Ab, G = cfg.weight_bits, cfg.act_bits, cfg.rows_per_step
        q_max = cfg.readout_max
        read = {}
        for n in range(cfg.channels_per_macro):
            d = n // (cfg.channels_per_macro // cfg.wordline_domains)
            for j in range(Wb):
                bits = self._row_bits(rows_r, n, j)
                mid = mids[n * len(mids) // cfg.channels_per_macro]
                for k in range(Ab):
                    cnt = Signal(range(G + 1), name=f"count_{n}_{k}_{j}", reset_less=True)
                    whole = cnt + _sum_tree(
                        [x_r[n][i * Ab + k] & w for i, w in enumerate(bits)])
                    if cfg.scaled_readout:
                        value = whole >= cfg.readout_threshold      # the comparator bit
                    else:
                        value = Mux(whole > q_max, q_max, whole)
                    reg = Signal(len(Value.cast(value)), name=f"read_{n}_{k}_{j}",
                                 reset_less=True)
                    with m.If(advs[d]):
                        m.d.sync += [cnt.eq(Mux(mid, whole, 0)), reg.eq(value)]
                    read[n, k, j] = reg
        next_accs = []
        for n in range(cfg.channels_per_macro):
            terms = []
            for k in range(Ab):
                for j in range(Wb):
                    if cfg.scaled_readout:
                        # the digital unit: add the scale factor (gated to zero when the
                        # comparator bit is zero)
                        term = Mux(read[n, k, j], self.scales[n][j], 0) << k
                        negate = cfg.readout_mode is ReadoutMode.TERNARY and j == Wb - 1
                    else:
                        term = read[n, k, j] << (j + k)
                        negate = j == Wb - 1
                    terms.append(-term if negate else term)
            next_accs.append(_sum_tree(terms))
        return next_accs
