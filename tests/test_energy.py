"""The energy, area and throughput model (mars.sw.energy) and ``mars estimate``.

Independent expectations: event counts hand-computed for two tiny networks (the comments
show the arithmetic), energies recomputed from the counts with one technology value at a
time, the operations convention from the layer shapes, the cycle model's own totals, and
the published operating point of the macro the default technology was taken from.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mars.config import PRESETS
from mars.sw.cli import main
from mars.sw.energy import (
    COMPONENTS, DEFAULT_TECH, TechError, Technology, component_energy, estimate,
    estimate_network, layer_counts, load_technology, network_counts,
)
from mars.sw.golden.cycles import network_cycles
from mars.sw.golden.network import FlattenNode, IntegerNetwork, LayerNode, PoolNode
from mars.sw.layer import LayerGeometry, LayerKind
from mars.sw.mapper import map_network
from mars.tb.networks import NETWORKS

TINY = PRESETS["tiny"]    # R=64, C=16, P=2, G=4, Wb=Ab=4: N=4 channels, 2 per group, D=2
ZERO = Technology(**{f: 0.0 for f in ("cim_cell_fj", "readout_fom_fj", "add_pj_per_bit",
                                      "mult_pj_per_bit2", "sram_pj_per_bit_8kb",
                                      "sram_leak_pw_per_bit", "logic_leak_uw_per_unit")})


def _act_layer(name, source, geometry, weight):
    cout = geometry.cout
    return LayerNode(name, (source,), geometry, weight, np.zeros(cout, dtype=np.int64), "act",
                     np.ones(cout, dtype=np.int64), np.full(cout, 4, dtype=np.int64))


def linear_net():
    """fc: K=12 (3 K-groups of G=4), Cout=4 (2 blocks of 2 channels = one block set).
    Block 0 keeps K-groups 0, 1, 2; block 1 keeps K-group 0 only."""
    w = np.ones((4, 12), dtype=np.int64)
    w[2:4, 4:12] = 0
    fc = LayerNode("fc", ("input",), LayerGeometry.linear(12, 4), w,
                   np.zeros(4, dtype=np.int64), "acc")
    return IntegerNetwork(TINY, (1, 1, 12), (fc,), "fc")


def conv_net():
    """conv 3x3 pad 1 on 4x4x1 -> 2 channels, max pool 2, flatten, fc 8 -> 3.
    conv: K=9 (K-groups of 4, 4, 1 rows), one block of 2 channels, all kept.
    fc: K=8 (2 K-groups), blocks {0,1} and {2}: block 0 keeps both, block 1 K-group 1."""
    conv = _act_layer("conv", "input", LayerGeometry(LayerKind.CONV, 4, 4, 1, 2, 3, 3, 1, 1),
                      np.ones((2, 9), dtype=np.int64))
    pool = PoolNode("pool", ("conv",), (4, 4, 2), 2, 2, 0)
    flat = FlattenNode("flat", ("pool",), (2, 2, 2))
    w = np.ones((3, 8), dtype=np.int64)
    w[2, 0:4] = 0
    fc = LayerNode("fc", ("flat",), LayerGeometry.linear(8, 3), w,
                   np.zeros(3, dtype=np.int64), "acc")
    return IntegerNetwork(TINY, (4, 4, 1), (conv, pool, flat, fc), "fc")


def test_linear_layer_counts_by_hand():
    mapping = map_network(linear_net())
    c = layer_counts(mapping, 0, loads=True)
    # One walk, 1 pixel, 3 steps (the longest block of the set keeps 3 groups).
    assert c.macro_steps == 3
    assert c.kept_domain_steps == 3 + 1
    assert c.filler_domain_steps == 3 * 2 - 4
    assert c.wordline_pulses == 3 * 2 * 4 * 4           # steps * D * G * Ab
    assert c.cell_ops == 3 * 4 * 16 * 4                 # steps * G * C * Ab
    assert c.conversions == 3 * 16 * 4                  # steps * C * Ab
    assert c.bit_merges == 3 * 4 * 4 * 3                # steps * N * Ab * (Wb-1)
    assert c.shift_adds == 3 * 4 * 3                    # steps * N * (Ab-1)
    assert c.accumulations == 3 * 4
    assert c.act_reads == 3 * 2 * 4                     # steps * D * G
    assert c.index_reads == 3 * 2
    assert (c.outputs, c.result_writes, c.requants, c.act_writes) == (4, 4, 0, 0)
    assert c.weight_sram_reads == c.macro_row_writes == 3 * 4     # 3 row slots of G rows
    assert c.macs_dense == 12 * 4
    assert c.macs_effective == 3 * 2 * 4 + 1 * 2 * 4


def test_conv_pool_network_counts_by_hand():
    mapping = map_network(conv_net())
    assert mapping.resident
    conv, fc = network_counts(mapping, steady=True)
    # conv: 16 pixels x 3 steps; domain 1 has no block (Cout=2 is one block): all fillers.
    assert conv.macro_steps == 16 * 3
    assert (conv.kept_domain_steps, conv.filler_domain_steps) == (48, 48)
    assert conv.outputs == conv.requants == 16 * 2
    assert conv.act_writes == 16 * 2                    # every pixel of the 2x2 windows
    assert conv.pool_reads == 16 * 2 - 4 * 2            # all but the first of each window
    assert conv.macs_dense == conv.macs_effective == 16 * 9 * 2
    assert conv.weight_sram_reads == 0                  # steady state: resident weights
    # fc: 2 steps; block 0 keeps 2 groups, block 1 one (channel 2 only is valid).
    assert (fc.macro_steps, fc.kept_domain_steps, fc.filler_domain_steps) == (2, 3, 1)
    assert (fc.outputs, fc.result_writes, fc.requants) == (3, 3, 0)
    assert fc.macs_dense == 8 * 3
    assert fc.macs_effective == 2 * 4 * 2 + 1 * 4 * 1
    # First inference: every load sits in the first phase (3 + 2 row slots of 4 rows).
    first = network_counts(mapping, steady=False)
    assert first[0].macro_row_writes == (3 + 2) * 4
    assert first[1].macro_row_writes == 0


@pytest.mark.parametrize("field, component, expected", [
    ("cim_cell_fj", "macro array", lambda c, cfg: c.cell_ops * 1.0),
    ("readout_fom_fj", "readout", lambda c, cfg: c.conversions * 2 ** cfg.readout_bits),
    ("mult_pj_per_bit2", "requantise",
     lambda c, cfg: c.requants * cfg.acc_bits * cfg.requant_mult_bits * 1000),
])
def test_each_component_is_its_count_times_its_energy(field, component, expected):
    """With one technology value 1 (fJ or pJ, as the field says) and all others 0, a
    component's energy is its own count times that value (pJ; x1000 in fJ units)."""
    mapping = map_network(conv_net())
    cfg = mapping.config
    tech = ZERO.replace(**{field: 1.0})
    for counts in network_counts(mapping):
        energy = component_energy(counts, cfg, tech)
        value = expected(counts, cfg) / 1000.0
        assert energy[component] == pytest.approx(value)
        assert sum(energy.values()) == pytest.approx(value)


