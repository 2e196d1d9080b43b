"""``mars bitstream`` (`mars.sw.bitstream`).

Fast tests run the real flow's orchestration with stand-in Yosys, nextpnr and packer
(small Python scripts named by the ``YOSYS`` / ``NEXTPNR_ICE40`` / ``ICEPACK`` variables):
the report's figures are the tools' own, the output is replaced whole, timing below the
board clock fails with one line, exit 2 and the log's tail unless allowed, a failing packer
is named.  The ``synth`` test builds the real iCEBreaker bitstream twice with the same seed
and checks that the bytes are equal and the figures fit the part (about 3 minutes on 2 idle
cores; docs/board.md).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys

import pytest

from mars.config import PRESETS
from mars.sw import bitstream
from mars.sw.bitstream import BitstreamError, build_bitstream, summary_lines
from mars.sw.cli import main

FAKE_YOSYS = """\
import re, sys
if "-V" in sys.argv:
    print("Yosys 0.0 (fake)")
    sys.exit(0)
script = sys.argv[sys.argv.index("-p") + 1]
assert "read_verilog top.v" in script and "synth_ice40" in script
stat = re.search(r"-o (\\S+) stat", script).group(1)
open(stat, "w").write('{"design": {"num_cells_by_type": '
                      '{"SB_LUT4": 2100, "SB_CARRY": 600, "SB_DFF": 1500, "SB_DFFE": 400, '
                      '"SB_RAM40_4K": 27, "SB_MAC16": 2}}}')
open(re.search(r"write_json (\\S+)", script).group(1), "w").write("{}")
"""

# Writes a report with Fmax = $FAKE_FMAX and an .asc that depends on the seed.
FAKE_NEXTPNR = """\
import json, os, sys
if "--version" in sys.argv:
    print("nextpnr-ice40 -- fake (Version 0.0)")
    sys.exit(0)
arg = lambda name: sys.argv[sys.argv.index(name) + 1]
assert arg("--pcf") == "top.pcf" and os.path.exists("top.pcf")
json.dump(sys.argv[1:], open("nextpnr.argv.json", "w"))
fmax, freq = float(os.environ["FAKE_FMAX"]), float(arg("--freq"))
open(arg("--log"), "w").write(
    "Info:     1500 LCs used as LUT4 only\\n"
    "Info:      600 LCs used as LUT4 and DFF\\n"
    "Info:     1300 LCs used as DFF only\\n"
    f"Info: Max frequency for clock 'clk': {fmax:.2f} MHz "
    f"({'PASS' if fmax >= freq else 'FAIL'} at {freq:.2f} MHz)\\n")
json.dump({"fmax": {"clk": {"achieved": fmax, "constraint": freq}},
           "utilization": {"ICESTORM_LC": {"used": 3400, "available": 5280},
                           "ICESTORM_RAM": {"used": 27, "available": 30},
                           "ICESTORM_DSP": {"used": 2, "available": 8}},
           "critical_paths": []}, open(arg("--report"), "w"))
open(arg("--asc"), "w").write(f"asc of seed {arg('--seed')}\\n")
"""

FAKE_ICEPACK = """\
import sys
asc, out = sys.argv[1:3]
open(out, "wb").write(open(asc, "rb").read()[::-1] * 3)
"""

FAILING_ICEPACK = """\
import sys
print("fake icepack: unknown tile type", file=sys.stderr)
sys.exit(3)
"""


def _fake(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return shlex.join([sys.executable, str(path)])


@pytest.fixture
def tools(tmp_path, monkeypatch):
    """Stand-in tools; returns a setter of the routed Fmax in MHz."""
    monkeypatch.setenv("YOSYS", _fake(tmp_path, "yosys.py", FAKE_YOSYS))
    monkeypatch.setenv("NEXTPNR_ICE40", _fake(tmp_path, "nextpnr.py", FAKE_NEXTPNR))
    monkeypatch.setenv("ICEPACK", _fake(tmp_path, "icepack.py", FAKE_ICEPACK))
    monkeypatch.setenv("FAKE_FMAX", "14.5")
    return lambda mhz: monkeypatch.setenv("FAKE_FMAX", str(mhz))


@pytest.fixture
def quick_top(monkeypatch):
    """The board top's files without elaborating it (tested once, in the first test)."""
    def elaborate(board, config, folder):
        (folder / "top.v").write_text("module top(); endmodule\n")
        (folder / "top.pcf").write_text("set_io clk12_0__io 35\n")
        (folder / "config.json").write_text(config.to_json())
    monkeypatch.setattr(bitstream, "_elaborate", elaborate)


