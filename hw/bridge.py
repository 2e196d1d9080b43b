"""The serial host bridge: request frames in, host-port words and response frames out.

`SerialBridge` speaks the frame protocol of `mars.contract.serial` (docs/serial.md) on a
byte stream and drives the accelerator's host port (`mars.hw.top.MarsTop`: ``host``,
``host_read``, ``start``, ``busy``/``done``/``error``).  A frame is stored whole in a
255-byte buffer and executed only once its CRC (CRC-16/CCITT-FALSE, a bytewise LFSR here)
and its length have been checked: a corrupt or truncated frame never produces a host-port
strobe.  It is rejected with a NAK naming the error after the line has been idle for
`timeout` cycles (so the rest of a damaged frame is not taken for a new one), and counted
in a sticky, saturating error counter that the STATUS command reads.

`SerialTop` is the part a board instantiates: `mars.hw.uart.UART`, the bridge and the
accelerator, with the serial pins and the status outputs.
"""


from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig
from mars.contract.host import HostFormat
from mars.contract.serial import (
    HEADER_BYTES,
    MAX_BODY,
    REQUEST_SYNC,
    RESPONSE_SYNC,
    RUN_TIMEOUT_FLAG,
    Command,
    ErrorCode,
    SerialFormat,
)

from .top import MarsTop
from .uart import UART

__all__ = ["crc16_step", "FRAME", "run_budget", "RequestSignature", "FrameReceiver",
           "CommandExecutor", "SerialBridge", "BridgedTop", "SerialTop"]

_POLY = 0x1021


def crc16_step(m: Module, crc, byte, name: str) -> Signal:
    """The CRC-16/CCITT-FALSE register after `byte` (MSB first): 8 unrolled LFSR steps of
    `crc` (16 bits) and `byte` (8 bits), one comb signal per step (`name`_0 .. _7) so the
    expression does not grow with each step."""
    for i in reversed(range(8)):
        step = Signal(16, name=f"{name}_{i}")
        feedback = byte[i] ^ crc[15]
        m.d.comb += step.eq(Cat(Const(0, 1), crc[:15]) ^ (feedback.replicate(16) & _POLY))
        crc = step
    return crc


#: The request frame's fields as the receiver stores them (bytes of the body; ``offset``
#: little-endian), the frame's ``length`` (LEN) and the answer's ``code``.  RUN's budget
#: (body bytes 1 to 4) is `run_budget` of these: no flops of its own.
FRAME = data.StructLayout({
    "length": 8, "cmd": 8, "region": 8, "unit": 8, "domain": 8, "offset": 16,
    "nbytes": 8, "count": 8, "code": 8,
})


def run_budget(fields) -> Value:
    """RUN's budget (u32, body bytes 1 to 4, little-endian) from the stored `FRAME`
    fields: the bytes the receiver stores as region, unit, domain and the offset's low
    byte (a RUN frame never advances the offset)."""
    return Cat(fields.region, fields.unit, fields.domain, fields.offset[:8])


class RequestSignature(wiring.Signature):
    """From the frame receiver (the source) to the command executor.

    Members
    -------
    fields : Out(FRAME)
        The last frame's fields; ``code`` is `ErrorCode.OK` for a frame to execute, else
        the error a NAK names.  Stable from ``valid`` until ``answered``, except ``offset``.
    valid : Out(1)
        One cycle: answer (and, ``code`` OK, execute) the frame in ``fields``.
    answered : In(1)
        One cycle: the answer's last byte is sent; the receiver listens again.
    advance : In(1)
        Step ``fields.offset`` to the next word.
    body_addr : In(8)
        Body buffer address (byte 0: CMD).
    body_data : Out(8)
        The body byte at ``body_addr`` one cycle before.
    errors : Out(16)
        Rejected frames since reset (saturates).
    last_error : Out(8)
        `ErrorCode` of the last rejected frame (0: none).
    """

    def __init__(self):
        super().__init__({
            "fields": Out(FRAME), "valid": Out(1), "answered": In(1), "advance": In(1),
            "body_addr": In(8), "body_data": Out(8), "errors": Out(16), "last_error": Out(8),
        })


