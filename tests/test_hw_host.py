"""Amaranth-simulator tests of the host port decoder (`mars.hw.host.HostPort`).

Writes: every (region, unit) pair, exhaustively; exactly that region's strobe and that
unit's strobe must be high, with the offset, domain and data passed through.  Reads: each
readable source answers `READ_LATENCY` cycles after the request (the sources' data and
the answer are registered), with ``host.ready`` low until it is taken.
"""

from __future__ import annotations

from amaranth.sim import Simulator

from mars.config import PRESETS
from mars.contract.host import READ_LATENCY, Region
from mars.hw.host import HostPort

# Two cores of two units: four units, so the unit field has two bits.
CONFIG = PRESETS["tiny"].replace(name="tiny-4u", cores=2, macros_per_core=2)


def test_write_strobes_every_region_and_unit():
    dut = HostPort(CONFIG)
    seen = []

    async def testbench(ctx):
        for region in Region:
            for unit in range(CONFIG.macros):
                data, offset = 0x1234 + 7 * unit, 5 + region
                ctx.set(dut.host.payload, {"write": 1, "region": region, "unit": unit,
                                           "domain": 1, "offset": offset, "data": data})
                ctx.set(dut.host.valid, 1)
                seen.append((region, unit, ctx.get(dut.region), ctx.get(dut.unit),
                             ctx.get(dut.offset) == offset, ctx.get(dut.data) == data,
                             ctx.get(dut.domain), ctx.get(dut.host.ready)))
                ctx.set(dut.host.valid, 0)
                # Not valid: no strobe, whatever the payload.
                assert ctx.get(dut.region) == 0
                await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    for region, unit, strobes, units, offset_ok, data_ok, domain, ready in seen:
        assert strobes == 1 << region, (region, unit, bin(strobes))
        assert units == 1 << unit, (region, unit, bin(units))
        assert offset_ok and data_ok and domain == 1 and ready == 1, (region, unit)


def test_reads_answer_read_latency_cycles_later():
    dut = HostPort(CONFIG)
    answers = []
    sources = {"act_data": 9, "result_data": -3, "cycles_data": 777, "status": 0b101,
               "total_cycles": 4242}
    requests = [(Region.ACT, 3, 9), (Region.RESULT, 2, (-3) % (1 << CONFIG.acc_bits)),
                (Region.CYCLES, 1, 777), (Region.CONTROL, 0, 0b101),
                (Region.CONTROL, 1, 4242)]

    async def testbench(ctx):
        for name, value in sources.items():
            ctx.set(getattr(dut, name), value)
        ctx.set(dut.host_read.ready, 1)
        for region, offset, _ in requests:
            ctx.set(dut.host.payload, {"write": 0, "region": region, "offset": offset})
            ctx.set(dut.host.valid, 1)
            assert ctx.get(dut.host.ready) and not ctx.get(dut.host_read.valid)
            assert ctx.get(dut.region) == 0, "a read strobed a write"
            await ctx.tick()
            ctx.set(dut.host.valid, 0)
            for _ in range(READ_LATENCY - 1):
                assert not ctx.get(dut.host.ready), "a second read accepted while one waits"
                assert not ctx.get(dut.host_read.valid), "the answer came early"
                await ctx.tick()
            assert not ctx.get(dut.host.ready), "a second read accepted while one waits"
            assert ctx.get(dut.host_read.valid), f"no answer {READ_LATENCY} cycles later"
            answers.append(ctx.get(dut.host_read.payload))
            await ctx.tick()
            assert not ctx.get(dut.host_read.valid) and ctx.get(dut.host.ready)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert answers == [want for _, _, want in requests]