def test_build_writes_bitstream_report_and_summary(tools, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier build")
    (out / "summary.txt").write_text("an earlier build's summary")
    report = build_bitstream("icebreaker", out, seed=7)
    # replaced whole: nothing of the earlier output is left
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "report.json").read_text()) == report
    data = (out / "top.bin").read_bytes()
    assert data == (b"asc of seed 7\n"[::-1]) * 3
    assert report["bitstream"] == {"file": "top.bin", "bytes": len(data),
                                   "sha256": hashlib.sha256(data).hexdigest(),
                                   "tool": "icepack", "command": ["top.asc", "top.bin"]}
    ice40 = PRESETS["ice40"]
    assert (report["board"], report["config"], report["config_hash"]) == \
        ("icebreaker", "ice40", ice40.content_hash)
    assert report["clock_mhz"] == 12 and report["fmax_mhz"] == 14.5
    assert report["meets_timing"] is True and report["seed"] == 7
    assert report["utilisation"] == {"luts": 2100, "ff": 1900, "logic_cells": 3400,
                                     "bram": 27, "dsp": 2}
    assert report["yosys_counts"]["ff"] == 1900 and report["yosys_counts"]["carry"] == 600
    assert report["tools"]["yosys"] == "Yosys 0.0 (fake)"
    assert report["tools"]["nextpnr"] == "nextpnr-ice40 -- fake (Version 0.0)"
    assert set(report["seconds"]) == {"elaborate", "yosys", "nextpnr", "pack", "total"}
    assert report["command"] == "mars bitstream --board icebreaker --seed 7"
    # the clock enables stay off the global buffers (docs/board.md), and the report says so
    assert "--no-promote-ce" in json.loads((out / "nextpnr.argv.json").read_text())
    assert report["nextpnr_options"] == ["--no-promote-ce", "--placer", "static"]
    # the real board top went in, with the board's pins
    assert "module top(" in (out / "top.v").read_text()
    assert "set_io uart_0__rx__io 6" in (out / "top.pcf").read_text()
    summary = (out / "summary.txt").read_text()
    assert "Fmax 14.50 MHz at 12 MHz: met" in summary
    assert "3400 logic cells of 5280" in summary and "27 EBR of 30" in summary


def test_placer_and_router_reach_nextpnr_after_the_family_options(tools, quick_top,
                                                                   tmp_path):
    out = tmp_path / "out"
    assert main(["bitstream", "--board", "icebreaker", "--out", str(out),
                 "--placer", "static", "--router", "router2"]) == 0
    argv = json.loads((out / "nextpnr.argv.json").read_text())
    assert argv[-5:] == ["--no-promote-ce", "--placer", "static", "--router", "router2"]
    report = json.loads((out / "report.json").read_text())
    assert report["nextpnr_options"] == argv[-5:]
    assert report["command"] == ("mars bitstream --board icebreaker --placer static "
                                 "--router router2")


def test_ecp5_builds_place_with_static_and_route_with_router2_unless_told():
    """The ECP5 defaults are the pair that routed the default top (docs/board.md); iCE40
    places with the static placer and keeps nextpnr's router; a given placer or router
    replaces only its half."""
    assert bitstream.nextpnr_options("ecp5") == ("--placer", "static", "--router", "router2")
    assert bitstream.nextpnr_options("ecp5", placer="heap") == ("--placer", "heap",
                                                                "--router", "router2")
    assert bitstream.nextpnr_options("ecp5", router="router1")[-2:] == ("--router", "router1")
    assert bitstream.nextpnr_options("ice40") == ("--no-promote-ce", "--placer", "static")
    with pytest.raises(BitstreamError, match="unknown nextpnr router 'fast'"):
        bitstream.nextpnr_options("ecp5", router="fast")


