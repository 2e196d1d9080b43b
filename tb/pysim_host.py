"""The top in Amaranth's own simulator as a transport of the host driver.

`PysimTransport` records the driver's session and plays it on `mars.hw.top.MarsTop` in
`amaranth.sim` at `flush`: no Verilog, no external simulator, so fast tests can check the
host protocol (control registers, status bits, memory regions) against the real RTL
through the same driver calls the Verilator and Icarus runs use.  About 10^3-10^4 cycles
a second: enough for the `tiny` top and small networks.
"""

from __future__ import annotations

from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator
from mars.hw.top import MarsTop
from mars.sw.host import HostDriver, RecordingTransport, RunStatus, run_inferences
from mars.sw.host.driver import Pending

from mars.config import MarsConfig
from mars.contract.host import Status

__all__ = ["PysimTransport", "run_on_pysim"]


class PysimTransport(RecordingTransport):
    """Plays the recorded session on a fresh `MarsTop` for `config` at each `flush`.

    The simulation restarts from reset at every flush, so a session (load, runs, reads)
    must be flushed once, at its end.  ``monitor(ctx, top, cycle)``, if given, is called
    in every cycle of a run (cycle 0: the run's first, `MarsTop.START_LATENCY` cycles
    after ``start``) to check the top's signals (``top.units``: its `MacroUnit` s).
    `abort` is one more recorded operation, for tests of what a cut run leaves behind.
    """

    def __init__(self, config: MarsConfig, *, monitor=None):
        super().__init__()
        self._config = config
        self._monitor = monitor
        self.cycles = 0

    def abort(self, cycles: int) -> Pending:
        """Start a run, let it go for `cycles` cycles and, unless the error flag is up, on
        to the next cycle a unit reads activations (then two more: a walk mid-flight, its
        items in every stage); answer the status flags it reached (`Status`), then pulse
        the sync domain's reset (the only way out of a hung run: the controller has no
        abort).  Reset-less registers keep whatever the run left in them."""
        answer = Pending()
        self._ops.append(("A", cycles, answer))
        return answer

    def flush(self) -> None:
        ops = self.take_ops()
        top = MarsTop(self._config)
        m = Module()
        m.domains.sync = cd = ClockDomain("sync")
        m.submodules.top = top
        sim = Simulator(m)
        sim.add_clock(1e-8, domain="sync")

        async def bench(ctx):
            ctx.set(top.host_read.ready, 1)
            for kind, arg, answer in ops:
                if kind in "WR":
                    ctx.set(top.host.payload, top.host.payload.shape().from_bits(arg))
                    ctx.set(top.host.valid, 1)
                    await ctx.tick().until(top.host.ready)
                    ctx.set(top.host.valid, 0)
                    # A payload without `valid` means nothing: scramble it, so that a
                    # read whose answer still looks at the offset fails here.
                    shape = top.host.payload.shape()
                    ctx.set(top.host.payload, shape.from_bits(~arg % (1 << shape.size)))
                    if kind == "R":
                        while not ctx.get(top.host_read.valid):
                            await ctx.tick()
                        answer.resolve(ctx.get(top.host_read.payload))
                        await ctx.tick()
                    continue
                ctx.set(top.start, 1)
                await ctx.tick()
                ctx.set(top.start, 0)
                for _ in range(MarsTop.START_LATENCY - 1):      # to the run's cycle 0
                    await ctx.tick()
                cycles = 0
                while (kind == "A" or not ctx.get(top.done)) and cycles < arg:
                    if self._monitor is not None:
                        self._monitor(ctx, top, cycles)
                    await ctx.tick()
                    cycles += 1
                if kind == "A" and not ctx.get(top.error):
                    for _ in range(10_000):
                        if any(ctx.get(unit.act_en) for unit in top.units):
                            break
                        await ctx.tick()
                    for _ in range(2):
                        await ctx.tick()
                status = Status(ctx.get(top.busy) | ctx.get(top.done) << 1
                                | ctx.get(top.error) << 2)
                if kind == "A":
                    answer.resolve(status)
                    ctx.set(cd.rst, 1)
                    await ctx.tick()
                    ctx.set(cd.rst, 0)
                else:
                    answer.resolve(RunStatus(cycles if ctx.get(top.done) else None, status))

        sim.add_testbench(bench)
        sim.run()


def run_on_pysim(mapping, inputs, budget: int, *, monitor=None) -> list:
    """Load `mapping` into the top in Amaranth's simulator, run `inputs` (the first with
    the weight loads, the later ones skipping them when the weights are resident) within
    `budget` cycles each and return the driver's answers (`run_inferences`), flushed.
    `monitor` as for `PysimTransport`."""
    config = mapping.config
    driver = HostDriver(config, PysimTransport(config, monitor=monitor))
    answers = run_inferences(driver, inputs, memories=mapping.memories,
                             phases=mapping.n_phases, resident=mapping.resident,
                             n_outputs=mapping.n_outputs, budget=budget)
    driver.flush()
    return answers
