"""The board top: the serial bridge and the accelerator (`mars.hw.bridge.SerialTop`) on a
board's USB-UART pins, a synchronised reset button and status LEDs.

* `ResetSync`: the button (or a PLL that has not locked yet) through a two-flop
  synchroniser, then held for `hold` more cycles; also asserted for that long after
  configuration.  Its flops have no reset themselves.
* `StatusLeds`: one LED per status bit (`mars.hw.boards.STATUS_BITS`); ``busy`` is
  stretched so that a run of a few microseconds still shows (counted in ticks of the
  heartbeat counter: a few flops, not a second counter as wide), ``heartbeat`` blinks at
  about 1 Hz while the design is out of reset.
* `BoardCore`: the two above and `SerialTop` under the synchronised reset; pure logic with
  plain ports, so the Amaranth simulator can run it (tests/test_board_top.py).
* `BoardTop`: `BoardCore` on a platform's pins, with the clock domain (and the ECP5 PLL
  when the board's accelerator clock is not its oscillator).
"""


from amaranth.hdl import (Cat, ClockDomain, ClockSignal, Const, Elaboratable, Module,
                          ResetInserter, Signal)
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from mars.config import MarsConfig

from ..bridge import SerialTop
from . import STATUS_BITS, Board
from .pll import ECP5PLL

__all__ = ["ResetSync", "StatusLeds", "BoardCore", "BoardTop", "heartbeat_bits",
           "stretch_ticks"]


