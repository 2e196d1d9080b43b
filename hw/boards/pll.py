"""The ECP5 PLL (EHXPLLL) that makes a board's accelerator clock from its oscillator.

`ecp5_pll_divisors` searches the divider settings the way Trellis's ``ecppll`` does (input
divider 1..128 with the phase detector at 3.125..400 MHz, feedback divider 1..80, output
divider 1..128 with the VCO at 400..800 MHz; the output nearest the request wins, ties go
to the VCO nearest 600 MHz).  `ECP5PLL` instantiates the primitive with feedback from its
primary output, so f_out = f_in x CLKFB_DIV / CLKI_DIV and f_vco = f_out x CLKOP_DIV.
"""


import dataclasses
import math

from amaranth.hdl import Instance, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PllDivisors", "ecp5_pll_divisors", "ECP5PLL"]

_PFD_MHZ = (3.125, 400.0)
_VCO_MHZ = (400.0, 800.0)
_OUT_MHZ = (10.0, 400.0)
_IN_MHZ = (8.0, 400.0)


@dataclasses.dataclass(frozen=True)
class PllDivisors:
    """EHXPLLL divider settings and the frequencies (MHz) they give."""

    clki_div: int
    clkfb_div: int
    clkop_div: int
    fin_mhz: float
    fout_mhz: float
    fvco_mhz: float


def ecp5_pll_divisors(fin_hz: float, fout_hz: float, *, tolerance: float = 0.005
                      ) -> PllDivisors:
    """The EHXPLLL dividers that make `fout_hz` from `fin_hz` (both in Hz).

    Raises
    ------
    ValueError
        If an input or output frequency lies outside the PLL's range, or no setting comes
        within `tolerance` (relative) of `fout_hz`.
    """
    fin, fout = fin_hz / 1e6, fout_hz / 1e6
    if not _IN_MHZ[0] <= fin <= _IN_MHZ[1]:
        raise ValueError(f"PLL input {fin:g} MHz outside {_IN_MHZ[0]:g}..{_IN_MHZ[1]:g} MHz")
    if not _OUT_MHZ[0] <= fout <= _OUT_MHZ[1]:
        raise ValueError(f"PLL output {fout:g} MHz outside {_OUT_MHZ[0]:g}..{_OUT_MHZ[1]:g} MHz")
    best = None
    for clki_div in range(1, 129):
        fpfd = fin / clki_div
        if not _PFD_MHZ[0] <= fpfd <= _PFD_MHZ[1]:
            continue
        for clkfb_div in range(1, 81):
            got = fpfd * clkfb_div
            if not _OUT_MHZ[0] <= got <= _OUT_MHZ[1]:
                continue
            # The output divider only sets the VCO (feedback from CLKOP): of those that keep
            # it in range, the first nearest 600 MHz, as a loop over 1..128 would find.
            low = max(1, math.ceil(_VCO_MHZ[0] / got - 1e-9))
            high = min(128, math.floor(_VCO_MHZ[1] / got + 1e-9))
            choices = [op for op in range(low, high + 1)
                       if _VCO_MHZ[0] <= got * op <= _VCO_MHZ[1]]
            if not choices:
                continue
            clkop_div = min(choices, key=lambda op: abs(got * op - 600.0))
            fvco = got * clkop_div
            key = (abs(got - fout), abs(fvco - 600.0))
            if best is None or key < best[0]:
                best = (key, PllDivisors(clki_div, clkfb_div, clkop_div, fin, got, fvco))
    if best is None or abs(best[1].fout_mhz - fout) > tolerance * fout:
        near = "" if best is None else f" (nearest {best[1].fout_mhz:g} MHz)"
        raise ValueError(f"no EHXPLLL setting makes {fout:g} MHz from {fin:g} MHz{near}")
    return best[1]


class ECP5PLL(wiring.Component):
    """An EHXPLLL with one output.

    Parameters
    ----------
    fin_hz, fout_hz : float
        Input and wanted output frequency in Hz (`ecp5_pll_divisors`).

    Members
    -------
    clk_in : In(1)
        The reference clock (the oscillator's input buffer).
    clk_out : Out(1)
        The generated clock; valid once `locked` is high.
    locked : Out(1)
        The PLL's LOCK output (asynchronous to `clk_out`; synchronise it).
    """

    clk_in: In(1)
    clk_out: Out(1)
    locked: Out(1)

    def __init__(self, fin_hz: float, fout_hz: float):
        self.divisors = ecp5_pll_divisors(fin_hz, fout_hz)
        super().__init__()

    def elaborate(self, platform):
        d = self.divisors
        m = Module()
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{d.fin_mhz:g}", a_FREQUENCY_PIN_CLKOP=f"{d.fout_mhz:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=d.clki_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=d.clkop_div,
            p_CLKOP_CPHASE=d.clkop_div - 1, p_CLKOP_FPHASE=0,
            p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=d.clkfb_div,
            i_RST=0, i_STDBY=0, i_CLKI=self.clk_in, o_CLKOP=self.clk_out,
            i_CLKFB=self.clk_out, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1,
            i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
            o_LOCK=self.locked)
        return m
