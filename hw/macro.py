"""Behavioural model of one SRAM-CIM macro, as synthesizable Amaranth.

The macro holds R rows of C one-bit cells, split into D *word-line domains* of C/D
columns (D = P at partition skip granularity, 1 at macro granularity).  Each domain
switches on its own row slot (G consecutive rows) with its own G unsigned Ab-bit
activations, so the stored groups of different partitions can come from different K-rows.
A compute step takes a row slot and G activations per domain and returns one signed
partial sum per output channel (C/Wb of them), computed bit-serially exactly as
`mars.sw.golden.macro_step` computes each domain's channels.

Storage is one `amaranth.lib.memory.Memory` per domain, of R/G words of G*C/D bits: a row
slot is one word, so all G rows of a step come out of a single synchronous read, and
synthesis maps the arrays to block RAM.  Rows are written one at a time (all C columns,
every domain) through a write port with C/D-bit granularity.

Binary/ternary readouts (HCiM): each column's popcount goes through a comparator,
``c = [p >= readout_threshold]``, and a digital unit adds the column's scale factor code
(input `scales`, held by the macro unit for a whole walk: its parameter word) where ``c`` is one: ``+a[n, j]``,
or for ternary ``-a[n, j]`` on the sign column; where ``c`` is zero the adder input is
gated to zero (nothing is added).  The result is the scaled sum in units of
``2**-scale_frac_bits`` (docs/macro.md).

Pipeline (docs/macro.md): a step occupies the front of the macro for ``Ab /
act_bits_per_cycle`` cycles (stage F, one item per cycle, reads issued at the accept);
each item then passes R (the storage read data and the item's b activation bits
registered), P (AND and popcount over the G rows, or the comparator bit, registered) and
S (weighted sum and Horner shift-add into the accumulators; the last item of a step
writes the result register).  The next step is accepted in the last F cycle of the
current one, so back-to-back steps sustain one step per ``Ab / act_bits_per_cycle``
cycles; the result appears three cycles after the step's last F cycle (one before the
pipelining).  The result register has a spare behind it (the pipeline stalls only when
both are full), so the `ready` of ``result`` reaches only those two registers: ``adv``
and ``request.ready`` come from the macro's own registers.  At most five steps are in
flight (accepted, result not yet taken).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig, ReadoutMode

__all__ = ["CimMacro", "write_layout", "request_layout", "result_layout", "scales_layout"]


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


def _popcount(bits: list) -> object:
    """Balanced adder tree over one-bit values (shorter paths than a chain)."""
    values = list(bits)
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
        G, Wb, Ab = cfg.rows_per_step, cfg.weight_bits, cfg.act_bits
        b = cfg.act_bits_per_cycle
        steps = cfg.cycles_per_step
        m = Module()

        D, Cd = cfg.wordline_domains, cfg.cols_per_domain
        n_per_domain = cfg.channels_per_macro // D

        # -- storage: one memory per word-line domain, a row slot per word -------------
        read_ports = []
        for d in range(D):
            # ``ram_style = "block"`` makes Yosys's memory_libmap map the array to block
            # RAM (DP16KD, SB_RAM40_4K); left to itself it picks LUT RAM or flip-flops
            # for the shallow (R/G-word) arrays of the small presets.
            storage = Memory(shape=unsigned(G * Cd), depth=cfg.row_slots, init=[],
                             attrs={"ram_style": "block"})
            m.submodules[f"storage{d}"] = storage
            write_port = storage.write_port(granularity=Cd)
            read_ports.append(storage.read_port(domain="sync"))
            m.d.comb += [
                write_port.addr.eq(self.write.payload.slot),
                write_port.data.eq(self.write.payload.data[d * Cd:(d + 1) * Cd].replicate(G)),
            ]
            for lane in range(G):
                m.d.comb += write_port.en[lane].eq(
                    self.write.valid & (self.write.payload.lane == lane))
        m.d.comb += self.write.ready.eq(1)

        # -- compute-step control (stage F: one item per cycle of a step) ----------------
        # Every register below advances together (``adv``); the only stall is a step's
        # last item that would finish into a full result register and spare, which freezes the
        # whole pipeline (the storage read data included: no read is issued meanwhile).
        # Reset-less (hw/regs.py): the activations, the read rows and the popcounts
        # travel with an item and are used only with its valid bit; the accumulators
        # restart from 0 at a step's first item; the result register and the spare are
        # read only under their valid.  The items' markers and the counters keep it.
        busy = Signal()
        cycle = Signal(range(steps))
        acts = Signal.like(self.request.payload.acts, reset_less=True)  # shifted by b
        item = data.StructLayout({"valid": 1, "first": 1, "last": 1})
        r_item, p_item = Signal(item), Signal(item)     # the items in stages R and P
        x_r = Signal(data.ArrayLayout(data.ArrayLayout(unsigned(b), G), D), reset_less=True)
        rows_r = Signal(data.ArrayLayout(unsigned(G * Cd), D), reset_less=True)
        accs = Signal(data.ArrayLayout(signed(cfg.psum_bits), cfg.channels_per_macro),
                      reset_less=True)
        result = Signal(result_layout(cfg), reset_less=True)   # drives `result.payload`
        m.d.comb += self.result.payload.eq(result)

        # The result register and a spare behind it: the pipeline stalls only when a
        # step's last item would finish while both are full (registers only), so the
        # accumulator's `ready` reaches the two registers' loads and not `adv`, which
        # enables every pipeline register and makes `request.ready`.
        spare = Signal(result_layout(cfg), reset_less=True)
        spare_valid = Signal()
        adv = Signal()
        m.d.comb += adv.eq(~(p_item.valid & p_item.last
                             & self.result.valid & spare_valid))
        last = busy & (cycle == steps - 1)
        accept = self.request.valid & self.request.ready
        m.d.comb += self.request.ready.eq(adv & (~busy | last))
        # The reads are issued as a request is accepted; with `en` low afterwards the read
        # data holds for the whole step, so the array is read once per step.
        for d, read_port in enumerate(read_ports):
            m.d.comb += [
                read_port.addr.eq(self.request.payload.slots[d]),
                read_port.en.eq(accept),
            ]

        # -- stage R: register the storage read and this cycle's b activation bits ----------
        # -- stage P: AND with the activation bits, popcount over the G rows (registered) ---
        q_max = cfg.readout_max
        counts = {}         # (n, k, j) -> registered popcount, or comparator bit (HCiM)
        with m.If(adv):
            m.d.sync += [r_item.valid.eq(busy), r_item.first.eq(cycle == 0),
                         r_item.last.eq(cycle == steps - 1), p_item.eq(r_item)]
            for d in range(D):
                m.d.sync += rows_r[d].eq(read_ports[d].data)
                for g in range(G):
                    m.d.sync += x_r[d][g].eq(acts[d][g][Ab - b:])
        for n in range(cfg.channels_per_macro):
            d, col = divmod(n, n_per_domain)
            rows = [rows_r[d][g * Cd:(g + 1) * Cd] for g in range(G)]
            for k in range(b):          # k-th bit of this cycle's chunk, weight 2**k
                x_bit = [x_r[d][g][k] for g in range(G)]
                for j in range(Wb):
                    p = _popcount([x_bit[g] & rows[g][col * Wb + j] for g in range(G)])
                    if cfg.scaled_readout:
                        value = p >= cfg.readout_threshold      # the comparator bit
                    elif cfg.readout_mode is ReadoutMode.SATURATING and q_max < G:
                        value = Mux(p > q_max, q_max, p)
                    else:
                        value = p
                    reg = Signal(len(Value.cast(value)), name=f"count_{n}_{k}_{j}",
                                 reset_less=True)
                    with m.If(adv):
                        m.d.sync += reg.eq(value)
                    counts[n, k, j] = reg

        # -- stage S: weighted sum, Horner shift-add into the accumulators -------------------
        next_accs = []
        for n in range(cfg.channels_per_macro):
            terms = []
            for k in range(b):
                for j in range(Wb):
                    if cfg.scaled_readout:
                        # the digital unit: add the scale factor (gated to zero when the
                        # comparator bit is zero)
                        term = Mux(counts[n, k, j], self.scales[n][j], 0) << k
                        negate = cfg.readout_mode is ReadoutMode.TERNARY and j == Wb - 1
                    else:
                        term = counts[n, k, j] << (j + k)
                        negate = j == Wb - 1
                    terms.append(-term if negate else term)
            contribution = terms[0]
            for term in terms[1:]:
                contribution = contribution + term
            next_accs.append(Mux(p_item.first, 0, accs[n] << b) + contribution)

        push, pop = Signal(), Signal()
        m.d.comb += [push.eq(adv & p_item.valid & p_item.last),
                     pop.eq(self.result.valid & self.result.ready)]
        with m.If(pop):
            with m.If(spare_valid):             # the spare moves up, the new result behind
                m.d.sync += result.eq(spare)
                with m.If(push):
                    m.d.sync += [spare[n].eq(v) for n, v in enumerate(next_accs)]
                with m.Else():
                    m.d.sync += spare_valid.eq(0)
            with m.Elif(push):
                m.d.sync += [result[n].eq(v) for n, v in enumerate(next_accs)]
            with m.Else():
                m.d.sync += self.result.valid.eq(0)
        with m.Elif(push):
            with m.If(self.result.valid):       # the spare is empty (`adv`)
                m.d.sync += spare_valid.eq(1)
                m.d.sync += [spare[n].eq(v) for n, v in enumerate(next_accs)]
            with m.Else():
                m.d.sync += self.result.valid.eq(1)
                m.d.sync += [result[n].eq(v) for n, v in enumerate(next_accs)]
        with m.If(adv):
            with m.If(busy):
                m.d.sync += cycle.eq(cycle + 1)
                for d in range(D):
                    for g in range(G):
                        m.d.sync += acts[d][g].eq(acts[d][g] << b)
            with m.If(last):
                m.d.sync += busy.eq(0)
            with m.If(p_item.valid):
                for n, value in enumerate(next_accs):
                    m.d.sync += accs[n].eq(value)
        with m.If(accept):
            m.d.sync += [busy.eq(1), cycle.eq(0), acts.eq(self.request.payload.acts)]
        return m

