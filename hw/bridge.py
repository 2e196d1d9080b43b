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


from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
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

__all__ = ["crc16_step", "SerialBridge", "BridgedTop", "SerialTop"]

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


class SerialBridge(wiring.Component):
    """Request frames from `rx`, host-port accesses, response frames on `tx`.

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
    """

    def __init__(self, config: MarsConfig, *, timeout: int):
        if not isinstance(timeout, int) or timeout < 2:
            raise ValueError(f"timeout must be an integer of at least 2 cycles, "
                             f"not {timeout!r}")
        self._config = config
        self._timeout = timeout
        self._host = HostFormat(config)
        self._serial = SerialFormat(config)
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
        data_bytes = self._serial.data_bytes
        data_bits = self._host.data_bits
        rx, tx, host = self.rx, self.tx, self.host
        rx_byte = rx.payload
        got = rx.valid & rx.ready

        buffer = Memory(shape=unsigned(8), depth=MAX_BODY + 1, init=[])
        m.submodules.buffer = buffer
        buf_w = buffer.write_port()
        buf_r = buffer.read_port()

        # -- receiver state ------------------------------------------------------------
        length = Signal(8)            # LEN: bytes of CMD and arguments
        index = Signal(8)             # body bytes received
        crc = Signal(16)
        idle = Signal(range(self._timeout + 1))
        cmd = Signal(8)
        region = Signal(8)
        unit = Signal(8)
        domain = Signal(8)
        offset = Signal(16)
        nbytes = Signal(8)            # B
        count = Signal(8)             # N
        budget = Signal(32)
        modulo = Signal(8)            # WRITE data bytes received, modulo B
        code = Signal(8)              # answer CODE
        timed_out = Signal()
        m.d.comb += timed_out.eq(idle == self._timeout)
        with m.If(got):
            m.d.sync += idle.eq(0)
        with m.Elif(~timed_out):
            m.d.sync += idle.eq(idle + 1)

        errors = Signal(16)
        last_error = Signal(8)
        m.d.comb += [self.errors.eq(errors), self.last_error.eq(last_error)]
        reject = Signal()             # count the error in `code` (set this cycle)
        with m.If(reject):
            m.d.sync += last_error.eq(code)
            with m.If(errors != 0xFFFF):
                m.d.sync += errors.eq(errors + 1)

        # -- executor / answer state ---------------------------------------------------
        pointer = Signal(8)           # buffer address of the next WRITE data byte
        lane = Signal(8)              # byte of the current word
        # A WRITE word being assembled, or a READ answer being sent: a plain shift register
        # (bytes enter at the top, leave at the bottom), so each bit costs a flop and at
        # most a 2-input mux instead of a byte-lane decoder.
        word = Signal(8 * data_bytes)
        done_words = Signal(8)
        resp_len = Signal(8)
        resp = Signal(40)             # RUN / STATUS answer bytes, LSB first
        resp_left = Signal(3)
        tx_crc = Signal(16)
        cycles = Signal(32)
        status = Signal(8)
        m.d.comb += [status.eq(Cat(self.busy, self.done, self.error)),
                     buf_r.addr.eq(pointer)]

        hp = host.payload
        m.d.comb += [hp.region.eq(region), hp.unit.eq(unit), hp.domain.eq(domain),
                     hp.offset.eq(offset), hp.data.eq(word[:data_bits])]
        # One shift for both directions (a byte in at the top, one out at the bottom) and
        # one parallel load: a LUT a bit.
        shift = Signal()
        shift_in = Signal(8)
        load = Signal()
        with m.If(load):
            m.d.sync += word.eq(self.host_read.payload)
        with m.Elif(shift):
            m.d.sync += word.eq(Cat(word[8:], shift_in))

        rx_crc = crc16_step(m, crc, rx_byte, "rx_crc")
        tx_crc_next = crc16_step(m, tx_crc, tx.payload, "tx_crc")

        with m.FSM(name="bridge"):
            # ---- receive -------------------------------------------------------------
            with m.State("IDLE"):
                m.d.comb += rx.ready.eq(1)
                with m.If(got):
                    m.d.sync += [crc.eq(0xFFFF), index.eq(0), modulo.eq(0)]
                    with m.If(rx_byte == REQUEST_SYNC):
                        m.next = "LEN"
                    with m.Else():
                        m.d.sync += code.eq(ErrorCode.BAD_SYNC)
                        m.next = "REJECT"
            with m.State("LEN"):
                m.d.comb += rx.ready.eq(1)
                with m.If(got):
                    m.d.sync += [length.eq(rx_byte), crc.eq(rx_crc)]
                    with m.If(rx_byte == 0):
                        m.d.sync += code.eq(ErrorCode.BAD_LENGTH)
                        m.next = "REJECT"
                    with m.Else():
                        m.next = "BODY"
                with m.Elif(timed_out):
                    m.d.sync += code.eq(ErrorCode.TIMEOUT)
                    m.next = "REJECT"
            with m.State("BODY"):
                m.d.comb += [rx.ready.eq(1), buf_w.addr.eq(index), buf_w.data.eq(rx_byte),
                             buf_w.en.eq(got)]
                with m.If(got):
                    m.d.sync += [crc.eq(rx_crc), index.eq(index + 1)]
                    with m.Switch(index):
                        for i, field in enumerate([cmd, region, unit, domain]):
                            with m.Case(i):
                                m.d.sync += field.eq(rx_byte)
                        with m.Case(4):
                            m.d.sync += offset[:8].eq(rx_byte)
                        with m.Case(5):
                            m.d.sync += offset[8:].eq(rx_byte)
                        with m.Case(HEADER_BYTES):
                            m.d.sync += nbytes.eq(rx_byte)
                        with m.Case(HEADER_BYTES + 1):
                            m.d.sync += count.eq(rx_byte)
                    # RUN's budget: bytes 1..4, little-endian.
                    for i in range(4):
                        with m.If(index == i + 1):
                            m.d.sync += budget[8 * i:8 * i + 8].eq(rx_byte)
                    with m.If(index > HEADER_BYTES):
                        m.d.sync += modulo.eq(Mux(modulo + 1 == nbytes, 0, modulo + 1))
                    with m.If(index + 1 == length):
                        m.next = "CRC_HI"
                with m.Elif(timed_out):
                    m.d.sync += code.eq(ErrorCode.TIMEOUT)
                    m.next = "REJECT"
            for state, after in (("CRC_HI", "CRC_LO"), ("CRC_LO", "CHECK")):
                with m.State(state):
                    m.d.comb += rx.ready.eq(1)
                    with m.If(got):
                        m.d.sync += crc.eq(rx_crc)
                        m.next = after
                    with m.Elif(timed_out):
                        m.d.sync += code.eq(ErrorCode.TIMEOUT)
                        m.next = "REJECT"
            with m.State("CHECK"):
                nb_ok = (nbytes != 0) & (nbytes <= data_bytes)
                with m.If(crc != 0):
                    m.d.sync += code.eq(ErrorCode.BAD_CRC)
                    m.next = "REJECT"
                with m.Elif(cmd == Command.WRITE):
                    with m.If((length >= HEADER_BYTES + 2) & nb_ok & (modulo == 0)):
                        m.d.sync += [pointer.eq(HEADER_BYTES + 1), lane.eq(0)]
                        m.next = "W_FETCH"
                    with m.Else():
                        m.d.sync += code.eq(ErrorCode.BAD_LENGTH)
                        m.next = "REJECT"
                with m.Elif(cmd == Command.READ):
                    with m.If((length == HEADER_BYTES + 2) & nb_ok & (count != 0)
                              & (count * nbytes <= MAX_BODY - 1)):
                        m.d.sync += [done_words.eq(0), code.eq(ErrorCode.OK),
                                     resp_len.eq(1 + count * nbytes)]
                        m.next = "R_SYNC"
                    with m.Else():
                        m.d.sync += code.eq(ErrorCode.BAD_LENGTH)
                        m.next = "REJECT"
                with m.Elif(cmd == Command.RUN):
                    with m.If(length == 5):
                        m.next = "RUN_START"
                    with m.Else():
                        m.d.sync += code.eq(ErrorCode.BAD_LENGTH)
                        m.next = "REJECT"
                with m.Elif(cmd == Command.STATUS):
                    with m.If(length == 1):
                        m.d.sync += [resp.eq(Cat(errors, last_error, status)),
                                     resp_left.eq(4), code.eq(ErrorCode.OK), resp_len.eq(5)]
                        m.next = "R_SYNC"
                    with m.Else():
                        m.d.sync += code.eq(ErrorCode.BAD_LENGTH)
                        m.next = "REJECT"
                with m.Else():
                    m.d.sync += code.eq(ErrorCode.BAD_COMMAND)
                    m.next = "REJECT"
            with m.State("REJECT"):
                # Count the error; a truncated frame is answered at once (the line is
                # already idle), any other after the rest of the frame has passed.
                m.d.comb += reject.eq(1)
                m.d.sync += [resp_len.eq(1), resp_left.eq(0)]
                with m.If(code == ErrorCode.TIMEOUT):
                    m.next = "R_SYNC"
                with m.Else():
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.comb += rx.ready.eq(1)
                with m.If(timed_out & ~got):
                    m.next = "R_SYNC"

            # ---- execute ---------------------------------------------------------------
            with m.State("W_FETCH"):          # the buffer answers one cycle later
                m.next = "W_BYTE"
            with m.State("W_BYTE"):
                # Shift in the word's B bytes (least significant first), then zeros up to
                # the data field's width: the word ends aligned at the bottom.
                data_byte = Mux(lane < nbytes, buf_r.data, 0)
                m.d.comb += [shift.eq(1), shift_in.eq(data_byte)]
                m.d.sync += lane.eq(lane + 1)
                with m.If(lane < nbytes):
                    m.d.sync += pointer.eq(pointer + 1)
                with m.If(lane + 1 == data_bytes):
                    m.d.sync += lane.eq(0)
                    m.next = "W_PUSH"
                with m.Elif(lane + 1 < nbytes):
                    m.next = "W_FETCH"
            with m.State("W_PUSH"):
                m.d.comb += [host.valid.eq(1), hp.write.eq(1)]
                with m.If(host.ready):
                    m.d.sync += offset.eq(offset + 1)
                    with m.If(pointer == length):
                        m.d.sync += [code.eq(ErrorCode.OK), resp_len.eq(1), resp_left.eq(0)]
                        m.next = "R_SYNC"
                    with m.Else():
                        m.next = "W_FETCH"
            with m.State("RUN_START"):
                m.d.comb += self.start.eq(1)
                m.d.sync += cycles.eq(0)
                m.next = "RUN_WAIT"
            with m.State("RUN_WAIT"):
                with m.If(self.done | (cycles == budget)):
                    flags = status | Mux(self.done, 0, RUN_TIMEOUT_FLAG)
                    m.d.sync += [resp.eq(Cat(cycles, flags)), resp_left.eq(5),
                                 code.eq(ErrorCode.OK), resp_len.eq(6)]
                    m.next = "R_SYNC"
                with m.Else():
                    m.d.sync += cycles.eq(cycles + 1)

            # ---- answer ----------------------------------------------------------------
            def send(value, then, *, covered=True):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(value)]
                with m.If(tx.ready):
                    if covered:
                        m.d.sync += tx_crc.eq(tx_crc_next)
                    m.next = then
                return tx.ready

            with m.State("R_SYNC"):
                m.d.sync += tx_crc.eq(0xFFFF)
                send(RESPONSE_SYNC, "R_LEN", covered=False)
            with m.State("R_LEN"):
                send(resp_len, "R_CODE")
            with m.State("R_CODE"):
                with m.If(send(code, "R_CRC_HI")):
                    with m.If(code != ErrorCode.OK):
                        m.next = "R_CRC_HI"
                    with m.Elif(cmd == Command.READ):
                        m.next = "RD_ISSUE"
                    with m.Elif(resp_left != 0):
                        m.next = "R_DATA"
            with m.State("R_DATA"):
                with m.If(send(resp[:8], "R_DATA")):
                    m.d.sync += [resp.eq(resp >> 8), resp_left.eq(resp_left - 1)]
                    with m.If(resp_left == 1):
                        m.next = "R_CRC_HI"
            with m.State("RD_ISSUE"):
                m.d.comb += [host.valid.eq(1), hp.write.eq(0)]
                with m.If(host.ready):
                    m.next = "RD_WAIT"
            with m.State("RD_WAIT"):
                m.d.comb += self.host_read.ready.eq(1)
                with m.If(self.host_read.valid):
                    m.d.comb += load.eq(1)
                    m.d.sync += lane.eq(0)
                    m.next = "RD_SEND"
            with m.State("RD_SEND"):
                with m.If(send(word[:8], "RD_SEND")):
                    m.d.comb += shift.eq(1)
                    m.d.sync += lane.eq(lane + 1)
                    with m.If(lane + 1 == nbytes):
                        m.d.sync += [offset.eq(offset + 1), done_words.eq(done_words + 1)]
                        with m.If(done_words + 1 == count):
                            m.next = "R_CRC_HI"
                        with m.Else():
                            m.next = "RD_ISSUE"
            with m.State("R_CRC_HI"):
                send(tx_crc[8:], "R_CRC_LO", covered=False)
            with m.State("R_CRC_LO"):
                send(tx_crc[:8], "IDLE", covered=False)
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