class FrameReceiver(wiring.Component):
    """Request frames from `rx` into a 255-byte body buffer: sync, length, CRC, the
    command's length rules (`mars.contract.serial.FrameReceiver` is its model), the
    inter-byte timeout, the error counter.

    Parameters
    ----------
    config : MarsConfig
        Gives the widest word (`SerialFormat.data_bytes`) a WRITE or READ may carry.
    timeout : int
        Idle cycles inside a frame after which it is rejected as truncated (and the idle
        time that ends the discarding after any rejected frame).

    Members
    -------
    rx : In(stream.Signature(8))
        Received bytes; ``ready`` while receiving or discarding, not between ``valid``
        and ``answered``.
    request : Out(RequestSignature())
        The frame to answer, the body buffer's read port and the error counter.
    """

    rx: In(stream.Signature(8))
    request: Out(RequestSignature())

    def __init__(self, config: MarsConfig, *, timeout: int):
        self._data_bytes = SerialFormat(config).data_bytes
        self._timeout = timeout
        super().__init__()

    def _idle_timer(self, m: Module, got) -> Signal:
        """Cycles since the last byte, saturating at the timeout; high once reached."""
        idle = Signal(range(self._timeout + 1))
        timed_out = Signal()
        m.d.comb += timed_out.eq(idle == self._timeout)
        with m.If(got):
            m.d.sync += idle.eq(0)
        with m.Elif(~timed_out):
            m.d.sync += idle.eq(idle + 1)
        return timed_out

    def _error_counter(self, m: Module) -> Signal:
        """The saturating count and the last code; returns the strobe that counts
        ``fields.code``."""
        req = self.request
        errors = Signal(16)
        last_error = Signal(8)
        reject = Signal()
        m.d.comb += [req.errors.eq(errors), req.last_error.eq(last_error)]
        with m.If(reject):
            m.d.sync += last_error.eq(req.fields.code)
            with m.If(errors != 0xFFFF):
                m.d.sync += errors.eq(errors + 1)
        return reject

    def _store(self, m: Module, index, modulo, byte) -> None:
        """Body byte `index` into its field (CMD, the header, B, N, RUN's budget) and the
        count of WRITE data bytes modulo B."""
        f = self.request.fields
        with m.Switch(index):
            for i, field in enumerate([f.cmd, f.region, f.unit, f.domain]):
                with m.Case(i):
                    m.d.sync += field.eq(byte)
            with m.Case(4):
                m.d.sync += f.offset[:8].eq(byte)
            with m.Case(5):
                m.d.sync += f.offset[8:].eq(byte)
            with m.Case(HEADER_BYTES):
                m.d.sync += f.nbytes.eq(byte)
            with m.Case(HEADER_BYTES + 1):
                m.d.sync += f.count.eq(byte)
        with m.If(index > HEADER_BYTES):
            m.d.sync += modulo.eq(Mux(modulo + 1 == f.nbytes, 0, modulo + 1))

    def _body_error(self, m: Module, crc, modulo) -> Signal:
        """The `ErrorCode` of a complete frame (OK: execute it)."""
        f = self.request.fields
        nb_ok = (f.nbytes != 0) & (f.nbytes <= self._data_bytes)
        length_ok = Signal()
        known = Signal(init=1)        # a command this bridge executes
        error = Signal(8)
        with m.Switch(f.cmd):
            with m.Case(Command.WRITE):
                m.d.comb += length_ok.eq((f.length >= HEADER_BYTES + 2) & nb_ok
                                         & (modulo == 0))
            with m.Case(Command.READ):
                m.d.comb += length_ok.eq((f.length == HEADER_BYTES + 2) & nb_ok
                                         & (f.count != 0)
                                         & (f.count * f.nbytes <= MAX_BODY - 1))
            with m.Case(Command.RUN):
                m.d.comb += length_ok.eq(f.length == 5)
            with m.Case(Command.STATUS):
                m.d.comb += length_ok.eq(f.length == 1)
            with m.Default():
                m.d.comb += known.eq(0)
        with m.If(crc != 0):
            m.d.comb += error.eq(ErrorCode.BAD_CRC)
        with m.Elif(~known):
            m.d.comb += error.eq(ErrorCode.BAD_COMMAND)
        with m.Elif(~length_ok):
            m.d.comb += error.eq(ErrorCode.BAD_LENGTH)
        return error

    def _fail(self, m: Module, code) -> None:
        """Reject the frame with `code` (counted next cycle)."""
        m.d.sync += self.request.fields.code.eq(code)
        m.next = "REJECT"

    def _receive(self, m: Module, r) -> None:
        """The states that take a frame's bytes: SYNC, LEN, the body, the CRC."""
        rx, f = self.rx, self.request.fields
        with m.State("IDLE"):
            m.d.comb += rx.ready.eq(1)
            with m.If(r.got):
                m.d.sync += [r.crc.eq(0xFFFF), r.index.eq(0), r.modulo.eq(0)]
                with m.If(rx.payload == REQUEST_SYNC):
                    # OK unless the frame fails: the executor reads it with ``valid``.
                    m.d.sync += f.code.eq(ErrorCode.OK)
                    m.next = "LEN"
                with m.Else():
                    self._fail(m, ErrorCode.BAD_SYNC)
        with m.State("LEN"):
            m.d.comb += rx.ready.eq(1)
            with m.If(r.got):
                m.d.sync += [f.length.eq(rx.payload), r.crc.eq(r.rx_crc)]
                with m.If(rx.payload == 0):
                    self._fail(m, ErrorCode.BAD_LENGTH)
                with m.Else():
                    m.next = "BODY"
            with m.Elif(r.timed_out):
                self._fail(m, ErrorCode.TIMEOUT)
        with m.State("BODY"):
            m.d.comb += [rx.ready.eq(1), r.buf_w.addr.eq(r.index),
                         r.buf_w.data.eq(rx.payload), r.buf_w.en.eq(r.got)]
            with m.If(r.got):
                m.d.sync += [r.crc.eq(r.rx_crc), r.index.eq(r.index + 1)]
                self._store(m, r.index, r.modulo, rx.payload)
                with m.If(r.index + 1 == f.length):
                    m.next = "CRC_HI"
            with m.Elif(r.timed_out):
                self._fail(m, ErrorCode.TIMEOUT)
        for state, after in (("CRC_HI", "CRC_LO"), ("CRC_LO", "CHECK")):
            with m.State(state):
                m.d.comb += rx.ready.eq(1)
                with m.If(r.got):
                    m.d.sync += r.crc.eq(r.rx_crc)
                    m.next = after
                with m.Elif(r.timed_out):
                    self._fail(m, ErrorCode.TIMEOUT)

    def _conclude(self, m: Module, r) -> None:
        """The states after a frame: check it, or count and discard a bad one; then hand
        it to the executor and wait for the answer."""
        rx, req = self.rx, self.request
        with m.State("CHECK"):
            error = self._body_error(m, r.crc, r.modulo)
            with m.If(error != ErrorCode.OK):
                self._fail(m, error)
            with m.Else():
                m.d.comb += req.valid.eq(1)
                m.next = "ANSWER"
        with m.State("REJECT"):
            # Count the error; a truncated frame is answered at once (the line is already
            # idle), any other after the rest of the frame has passed.
            m.d.comb += r.reject.eq(1)
            with m.If(req.fields.code == ErrorCode.TIMEOUT):
                m.d.comb += req.valid.eq(1)
                m.next = "ANSWER"
            with m.Else():
                m.next = "DRAIN"
        with m.State("DRAIN"):
            m.d.comb += rx.ready.eq(1)
            with m.If(r.timed_out & ~r.got):
                m.d.comb += req.valid.eq(1)
                m.next = "ANSWER"
        with m.State("ANSWER"):
            with m.If(req.answered):
                m.next = "IDLE"

    def elaborate(self, platform):
        m = Module()
        rx, req = self.rx, self.request
        m.submodules.buffer = buffer = Memory(shape=unsigned(8), depth=MAX_BODY + 1, init=[])
        buf_r = buffer.read_port()
        m.d.comb += [buf_r.addr.eq(req.body_addr), req.body_data.eq(buf_r.data)]
        got = rx.valid & rx.ready
        crc = Signal(16)
        r = SimpleNamespace(
            got=got, crc=crc, buf_w=buffer.write_port(),
            index=Signal(8, name="index"),      # body bytes received
            # WRITE data bytes received, modulo B: a B above data_bytes fails the length
            # check anyway, so the counter need only count below data_bytes
            modulo=Signal(range(self._data_bytes + 1), name="modulo"),
            timed_out=self._idle_timer(m, got), reject=self._error_counter(m),
            rx_crc=crc16_step(m, crc, rx.payload, "rx_crc"))
        with m.If(req.advance):
            m.d.sync += req.fields.offset.eq(req.fields.offset + 1)
        with m.FSM(name="receiver"):
            self._receive(m, r)
            self._conclude(m, r)
        return m


