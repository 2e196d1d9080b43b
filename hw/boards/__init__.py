"""FPGA boards the accelerator runs on: one registry of what a board top needs.

Each `Board` names the amaranth-boards platform, the FPGA family (the place-and-route part
of `mars.sw.pnr.PARTS`), the oscillator and the accelerator clock (a PLL between them when
they differ), the serial rate, the preset it runs and the pins it uses: the USB-UART, the
reset button and an LED per status bit.  `mars.hw.boards.top.BoardTop` builds the top from
an entry; ``mars bitstream --board NAME`` (`mars.sw.bitstream`) builds its bitstream.
docs/board.md has the pin-out and the measured figures.

amaranth-boards (PyPI ``amaranth-boards==0.0.21``, the ``synth`` extra) is imported only
when a platform is made, so the registry itself needs nothing beyond Amaranth.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping

from mars.config import MarsConfig, preset
from mars.errors import MarsError

__all__ = ["BoardError", "Board", "BOARDS", "STATUS_BITS", "board"]

#: What an LED can show: the accelerator's status (`mars.hw.top.MarsTop`), the bridge's
#: sticky link error (a frame was rejected since reset) and a heartbeat (the clock runs
#: and the design is out of reset).
STATUS_BITS = ("busy", "done", "error", "link_error", "error_any", "heartbeat")


#: Rates USB-UARTs (FT231X, FT2232H) make exactly, fastest first: what a failed baud rate
#: suggests instead.
_USB_UART_RATES = (3_000_000, 2_000_000, 1_500_000, 1_000_000, 921_600, 500_000, 460_800,
                   230_400, 115_200)


#: Baud rates of USB serial bridges: 300 baud up to the FT2232H's 12 Mbaud (the ULX3S's
#: FT231X stops at 3 Mbaud).
MIN_BAUD, MAX_BAUD = 300, 12_000_000


class BoardError(MarsError, ValueError):
    """An unknown board, or a board entry that cannot work (clock, baud rate, pins)."""


@dataclasses.dataclass(frozen=True)
class Board:
    """One board.

    Attributes
    ----------
    name : str
        The name ``mars bitstream --board`` takes.
    platform : str
        ``module:Class`` of the amaranth-boards platform.
    family : str
        ``"ecp5"`` or ``"ice40"``: the key of `mars.sw.pnr.PARTS` and `mars.sw.synth.FAMILIES`.
    clock : tuple of (str, int)
        The oscillator's resource (name, number).
    osc_hz : float
        The oscillator's frequency in Hz.
    clock_hz : float
        The accelerator's clock in Hz; a PLL makes it from the oscillator when it differs
        (ECP5 only: `mars.hw.boards.pll`).
    baud : int
        The UART's rate in baud (``mars board run --baud`` must say the same).
    config : str
        The preset the board runs by default (the largest that fits the part today).
    uart : tuple of (str, int)
        The USB-UART resource; its ``rx`` is the FPGA's input.
    reset : tuple of (str, int)
        The reset button's resource (active when pressed, as the platform inverts it).
    leds : tuple of (str, int, str)
        (resource, number, status bit) for each LED used; status bits from `STATUS_BITS`.
    extra_resources : str, optional
        Attribute of the platform class with resources to add first (the iCEBreaker's
        break-off PMOD), or None.
    description : str
        One line for listings and docs.
    """

    name: str
    platform: str
    family: str
    clock: tuple[str, int]
    osc_hz: float
    clock_hz: float
    baud: int
    config: str
    uart: tuple[str, int]
    reset: tuple[str, int]
    leds: tuple[tuple[str, int, str], ...]
    extra_resources: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.family not in ("ecp5", "ice40"):
            raise BoardError(f"board {self.name!r}: family must be 'ecp5' or 'ice40', "
                             f"not {self.family!r}")
        if self.clock_hz != self.osc_hz and self.family != "ecp5":
            raise BoardError(f"board {self.name!r}: a PLL is only built for ECP5 "
                             f"(docs/board.md); run at the oscillator's "
                             f"{self.osc_hz / 1e6:g} MHz, not {self.clock_hz / 1e6:g} MHz")
        if self.uses_pll:
            self.pll   # the PLL must make the clock
        for resource, number, bit in self.leds:
            if bit not in STATUS_BITS:
                raise BoardError(f"board {self.name!r}: LED {resource} {number} shows "
                                 f"{bit!r}; choose one of {', '.join(STATUS_BITS)}")
        self.divisor   # the baud rate must be reachable at the clock

    @property
    def divisor(self) -> int:
        """The UART's clock cycles per bit (`mars.hw.uart.divisor`); `BoardError` if the
        baud rate cannot be made from the clock within 2 % (the message suggests clocks
        or baud rates that can)."""
        from mars.hw.uart import divisor

        try:
            return divisor(self.clock_hz, self.baud)
        except ValueError as error:
            raise BoardError(f"board {self.name!r}: {error}; {self._baud_hint()}") from None

    def _baud_hint(self) -> str:
        from mars.hw.uart import divisor

        def fits(baud: int) -> bool:
            try:
                return bool(divisor(self.clock_hz, baud))
            except ValueError:
                return False

        rates = [rate for rate in _USB_UART_RATES if fits(rate)][:3]
        hint = (f"at {self.clock_hz / 1e6:g} MHz use --baud "
                + " or ".join(str(rate) for rate in rates) if rates else "")
        if self.family == "ecp5":
            step = self.baud / 1e6
            hint += (" or " if hint else "") + (
                f"a --clock near a multiple of {step:g} MHz (the PLL makes it)")
        return hint

    @property
    def pll(self):
        """The ECP5 PLL's dividers (`mars.hw.boards.pll.PllDivisors`) from the oscillator to
        the accelerator clock, or None without a PLL; `BoardError` if the PLL cannot make
        that clock within 0.5 %."""
        if not self.uses_pll:
            return None
        from .pll import ecp5_pll_divisors

        try:
            return ecp5_pll_divisors(self.osc_hz, self.clock_hz)
        except ValueError as error:
            raise BoardError(f"board {self.name!r}: clock {self.clock_hz / 1e6:g} MHz: "
                             f"{error}") from None

    @property
    def uses_pll(self) -> bool:
        """True when the accelerator clock differs from the oscillator."""
        return self.clock_hz != self.osc_hz

    @property
    def clock_mhz(self) -> float:
        return self.clock_hz / 1e6

    def default_config(self) -> MarsConfig:
        """The preset the board runs unless told otherwise."""
        return preset(self.config)

    def make_platform(self):
        """A new amaranth-boards platform object, with `extra_resources` added."""
        module, _, cls = self.platform.partition(":")
        try:
            platform = getattr(importlib.import_module(module), cls)()
        except ImportError as error:
            raise BoardError(f"board {self.name!r} needs {module.split('.')[0]} "
                             f"(pip install amaranth-boards==0.0.21, the 'synth' extra): "
                             f"{error}") from None
        if self.extra_resources:
            platform.add_resources(getattr(platform, self.extra_resources))
        return platform

    def with_clock(self, clock_mhz: float | None = None, baud: int | None = None) -> Board:
        """This board at another accelerator clock and/or baud rate (``mars bitstream
        --clock/--baud``).

        A clock other than the oscillator's is made by the PLL (ECP5); it is snapped to what
        the PLL's dividers give exactly (within 0.5 % of `clock_mhz`), so the UART divisor,
        the timing constraint and the report use the real frequency.

        Raises
        ------
        BoardError
            A clock the part's PLL cannot make (or any other on iCE40), a clock or baud rate
            that is not positive, or a baud rate the clock cannot give within 2 %.
        """
        changes: dict = {}
        if clock_mhz is not None:
            if not clock_mhz > 0:
                raise BoardError(f"board {self.name!r}: --clock must be positive MHz, not "
                                 f"{clock_mhz:g}")
            hz = float(clock_mhz) * 1e6
            if self.family == "ecp5" and hz != self.osc_hz:
                hz = self.replace(clock_hz=hz, baud=1).pll.fout_mhz * 1e6 \
                    if abs(hz - self.osc_hz) > 1e-6 * self.osc_hz else self.osc_hz
            changes["clock_hz"] = hz
        if baud is not None:
            if not baud > 0:
                raise BoardError(f"board {self.name!r}: --baud must be positive, not {baud}")
            if not MIN_BAUD <= baud <= MAX_BAUD:
                rates = ", ".join(map(str, _USB_UART_RATES[:4]))
                raise BoardError(f"board {self.name!r}: {baud} baud is outside the "
                                 f"{MIN_BAUD}..{MAX_BAUD} baud of USB serial bridges "
                                 f"(e.g. {rates})")
            changes["baud"] = int(baud)
        return self.replace(**changes)

    def replace(self, **changes) -> Board:
        """A copy with some fields changed, checked again."""
        return dataclasses.replace(self, **changes)


#: Every board, by name.
BOARDS: Mapping[str, Board] = {b.name: b for b in (
    Board(
        name="ulx3s",
        platform="amaranth_boards.ulx3s:ULX3S_85F_Platform",
        family="ecp5",
        clock=("clk25", 0), osc_hz=25e6,
        # The tiny top with the bridge routes at 53 MHz on the oscillator (docs/board.md):
        # the PLL makes 45 MHz (25 x 9 / 5), the fastest clock below that which gives the
        # FT231X's 3 Mbaud exactly (divisor 15); 48 and 51 MHz are not PLL outputs.
        clock_hz=45e6, baud=3_000_000,
        config="tiny",
        uart=("uart", 0),                 # FT231X: FPGA rx M1, tx L4
        reset=("button_pwr", 0),          # BTN0 "PWR", D6, active low on the board
        leds=(("led", 0, "busy"), ("led", 1, "done"), ("led", 2, "error"),
              ("led", 3, "link_error"), ("led", 7, "heartbeat")),
        description="Radiona ULX3S, LFE5U-85F-6 CABGA381, 25 MHz, FT231X USB-UART",
    ),
    Board(
        name="icebreaker",
        platform="amaranth_boards.icebreaker:ICEBreakerPlatform",
        family="ice40",
        clock=("clk12", 0), osc_hz=12e6,
        # 3 Mbaud is the UART's smallest divisor (4) at 12 MHz; no PLL (the ice40 preset
        # does not route much above the oscillator, docs/board.md).
        clock_hz=12e6, baud=3_000_000,
        config="ice40",
        uart=("uart", 0),                 # FT2232H channel B: FPGA rx 6, tx 9
        reset=("button", 0),              # the user button, pin 10
        leds=(("led_g", 0, "done"), ("led_r", 0, "error_any"),
              # the break-off PMOD (attached as shipped)
              ("led", 2, "busy"), ("led", 3, "done"), ("led", 4, "error"),
              ("led", 5, "link_error"), ("led", 6, "heartbeat")),
        extra_resources="break_off_pmod",
        description="1BitSquared iCEBreaker, iCE40UP5K-SG48, 12 MHz, FT2232H USB-UART",
    ),
)}


def board(name: str) -> Board:
    """The board called `name`; `BoardError` listing the boards if there is none."""
    try:
        return BOARDS[name]
    except KeyError:
        raise BoardError(f"unknown board {name!r} (boards: {', '.join(BOARDS)})") from None