def test_memory_energies_follow_the_square_root_rule():
    """1 pJ per bit of an 8 KB SRAM (65536 bits), scaled by sqrt(capacity / 8 KB).  tiny:
    activation bank 2048 x 4 bits; result memory 16 x 32 bits; decoder: index memory
    256/4 = 64 entries of 9 bits (K-groups < 512), k-table 512 entries of 12 + 13 = 25 bits
    (docs/decoder.md, tiny column)."""
    mapping = map_network(conv_net())
    tech = ZERO.replace(sram_pj_per_bit_8kb=1.0)
    rule = lambda bits, capacity: bits * (capacity / 65536) ** 0.5     # noqa: E731
    for c in network_counts(mapping, steady=False):
        energy = component_energy(c, TINY, tech)
        assert energy["decoder"] == pytest.approx(
            c.index_reads * (rule(9, 64 * 9) + rule(25, 512 * 25)))
        assert energy["activation buffer"] == pytest.approx(
            (c.act_reads + c.act_writes + c.pool_reads) * rule(4, 2048 * 4)
            + c.result_writes * rule(32, 16 * 32))
        assert energy["weight load"] == pytest.approx(
            c.weight_sram_reads * rule(16, 256 * 16) + c.macro_row_writes * rule(16, 64 * 16))


def test_report_figures_follow_from_cycles_counts_and_convention():
    mapping = map_network(conv_net())
    est = estimate(mapping, DEFAULT_TECH, clock_mhz=100.0)
    cycles = sum(p.cycles for p in network_cycles(mapping, skip_loads=True))
    assert est["cycles_per_inference"] == cycles
    assert est["latency_us"] == pytest.approx(cycles / 100.0)
    assert est["fps"] == pytest.approx(100e6 / cycles)
    assert est["dense_ops"] == 2 * (16 * 9 * 2 + 8 * 3)
    assert est["effective_ops"] == 2 * (16 * 9 * 2 + 20)
    joules = est["energy_pj"] * 1e-12
    assert est["tops_per_w_dense"] == pytest.approx(est["dense_ops"] / joules / 1e12)
    assert est["tops_effective"] == pytest.approx(est["effective_ops"] / (cycles / 100e6)
                                                  / 1e12)
    assert est["energy_pj"] == pytest.approx(sum(est["components_pj"].values()))
    assert est["energy_pj"] == pytest.approx(sum(layer["energy_pj"] for layer in est["layers"]))
    # Static energy: leakage power times the run time.
    static_w = est["static_power_uw"] * 1e-6
    assert est["components_pj"]["static"] == pytest.approx(static_w * cycles / 100e6 * 1e12)
    json.dumps(est)   # JSON-ready