class CommandExecutor(wiring.Component):
    """Executes a received frame on the host port and sends the response frame (ACK or
    NAK, CRC-16/CCITT-FALSE).  A READ streams each host word out as it arrives.

    Parameters
    ----------
    config : MarsConfig
        The accelerator whose host port (`HostFormat`) the executor drives.

    Members
    -------
    request : In(RequestSignature())
        The frame from `FrameReceiver`.
    tx : Out(stream.Signature(8))
        Response bytes.
    host : Out(stream.Signature(HostFormat(config).layout()))
    host_read : In(stream.Signature(unsigned(data_bits)))
    start : Out(1)
    busy, done, error : In(1)
        The accelerator's host port (connect to `MarsTop`).
    """

    def __init__(self, config: MarsConfig):
        self._host = HostFormat(config)
        self._data_bytes = SerialFormat(config).data_bytes
        super().__init__({
            "request": In(RequestSignature()),
            "tx": Out(stream.Signature(8)),
            "host": Out(stream.Signature(self._host.layout())),
            "host_read": In(stream.Signature(unsigned(self._host.data_bits))),
            "start": Out(1),
            "busy": In(1),
            "done": In(1),
            "error": In(1),
        })

    def _registers(self, m: Module) -> SimpleNamespace:
        """The executor's registers, the status byte, and the word register's shift/load."""
        r = SimpleNamespace(
            # buffer address of the next WRITE data byte
            pointer=Signal(8, name="pointer"),
            # byte of the current word: below B <= data_bytes (the receiver checked B)
            lane=Signal(range(self._data_bytes + 1), name="lane"),
            # A WRITE word being assembled, or a READ answer being sent: a plain shift
            # register (bytes enter at the top, leave at the bottom), so each bit costs a
            # flop and at most a 2-input mux instead of a byte-lane decoder.
            word=Signal(8 * self._data_bytes, name="word"),
            # the answer's LEN; while data bytes are sent, 1 + the data bytes still to send
            resp_len=Signal(8, name="resp_len"),
            # the status byte of a RUN or STATUS answer (`R_DATA` sends the answer's
            # bytes straight from the cycle counter, the error counter and this)
            flags=Signal(8, name="flags"),
            tx_crc=Signal(16, name="tx_crc"),
            cycles=Signal(32, name="cycles"),
            status=Signal(8, name="status"),
            shift=Signal(name="shift"), shift_in=Signal(8, name="shift_in"),
            load=Signal(name="load"),
        )
        m.d.comb += [r.status.eq(Cat(self.busy, self.done, self.error)),
                     self.request.body_addr.eq(r.pointer)]
        # One shift for both directions (a byte in at the top, one out at the bottom) and
        # one parallel load: a LUT a bit.
        with m.If(r.load):
            m.d.sync += r.word.eq(self.host_read.payload)
        with m.Elif(r.shift):
            m.d.sync += r.word.eq(Cat(r.word[8:], r.shift_in))
        r.tx_crc_next = crc16_step(m, r.tx_crc, self.tx.payload, "tx_crc")
        return r

    def _send(self, m: Module, r, value, then: str, *, covered: bool = True):
        """Offer response byte `value`; once taken go to `then` (and cover it by the CRC)."""
        m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(value)]
        with m.If(self.tx.ready):
            if covered:
                m.d.sync += r.tx_crc.eq(r.tx_crc_next)
            m.next = then
        return self.tx.ready

    def _accept(self, m: Module, r) -> None:
        """The WAIT state: a NAK, or the start of the frame's command."""
        req = self.request
        f = req.fields
        with m.State("WAIT"):
            with m.If(req.valid):
                with m.If(f.code != ErrorCode.OK):
                    m.d.sync += r.resp_len.eq(1)
                    m.next = "R_SYNC"
                with m.Elif(f.cmd == Command.WRITE):
                    m.d.sync += [r.pointer.eq(HEADER_BYTES + 1), r.lane.eq(0)]
                    m.next = "W_FETCH"
                with m.Elif(f.cmd == Command.READ):
                    m.d.sync += r.resp_len.eq(1 + f.count * f.nbytes)
                    m.next = "R_SYNC"
                with m.Elif(f.cmd == Command.RUN):
                    m.next = "RUN_START"
                with m.Else():            # STATUS
                    m.d.sync += [r.flags.eq(r.status), r.resp_len.eq(5)]
                    m.next = "R_SYNC"

    def _write(self, m: Module, r) -> None:
        """WRITE: each word's B bytes from the body buffer into the word register, then a
        host-port write."""
        f = self.request.fields
        with m.State("W_FETCH"):          # the buffer answers one cycle later
            m.next = "W_BYTE"
        with m.State("W_BYTE"):
            # Shift in the word's B bytes (least significant first), then zeros up to the
            # data field's width: the word ends aligned at the bottom.
            data_byte = Mux(r.lane < f.nbytes, self.request.body_data, 0)
            m.d.comb += [r.shift.eq(1), r.shift_in.eq(data_byte)]
            m.d.sync += r.lane.eq(r.lane + 1)
            with m.If(r.lane < f.nbytes):
                m.d.sync += r.pointer.eq(r.pointer + 1)
            with m.If(r.lane + 1 == self._data_bytes):
                m.d.sync += r.lane.eq(0)
                m.next = "W_PUSH"
            with m.Elif(r.lane + 1 < f.nbytes):
                m.next = "W_FETCH"
        with m.State("W_PUSH"):
            m.d.comb += [self.host.valid.eq(1), self.host.payload.write.eq(1)]
            with m.If(self.host.ready):
                m.d.comb += self.request.advance.eq(1)
                with m.If(r.pointer == f.length):
                    m.d.sync += r.resp_len.eq(1)
                    m.next = "R_SYNC"
                with m.Else():
                    m.next = "W_FETCH"

    def _run(self, m: Module, r) -> None:
        """RUN: start the accelerator, count cycles until ``done`` or the budget."""
        with m.State("RUN_START"):
            m.d.comb += self.start.eq(1)
            m.d.sync += r.cycles.eq(0)
            m.next = "RUN_WAIT"
        with m.State("RUN_WAIT"):
            with m.If(self.done | (r.cycles == run_budget(self.request.fields))):
                flags = r.status | Mux(self.done, 0, RUN_TIMEOUT_FLAG)
                m.d.sync += [r.flags.eq(flags), r.resp_len.eq(6)]
                m.next = "R_SYNC"
            with m.Else():
                m.d.sync += r.cycles.eq(r.cycles + 1)

    def _read(self, m: Module, r) -> None:
        """READ: for each of the N words a host-port read, its B bytes sent as they come."""
        f = self.request.fields
        with m.State("RD_ISSUE"):
            m.d.comb += [self.host.valid.eq(1), self.host.payload.write.eq(0)]
            with m.If(self.host.ready):
                m.next = "RD_WAIT"
        with m.State("RD_WAIT"):
            m.d.comb += self.host_read.ready.eq(1)
            with m.If(self.host_read.valid):
                m.d.comb += r.load.eq(1)
                m.d.sync += r.lane.eq(0)
                m.next = "RD_SEND"
        with m.State("RD_SEND"):
            with m.If(self._send(m, r, r.word[:8], "RD_SEND")):
                m.d.comb += r.shift.eq(1)
                m.d.sync += [r.lane.eq(r.lane + 1), r.resp_len.eq(r.resp_len - 1)]
                with m.If(r.lane + 1 == f.nbytes):
                    m.d.comb += self.request.advance.eq(1)
                    with m.If(r.resp_len == 2):      # the last data byte
                        m.next = "R_CRC_HI"
                    with m.Else():
                        m.next = "RD_ISSUE"

    def _answer(self, m: Module, r) -> None:
        """The response frame around the data: SYNC, LEN, CODE, RUN/STATUS bytes, CRC."""
        f = self.request.fields
        with m.State("R_SYNC"):
            m.d.sync += r.tx_crc.eq(0xFFFF)
            self._send(m, r, RESPONSE_SYNC, "R_LEN", covered=False)
        with m.State("R_LEN"):
            self._send(m, r, r.resp_len, "R_CODE")
        with m.State("R_CODE"):
            with m.If(self._send(m, r, f.code, "R_CRC_HI")):
                with m.If(f.code != ErrorCode.OK):
                    m.next = "R_CRC_HI"
                with m.Elif(f.cmd == Command.READ):
                    m.next = "RD_ISSUE"
                with m.Elif(r.resp_len != 1):      # RUN, STATUS
                    m.next = "R_DATA"
        with m.State("R_DATA"):
            # byte 6 - resp_len of the answer: RUN's five (LEN 6), STATUS's last four
            # (LEN 5)
            answer = Mux(f.cmd == Command.STATUS,
                         Cat(Const(0, 8), self.request.errors, self.request.last_error,
                             r.flags),
                         Cat(r.cycles, r.flags))
            byte = Signal(8, name="answer_byte")
            with m.Switch(r.resp_len[:3]):
                for left in range(2, 7):
                    with m.Case(left):
                        m.d.comb += byte.eq(answer.word_select(6 - left, 8))
            with m.If(self._send(m, r, byte, "R_DATA")):
                m.d.sync += r.resp_len.eq(r.resp_len - 1)
                with m.If(r.resp_len == 2):
                    m.next = "R_CRC_HI"
        with m.State("R_CRC_HI"):
            self._send(m, r, r.tx_crc[8:], "R_CRC_LO", covered=False)
        with m.State("R_CRC_LO"):
            m.d.comb += self.request.answered.eq(self.tx.ready)
            self._send(m, r, r.tx_crc[:8], "WAIT", covered=False)

    def elaborate(self, platform):
        m = Module()
        f = self.request.fields
        r = self._registers(m)
        hp = self.host.payload
        m.d.comb += [hp.region.eq(f.region), hp.unit.eq(f.unit), hp.domain.eq(f.domain),
                     hp.offset.eq(f.offset), hp.data.eq(r.word[:self._host.data_bits])]
        with m.FSM(name="executor"):
            self._accept(m, r)
            self._write(m, r)
            self._run(m, r)
            self._read(m, r)
            self._answer(m, r)
        return m


