"""cocotb drivers and monitors for `amaranth.lib.stream` interfaces, plus a scoreboard.

An Amaranth stream port ``name`` appears in the Verilog as ``name__valid``,
``name__ready`` and ``name__payload`` (one flat vector, struct fields LSB first in
declaration order).  Payloads are packed and unpacked with the Amaranth layout itself, so
the testbench cannot disagree with the RTL about field order.

Timing discipline, one loop iteration per clock cycle: inputs are written just after a
rising edge; the handshake is sampled in the ``ReadOnly`` phase of that cycle, which is
exactly what the next rising edge will see.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from amaranth.lib import data
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["pack", "unpack", "StreamDriver", "StreamMonitor", "Scoreboard"]


def pack(layout: data.Layout, value: Any) -> int:
    """The flat bit vector of `value` (a dict or list) in Amaranth `layout`."""
    return layout.const(value).as_bits()


def unpack(layout: data.Layout, bits: int) -> Any:
    """A `data.Const` view of `bits` in `layout`, indexed like the Amaranth view."""
    return layout.from_bits(bits)


class _Port:
    def __init__(self, dut, name: str):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")


class StreamDriver:
    """Sends payloads into a DUT stream input, with random idle cycles.

    `valid_prob` is the chance per cycle that a queued payload is offered; once offered,
    ``valid`` stays high and the payload steady until the DUT takes it (the stream rule).
    """

    def __init__(self, dut, name: str, clock, layout: data.Layout, *,
                 valid_prob: float = 1.0, rng: random.Random | None = None):
        self._port = _Port(dut, name)
        self._clock = clock
        self._layout = layout
        self._valid_prob = valid_prob
        self._rng = rng or random.Random(0)
        self._queue: deque[Any] = deque()
        self.sent = 0
        self._port.valid.value = 0

    def extend(self, payloads: Iterable[Any]) -> None:
        self._queue.extend(payloads)

    @property
    def idle(self) -> bool:
        return not self._queue

    async def run(self) -> None:
        port, offering = self._port, False
        while True:
            if not offering and self._queue and self._rng.random() < self._valid_prob:
                port.payload.value = pack(self._layout, self._queue[0])
                offering = True
            port.valid.value = int(offering)
            await ReadOnly()
            accepted = offering and port.ready.value == 1
            await RisingEdge(self._clock)
            if accepted:
                self._queue.popleft()
                self.sent += 1
                offering = False


class StreamMonitor:
    """Takes payloads from a DUT stream output, with random back-pressure.

    `ready_prob` is the chance per cycle that ``ready`` is high.  Every transfer is passed
    to `on_payload` as an unpacked `data.Const`.
    """

    def __init__(self, dut, name: str, clock, layout: data.Layout,
                 on_payload: Callable[[Any], None], *, ready_prob: float = 1.0,
                 rng: random.Random | None = None):
        self._port = _Port(dut, name)
        self._clock = clock
        self._layout = layout
        self._on_payload = on_payload
        self._ready_prob = ready_prob
        self._rng = rng or random.Random(1)
        self.received = 0
        self._port.ready.value = 0

    async def run(self) -> None:
        port = self._port
        while True:
            ready = int(self._rng.random() < self._ready_prob)
            port.ready.value = ready
            await ReadOnly()
            if ready and port.valid.value == 1:
                self.received += 1
                self._on_payload(unpack(self._layout, port.payload.value.to_unsigned()))
            await RisingEdge(self._clock)


class Scoreboard:
    """Compares what a DUT produced with what the model expects, in order.

    The model's expectations are queued with `expect`; each DUT output is given to
    `check`.  Mismatches are counted and the first few kept for the report.
    """

    def __init__(self, name: str, keep: int = 5):
        self.name = name
        self._expected: deque[Any] = deque()
        self.compared = 0
        self.mismatches: list[str] = []
        self.mismatch_count = 0
        self._keep = keep

    def expect(self, value: Any) -> None:
        self._expected.append(value)

    def check(self, got: Any) -> None:
        if not self._expected:
            self._record(f"output #{self.compared}: {got} arrived but nothing was expected")
            return
        want = self._expected.popleft()
        if got != want:
            self._record(f"output #{self.compared}: got {got}, expected {want}")
        self.compared += 1

    def _record(self, message: str) -> None:
        self.mismatch_count += 1
        if len(self.mismatches) < self._keep:
            self.mismatches.append(message)

    @property
    def pending(self) -> int:
        return len(self._expected)

    def assert_clean(self) -> None:
        """Raise AssertionError if anything mismatched or is still outstanding."""
        problems = list(self.mismatches)
        if self.mismatch_count > len(self.mismatches):
            problems.append(f"... {self.mismatch_count - len(self.mismatches)} more")
        if self._expected:
            problems.append(f"{len(self._expected)} expected outputs never arrived")
        if problems:
            raise AssertionError(f"{self.name}: {self.mismatch_count} mismatches in "
                                 f"{self.compared} compared\n" + "\n".join(problems))
