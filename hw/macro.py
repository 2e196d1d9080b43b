"""Behavioural model of one SRAM-CIM macro, as synthesizable Amaranth.

The macro holds R rows of C one-bit cells.  A compute step names one *row slot* (G
consecutive rows, switched on together) and brings G unsigned Ab-bit activations; the macro
returns one signed partial sum per output channel (C/Wb of them), computed bit-serially
exactly as `mars.sw.golden.macro_step` does.

Storage is one `amaranth.lib.memory.Memory` of R/G words of G*C bits: a row slot is one
word, so all G rows of a step come out of a single synchronous read and synthesis maps the
array to block RAM.  Rows are written one at a time through a write port with C-bit
granularity.

Timing: a step occupies the macro for ``Ab / act_bits_per_cycle`` cycles.  The next step's
read is issued in the last cycle of the current one, so back-to-back steps sustain one step
per ``Ab / act_bits_per_cycle`` cycles; the result appears one cycle after the last.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig, ReadoutMode

__all__ = ["CimMacro", "write_layout", "request_layout", "result_layout"]


def write_layout(config: MarsConfig) -> data.StructLayout:
    """One row write: row ``slot * G + lane`` gets the C-bit `data` (see `pack_row`)."""
    return data.StructLayout({
        "slot": range(config.row_slots),
        "lane": range(config.rows_per_step),
        "data": unsigned(config.cols),
    })


def request_layout(config: MarsConfig) -> data.StructLayout:
    """One compute step: the row slot to switch on and the G activations for its rows."""
    return data.StructLayout({
        "slot": range(config.row_slots),
        "acts": data.ArrayLayout(unsigned(config.act_bits), config.rows_per_step),
    })


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
        Compute steps.
    result : Out(stream.Signature(result_layout(config)))
        Partial sums, one payload per accepted request, in order.
    """

    def __init__(self, config: MarsConfig):
        self._config = config
        super().__init__({
            "write": In(stream.Signature(write_layout(config))),
            "request": In(stream.Signature(request_layout(config))),
            "result": Out(stream.Signature(result_layout(config))),
        })

    @property
    def config(self) -> MarsConfig:
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        G, C, Wb, Ab = cfg.rows_per_step, cfg.cols, cfg.weight_bits, cfg.act_bits
        b = cfg.act_bits_per_cycle
        steps = cfg.cycles_per_step
        m = Module()

        m.submodules.storage = storage = Memory(
            shape=unsigned(G * C), depth=cfg.row_slots, init=[])
        write_port = storage.write_port(granularity=C)
        read_port = storage.read_port(domain="sync")

        # -- row writes ----------------------------------------------------------------
        m.d.comb += [
            self.write.ready.eq(1),
            write_port.addr.eq(self.write.payload.slot),
            write_port.data.eq(self.write.payload.data.replicate(G)),
        ]
        for lane in range(G):
            m.d.comb += write_port.en[lane].eq(
                self.write.valid & (self.write.payload.lane == lane))

        # -- compute-step control --------------------------------------------------------
        busy = Signal()
        cycle = Signal(range(steps))
        acts = Signal(data.ArrayLayout(unsigned(Ab), G))   # shifted left by b per cycle
        accs = Signal(data.ArrayLayout(signed(cfg.psum_bits), cfg.channels_per_macro))

        last = busy & (cycle == steps - 1)
        out_free = ~self.result.valid | self.result.ready
        finish = last & out_free
        advance = busy & ~last
        accept = self.request.valid & self.request.ready
        m.d.comb += self.request.ready.eq(~busy | finish)
        # The read is issued as a request is accepted; with `en` low afterwards the read
        # data holds for the whole step, so the array is read once per step.
        m.d.comb += [
            read_port.addr.eq(self.request.payload.slot),
            read_port.en.eq(accept),
        ]

        # -- datapath: this cycle's b activation bits (MSB first, Horner shift-add) --------
        rows = [read_port.data[g * C:(g + 1) * C] for g in range(G)]
        q_max = cfg.readout_max
        next_accs = []
        for n in range(cfg.channels_per_macro):
            terms = []
            for k in range(b):          # k-th bit of this cycle's chunk, weight 2**k
                x_bit = [acts[g][Ab - b + k] for g in range(G)]
                for j in range(Wb):
                    p = _popcount([x_bit[g] & rows[g][n * Wb + j] for g in range(G)])
                    if cfg.readout_mode is ReadoutMode.SATURATING and q_max < G:
                        p = Mux(p > q_max, q_max, p)
                    term = p << (j + k)
                    terms.append(-term if j == Wb - 1 else term)
            contribution = terms[0]
            for term in terms[1:]:
                contribution = contribution + term
            next_accs.append((accs[n] << b) + contribution)

        with m.If(self.result.valid & self.result.ready):
            m.d.sync += self.result.valid.eq(0)
        with m.If(advance):
            m.d.sync += cycle.eq(cycle + 1)
            for n, value in enumerate(next_accs):
                m.d.sync += accs[n].eq(value)
            for g in range(G):
                m.d.sync += acts[g].eq(acts[g] << b)
        with m.If(finish):
            m.d.sync += [busy.eq(0), self.result.valid.eq(1)]
            for n, value in enumerate(next_accs):
                m.d.sync += self.result.payload[n].eq(value)
        with m.If(accept):
            m.d.sync += [busy.eq(1), cycle.eq(0), acts.eq(self.request.payload.acts)]
            for n in range(cfg.channels_per_macro):
                m.d.sync += accs[n].eq(0)
        return m