class SerialBridge(wiring.Component):
    """Request frames from `rx`, host-port accesses, response frames on `tx`: a
    `FrameReceiver` and a `CommandExecutor`.

    Parameters
    ----------
    config : MarsConfig
        The accelerator whose host port (`HostFormat`) the bridge drives.
    timeout : int
        Idle cycles inside a frame after which it is rejected as truncated (and the idle
        time that ends the discarding after any rejected frame).  A few byte times.

    Members
    -------
    rx : In(stream.Signature(8))
        Received bytes; ``ready`` while the bridge is receiving (not while it executes a
        frame or answers: the host waits for the answer before it sends again).
    tx : Out(stream.Signature(8))
        Response bytes.
    host : Out(stream.Signature(HostFormat(config).layout()))
    host_read : In(stream.Signature(unsigned(data_bits)))
    start : Out(1)
    busy, done, error : In(1)
        The accelerator's host port (connect to `MarsTop`).
    errors : Out(16)
        Rejected frames since reset (saturates).
    last_error : Out(8)
        `ErrorCode` of the last rejected frame (0: none).

    Raises
    ------
    ValueError
        `timeout` is not an integer of at least 2.
    """

    def __init__(self, config: MarsConfig, *, timeout: int):
        if not isinstance(timeout, int) or timeout < 2:
            raise ValueError(f"timeout must be an integer of at least 2 cycles, "
                             f"not {timeout!r}")
        self._config = config
        self._timeout = timeout
        self._host = HostFormat(config)
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "host": Out(stream.Signature(self._host.layout())),
            "host_read": In(stream.Signature(unsigned(self._host.data_bits))),
            "start": Out(1),
            "busy": In(1),
            "done": In(1),
            "error": In(1),
            "errors": Out(16),
            "last_error": Out(8),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = receiver = FrameReceiver(self._config, timeout=self._timeout)
        m.submodules.executor = executor = CommandExecutor(self._config)
        wiring.connect(m, wiring.flipped(self.rx), receiver.rx)
        wiring.connect(m, receiver.request, executor.request)
        wiring.connect(m, executor.tx, wiring.flipped(self.tx))
        wiring.connect(m, executor.host, wiring.flipped(self.host))
        wiring.connect(m, wiring.flipped(self.host_read), executor.host_read)
        m.d.comb += [self.start.eq(executor.start), executor.busy.eq(self.busy),
                     executor.done.eq(self.done), executor.error.eq(self.error),
                     self.errors.eq(receiver.request.errors),
                     self.last_error.eq(receiver.request.last_error)]
        return m


