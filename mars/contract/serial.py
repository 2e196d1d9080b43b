"""The serial host link: frames that carry the host protocol over a byte stream (a UART).

Part of the hardware/software contract (`mars.contract`): the gateware bridge
(`mars.hw.bridge.SerialBridge`) decodes request frames and encodes response frames with the
constants here, and the host's serial transport (`mars.sw.host.serial`) encodes and parses
them with the functions here.  `FrameReceiver` is the byte-by-byte reference model of the
bridge's receiver (the tests compare the gateware with it).  docs/serial.md has the tables.

Request frame (host to board)::

    0xA5 | LEN | CMD | ARGS ... | CRC_HI | CRC_LO           LEN = bytes of CMD + ARGS (1..255)

Response frame (board to host)::

    0x5A | LEN | CODE | DATA ... | CRC_HI | CRC_LO          LEN = bytes of CODE + DATA

The CRC is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection, no
final XOR; check value 0x29B1 for ``b"123456789"``) over LEN and the body, sent most
significant byte first, so that the CRC over LEN, body and CRC is 0.  Commands:

* ``WRITE``: ``region, unit, domain, offset (u16 LE), B, data[N*B]``: N host writes to
  consecutive offsets, each word B bytes little-endian (zero-extended to the data field).
* ``READ``: ``region, unit, domain, offset (u16 LE), B, N``: N host reads of consecutive
  offsets; the answer's DATA holds the low B bytes of each, little-endian.
* ``RUN``: ``budget (u32 LE)``: pulse ``start``, wait at most `budget` cycles for ``done``;
  DATA is ``cycles (u32 LE), flags (u8)``: the top's `Status` bits, bit 7 set if ``done``
  did not rise within the budget.
* ``STATUS``: no arguments; DATA is ``errors (u16 LE), last error (u8), status (u8)``: the
  bridge's sticky count of rejected frames (saturating) and the last `ErrorCode`.

A frame is executed only when it arrived whole with a good CRC and a length that fits its
command; otherwise the bridge discards input until the line has been idle for its timeout,
counts the error and answers a NAK: a response whose CODE is the `ErrorCode` (no DATA).
"""

from __future__ import annotations

import binascii
import dataclasses
import enum

from mars.config import MarsConfig
from mars.errors import MarsError

from .host import HostFormat, HostMemory, Region

__all__ = ["REQUEST_SYNC", "RESPONSE_SYNC", "MAX_BODY", "HEADER_BYTES", "RUN_TIMEOUT_FLAG",
           "Command", "ErrorCode", "crc16", "SerialFormat", "request_frame",
           "response_frame", "FrameReceiver", "Received", "FrameError", "parse_response",
           "body_error"]

#: First byte of a request frame.
REQUEST_SYNC = 0xA5
#: First byte of a response frame.
RESPONSE_SYNC = 0x5A
#: Largest LEN (bytes of CMD and arguments, or of CODE and data).
MAX_BODY = 255
#: Bytes of the address header of WRITE and READ: region, unit, domain, offset (u16), B.
HEADER_BYTES = 6
#: Bit of a RUN answer's flags byte: ``done`` did not rise within the budget.
RUN_TIMEOUT_FLAG = 0x80


class Command(enum.IntEnum):
    """CMD byte of a request frame."""

    WRITE = 0x01
    READ = 0x02
    RUN = 0x03
    STATUS = 0x04


