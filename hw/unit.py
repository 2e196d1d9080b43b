"""A macro unit: one CIM macro with the machinery that keeps it busy.

A macro unit (MU) runs its own program of *walks*.  One walk computes one block set (the
D output blocks held by the macro's D word-line domains) over a band of output rows:

    decoders (one per domain, `SparseDecoder`) -> activation gather (D*G buffer reads)
      -> macro step (`CimMacro`) -> accumulate over the pixel's steps (+ bias)
      -> writer: requantise + ReLU, fused max pooling, write to the output buffer
         (or the raw accumulators to the result memory for the last layer)

Every stage is a stream with back-pressure; the D decoders are started together and their
payloads are taken together, so they stay in step (fillers pad the shorter index codes).
The program (``instruction_layout``) holds WALKs and one SYNC at the end of each layer;
at a SYNC the unit waits, drained, for the controller's ``go``.

The activation memory belongs to the top: the unit drives its read addresses
(``act_addr``, one per lane of every domain, with the buffer bank as the top bit) and
receives the data one cycle later.  Its output writes go through ``out_*`` and the read
for pooling through ``pool_addr``/``pool_data`` (a read port transparent for the unit's
write port, so back-to-back read-modify-writes of one address are exact).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig
from mars.contract.decoder import index_write_layout, ktable_write_layout
from mars.contract.program import Op, UnitFormat, instruction_layout, param_layout

from .decoder import SparseDecoder
from .macro import CimMacro, write_layout

__all__ = ["MacroUnit"]


def _write_layout(addr_bits: int, data_shape) -> data.StructLayout:
    return data.StructLayout({"addr": unsigned(addr_bits), "data": data_shape})


class MacroUnit(wiring.Component):
    """One macro unit; see the module docstring.

    Members
    -------
    go : In(1)
        Leave the SYNC the unit waits at.
    waiting : Out(1)
        Waiting at a SYNC, every write done.
    error : Out(1)
        A decoder's sticky error flag (bad descriptor or index code).
    load : In(stream.Signature(write_layout(config)))
        Macro row writes from the core loader.
    prog_write, param_write, index_write, ktable_write : In(stream.Signature(...))
        Memory writes from the host (``ready`` always 1).  ``index_write`` and
        ``ktable_write`` carry a ``domain`` field.
    act_en, act_addr, act_data
        Activation reads (one per lane of every domain, data one cycle after ``act_en``).
    out_en, out_addr, out_data, pool_addr, pool_data
        Output-buffer write and the pooling read.
    res_en, res_addr, res_data
        Result-memory write.
    """

    def __init__(self, config: MarsConfig, *, init: dict[str, list] | None = None):
        self._config = config
        self._init = init or {}
        self._format = fmt = UnitFormat(config)
        D, G, Ab = config.wordline_domains, config.rows_per_step, config.act_bits
        domain = {"domain": range(D)}
        super().__init__({
            "go": In(1),
            "waiting": Out(1),
            "error": Out(1),
            "load": In(stream.Signature(write_layout(config))),
            "prog_write": In(stream.Signature(_write_layout(
                max(1, (config.program_words - 1).bit_length()),
                instruction_layout(config)))),
            "param_write": In(stream.Signature(_write_layout(
                max(1, (config.param_words - 1).bit_length()), param_layout(config)))),
            "index_write": In(stream.Signature(data.StructLayout(
                {**domain, "write": index_write_layout(config)}))),
            "ktable_write": In(stream.Signature(data.StructLayout(
                {**domain, "write": ktable_write_layout(config)}))),
            "act_en": Out(1),
            "act_addr": Out(data.ArrayLayout(unsigned(fmt.act_addr_bits), D * G)),
            "act_data": In(data.ArrayLayout(unsigned(Ab), D * G)),
            "out_en": Out(unsigned(fmt.write_lanes)),
            "out_addr": Out(data.ArrayLayout(unsigned(fmt.act_addr_bits), fmt.write_lanes)),
            "out_data": Out(data.ArrayLayout(unsigned(Ab), fmt.write_lanes)),
            "pool_addr": Out(data.ArrayLayout(unsigned(fmt.act_addr_bits), fmt.write_lanes)),
            "pool_data": In(data.ArrayLayout(unsigned(Ab), fmt.write_lanes)),
            "res_en": Out(unsigned(fmt.write_lanes)),
            "res_addr": Out(data.ArrayLayout(unsigned(fmt.result_addr_bits), fmt.write_lanes)),
            "res_data": Out(data.ArrayLayout(signed(config.acc_bits), fmt.write_lanes)),
        })

    @property
    def config(self) -> MarsConfig:
        return self._config

    def elaborate(self, platform):
        cfg, fmt = self._config, self._format
        D, G, N = cfg.wordline_domains, cfg.rows_per_step, cfg.channels_per_macro
        m = Module()

        # -- memories written by the host ----------------------------------------------
        init = self._init
        program = Memory(shape=unsigned(instruction_layout(cfg).size),
                         depth=cfg.program_words, init=init.get("program", []))
        params = Memory(shape=unsigned(param_layout(cfg).size), depth=cfg.param_words,
                        init=init.get("params", []))
        m.submodules.prog_mem = program
        m.submodules.params = params
        for mem, port in ((program, self.prog_write), (params, self.param_write)):
            write = mem.write_port()
            m.d.comb += [write.addr.eq(port.payload.addr), write.data.eq(port.payload.data),
                         write.en.eq(port.valid), port.ready.eq(1)]
        prog_read = program.read_port()
        param_read = params.read_port()

        decoders = [SparseDecoder(cfg, index_init=init.get(("index", d)),
                                  ktable_init=init.get(("ktable", d))) for d in range(D)]
        for d, decoder in enumerate(decoders):
            m.submodules[f"decoder{d}"] = decoder
            for port, target in ((self.index_write, decoder.index_write),
                                 (self.ktable_write, decoder.ktable_write)):
                m.d.comb += [target.payload.eq(port.payload.write),
                             target.valid.eq(port.valid & (port.payload.domain == d))]
        m.d.comb += [self.index_write.ready.eq(1), self.ktable_write.ready.eq(1)]
        m.d.comb += self.error.eq(Cat(*(dec.error.as_value() for dec in decoders)).any())

        m.submodules.macro = macro = CimMacro(cfg)
        wiring.connect(m, wiring.flipped(self.load), macro.write)

        # -- sequencer: fetch, decode, start the decoders, run, SYNC ------------------------
        pc = Signal(range(cfg.program_words))
        insn = Signal(instruction_layout(cfg))
        walk_done = Signal()
        start_pending = Signal(D)
        prog_data = data.View(instruction_layout(cfg), prog_read.data)
        par = data.View(param_layout(cfg), param_read.data)
        m.d.comb += [prog_read.addr.eq(pc), param_read.addr.eq(prog_data.param_addr)]
        # The parameter read data is held (en low) for the whole walk.
        for d, decoder in enumerate(decoders):
            desc = decoder.start.payload
            m.d.comb += [desc.eq(insn.desc), desc.index_start.eq(insn.index_start[d]),
                         desc.count.eq(insn.count[d])]

        with m.FSM(name="seq"):
            with m.State("FETCH"):
                m.d.comb += prog_read.en.eq(1)
                m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += insn.eq(prog_data)
                with m.If(prog_data.op == Op.SYNC):
                    m.next = "SYNC"
                with m.Else():
                    m.d.comb += param_read.en.eq(1)
                    m.d.sync += start_pending.eq(-1)
                    m.next = "START"
            with m.State("START"):
                for d, decoder in enumerate(decoders):
                    m.d.comb += decoder.start.valid.eq(start_pending[d])
                    with m.If(decoder.start.ready):
                        m.d.sync += start_pending[d].eq(0)
                with m.If(~Cat(*(start_pending[d] & ~decoders[d].start.ready
                                 for d in range(D))).any()):
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(walk_done):
                    m.d.sync += pc.eq(pc + 1)
                    m.next = "FETCH"
            with m.State("SYNC"):
                m.d.comb += self.waiting.eq(1)
                with m.If(self.go):
                    m.d.sync += pc.eq(pc + 1)
                    m.next = "FETCH"

        # -- gather: take the D payloads together, read their G activations each ----------
        outs = [dec.out for dec in decoders]
        all_valid = Cat(*(o.valid for o in outs)).all()
        b_valid = Signal()
        b_slots = Signal(data.ArrayLayout(range(cfg.row_slots), D))
        b_pad = Signal(data.ArrayLayout(unsigned(G), D))
        side_layout = data.StructLayout({"first": 1, "last": 1, "walk_last": 1})
        b_side = Signal(side_layout)
        request = macro.request
        take = Signal()
        m.d.comb += take.eq(all_valid & (~b_valid | request.ready))
        for o in outs:
            m.d.comb += o.ready.eq(take)
        m.d.comb += self.act_en.eq(take)
        for d, o in enumerate(outs):
            for g in range(G):
                m.d.comb += self.act_addr[d * G + g].eq(Cat(o.payload.addrs[g], insn.in_bank))
        with m.If(take):
            m.d.sync += [b_valid.eq(1), b_side.first.eq(outs[0].payload.first),
                         b_side.last.eq(outs[0].payload.last),
                         b_side.walk_last.eq(outs[0].payload.walk_last)]
            for d, o in enumerate(outs):
                m.d.sync += [b_slots[d].eq(o.payload.slot), b_pad[d].eq(o.payload.pad)]
        with m.Elif(request.ready):
            m.d.sync += b_valid.eq(0)

        m.submodules.side = side = SyncFIFO(width=side_layout.size, depth=4)
        m.d.comb += [request.valid.eq(b_valid), request.payload.slots.eq(b_slots)]
        for d in range(D):
            for g in range(G):
                m.d.comb += request.payload.acts[d][g].eq(
                    Mux(b_pad[d][g], 0, self.act_data[d * G + g]))
        m.d.comb += [side.w_en.eq(request.valid & request.ready), side.w_data.eq(b_side)]

        # -- accumulate over the steps of a pixel, hand the pixel to the writer ------------
        result = macro.result
        r_side = data.View(side_layout, side.r_data)
        accs = Signal(data.ArrayLayout(signed(cfg.acc_bits), N))
        hold = Signal(data.ArrayLayout(signed(cfg.acc_bits), N))
        hold_full = Signal()
        hold_walk_last = Signal()
        w_last_channel = Signal()        # the writer issues its pixel's last channel now
        hold_free = ~hold_full | w_last_channel
        accept = Signal()
        m.d.comb += [
            result.ready.eq(~r_side.last | hold_free),
            accept.eq(result.valid & result.ready),
            side.r_en.eq(accept),
        ]
        sums = [Mux(r_side.first, par[n].bias, accs[n]) + result.payload[n] for n in range(N)]
        with m.If(accept & r_side.last):
            m.d.sync += [hold[n].eq(sums[n]) for n in range(N)]
            m.d.sync += [hold_full.eq(1), hold_walk_last.eq(r_side.walk_last)]
        with m.Elif(w_last_channel):
            m.d.sync += hold_full.eq(0)
        with m.If(accept & ~r_side.last):
            m.d.sync += [accs[n].eq(sums[n]) for n in range(N)]

        # -- writer: `write_lanes` channels a cycle; W1 multiplies and reads the pooled
        # value, W2 rounds, clamps, takes the max and writes ------------------------------
        L = fmt.write_lanes
        n_ch = Signal(range(N + L))
        m.d.comb += w_last_channel.eq(hold_full & (n_ch + L >= insn.n_valid))
        # output position (pooled), kept incrementally
        ox = Signal(fmt.value_bits)
        kx = Signal(fmt.pool_bits)
        ky = Signal(fmt.pool_bits)
        px = Signal(fmt.value_bits)
        py = Signal(fmt.value_bits)
        row_addr = Signal(fmt.value_bits + 1)
        pix_addr = Signal(fmt.value_bits + 1)
        in_bounds = (px < insn.pool_w) & (py < insn.pool_h)
        first_in_window = (kx == 0) & (ky == 0)

        product_shape = signed(cfg.acc_bits + cfg.requant_mult_bits + 2)
        lane_layout = data.StructLayout({
            "write": 1, "addr": unsigned(fmt.value_bits + 1), "product": product_shape,
            "acc": signed(cfg.acc_bits), "shift": unsigned(fmt.shift_bits)})
        w2 = Signal(data.StructLayout({
            "valid": 1, "max": 1, "walk_last": 1,
            "lanes": data.ArrayLayout(lane_layout, L)}))
        m.d.sync += [
            w2.valid.eq(hold_full),
            w2.max.eq(~first_in_window & (insn.pool_k != 1)),
            w2.walk_last.eq(w_last_channel & hold_walk_last),
        ]
        act_max = cfg.act_max
        for lane in range(L):
            ch = Signal(range(N + L), name=f"ch{lane}")
            w1_addr = Signal(fmt.value_bits + 1, name=f"w1_addr{lane}")
            m.d.comb += [
                ch.eq(n_ch + lane),
                w1_addr.eq(insn.out_base + pix_addr + ch),
                self.pool_addr[lane].eq(Cat(w1_addr[:fmt.decoder.addr_bits], insn.out_bank)),
            ]
            w2l = w2.lanes[lane]
            m.d.sync += [
                w2l.write.eq(hold_full & in_bounds & (ch < insn.n_valid)),
                w2l.addr.eq(w1_addr),
                w2l.product.eq(hold[ch] * par[ch].mult),
                w2l.acc.eq(hold[ch]),
                w2l.shift.eq(par[ch].shift),
            ]
            # (acc*M + 2^(S-1)) >> S; the rounding constant is (1 << S) >> 1 (0 for S = 0).
            half = Signal(product_shape, name=f"half{lane}")
            rounded = Signal(product_shape, name=f"rounded{lane}")
            requantised = Signal(unsigned(cfg.act_bits), name=f"requantised{lane}")
            m.d.comb += [half.eq((Const(1, product_shape.width) << w2l.shift) >> 1),
                         rounded.eq((w2l.product + half) >> w2l.shift)]
            with m.If(rounded < 0):
                m.d.comb += requantised.eq(0)
            with m.Elif(rounded > act_max):
                m.d.comb += requantised.eq(act_max)
            with m.Else():
                m.d.comb += requantised.eq(rounded)
            pooled = self.pool_data[lane]
            write = w2.valid & w2l.write
            m.d.comb += [
                self.out_en[lane].eq(write & ~insn.acc_out),
                self.out_addr[lane].eq(Cat(w2l.addr[:fmt.decoder.addr_bits], insn.out_bank)),
                self.out_data[lane].eq(Mux(w2.max & (pooled > requantised), pooled,
                                           requantised)),
                self.res_en[lane].eq(write & insn.acc_out),
                self.res_addr[lane].eq(w2l.addr),
                self.res_data[lane].eq(w2l.acc),
            ]
        with m.If(hold_full):
            m.d.sync += n_ch.eq(Mux(w_last_channel, 0, n_ch + L))
        m.d.comb += walk_done.eq(w2.valid & w2.walk_last)

        # Position of the next pixel, advanced as a pixel's last channel is issued.
        with m.If(w_last_channel):
            with m.If(ox == insn.desc.out_w - 1):
                m.d.sync += [ox.eq(0), kx.eq(0), px.eq(0)]
                with m.If(ky == insn.pool_k - 1):
                    m.d.sync += [ky.eq(0), py.eq(py + 1),
                                 row_addr.eq(row_addr + insn.out_row_pitch),
                                 pix_addr.eq(row_addr + insn.out_row_pitch)]
                with m.Else():
                    m.d.sync += [ky.eq(ky + 1), pix_addr.eq(row_addr)]
            with m.Else():
                m.d.sync += ox.eq(ox + 1)
                with m.If(kx == insn.pool_k - 1):
                    m.d.sync += [kx.eq(0), px.eq(px + 1),
                                 pix_addr.eq(pix_addr + insn.out_pitch)]
                with m.Else():
                    m.d.sync += kx.eq(kx + 1)
        with m.If(start_pending.any()):         # a walk starts: position to its origin
            m.d.sync += [ox.eq(0), kx.eq(0), ky.eq(0), px.eq(0), py.eq(0),
                         row_addr.eq(0), pix_addr.eq(0), n_ch.eq(0)]
        return m
