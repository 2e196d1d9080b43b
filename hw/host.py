"""The accelerator's host port: decodes the host's word writes and answers its reads.

Every host transfer names a region (`Region`: which memory or register file), a unit, a
word-line domain, an offset and, for a write, the data (`HostFormat`).  A write is decoded
into one strobe per region (``region``) and one per unit (``unit``); a memory is written
where both its region's and its unit's strobes are high (the top does that AND).  The
regions that belong to no unit (CONTROL, ACT) use the region strobe alone.

A read (``write`` = 0) of the activation, result or cycle memories, or of the control
registers (offset 0: status, 1: total cycles) is answered on ``host_read``
`READ_LATENCY` (3) cycles after it is accepted: the memories' host read ports are
addressed by ``offset`` in the cycle of the request, the top registers their data beside
them, and the answer is registered.  One read is outstanding at a time
(``host.ready`` is low until the answer is taken).  See docs/architecture.md ("Host port").
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig
from mars.contract.host import READ_LATENCY, ControlRead, HostFormat, Region

__all__ = ["HostPort"]


class HostPort(wiring.Component):
    """The host port decoder; see the module docstring.

    Parameters
    ----------
    config : MarsConfig
        Sets the field widths (`HostFormat`).

    Members
    -------
    host : In(stream.Signature(HostFormat(config).layout()))
        The host's transfers.
    host_read : Out(stream.Signature(unsigned(data_bits)))
        Answers to reads, in order.
    region : Out(len(Region))
        Write strobe per region (bit ``Region.X``), the cycle the write is offered.
    unit : Out(units)
        The unit field, one-hot (``units`` = max(macros, cores)); not qualified by
        ``valid``.
    domain, offset, data : Out(...)
        The transfer's word-line domain, offset and data.
    act_data : In(unsigned(G * act_bits))
        An activation word (`mars.contract.banking.Banking`).
    result_data : In(signed(acc_bits))
    cycles_data : In(unsigned(32))
        The host read ports of the activation, result and cycle memories (addressed by
        ``offset``), registered: the data of the address offered in cycle t, in cycle
        t + 2.
    status : In(3)
        busy, done and error (bits 0, 1, 2), read at CONTROL offset 0.
    total_cycles : In(unsigned(32))
        Read at CONTROL offset 1.
    """

    def __init__(self, config: MarsConfig):
        self._config = config
        self._format = fmt = HostFormat(config)
        super().__init__({
            "host": In(stream.Signature(fmt.layout())),
            "host_read": Out(stream.Signature(unsigned(fmt.data_bits))),
            "region": Out(len(Region)),
            "unit": Out(max(config.macros, config.cores)),
            "domain": Out(unsigned(fmt.domain_bits)),
            "offset": Out(unsigned(fmt.offset_bits)),
            "data": Out(unsigned(fmt.data_bits)),
            "act_data": In(unsigned(config.rows_per_step * config.act_bits)),
            "result_data": In(signed(config.acc_bits)),
            "cycles_data": In(unsigned(32)),
            "status": In(3),
            "total_cycles": In(unsigned(32)),
        })

    @property
    def config(self) -> MarsConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        host, hp = self.host, self.host.payload
        write = host.valid & hp.write
        m.d.comb += [self.domain.eq(hp.domain), self.offset.eq(hp.offset),
                     self.data.eq(hp.data)]
        for region in Region:
            m.d.comb += self.region[region].eq(write & (hp.region == region))
        for u in range(len(self.unit)):
            m.d.comb += self.unit[u].eq(hp.unit == u)

        # A read's sources are addressed in the cycle it is accepted, their data is
        # registered beside them the next cycle (`pending[0]`) and arrives here the cycle
        # after (`pending[1]`), and the chosen answer is registered before it is offered
        # (`host_read.valid` READ_LATENCY cycles after the request): no path runs from a
        # block RAM's output through this multiplexer, nor out of the accelerator.
        pending = [Signal(name=f"read_pending{i}") for i in range(READ_LATENCY - 1)]
        read_region = Signal(4)
        read_offset = Signal.like(hp.offset)
        answer_valid = Signal()
        answer = Signal.like(self.host_read.payload)
        m.d.comb += host.ready.eq(~Cat(*pending).any() & ~answer_valid)
        m.d.sync += [pending[0].eq(host.valid & ~hp.write & host.ready),
                     *(later.eq(earlier) for earlier, later in zip(pending, pending[1:]))]
        with m.If(host.valid & ~hp.write & host.ready):
            m.d.sync += [read_region.eq(hp.region), read_offset.eq(hp.offset)]
        with m.If(pending[-1]):
            m.d.sync += [answer_valid.eq(1), answer.eq(Mux(
                read_region == Region.ACT, self.act_data, Mux(
                    read_region == Region.RESULT, self.result_data.as_unsigned(), Mux(
                        read_region == Region.CYCLES, self.cycles_data, Mux(
                            read_offset == ControlRead.STATUS, self.status,
                            self.total_cycles)))))]
        with m.If(self.host_read.valid & self.host_read.ready):
            m.d.sync += answer_valid.eq(0)
        m.d.comb += [self.host_read.valid.eq(answer_valid),
                     self.host_read.payload.eq(answer)]
        return m