@pytest.mark.parametrize("seed", [0, 1])
def test_energy_falls_with_group_sparsity_the_way_cycles_do(seed):
    """Skipped groups cost no compute energy: the macro's energy (array, readout, shift-add,
    accumulate) is proportional to the macro steps, and total energy falls with them."""
    build, _ = NETWORKS["cnn"]
    cfg = PRESETS["default"]
    compute = ("macro array", "readout", "shift-add")
    points = []
    for sparsity in (0.0, 0.5, 0.85):
        est = estimate_network(build(cfg, np.random.default_rng(seed), sparsity),
                               with_dense=False)
        steps = sum(layer["events"]["macro_steps"] for layer in est["layers"])
        energy = sum(est["components_pj"][c] for c in compute)
        points.append((steps, energy, est["cycles_per_inference"], est["energy_pj"]))
    print(f"seed {seed}: (steps, compute pJ, cycles, total pJ) = {points}")
    per_step = [energy / steps for steps, energy, *_ in points]
    assert per_step == pytest.approx([per_step[0]] * 3)
    assert points[0][0] > points[1][0] > points[2][0]
    assert points[0][2] > points[1][2] > points[2][2]
    assert points[0][3] > points[1][3] > points[2][3]


def test_si_et_al_macro_operating_point():
    """The mapper-and-counts path gives the macro the cell operations and conversions the
    default technology was calibrated with: Si et al.'s 4b x 4b point (read from the
    validation data) on a dense layer that fills one macro of the reference geometry (G = 8
    rows on, 4-bit readout), no fillers, macro energy only (array and readout).  A
    consistency check of the counting, not a validation (tests/test_energy_validation.py)."""
    from mars.sw.energy.validation import load_macros

    published = load_macros()["si2021"]["calibration"]["tops_per_w"]
    cfg = PRESETS["default"].replace(name="si2021", cores=1, macros_per_core=1)
    assert (cfg.rows_per_step, cfg.weight_bits, cfg.act_bits, cfg.readout_bits) == (8, 4, 4, 4)
    k, cout = cfg.rows, cfg.channels_per_macro
    fc = LayerNode("fc", ("input",), LayerGeometry.linear(k, cout),
                   np.ones((cout, k), dtype=np.int64), np.zeros(cout, dtype=np.int64), "acc")
    mapping = map_network(IntegerNetwork(cfg, (1, 1, k), (fc,), "fc"))
    counts = network_counts(mapping)[0]
    assert counts.filler_domain_steps == 0
    energy = component_energy(counts, cfg, DEFAULT_TECH)
    macro_pj = energy["macro array"] + energy["readout"]
    tops_per_w = 2 * counts.macs_effective / macro_pj     # ops per pJ = TOPS/W
    print(f"model {tops_per_w:.1f} TOPS/W vs published {published}")
    assert tops_per_w == pytest.approx(published, rel=1e-6)


# -- the technology file ---------------------------------------------------------------------

def test_technology_json_round_trip_and_partial_file(tmp_path):
    assert Technology.from_dict(json.loads(DEFAULT_TECH.to_json())) == DEFAULT_TECH
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"name": "mine", "readout_fom_fj": 2.2}))
    tech = load_technology(path)
    assert (tech.name, tech.readout_fom_fj, tech.cim_cell_fj) == \
        ("mine", 2.2, DEFAULT_TECH.cim_cell_fj)
    assert tech.readout_pj(4) == pytest.approx(2.2 * 16 / 1000)