def stretch_ticks(stretch: int, heartbeat: int) -> tuple[int, int]:
    """`StatusLeds`' busy stretch as ``(k, ticks)``: ``ticks`` ticks of ``2**k`` cycles.

    k is the largest with ``2**k <= stretch / 4`` (0 below 8 cycles; at most
    ``heartbeat - 1``, the counter's bits).  After ``busy`` falls the LED stays lit until the
    ``ticks``-th tick, which comes ``(ticks - 1) * 2**k + 1`` to ``ticks * 2**k`` cycles
    later: at least `stretch` and, for k > 0, less than ``stretch + 2**(k + 1)``, at most
    1.5 times `stretch`.
    """
    k = max(0, min((stretch // 4).bit_length() - 1, heartbeat - 1))
    if k == 0:
        return 0, stretch
    return k, -(-(stretch - 1) // (1 << k)) + 1


def heartbeat_bits(clock_hz: float) -> int:
    """Width of the heartbeat counter whose top bit toggles about every 0.5 to 1 s."""
    return max(2, round(clock_hz).bit_length())


class ResetSync(wiring.Component):
    """A reset from an asynchronous request, synchronised to the ``sync`` domain.

    Parameters
    ----------
    hold : int
        Cycles the reset stays high after the synchronised request falls (and after
        configuration), at least 1.
    stages : int
        Synchroniser flops, at least 2.

    Members
    -------
    request : In(1)
        Asynchronous, active high (a pressed button, a PLL not locked).
    reset : Out(1)
        Registered; high from configuration until ``stages + hold + 1`` cycles later,
        and from ``stages + 1`` cycles after `request` rises until ``stages + hold + 1``
        cycles after it falls.
    """

    request: In(1)
    reset: Out(1)

    def __init__(self, *, hold: int, stages: int = 2):
        if hold < 1 or stages < 2:
            self._MustUse__silence = True      # never elaborated: no "unused" warning
            raise ValueError(f"hold must be at least 1 and stages at least 2, not "
                             f"{hold} and {stages}")
        self._hold, self._stages = hold, stages
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        # reset_less: nothing may reset the flops that make the reset
        sync = Signal(self._stages, init=(1 << self._stages) - 1, reset_less=True)
        count = Signal(range(self._hold + 1), init=0, reset_less=True)
        reset = Signal(init=1, reset_less=True)
        m.d.sync += sync.eq(Cat(self.request, sync[:-1]))
        with m.If(sync[-1]):
            m.d.sync += count.eq(0)
        with m.Elif(count != self._hold):
            m.d.sync += count.eq(count + 1)
        m.d.sync += reset.eq(sync[-1] | (count != self._hold))
        m.d.comb += self.reset.eq(reset)
        return m


class StatusLeds(wiring.Component):
    """The status bits shown on LEDs.

    Parameters
    ----------
    bits : tuple of str
        The status bit of each LED, from `mars.hw.boards.STATUS_BITS`; ``error_any`` is
        ``error | link_error``.
    stretch : int
        Cycles ``busy`` stays lit at least after it falls (at least 1): exactly `stretch`
        below 8, else at most ``stretch // 2`` more (see `stretch_ticks`).
    heartbeat : int
        Width of the heartbeat counter; its top bit is the ``heartbeat`` LED.

    Members
    -------
    busy, done, error, link_error : In(1)
        From `mars.hw.bridge.SerialTop`.
    leds : Out(len(bits))
        Bit i is LED i's status (1 = lit; the platform inverts active-low LEDs).
    """

    def __init__(self, bits: tuple[str, ...], *, stretch: int, heartbeat: int):
        unknown = [bit for bit in bits if bit not in STATUS_BITS]
        if unknown or stretch < 1 or heartbeat < 1:
            self._MustUse__silence = True      # never elaborated: no "unused" warning
            raise ValueError(f"bits must come from {STATUS_BITS} (not {unknown}), stretch "
                             f"and heartbeat must be at least 1 (not {stretch}, {heartbeat})")
        self._bits, self._stretch, self._heartbeat = tuple(bits), stretch, heartbeat
        super().__init__({"busy": In(1), "done": In(1), "error": In(1), "link_error": In(1),
                          "leds": Out(max(1, len(bits)))})

    def elaborate(self, platform):
        m = Module()
        beat = Signal(self._heartbeat)
        m.d.sync += beat.eq(beat + 1)
        # The stretch counts ticks of 2**k cycles, a falling edge of the heartbeat
        # counter's bit k-1 (every cycle for k = 0), instead of cycles in a ~21-bit counter.
        k, ticks = stretch_ticks(self._stretch, self._heartbeat)
        tick = Signal()
        if k == 0:
            m.d.comb += tick.eq(1)
        else:
            before = Signal()
            m.d.sync += before.eq(beat[k - 1])
            m.d.comb += tick.eq(before & ~beat[k - 1])
        left = Signal(range(ticks + 1))
        with m.If(self.busy):
            m.d.sync += left.eq(ticks)
        with m.Elif((left != 0) & tick):
            m.d.sync += left.eq(left - 1)
        value = {
            "busy": self.busy | (left != 0),
            "done": self.done,
            "error": self.error,
            "link_error": self.link_error,
            "error_any": self.error | self.link_error,
            "heartbeat": beat[-1],
        }
        m.d.comb += self.leds.eq(Cat(*(value[bit] for bit in self._bits)) if self._bits
                                 else Const(0, 1))
        return m


class BoardCore(wiring.Component):
    """`SerialTop` (UART, bridge, accelerator) and the status LEDs under a synchronised
    reset.

    Parameters
    ----------
    config : MarsConfig
        The accelerator's configuration.
    divisor : int
        UART clock cycles per bit (`mars.hw.uart.divisor`).
    leds : tuple of str
        The status bit of each LED (`StatusLeds`).
    hold : int
        Reset cycles after the button is released or the PLL locks (`ResetSync`).
    stretch, heartbeat : int
        See `StatusLeds`.
    init : dict, optional
        Initial memory contents of the accelerator (`mars.hw.top.MarsTop`).

    Members
    -------
    button : In(1)
        Reset request, active high, asynchronous.
    locked : In(1)
        The clock is good (a PLL's lock; 1 without a PLL); low holds the reset.
    rx : In(1)
        From the USB-UART, idle high.
    tx : Out(1)
        To the USB-UART, idle high.
    leds : Out(len(leds))
        LED i lit when its status bit is 1.
    reset : Out(1)
        The synchronised reset (for observation).
    """

    def __init__(self, config: MarsConfig, *, divisor: int, leds: tuple[str, ...],
                 hold: int, stretch: int, heartbeat: int, init: dict | None = None):
        self._config, self._divisor, self._init = config, divisor, init
        self._MustUse__silence = True          # until both parts below exist
        self._leds = StatusLeds(leds, stretch=stretch, heartbeat=heartbeat)
        self._reset = ResetSync(hold=hold)
        self._MustUse__silence = False
        super().__init__({"button": In(1), "locked": In(1, init=1), "rx": In(1, init=1),
                          "tx": Out(1, init=1), "reset": Out(1),
                          "leds": Out(len(self._leds.leds))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.reset_sync = rs = self._reset
        serial = SerialTop(self._config, divisor=self._divisor, init=self._init)
        m.submodules.serial = ResetInserter(rs.reset)(serial)
        m.submodules.status = ResetInserter(rs.reset)(self._leds)
        m.d.comb += [
            rs.request.eq(self.button | ~self.locked),
            self.reset.eq(rs.reset),
            # while in reset the UART's output is not driven: keep the line idle
            serial.rx.eq(self.rx), self.tx.eq(serial.tx | rs.reset),
            self._leds.busy.eq(serial.busy), self._leds.done.eq(serial.done),
            self._leds.error.eq(serial.error), self._leds.link_error.eq(serial.link_error),
            self.leds.eq(self._leds.leds),
        ]
        return m


class BoardTop(Elaboratable):
    """A board's top: `BoardCore` on the pins `board` names.

    Parameters
    ----------
    board : Board
        The registry entry (`mars.hw.boards.BOARDS`).
    config : MarsConfig, optional
        The accelerator's configuration; the board's preset by default.

    Elaborates only with the board's platform (``board.make_platform()``): the ``sync``
    domain runs on the oscillator, or on an `ECP5PLL` output when ``board.uses_pll``; it has
    no reset of its own (the synchronised button resets the logic inside `BoardCore`).
    """

    def __init__(self, board: Board, config: "MarsConfig | None" = None):
        self.board = board
        self.config = config or board.default_config()

    def core(self) -> BoardCore:
        """The logic without the pins, with the board's clock-dependent settings."""
        b = self.board
        return BoardCore(self.config, divisor=b.divisor, leds=tuple(bit for *_, bit in b.leds),
                         hold=max(16, round(b.clock_hz * 1e-5)),        # >= 10 us
                         stretch=max(1, round(b.clock_hz * 0.1)),       # 100 ms
                         heartbeat=heartbeat_bits(b.clock_hz))

    def elaborate(self, platform):
        b = self.board
        if platform is None:
            raise TypeError(f"BoardTop for {b.name!r} elaborates only with its platform "
                            f"(Board.make_platform()); simulate BoardTop.core() instead")
        m = Module()
        m.domains.sync = ClockDomain("sync", reset_less=True)

        def pin(name: str, resource: tuple[str, int], direction: str):
            buffer = io.Buffer(direction, platform.request(*resource, dir="-"))
            m.submodules[name] = buffer
            return buffer

        osc = pin("osc", b.clock, "i")
        m.submodules.core = core = self.core()
        if b.uses_pll:
            m.submodules.pll = pll = ECP5PLL(b.osc_hz, b.clock_hz)
            m.d.comb += [pll.clk_in.eq(osc.i), ClockSignal("sync").eq(pll.clk_out),
                         core.locked.eq(pll.locked)]
            platform.add_clock_constraint(pll.clk_out, b.clock_hz)
        else:
            m.d.comb += [ClockSignal("sync").eq(osc.i), core.locked.eq(1)]
        uart = platform.request(*b.uart, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        button = pin("button", b.reset, "i")
        m.d.comb += [core.rx.eq(rx.i), tx.o.eq(core.tx), core.button.eq(button.i)]
        for i, (resource, number, _) in enumerate(b.leds):
            led = pin(f"led_{resource}_{number}", (resource, number), "o")
            m.d.comb += led.o.eq(core.leds[i])
        return m
