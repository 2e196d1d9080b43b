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

__all__ = ["SimulatedPort", "ModelPort"]


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


class ModelPort:
    """A pyserial-like port onto a software model of the bridge and the host port: frames
    are checked by `mars.contract.serial.FrameReceiver`, writes land in a dictionary,
    reads answer from it (0 where nothing was written), runs finish at once with ``done``.

    For counting what a load costs on the link (bench/serial_load.py) and for transport
    tests that need no simulator; it knows nothing of the accelerator's computation.
    """

    def __init__(self, config):
        from mars.contract.serial import FrameReceiver
        self.config = config
        self.memory: dict[tuple[int, int, int, int], int] = {}
        self._receiver = FrameReceiver(config, timeout=1)
        self._out = bytearray()

    def write(self, data: bytes) -> int:
        from mars.contract.serial import response_frame
        for value in bytes(data):
            got = self._receiver.byte(value)
            if got is not None:
                self._out += self._execute(got.body)
        got = self._receiver.idle(1)                  # the host now waits: line idle
        if got is not None:
            self._out += response_frame(got.code)
        return len(data)

    def _execute(self, body: bytes) -> bytes:
        from mars.contract.serial import HEADER_BYTES, Command, ErrorCode, response_frame
        if body[0] in (Command.WRITE, Command.READ):
            region, unit, domain = body[1:4]
            offset = int.from_bytes(body[4:6], "little")
            b = body[HEADER_BYTES]
        if body[0] == Command.WRITE:
            data = body[HEADER_BYTES + 1:]
            for k in range(len(data) // b):
                self.memory[(region, unit, domain, offset + k)] = \
                    int.from_bytes(data[k * b:(k + 1) * b], "little")
            return response_frame(ErrorCode.OK)
        if body[0] == Command.READ:
            n = body[HEADER_BYTES + 1]
            words = [self.memory.get((region, unit, domain, offset + k), 0) % (1 << 8 * b)
                     for k in range(n)]
            return response_frame(ErrorCode.OK,
                                  b"".join(w.to_bytes(b, "little") for w in words))
        if body[0] == Command.RUN:
            return response_frame(ErrorCode.OK, bytes([0, 0, 0, 0, 2]))
        return response_frame(ErrorCode.OK, bytes([0, 0, 0, 2]))

    def read(self, n: int) -> bytes:
        data, self._out = bytes(self._out[:n]), self._out[n:]
        return data