@pytest.mark.parametrize("doc, message", [
    ({"cim_cell_fj": -1}, "cim_cell_fj must not be negative, not -1"),
    ({"clock_mhz": 0}, "clock_mhz must be positive, not 0.0"),
    ({"add_pj_per_bit": "1"}, "add_pj_per_bit must be a finite number, not '1'"),
    ({"cim_array_efficiency": 1.5}, "cim_array_efficiency must lie in (0, 1], not 1.5"),
    ({"adc_pj": 1}, "unknown field 'adc_pj'"),
    ({"schema": "mars-config"}, "schema must be 'mars-technology'"),
    ({"schema_version": 9}, "schema_version 9 is not supported"),
    ([], "expected a JSON object"),
])
def test_technology_errors_name_field_and_value(tmp_path, doc, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(TechError) as info:
        load_technology(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    assert main(["estimate", "--package", str(tmp_path), "--tech", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mars: error: ") and "not valid JSON" in err
    assert err.count("\n") == 1


# -- mars estimate on a trained package --------------------------------------------------------

@pytest.fixture(scope="module")
def package(tmp_path_factory):
    out = tmp_path_factory.mktemp("energy") / "pkg"
    rc = main(["train", "--config", "default", "--out", str(out), "--sparsity", "50%",
               "--scope", "block",
               "--epochs", "2", "--qat-epochs", "1", "--train-subset", "256",
               "--test-subset", "64", "--no-progress"])
    assert rc == 0
    return out


def test_estimate_command_table_json_and_plots(package, tmp_path, capsys):
    out, plots = tmp_path / "est.json", tmp_path / "plots"
    capsys.readouterr()
    assert main(["estimate", "--package", str(package), "--clock", "50", "--json", str(out),
                 "--plots", str(plots)]) == 0
    text = capsys.readouterr().out
    est = json.loads(out.read_text())
    assert est["clock_mhz"] == 50.0 and est["config"] == "default"
    for name in COMPONENTS:
        assert name in text
    for layer in est["layers"]:
        assert layer["name"] in text
    assert f"{est['fps']:.0f} frames/s" in text
    assert est["dense"]["energy_ratio"] >= 1.0
    for stem in ("energy_components", "cycles_utilisation"):
        assert (plots / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
        assert b"<svg" in (plots / f"{stem}.svg").read_bytes()[:1000]


def test_estimate_command_refuses_another_config(package, capsys):
    assert main(["estimate", "--package", str(package), "--config", "tiny"]) == 2
    assert "--config gives" in capsys.readouterr().err


def test_flow_report_shows_the_estimate():
    from mars.sw.run import format_report

    mapping = map_network(conv_net())
    est = estimate(mapping)
    report = {"config": "tiny", "inputs": 1, "simulator": "verilator", "bit_exact": True,
              "mismatched_inputs": 0, "cycle_model_exact": True, "rtl_accuracy": 1.0,
              "package_accuracy": 1.0, "weights_resident": True, "first_inference_cycles": 1,
              "cycles_per_inference": 1, "dense_cycles_per_inference": 1,
              "speedup_from_sparsity": 1.0, "utilisation": 1.0,
              "simulated_cycles_per_second": 1.0, "layers": [], "estimate": est}
    text = format_report(report)
    assert f"{est['tops_per_w_effective']:.1f}" in text and "frames/s" in text


# -- mars sweep --------------------------------------------------------------------------------

def test_pareto_front_by_hand():
    from mars.sw.energy.sweep import pareto_front

    points = [(1.0, 0.5), (2.0, 0.9), (3.0, 0.8), (2.0, 0.6), (0.5, 0.5), (4.0, 0.95)]
    # (1.0, 0.5) loses to (0.5, 0.5); (3.0, 0.8) and (2.0, 0.6) lose to (2.0, 0.9).
    assert pareto_front(points) == [4, 1, 5]


def test_sweep_locally_and_on_a_dask_cluster_give_the_same_rows(package, tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    from mars.sw.energy.sweep import COLUMNS, SweepPoint, run_sweep

    quick = {"epochs": 1, "qat_epochs": 1, "train_subset": 128, "test_subset": 32,
             "scope": "block"}
    points = [SweepPoint("default", 0.5, str(package), backend="golden", count=3),
              SweepPoint("default", 0.75, str(tmp_path / "p75"), quick),
              SweepPoint("tiny", 0.5, str(package))]     # built for default: an error row
    local = run_sweep(points, progress=lambda line: None)
    assert (tmp_path / "p75" / "manifest.json").exists()
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        remote = run_sweep(points, scheduler=client, progress=lambda line: None)
    assert remote == local
    assert [sorted(row) for row in local] == [sorted(COLUMNS)] * 3
    assert local[0]["sim_cycles_match"] is True and local[0]["sim_inputs"] == 3
    assert local[0]["error"] == local[1]["error"] == ""
    assert local[1]["cycles"] < local[0]["cycles"]          # more sparsity, fewer cycles
    assert local[1]["energy_uj"] < local[0]["energy_uj"]
    assert "configuration" in local[2]["error"]


def test_sweep_command_writes_one_row_per_point_and_the_pareto_plot(package, tmp_path,
                                                                    capsys):
    import csv
    import shutil

    packages = tmp_path / "pk"
    shutil.copytree(package, packages / "default-block-s50")   # reused, not retrained
    out = tmp_path / "sweep.csv"
    assert main(["sweep", "--sparsity", "50%", "--packages", str(packages), "--out", str(out),
                 "--plots", str(tmp_path / "plots")]) == 0
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == 1 and rows[0]["error"] == ""
    assert (tmp_path / "plots" / "sweep_pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["sweep", "--scheduler", "bogus://nowhere", "--packages",
                 str(packages), "--out", str(out)]) == 2
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err
