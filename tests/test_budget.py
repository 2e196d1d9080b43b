"""The block-RAM budget (`mars.sw.budget`): primitive counts against hand counts and the
issue's Yosys figures, the fit check's message, and (marked ``synth``) the estimate of the
tiny top against Yosys's own count."""

import json

import pytest

from mars.config import PRESETS
from mars.sw.budget import (
    MODES,
    PART_LIMITS,
    FitError,
    bram_per_copy,
    check_fit,
    estimate,
    memory_shapes,
)

TINY, DEFAULT = PRESETS["tiny"], PRESETS["default"]


def test_each_mode_is_one_primitive_and_bits_set_a_floor():
    for family, modes in MODES.items():
        capacity = max(d * w for d, w in modes)
        for depth, width in modes:
            assert bram_per_copy(family, depth, width) == 1
            assert bram_per_copy(family, 2 * depth, width) == 2
        for depth in (1, 16, 100, 512, 3000, 20000):
            for width in (1, 5, 9, 27, 36, 64, 359, 864):
                n = bram_per_copy(family, depth, width)
                # never below the bits, never above the narrowest-mode tiling
                assert n >= -(-depth * width // capacity)
                d0, w0 = modes[-1] if family == "ecp5" else modes[0]
                assert n <= -(-width // w0) * -(-depth // d0)


def test_the_wide_memories_before_the_budget_cost_what_yosys_measured():
    """Issue 9's Yosys run of the default unit: 58 DP16KD, of which program 10 and
    parameters 24 (359- and 864-bit words, 256 deep), index and k-table 1 per domain,
    macro 16 (four 64 x 128 domains); weight SRAMs 8 each (2048 x 64)."""
    per_unit = (bram_per_copy("ecp5", 256, 359) + bram_per_copy("ecp5", 256, 864)
                + 4 * bram_per_copy("ecp5", 256, 9) + 4 * bram_per_copy("ecp5", 512, 27)
                + 4 * bram_per_copy("ecp5", 64, 128))
    assert (bram_per_copy("ecp5", 256, 359), bram_per_copy("ecp5", 256, 864)) == (10, 24)
    assert per_unit == 58
    assert bram_per_copy("ecp5", 2048, 64) == 8


def test_program_and_parameters_take_one_block_ram_a_unit_on_the_presets():
    """... except the parameters of a binary/ternary preset (`hcim`): a block set's word
    also holds its channels' column scale factors (16 channels x 4 columns x 12 bits
    more), 736 36-bit rows for 16 words, two DP16KD of 512."""
    # not the paper-sized mars preset: its programs hold VGG16 (docs/configuration.md)
    for config in (c for c in PRESETS.values() if c.name != "mars"):
        rows = {r["name"]: r for r in estimate(config, "ecp5")}
        for name in ("unit program", "unit parameters"):
            per_unit = 2 if name == "unit parameters" and config.scaled_readout else 1
            assert rows[name]["bram"] == per_unit * config.macros, (config.name, name)


def test_the_default_top_fits_the_ecp5_part_with_room():
    """Issue 9's target: the whole default top within the LFE5U-85F's 208 DP16KD; the
    banked activation memory (17 copies of one DP16KD pair) included, a fifth to spare."""
    rows = estimate(DEFAULT, "ecp5")
    used = sum(r["bram"] for r in rows)
    assert used <= 0.8 * PART_LIMITS["ecp5"]["bram"]
    act = next(r for r in rows if r["name"] == "activation memory")
    assert act["bram"] >= DEFAULT.macros * DEFAULT.wordline_domains + 1
    shapes = {s.name for s in memory_shapes(DEFAULT)}
    assert {"activation memory", "result memory"} <= shapes


def test_a_configuration_that_cannot_fit_names_the_fields_and_a_fit():
    big = DEFAULT.replace(name="big", param_words=4096, program_words=1024)
    with pytest.raises(FitError) as info:
        check_fit(big, "ecp5", "mars_top")
    message = str(info.value)
    assert "\n" not in message
    assert "block RAMs" in message and "param_words" in message
    assert "LFE5U-85F" in message
    # the values it proposes do fit (as far as block RAM goes)
    proposed = {}
    for part in message.split("would fit: ")[1].split(", "):
        field, value = part.split(" ")[0].split("=")
        proposed[field] = int(value)
    fixed = big.replace(**proposed)
    assert sum(r["bram"] for r in estimate(fixed, "ecp5")) <= PART_LIMITS["ecp5"]["bram"]


def test_nothing_fits_when_the_macros_alone_overflow():
    with pytest.raises(FitError, match="fewer cores or macros_per_core"):
        check_fit(DEFAULT, "ice40", "mars_top")
    check_fit(DEFAULT, "ecp5", "cim_macro")      # a block alone fits


def test_cli_synth_stops_before_yosys(tmp_path, capsys, monkeypatch):
    from mars.sw.cli import main

    monkeypatch.setenv("YOSYS", "false")           # it must not even be asked
    path = tmp_path / "big.json"
    path.write_text(DEFAULT.replace(name="big", param_words=4096).to_json())
    code = main(["synth", "--config", str(path), "--family", "ecp5", "--block", "mars_top",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "param_words" in err[0], err


@pytest.mark.synth
def test_estimate_equals_yosys_on_the_tiny_top(tmp_path):
    from mars.sw.synth import run_synth

    report = json.loads(run_synth(TINY, tmp_path, families=["ecp5"],
                                  blocks=["mars_top"]).read_text())
    counted = report["blocks"]["mars_top"]["ecp5"]["bram"]
    assert counted == sum(r["bram"] for r in estimate(TINY, "ecp5"))