class ErrorCode(enum.IntEnum):
    """CODE byte of a response: 0 is OK, anything else a NAK naming why."""

    OK = 0x00
    BAD_SYNC = 0x01       # a byte other than 0xA5 where a frame should start
    BAD_LENGTH = 0x02     # LEN is 0, or does not fit the command (count, B, N)
    BAD_CRC = 0x03        # the CRC does not match
    TIMEOUT = 0x04        # the line fell idle inside a frame (a truncated frame)
    BAD_COMMAND = 0x05    # an unknown CMD byte


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of `data` (``binascii.crc_hqx``: poly 0x1021, MSB first), from
    `crc` (the initial value 0xFFFF)."""
    return binascii.crc_hqx(bytes(data), crc)


class FrameError(MarsError, ValueError):
    """A frame that cannot be built (an argument out of range) or a response that cannot be
    parsed (bad sync, length or CRC)."""


@dataclasses.dataclass(frozen=True)
class SerialFormat:
    """Word sizes on the serial link for the top of `config`.

    Members
    -------
    data_bytes : int
        Most bytes of one data word, ceil(HostFormat.data_bits / 8) (B may not exceed it).
    """

    config: MarsConfig

    def __post_init__(self):
        fmt = HostFormat(self.config)
        if fmt.offset_bits > 16:
            raise FrameError(f"host offsets of {fmt.offset_bits} bits do not fit the serial "
                             f"frame's 16-bit offset")
        if max(fmt.unit_bits, fmt.domain_bits) > 8:
            raise FrameError("unit or domain fields wider than 8 bits do not fit a frame")

    @property
    def data_bytes(self) -> int:
        return -(-HostFormat(self.config).data_bits // 8)

    def word_bytes(self, region: Region) -> int:
        """B for words of `region`: its memory's width in bytes (4 for control registers)."""
        region = Region(region)
        if region is Region.CONTROL:
            return 4
        return -(-HostMemory[region.name].width(self.config) // 8)

    @staticmethod
    def max_write_words(nbytes: int) -> int:
        """Most words of `nbytes` bytes in one WRITE frame."""
        return (MAX_BODY - 1 - HEADER_BYTES) // nbytes

    @staticmethod
    def max_read_words(nbytes: int) -> int:
        """Most words of `nbytes` bytes one READ frame may ask for (the answer's LEN)."""
        return min(255, (MAX_BODY - 1) // nbytes)


def _frame(sync: int, body: bytes) -> bytes:
    if not 1 <= len(body) <= MAX_BODY:
        raise FrameError(f"a frame body of {len(body)} bytes is outside [1, {MAX_BODY}]")
    covered = bytes([len(body)]) + body
    return bytes([sync]) + covered + crc16(covered).to_bytes(2, "big")


def _header(region: int, unit: int, domain: int, offset: int, nbytes: int) -> bytes:
    for name, value, limit in (("region", region, 16), ("unit", unit, 256),
                               ("domain", domain, 256), ("offset", offset, 1 << 16),
                               ("B", nbytes, 256)):
        if not 0 <= value < limit:
            raise FrameError(f"{name} ({value}) does not fit a frame (limit {limit})")
    return bytes([region, unit, domain]) + offset.to_bytes(2, "little") + bytes([nbytes])


def request_frame(command: Command, *, region: int = 0, unit: int = 0, domain: int = 0,
                  offset: int = 0, nbytes: int = 0, words=(), count: int = 0,
                  budget: int = 0) -> bytes:
    """The bytes of one request frame.

    WRITE takes `region`, `unit`, `domain`, `offset`, `nbytes` (B) and `words` (ints that
    fit B bytes); READ the same address, `nbytes` and `count` (N); RUN `budget` (cycles,
    u32); STATUS nothing.  Raises `FrameError` for an argument that does not fit.
    """
    command = Command(command)
    if command is Command.WRITE:
        data = b"".join(int(w).to_bytes(nbytes, "little") for w in words) if nbytes else b""
        body = bytes([command]) + _header(region, unit, domain, offset, nbytes) + data
    elif command is Command.READ:
        if not 1 <= count <= 255:
            raise FrameError(f"a READ frame reads 1 to 255 words, not {count}")
        body = bytes([command]) + _header(region, unit, domain, offset, nbytes) \
            + bytes([count])
    elif command is Command.RUN:
        if not 0 <= budget < 1 << 32:
            raise FrameError(f"budget ({budget}) does not fit 32 bits")
        body = bytes([command]) + budget.to_bytes(4, "little")
    else:
        body = bytes([command])
    return _frame(REQUEST_SYNC, body)


def response_frame(code: ErrorCode, data: bytes = b"") -> bytes:
    """The bytes of one response frame (the bridge's answer)."""
    return _frame(RESPONSE_SYNC, bytes([int(code)]) + bytes(data))


def parse_response(frame: bytes) -> tuple[ErrorCode | int, bytes]:
    """CODE and DATA of a whole response frame; `FrameError` names what is wrong."""
    frame = bytes(frame)
    if len(frame) < 5 or frame[0] != RESPONSE_SYNC:
        raise FrameError(f"not a response frame: {frame[:8].hex()}")
    if frame[1] + 4 != len(frame) or frame[1] == 0:
        raise FrameError(f"response length {frame[1]} does not match its {len(frame)} bytes")
    if crc16(frame[1:]) != 0:
        raise FrameError("response CRC mismatch")
    code = frame[2]
    try:
        code = ErrorCode(code)
    except ValueError:
        pass
    return code, frame[3:-2]


def body_error(config: MarsConfig, body: bytes) -> ErrorCode:
    """The `ErrorCode` the bridge gives a frame body (CMD and arguments) whose CRC is good:
    `ErrorCode.OK` if it executes it."""
    data_bytes = SerialFormat(config).data_bytes
    size, cmd = len(body), body[0]
    if cmd == Command.WRITE:
        if size < 1 + HEADER_BYTES + 1:
            return ErrorCode.BAD_LENGTH
        b = body[HEADER_BYTES]
        if not 1 <= b <= data_bytes or (size - 1 - HEADER_BYTES) % b:
            return ErrorCode.BAD_LENGTH
    elif cmd == Command.READ:
        if size != 1 + HEADER_BYTES + 1:
            return ErrorCode.BAD_LENGTH
        b, n = body[HEADER_BYTES], body[HEADER_BYTES + 1]
        if not 1 <= b <= data_bytes or n == 0 or 1 + n * b > MAX_BODY:
            return ErrorCode.BAD_LENGTH
    elif cmd == Command.RUN:
        if size != 5:
            return ErrorCode.BAD_LENGTH
    elif cmd == Command.STATUS:
        if size != 1:
            return ErrorCode.BAD_LENGTH
    else:
        return ErrorCode.BAD_COMMAND
    return ErrorCode.OK


@dataclasses.dataclass(frozen=True)
class Received:
    """What `FrameReceiver` reports: a frame body to execute (``code`` OK) or a NAK."""

    code: ErrorCode
    body: bytes = b""


class FrameReceiver:
    """Reference model of the bridge's receiver, byte by byte.

    Feed it the bytes on the line with `byte` and idle gaps with `idle` (cycles since the
    last byte); it returns a `Received` when the bridge would act: execute a body, or
    answer a NAK (after it discarded input until `timeout` idle cycles).
    """

    def __init__(self, config: MarsConfig, timeout: int):
        self.config = config
        self.timeout = timeout
        self._state = "idle"
        self._buffer = bytearray()
        self._error = ErrorCode.OK
        self._length = 0

    def _fail(self, code: ErrorCode) -> None:
        self._state, self._error = "drain", code

    def byte(self, value: int) -> Received | None:
        """One byte arrives (right after the previous one); a `Received` if a good frame is
        now complete."""
        if self._state == "idle":
            if value == REQUEST_SYNC:
                self._state, self._buffer = "length", bytearray()
            else:
                self._fail(ErrorCode.BAD_SYNC)
        elif self._state == "length":
            self._length = value
            self._buffer.append(value)
            if value == 0:
                self._fail(ErrorCode.BAD_LENGTH)
            else:
                self._state = "body"
        elif self._state == "body":
            self._buffer.append(value)
            if len(self._buffer) == 1 + self._length + 2:
                if crc16(self._buffer) != 0:
                    self._fail(ErrorCode.BAD_CRC)
                    return None
                body = bytes(self._buffer[1:-2])
                code = body_error(self.config, body)
                if code is not ErrorCode.OK:
                    self._fail(code)
                    return None
                self._state = "idle"
                return Received(ErrorCode.OK, body)
        return None

    def idle(self, cycles: int) -> Received | None:
        """The line has been idle for `cycles` cycles since the last byte; a NAK if the
        bridge answers one now."""
        if cycles < self.timeout or self._state == "idle":
            return None
        code = self._error if self._state == "drain" else ErrorCode.TIMEOUT
        self._state, self._error = "idle", ErrorCode.OK
        return Received(code)
