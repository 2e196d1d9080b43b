"""A pyserial-like port onto a simulated serial bridge: the board link without a board.

`SimulatedPort` joins the host's `mars.sw.host.serial.SerialTransport` to the byte streams
of a `mars.hw.bridge.BridgedTop` (or a bare `SerialBridge`) in Amaranth's simulator: bytes
the host writes are offered to ``rx`` one a cycle (as fast as the bridge takes them), and
`read` steps the simulator until the bridge has sent the bytes asked for, or gives up
after `timeout_cycles` (pyserial's timeout, in cycles), like a port whose timeout expired.
"""

from __future__ import annotations

from collections import deque

from amaranth.sim import Simulator

__all__ = ["SimulatedPort"]


class SimulatedPort:
    """``write(bytes)`` / ``read(n)`` onto the ``rx`` / ``tx`` byte streams of `dut`.

    Parameters
    ----------
    dut
        A component with ``rx: In(stream.Signature(8))`` and ``tx: Out(...)``.
    timeout_cycles : int
        Cycles `read` simulates at most while waiting for the bytes it was asked for.
    """

    def __init__(self, dut, *, timeout_cycles: int = 200_000):
        self.dut = dut
        self.timeout_cycles = timeout_cycles
        self.cycles = 0
        self._to_device: deque[int] = deque()
        self._from_device: deque[int] = deque()
        self.sim = Simulator(dut)
        self.sim.add_clock(1e-8)
        self.sim.add_testbench(self._bench, background=True)

    async def _bench(self, ctx):
        rx, tx = self.dut.rx, self.dut.tx
        ctx.set(tx.ready, 1)
        while True:
            if self._to_device:
                ctx.set(rx.valid, 1)
                ctx.set(rx.payload, self._to_device[0])
                if ctx.get(rx.ready):
                    self._to_device.popleft()
            else:
                ctx.set(rx.valid, 0)
            if ctx.get(tx.valid):
                self._from_device.append(ctx.get(tx.payload))
            await ctx.tick()
            self.cycles += 1

    def write(self, data: bytes) -> int:
        self._to_device.extend(bytes(data))
        return len(data)

    def read(self, n: int) -> bytes:
        limit = self.cycles + self.timeout_cycles
        while len(self._from_device) < n and self.cycles < limit:
            self.sim.advance()
        return bytes(self._from_device.popleft() for _ in range(min(n, len(self._from_device))))

    def flush(self) -> None:
        """Nothing is buffered on the host side."""
