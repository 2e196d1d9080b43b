"""ADC-less (binary, ternary: HCiM) readouts in the energy model.

Independent expectation: the comparator outputs of a one-layer network on one chosen
input, counted by hand from the popcounts (the comments show them), and the energies
recomputed from those counts with the technology's per-event rules.
"""

from __future__ import annotations

import numpy as np
import pytest

from mars.config import PRESETS, ReadoutMode
from mars.contract import UnitFormat
from mars.sw.energy import (
    DEFAULT_TECH, comparator_activity, component_energy, estimate, estimate_network,
    network_counts,
)
from mars.sw.golden.network import IntegerNetwork, LayerNode
from mars.sw.layer import LayerGeometry
from mars.sw.mapper import map_network

TINY = PRESETS["tiny"]    # R=64, C=16, P=2, G=4, Wb=Ab=4: N=4 channels, 2 per group, D=2


def _config(mode: str, threshold: int = 1, bits: int | None = None):
    if mode in ("binary", "ternary"):
        return TINY.replace(name=mode, readout_mode=ReadoutMode(mode),
                            readout_threshold=threshold)
    return TINY.replace(name=f"adc{bits}", readout_bits=bits or TINY.readout_bits)


def one_layer(cfg):
    """fc K=12 (K-groups 0..2 of G=4 rows), Cout=4 (blocks {0,1} and {2,3}).
    ch0 = +1 (bits 0001) on all 12 K-rows, ch1 = -1 (1111) on all 12, ch2 = +1 on K-group 0
    only, ch3 = 0: block {2,3} keeps K-group 0 only."""
    w = np.zeros((4, 12), dtype=np.int64)
    w[0], w[1], w[2, 0:4] = 1, -1, 1
    scales = np.full((4, cfg.weight_bits), 4, dtype=np.int64) if cfg.scaled_readout else None
    fc = LayerNode("fc", ("input",), LayerGeometry.linear(12, 4), w,
                   np.zeros(4, dtype=np.int64), "acc", scales=scales)
    return IntegerNetwork(cfg, (1, 1, 12), (fc,), "fc")


#: K-group 0 gets x = 3, 1, 0, 0 and K-group 1 gets 1, 0, 0, 0; K-group 2 zeros.
X = np.array([3, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0], dtype=np.int64).reshape(1, 1, 1, 12)

# Popcounts p (rows where input bit i and weight bit j are both 1):
#   K-group 0, input bit 0: rows 0, 1 -> p = 2; input bit 1: row 0 -> p = 1; bits 2, 3: 0.
#     ch0 (+1): weight bit 0 only -> p = 2 (i=0), 1 (i=1)
#     ch1 (-1 = 1111): weight bits 0..3 -> p = 2 (i=0), 1 (i=1), each of 4 bits
#     ch2 (+1): as ch0; ch3: no weight bit.
#   K-group 1, input bit 0: row 4 -> p = 1 for ch0 (bit 0) and ch1 (bits 0..3); ch2, ch3
#     hold zeros there (pruned).  K-group 2: no input bit.
# T = 1: K-group 0: 2 + 8 + 2 = 12, K-group 1: 1 + 4 = 5 -> 17 non-zero outputs.
# T = 2: K-group 0: p = 2 only (i = 0): 1 + 4 + 1 = 6; K-group 1: none -> 6.
HAND = {1: 17, 2: 6}
STEPS = 3          # the longest block ({0,1}) keeps 3 K-groups; 1 pixel


@pytest.mark.parametrize("mode", ["binary", "ternary"])
@pytest.mark.parametrize("threshold", [1, 2])
def test_comparator_activity_matches_hand_count(mode, threshold):
    net = one_layer(_config(mode, threshold))
    assert comparator_activity(net, X) == {"fc": HAND[threshold]}
    # Two images: the mean per inference; an all-zero image fires nothing.
    two = np.concatenate([X, np.zeros_like(X)])
    assert comparator_activity(net, two) == {"fc": HAND[threshold] / 2}