def test_timing_not_met_is_one_line_exit_2_and_keeps_the_old_output(
        tools, quick_top, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "top.bin").write_bytes(b"the old bitstream")
    (out / "summary.txt").write_text("an earlier build's summary")
    tools(9.25)
    assert main(["bitstream", "--board", "icebreaker", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first.startswith("mars: error: board 'icebreaker': timing not met at the board "
                            "clock: Fmax 9.25 MHz < 12 MHz (seed 1; files in ")
    assert "--allow-timing-fail" in first
    assert "Max frequency for clock 'clk': 9.25 MHz (FAIL at 12.00 MHz)" in err
    assert (out / "top.bin").read_bytes() == b"the old bitstream"
    assert (tmp_path / "out.failed" / "top_ice40.pnr.log").exists()
    assert not (tmp_path / "out.failed" / "top.bin").exists()


def test_allow_timing_fail_writes_the_bitstream_and_says_so(tools, quick_top, tmp_path,
                                                             capsys):
    out = tmp_path / "out"
    tools(9.25)
    assert main(["bitstream", "--board", "icebreaker", "--out", str(out),
                 "--allow-timing-fail"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["meets_timing"] is False and report["allow_timing_fail"] is True
    assert "NOT MET" in capsys.readouterr().out


def test_a_failing_packer_is_named(tools, quick_top, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ICEPACK", _fake(tmp_path, "bad.py", FAILING_ICEPACK))
    assert main(["bitstream", "--board", "icebreaker", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mars: error: icepack failed for board 'icebreaker' (exit 3):")
    assert "unknown tile type" in err
    assert not (tmp_path / "o").exists()


def test_an_output_folder_with_other_files_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("the user's own file")
    assert main(["bitstream", "--board", "icebreaker", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mars: error: --out ") and "not a bitstream build" in err
    assert (tmp_path / "notes.txt").read_text() == "the user's own file"


def test_a_bad_config_is_one_line(capsys):
    assert main(["bitstream", "--board", "ulx3s", "--config", "nope"]) == 2
    assert capsys.readouterr().err.startswith("mars: error: unknown preset 'nope'")


def test_route_patience_reaches_place_and_route(tools, quick_top, tmp_path, monkeypatch):
    seen = {}
    real = bitstream.place_and_route

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(bitstream, "place_and_route", spy)
    out = tmp_path / "o"
    assert main(["bitstream", "--board", "icebreaker", "--out", str(out),
                 "--route-patience", "7"]) == 0
    assert seen["route_patience"] == 7


def test_a_negative_route_patience_is_one_line(tmp_path, capsys):
    assert main(["bitstream", "--board", "ulx3s", "--route-patience", "-1",
                 "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == (
        "mars: error: --route-patience must be a number of iterations, 0 (none) or more, "
        "not -1")


def test_summary_of_an_ecp5_report():
    report = {
        "board": "ulx3s", "description": "ULX3S", "family": "ecp5", "part": "LFE5U-85F",
        "config": "tiny", "config_hash": "ab" * 32, "config_description": "a macro",
        "clock_mhz": 45.0, "oscillator_mhz": 25.0, "pll": True, "baud": 3000000,
        "pll_divisors": {"clki_div": 5, "clkfb_div": 9, "clkop_div": 13, "fin_mhz": 25.0,
                         "fout_mhz": 45.0, "fvco_mhz": 585.0},
        "uart_divisor": 15, "seed": 3, "fmax_mhz": 31.25, "meets_timing": False,
        "utilisation": {"luts": 6000, "ff": 3300, "bram": 31, "dsp": 2},
        "bels": {"TRELLIS_COMB": {"used": 6000, "available": 83640},
                 "DP16KD": {"used": 31, "available": 208}},
        "critical_path": {"from": "a.Q", "to": "b.D", "logic_levels": 9, "delay_ns": 31.5},
        "bitstream": {"file": "top.bit", "bytes": 400000, "sha256": "0f" * 32},
        "seconds": {"total": 500, "elaborate": 6, "yosys": 150, "nextpnr": 330, "pack": 14},
        "tools": {"yosys": "Yosys 0.70 (git sha1 28ba3cb92, Release, clang)",
                  "nextpnr": "nextpnr-ecp5 0.11"},
        "command": "mars bitstream --board ulx3s --seed 3",
    }
    text = "\n".join(summary_lines(report))
    for expected in ("6000 LUT4 of 83640", "31 DP16KD of 208", "Fmax 31.25 MHz at 45 MHz: NOT MET",
                     "a.Q -> b.D (9 logic levels, 31.5 ns)", "top.bit: 400000 bytes",
                     "UART 3000000 baud (divisor 15)", "Yosys 0.70 (git sha1 28ba3cb92)",
                     "45 MHz (PLL from the 25 MHz oscillator)",
                     "EHXPLLL CLKI_DIV 5, CLKFB_DIV 9, CLKOP_DIV 13, VCO 585 MHz"):
        assert expected in text, expected


@pytest.mark.synth
def test_icebreaker_bitstream_is_deterministic_and_fits(tmp_path):
    first = build_bitstream("icebreaker", tmp_path / "a", seed=1)
    second = build_bitstream("icebreaker", tmp_path / "b", seed=1)
    assert (tmp_path / "a" / "top.bin").read_bytes() == (tmp_path / "b" / "top.bin").read_bytes()
    assert first["bitstream"]["sha256"] == second["bitstream"]["sha256"]
    assert first["meets_timing"] and first["fmax_mhz"] >= 12
    bels = first["bels"]
    for bel in ("ICESTORM_LC", "ICESTORM_RAM"):
        assert bels[bel]["used"] <= 0.95 * bels[bel]["available"], bel
    assert first["bitstream"]["bytes"] == 104090          # the UP5K's configuration size
    assert first["utilisation"]["bram"] == first["yosys_counts"]["bram"]
    # no clock enable on a global buffer (PLACE_OPTIONS), so room is left for the resets
    assert bels["SB_GB"]["used"] < bels["SB_GB"]["available"]


def test_clock_and_baud_options_reach_the_report(tools, quick_top, tmp_path):
    out = tmp_path / "out"
    assert main(["bitstream", "--board", "icebreaker", "--out", str(out),
                 "--baud", "2000000", "--clock", "12"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert (report["baud"], report["uart_divisor"]) == (2_000_000, 6)        # 12 MHz / 2 M
    assert report["pll"] is False and report["pll_divisors"] is None
    assert report["command"] == "mars bitstream --board icebreaker --baud 2000000"


@pytest.mark.parametrize("argv,message", [
    (["--board", "icebreaker", "--clock", "24"], "a PLL is only built for ECP5"),
    (["--board", "ulx3s", "--clock", "25"], "3000000 baud at 25 MHz: divisor 8 gives "
                                            "3125000 baud (4.2% off"),
    (["--board", "ulx3s", "--clock", "41.3"], "clock 41.3 MHz: no EHXPLLL setting"),
    (["--board", "ulx3s", "--baud", "0"], "--baud must be positive"),
    (["--board", "ulx3s", "--baud", "7"], "7 baud is outside the 300..12000000 baud"),
    (["--board", "ulx3s", "--baud", "99999999999"], "outside the 300..12000000 baud"),
])
def test_a_clock_or_baud_rate_the_board_cannot_make_is_one_line(argv, message, tmp_path,
                                                                 capsys):
    """Refused before any tool runs (no tool is set up here)."""
    assert main(["bitstream", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mars: error: board '") and message in err
    assert not (tmp_path / "o").exists()
    if "outside" in message:        # no clock can fix a rate no USB bridge has
        assert "--clock" not in err


def test_floorplan_is_ignored_on_ice40_and_named_on_ecp5(tools, quick_top, tmp_path):
    """``--floorplan`` pins units only on ECP5 (mars.sw.floorplan has no iCE40 site list):
    the iCEBreaker build runs as without it and its report says no plan; an ULX3S build's
    command line keeps the option so that the report reproduces the build."""
    out = tmp_path / "out"
    assert main(["bitstream", "--board", "icebreaker", "--out", str(out), "--floorplan"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["floorplan"] is None
    assert report["command"] == "mars bitstream --board icebreaker"
    argv = json.loads((out / "nextpnr.argv.json").read_text())
    assert argv[argv.index("--json") + 1] == "top.netlist.json"
    ulx3s = bitstream.BOARDS["ulx3s"]
    assert bitstream._command_line(ulx3s, ulx3s.default_config(), 1, False,
                                   floorplan=True) == "mars bitstream --board ulx3s --floorplan"
