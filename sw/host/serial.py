"""The serial transport: the host driver over a board's UART (docs/serial.md).

`SerialTransport` is a batching `mars.sw.host.Transport`: writes, reads and runs are
recorded and `flush` sends them in order as frames of `mars.contract.serial` (consecutive
writes of one memory share a WRITE frame, consecutive reads a READ frame), one frame at a
time, each answered before the next goes out.  A frame the bridge rejects (a NAK), an
answer that does not arrive or arrives damaged is sent again, up to `retries` more times;
then `SerialLinkError` names the command and the last error.  Resending is safe: a NAKed
frame was never executed, writes and reads are idempotent, and a RUN that is repeated after
a lost answer runs the same inputs again.

`port` is anything with pyserial's ``write(bytes)`` and ``read(n) -> bytes`` (returning
fewer bytes when its timeout expires): ``serial.Serial``, or a simulated link in the tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from mars.config import MarsConfig
from mars.contract.host import HostFormat, Region, Status
from mars.contract.serial import (
    RESPONSE_SYNC,
    RUN_TIMEOUT_FLAG,
    Command,
    ErrorCode,
    FrameError,
    SerialFormat,
    parse_response,
    request_frame,
)
from mars.errors import MarsError

from .driver import Pending, RunStatus, Transport

__all__ = ["SerialLinkError", "LinkStatus", "SerialTransport", "open_port"]


class SerialLinkError(MarsError, RuntimeError):
    """The serial link failed: a frame was rejected or unanswered too many times, or the
    port could not be opened."""


@dataclasses.dataclass(frozen=True)
class LinkStatus:
    """The bridge's STATUS answer: rejected frames since reset (``errors``, saturating at
    65535), the last rejection's `ErrorCode`, and the accelerator's `Status`."""

    errors: int
    last_error: ErrorCode | int
    status: Status


def open_port(device: str, baud: int, *, timeout_s: float = 1.0):
    """``serial.Serial(device, baud)`` (8N1, no flow control); `SerialLinkError` if it
    cannot be opened."""
    import serial                     # pyserial; imported here so the package loads without it

    try:
        return serial.Serial(device, baud, timeout=timeout_s)
    except (serial.SerialException, ValueError) as error:
        raise SerialLinkError(f"cannot open serial port {device} at {baud} baud: "
                              f"{error}") from None


class SerialTransport(Transport):
    """The host driver's transport over a serial link to `mars.hw.bridge.SerialBridge`.

    Parameters
    ----------
    port
        pyserial-like: ``write(bytes)``, ``read(n) -> bytes``.
    config : MarsConfig
        The accelerator on the other end (word widths).
    retries : int
        How many times a rejected or unanswered frame is sent again (default 3).
    on_retry : callable, optional
        Called with a one-line description of every retry (for logs).
    """

    def __init__(self, port, config: MarsConfig, *, retries: int = 3,
                 on_retry: Callable[[str], None] | None = None):
        if retries < 0:
            raise ValueError(f"retries ({retries}) must be at least 0")
        self.port = port
        self.config = config
        self.retries = retries
        self.on_retry = on_retry
        self._layout = HostFormat(config).layout()
        self._serial = SerialFormat(config)
        self._ops: list[tuple] = []
        #: Frames sent and bytes sent / received since creation (link statistics).
        self.frames = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.retried = 0

    # -- Transport -----------------------------------------------------------------------

    def _fields(self, word: int) -> tuple[int, int, int, int, int]:
        fields = {name: (word >> field.offset) & ((1 << field.width) - 1)
                  for name, field in self._layout}
        return (fields["region"], fields["unit"], fields["domain"], fields["offset"],
                fields["data"])

    def write(self, word: int) -> None:
        self._ops.append(("W", *self._fields(word)))

    def read(self, word: int) -> Pending:
        answer = Pending()
        self._ops.append(("R", *self._fields(word)[:4], answer))
        return answer

    def run(self, budget: int) -> Pending:
        answer = Pending()
        self._ops.append(("S", int(budget), answer))
        return answer

    def flush(self) -> None:
        ops, self._ops = self._ops, []
        i = 0
        while i < len(ops):
            kind = ops[i][0]
            if kind == "S":
                self._run(*ops[i][1:])
                i += 1
            elif kind == "W":
                i = self._write_burst(ops, i)
            else:
                i = self._read_burst(ops, i)

    # -- frames --------------------------------------------------------------------------

    def _burst(self, ops: list[tuple], i: int, kind: str, limit: int) -> int:
        """End of the run of `kind` ops from `i` on one memory at consecutive offsets."""
        _, region, unit, domain, offset = ops[i][:5]
        j = i + 1
        while (j < len(ops) and j - i < limit and ops[j][0] == kind
               and ops[j][1:4] == (region, unit, domain) and ops[j][4] == offset + (j - i)):
            j += 1
        return j

    def _write_burst(self, ops: list[tuple], i: int) -> int:
        _, region, unit, domain, offset, _ = ops[i]
        nbytes = self._serial.word_bytes(Region(region))
        j = self._burst(ops, i, "W", self._serial.max_write_words(nbytes))
        frame = request_frame(Command.WRITE, region=region, unit=unit, domain=domain,
                              offset=offset, nbytes=nbytes, words=[op[5] for op in ops[i:j]])
        self._exchange(frame, "WRITE", 0)
        return j

    def _read_burst(self, ops: list[tuple], i: int) -> int:
        _, region, unit, domain, offset, _ = ops[i]
        nbytes = self._serial.word_bytes(Region(region))
        j = self._burst(ops, i, "R", self._serial.max_read_words(nbytes))
        frame = request_frame(Command.READ, region=region, unit=unit, domain=domain,
                              offset=offset, nbytes=nbytes, count=j - i)
        data = self._exchange(frame, "READ", (j - i) * nbytes)
        for n, op in enumerate(ops[i:j]):
            op[5].resolve(int.from_bytes(data[n * nbytes:(n + 1) * nbytes], "little"))
        return j

    def _run(self, budget: int, answer: Pending) -> None:
        data = self._exchange(request_frame(Command.RUN, budget=budget), "RUN", 5)
        cycles, flags = int.from_bytes(data[:4], "little"), data[4]
        answer.resolve(RunStatus(None if flags & RUN_TIMEOUT_FLAG else cycles,
                                 Status(flags & 0b111)))

    def link_status(self) -> LinkStatus:
        """The bridge's error counter, last error and the accelerator's status (sent at
        once, after whatever is recorded)."""
        self.flush()
        data = self._exchange(request_frame(Command.STATUS), "STATUS", 4)
        last = data[2]
        try:
            last = ErrorCode(last)
        except ValueError:
            pass
        return LinkStatus(int.from_bytes(data[:2], "little"), last, Status(data[3] & 0b111))

    # -- the exchange ----------------------------------------------------------------------

    def _exchange(self, frame: bytes, what: str, data_len: int) -> bytes:
        """Send `frame` until the bridge answers OK with `data_len` bytes of data."""
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
                if self.on_retry is not None:
                    self.on_retry(f"serial link: {what} frame {problem}; sending it again "
                                  f"(retry {attempt} of {self.retries})")
            self.port.write(frame)
            self.frames += 1
            self.bytes_sent += len(frame)
            try:
                code, data = self._response()
            except FrameError as error:
                problem = f"got a damaged answer ({error})"
                continue
            if code != ErrorCode.OK:
                name = code.name if isinstance(code, ErrorCode) else f"code {code}"
                problem = f"rejected by the board ({name.lower().replace('_', ' ')})"
                continue
            if len(data) != data_len:
                problem = f"answered with {len(data)} data bytes instead of {data_len}"
                continue
            return data
        raise SerialLinkError(f"the {what} frame failed {self.retries + 1} times: last "
                              f"{problem} (check the port, the baud rate and the bitstream)")

    def _read_exact(self, n: int) -> bytes:
        data = bytes(self.port.read(n))
        self.bytes_received += len(data)
        if len(data) < n:
            raise FrameError(f"no answer: {len(data)} of {n} bytes before the port's "
                             f"timeout")
        return data

    def _response(self) -> tuple[ErrorCode | int, bytes]:
        skipped = 0
        while True:                           # find the start of an answer
            first = self._read_exact(1)
            if first[0] == RESPONSE_SYNC:
                break
            skipped += 1
            if skipped > 600:
                raise FrameError("no response start byte in 600 bytes")
        length = self._read_exact(1)
        rest = self._read_exact(length[0] + 2)
        return parse_response(first + length + rest)