@pytest.mark.parametrize("mode, comparators", [("binary", 1), ("ternary", 2)])
def test_adc_less_counts_and_energy_by_hand(mode, comparators):
    cfg = _config(mode)
    net = one_layer(cfg)
    mapping = map_network(net)
    (c,) = network_counts(mapping, activity=comparator_activity(net, X))
    assert c.macro_steps == STEPS
    assert c.comparisons == STEPS * 16 * 4 * comparators      # steps * C * Ab * comparators
    assert (c.conversions, c.bit_merges, c.shift_adds) == (0, 0, 0)
    assert c.scaled_adds == HAND[1]
    energy = component_energy(c, cfg, DEFAULT_TECH)
    t = DEFAULT_TECH
    comparator_pj = t.readout_fom_fj * 2 / 1000                # a 1-bit Walden conversion
    assert energy["readout"] == pytest.approx(c.comparisons * comparator_pj)
    # q (1 bit binary, 2 bits ternary) x the 12-bit scale factor, added into psum_bits.
    q_bits = 1 if mode == "binary" else 2
    per_add = q_bits * cfg.scale_bits * t.mult_pj_per_bit2 + cfg.psum_bits * t.add_pj_per_bit
    assert energy["shift-add"] == pytest.approx(HAND[1] * per_add)


@pytest.mark.parametrize("mode", ["binary", "ternary"])
def test_zero_outputs_cost_nothing(mode):
    """Only the non-zero comparator outputs cost digital energy: an all-zero input spends
    none in the shift-add, and each extra non-zero output adds exactly one
    scale-multiply-add."""
    net = one_layer(_config(mode))
    zero = estimate_network(net, inputs=np.zeros_like(X), with_dense=False)
    busy = estimate_network(net, inputs=X, with_dense=False)
    assert zero["components_pj"]["shift-add"] == 0.0
    assert zero["activity"]["nonzero_per_inference"] == 0
    assert busy["activity"]["nonzero_per_inference"] == HAND[1]
    per_add = busy["components_pj"]["shift-add"] / HAND[1]
    assert busy["energy_pj"] - zero["energy_pj"] == pytest.approx(HAND[1] * per_add)
    for key in ("readout", "macro array", "accumulate", "decoder", "activation buffer"):
        assert busy["components_pj"][key] == zero["components_pj"][key]


@pytest.mark.parametrize("mode", ["binary", "ternary"])
@pytest.mark.parametrize("adc_bits", [3, 4, 7])
def test_adc_less_readout_below_the_adc_readouts(mode, adc_bits):
    """Same network, same mapping, same input: at this input's activity (17 non-zero
    outputs of 192 column bits, 9 %) the comparator readout with its scale-multiply-adds
    spends less in readout and shift-add than an ADC readout of 3 (the exact popcount of
    G = 4), 4 or 7 bits with its weight-bit merges and shift-adds.  (On the default
    configuration it stops beating a 4-bit ADC above about a quarter of the outputs
    non-zero: docs/energy.md, HCiM.)"""
    scaled = one_layer(_config(mode))
    adc = one_layer(_config("exact", bits=adc_bits))
    e_scaled = estimate(map_network(scaled), activity=comparator_activity(scaled, X))
    e_adc = estimate(map_network(adc))
    # The same steps; the scaled readout's parameter word also carries the column scale
    # factors, whose fetch the single walk cannot hide (docs/macro.md): that many cycles.
    fetch = UnitFormat(scaled.config).param_chunks - UnitFormat(adc.config).param_chunks
    assert e_scaled["cycles_per_inference"] == e_adc["cycles_per_inference"] + fetch

    def compute(e):
        return e["components_pj"]["readout"] + e["components_pj"]["shift-add"]

    print(f"{mode} {compute(e_scaled):.4f} pJ vs {adc_bits}-bit ADC {compute(e_adc):.4f} pJ")
    assert compute(e_scaled) < compute(e_adc)
    assert e_scaled["energy_pj"] < e_adc["energy_pj"]
    assert e_scaled["components_pj"]["readout"] < e_adc["components_pj"]["readout"]