class BridgedTop(wiring.Component):
    """The `SerialBridge` driving the accelerator (`MarsTop`), on byte streams.

    Parameters
    ----------
    config : MarsConfig
    timeout : int
        The bridge's idle timeout in cycles.
    init : dict, optional
        Initial memory contents of the accelerator (`MarsTop`).

    Members
    -------
    rx : In(stream.Signature(8))
        Request bytes (from a UART receiver).
    tx : Out(stream.Signature(8))
        Response bytes (to a UART transmitter).
    busy, done, error : Out(1)
        The accelerator's status (for LEDs).
    link_error : Out(1)
        At least one frame was rejected since reset.
    """

    def __init__(self, config: MarsConfig, *, timeout: int, init: dict | None = None):
        self._config = config
        self._timeout = timeout
        self._init = init
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "busy": Out(1), "done": Out(1), "error": Out(1), "link_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = SerialBridge(self._config, timeout=self._timeout)
        m.submodules.top = top = MarsTop(self._config, init=self._init)
        wiring.connect(m, wiring.flipped(self.rx), bridge.rx)
        wiring.connect(m, bridge.tx, wiring.flipped(self.tx))
        wiring.connect(m, bridge.host, top.host)
        wiring.connect(m, top.host_read, bridge.host_read)
        m.d.comb += [top.start.eq(bridge.start), bridge.busy.eq(top.busy),
                     bridge.done.eq(top.done), bridge.error.eq(top.error),
                     self.busy.eq(top.busy), self.done.eq(top.done),
                     self.error.eq(top.error), self.link_error.eq(bridge.errors != 0)]
        return m


