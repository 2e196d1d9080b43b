"""A small 8N1 UART: receiver and transmitter with an integer clock divisor.

Written here because the Amaranth standard I/O library (amaranth-stdio) is an empty
placeholder on PyPI; it is the minimum the serial host link (`mars.hw.bridge`) needs.

* `UARTReceiver`: a two-flop synchroniser on ``rx``; a falling edge starts a byte, the
  start bit is checked half a bit later, then every bit is sampled at its middle (one
  divisor apart) and the stop bit must be high.  Sampling mid-bit tolerates a baud mismatch
  of up to about +-4 % between the two ends (half a bit of drift over 9.5 bits, less the
  synchroniser's and the divisor's rounding).
* `UARTTransmitter`: start bit, 8 data bits LSB first, stop bit, each `divisor` cycles.
"""


from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["divisor", "UARTReceiver", "UARTTransmitter", "UART"]

#: Smallest divisor: the receiver needs a few cycles per bit to find the middle.
MIN_DIVISOR = 4


def divisor(clk_hz: float, baud: float, *, tolerance: float = 0.02) -> int:
    """Clock cycles per bit for `baud` at `clk_hz`, rounded.

    Raises
    ------
    ValueError
        If the rounded divisor is below 4, or its baud rate is off by more than
        `tolerance` (relative) from `baud`.
    """
    div = round(clk_hz / baud)
    at = f"{baud:.0f} baud at {clk_hz / 1e6:g} MHz"
    if div < MIN_DIVISOR:
        raise ValueError(f"{at} gives {clk_hz / baud:.2f} cycles per bit; the UART needs "
                         f"at least {MIN_DIVISOR}")
    error = abs(clk_hz / div - baud) / baud
    if error > tolerance:
        raise ValueError(f"{at}: divisor {div} gives {clk_hz / div:.0f} baud ({error:.1%} "
                         f"off, more than the {tolerance:.0%} the UART allows)")
    return div


def _check_divisor(div: int) -> int:
    if not isinstance(div, int) or div < MIN_DIVISOR:
        raise ValueError(f"divisor must be an integer of at least {MIN_DIVISOR}, not {div!r}")
    return div


class UARTReceiver(wiring.Component):
    """8N1 receiver.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (at least 4).

    Members
    -------
    rx : In(1)
        The serial line (idle high); asynchronous, synchronised inside.
    data : Out(stream.Signature(8))
        One byte per valid frame on the line.  The receiver does not wait: a byte the
        consumer does not take in the cycle it is offered is lost (``overrun`` pulses).
    frame_error : Out(1)
        Pulses when a byte's stop bit is low (the byte is dropped).
    overrun : Out(1)
        Pulses when a received byte was not taken.
    """

    rx: In(1, init=1)
    data: Out(stream.Signature(8))
    frame_error: Out(1)
    overrun: Out(1)

    def __init__(self, divisor: int):
        self._divisor = _check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(div))
        bit = Signal(range(9))
        shift = Signal(8)
        with m.FSM(name="uart_rx"):
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(div // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):            # a glitch, not a start bit
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(div - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shift.eq(Cat(shift[1:], rx)),
                                 timer.eq(div - 1), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(rx):
                        m.d.comb += self.data.valid.eq(1)
                        m.d.comb += self.overrun.eq(~self.data.ready)
                    with m.Else():
                        m.d.comb += self.frame_error.eq(1)
                    # Back to IDLE at the middle of the stop bit: the next start edge may
                    # come half a bit early without being missed.
                    m.next = "IDLE"
        m.d.comb += self.data.payload.eq(shift)
        return m


class UARTTransmitter(wiring.Component):
    """8N1 transmitter.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (at least 4).

    Members
    -------
    data : In(stream.Signature(8))
        Bytes to send; taken (``ready``) when the previous byte's stop bit has ended.
    tx : Out(1)
        The serial line, idle high.
    """

    data: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor: int):
        self._divisor = _check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        timer = Signal(range(div))
        bits = Signal(range(11))
        shift = Signal(10, init=0x3FF)     # stop bit, 8 data bits, start bit (LSB first)
        # The next byte is taken in the last cycle of a stop bit: back to back, a byte
        # every 10 bits exactly.
        last = (bits == 1) & (timer == 0)
        m.d.comb += [self.tx.eq(shift[0]), self.data.ready.eq((bits == 0) | last)]
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [shift.eq((1 << 9) | (self.data.payload << 1)),
                         bits.eq(10), timer.eq(div - 1)]
        with m.Elif(bits != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [shift.eq((shift >> 1) | (1 << 9)), bits.eq(bits - 1),
                             timer.eq(div - 1)]
        return m


class UART(wiring.Component):
    """`UARTReceiver` and `UARTTransmitter` with one divisor.

    Members
    -------
    rx : In(1)
    tx : Out(1)
    rx_data : Out(stream.Signature(8))
    tx_data : In(stream.Signature(8))
    frame_error, overrun : Out(1)
        The receiver's pulses.
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    rx_data: Out(stream.Signature(8))
    tx_data: In(stream.Signature(8))
    frame_error: Out(1)
    overrun: Out(1)

    def __init__(self, divisor: int):
        self._divisor = _check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = receiver = UARTReceiver(self._divisor)
        m.submodules.transmitter = transmitter = UARTTransmitter(self._divisor)
        m.d.comb += [receiver.rx.eq(self.rx), self.tx.eq(transmitter.tx),
                     self.frame_error.eq(receiver.frame_error),
                     self.overrun.eq(receiver.overrun)]
        wiring.connect(m, receiver.data, wiring.flipped(self.rx_data))
        wiring.connect(m, wiring.flipped(self.tx_data), transmitter.data)
        return m