class SerialTop(wiring.Component):
    """A UART and the `BridgedTop` (bridge and accelerator): what a board runs.

    Parameters
    ----------
    config : MarsConfig
    divisor : int
        Clock cycles per bit (`mars.hw.uart.divisor` computes it from clock and baud).
    timeout : int, optional
        The bridge's idle timeout in cycles (default: 4 byte times, 40 bits).
    init : dict, optional
        Initial memory contents of the accelerator (`MarsTop`).

    Members
    -------
    rx : In(1)
        From the host (the USB-UART's TXD), idle high.
    tx : Out(1)
        To the host (the USB-UART's RXD).
    busy, done, error : Out(1)
        The accelerator's status (for LEDs).
    link_error : Out(1)
        At least one frame was rejected since reset.
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    busy: Out(1)
    done: Out(1)
    error: Out(1)
    link_error: Out(1)

    def __init__(self, config: MarsConfig, *, divisor: int, timeout: int | None = None,
                 init: dict | None = None):
        self._config = config
        self._divisor = divisor
        self._timeout = 40 * divisor if timeout is None else timeout
        self._init = init
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart = uart = UART(self._divisor)
        m.submodules.core = core = BridgedTop(self._config, timeout=self._timeout,
                                              init=self._init)
        m.d.comb += [uart.rx.eq(self.rx), self.tx.eq(uart.tx),
                     self.busy.eq(core.busy), self.done.eq(core.done),
                     self.error.eq(core.error), self.link_error.eq(core.link_error)]
        wiring.connect(m, uart.rx_data, core.rx)
        wiring.connect(m, core.tx, uart.tx_data)
        return m
