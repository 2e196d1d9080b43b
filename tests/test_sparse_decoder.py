"""Tests of the decoder's software side: the golden address stream
(`mars.sw.golden.decoder_walk`) against a brute-force im2col on a padded input map, and the
descriptor + k-table arithmetic the RTL performs (`mars.contract.decoder`), modelled
here step by step as docs/decoder.md describes it, against the golden stream."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mars.config import PRESETS, MarsConfig
from mars.sw.golden import decoder_walk
from mars.sw.layer import LayerGeometry
from mars.sw.sparse import (
    DecoderFormat,
    DecoderLimitError,
    descriptor,
    descriptor_fields,
    ktable_words,
)

CONFIGS = [
    PRESETS["tiny"], PRESETS["default"], PRESETS["adc3"],
    MarsConfig(name="odd", rows=24, cols=12, partitions=2, rows_per_step=3, weight_bits=3,
               act_bits=2, act_bits_per_cycle=2, readout_bits=2, cores=1, macros_per_core=1,
               weight_sram_rows=128, act_buffer_words=512),
]
HYPO = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@st.composite
def walks(draw):
    config = draw(st.sampled_from(CONFIGS))
    if draw(st.booleans()) and draw(st.booleans()):
        geometry = LayerGeometry.linear(draw(st.integers(1, 60)), 4)
    else:
        kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        pad = draw(st.integers(0, min(kh, kw) - 1))
        in_h = draw(st.integers(max(1, kh - 2 * pad), 7))
        in_w = draw(st.integers(max(1, kw - 2 * pad), 7))
        geometry = LayerGeometry("conv", in_h, in_w, draw(st.integers(1, 9)), 4, kh, kw,
                                 draw(st.integers(1, 3)), pad)
    n_kgroups = -(-geometry.k // config.rows_per_step)
    kept = sorted(draw(st.sets(st.integers(0, n_kgroups - 1))))
    steps = len(kept) + draw(st.integers(0, 2))
    act_base = draw(st.integers(0, config.act_buffer_words - 1))
    return config, geometry, np.array(kept, dtype=np.int64), steps, act_base


def brute_force(config, geometry, kept, steps, act_base):
    """Payloads from a zero-padded HWC map whose cells hold their own buffer address + 1."""
    g, G = geometry, config.rows_per_step
    words = config.act_buffer_words
    cells = np.zeros((g.in_h + 2 * g.pad, g.in_w + 2 * g.pad + g.kw, g.cin), dtype=np.int64)
    for y in range(g.in_h):
        for x in range(g.in_w):
            for c in range(g.cin):
                cells[y + g.pad, x + g.pad, c] = (act_base + (y * g.in_w + x) * g.cin + c) \
                    % words + 1
    out, n = [], g.out_h * g.out_w * steps
    for oy in range(g.out_h):
        for ox in range(g.out_w):
            for s in range(steps):
                addrs, pad = [], 0
                for lane in range(G):
                    k = (kept[s] * G + lane) if s < len(kept) else g.k
                    cell = 0
                    if k < g.k:
                        r, rest = divmod(k, g.kw * g.cin)
                        col, c = divmod(rest, g.cin)
                        y, x = oy * g.stride + r, ox * g.stride + col
                        cell = cells[y, x, c] if y < cells.shape[0] else 0
                    addrs.append(int(cell) - 1 if cell else 0)
                    pad |= (cell == 0) << lane
                i = len(out)
                out.append({"slot": s, "kgroup": int(kept[s]) if s < len(kept) else 0,
                            "addrs": addrs, "pad": pad, "first": int(s == 0),
                            "last": int(s == steps - 1), "walk_first": int(i == 0),
                            "walk_last": int(i == n - 1), "filler": int(s >= len(kept))})
    return out


def rtl_arithmetic(desc, index, ktable, config):
    """The decoder datapath of docs/decoder.md, from the descriptor and memory words only:
    incremental window origins (columns in elements, rows in input rows), the k-table word
    (p0, kh0, wraps), each lane's kernel row and address step, the window tests."""
    fmt = DecoderFormat(config)
    G, pb, words = config.rows_per_step, fmt.pos_bits, 1 << fmt.addr_bits
    P, H, J = desc["row_size"], desc["in_h"], desc["row_jump"]
    out, n = [], desc["out_h"] * desc["out_w"] * desc["steps"]
    by = desc["by0"]
    for oy in range(desc["out_h"]):
        bx = desc["bx0"]
        for ox in range(desc["out_w"]):
            for s in range(desc["steps"]):
                filler = s >= desc["count"]
                kg = 0 if filler else index[desc["index_start"] + s]
                word = ktable[desc["ktable_base"] + kg]
                p0, kh0 = word & ((1 << pb) - 1), (word >> pb) & ((1 << pb) - 1)
                wraps = word >> (2 * pb)
                a0 = (desc["act_base"] + (by + kh0) * P + bx + p0) % words
                addrs, pad = [], 0
                for lane in range(G):
                    w = bin(wraps & ((1 << lane) - 1)).count("1")
                    if w == 0:
                        x = bx + p0 + lane
                    else:       # lanes since the last wrap
                        last = max(i for i in range(1, lane + 1) if wraps >> (i - 1) & 1)
                        x = bx + lane - last
                    ok = (not filler and 0 <= x < P and 0 <= by + kh0 + w < H
                          and (kg != desc["k_groups"] - 1 or lane < desc["last_lanes"]))
                    addrs.append((a0 + lane + w * J) % words if ok else 0)
                    pad |= (not ok) << lane
                i = len(out)
                out.append({"slot": desc["slot_base"] + s, "kgroup": kg, "addrs": addrs,
                            "pad": pad, "first": int(s == 0),
                            "last": int(s == desc["steps"] - 1), "walk_first": int(i == 0),
                            "walk_last": int(i == n - 1), "filler": int(filler)})
            bx += desc["step_x"]
        by += desc["step_y"]
    return out


@HYPO
@given(walks())
def test_golden_matches_brute_force(case):
    config, geometry, kept, steps, act_base = case
    trace = decoder_walk(geometry, kept, config, steps=steps, act_base=act_base)
    assert trace.payloads() == brute_force(config, geometry, kept, steps, act_base)


@HYPO
@given(walks())
def test_descriptor_and_ktable_arithmetic_matches_golden(case):
    config, geometry, kept, steps, act_base = case
    desc = descriptor(geometry, config, count=len(kept), steps=steps, act_base=act_base,
                      ktable_base=2, index_start=1, slot_base=1)
    index = [0] + kept.tolist()
    ktable = [0, 0] + ktable_words(geometry, config)
    expected = decoder_walk(geometry, kept, config, steps=steps, act_base=act_base,
                            slot_base=1).payloads()
    assert rtl_arithmetic(desc, index, ktable, config) == expected
    for name, bits, signed in descriptor_fields(config):
        lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
        assert lo <= desc[name] < hi, name


def test_realistic_cifar_layers_fit_a_big_enough_buffer():
    """With a buffer that holds a 32x32x64 map, VGG/ResNet CIFAR layers fit the decoder."""
    config = PRESETS["default"].replace(name="cifar", act_buffer_words=65536)
    fmt = DecoderFormat(config)
    for geometry in [LayerGeometry("conv", 32, 32, 3, 64, 3, 3, 1, 1),
                     LayerGeometry("conv", 2, 2, 512, 512, 3, 3, 1, 1),   # VGG16 conv5
                     LayerGeometry("conv", 8, 8, 128, 256, 3, 3, 2, 1),
                     LayerGeometry("conv", 32, 32, 16, 32, 1, 1, 2, 0),
                     LayerGeometry.linear(512, 10)]:
        fmt.check_layer(geometry)
        assert len(ktable_words(geometry, config)) == -(-geometry.k // 8)


def test_layers_that_do_not_fit():
    config = PRESETS["tiny"]                 # 2048-word buffer, G = 4: K <= 2048
    with pytest.raises(DecoderLimitError, match=r"input map \(16x16x16 = 4096 activations\)"):
        ktable_words(LayerGeometry("conv", 16, 16, 16, 4, 3, 3), config)
    with pytest.raises(DecoderLimitError, match="K = 2304 exceeds the decoder's k-table "
                                                r"\(512 K-groups of G=4, K <= 2048\)"):
        ktable_words(LayerGeometry("conv", 2, 2, 256, 4, 3, 3, 1, 1), config)
    with pytest.raises(DecoderLimitError, match="step_x = 5000 does not fit the decoder's "
                                                "12-bit unsigned field"):
        # a stride past the buffer size: its column step needs more than 12 bits
        ktable_words(LayerGeometry("conv", 4, 4, 1, 4, 3, 3, 5000, 1), config)


@pytest.mark.parametrize("kwargs, message", [
    ({"count": 13}, r"count \(13\) must lie in \[0, 12\]"),
    ({"count": 3, "steps": 2}, r"steps \(2\) must be at least count \(3\)"),
    ({"count": 3, "index_start": 62}, r"index entries \[62, 65\) exceed the index memory"),
    ({"count": 3, "slot_base": 63}, r"row slots \[63, 66\) exceed the weight SRAM"),
    ({"count": 3, "ktable_base": 501}, r"k-table words \[501, 513\) exceed the k-table"),
    ({"count": 3, "act_base": 2048}, r"act_base \(2048\) must lie in \[0, 2048\)"),
])
def test_bad_descriptor_requests(kwargs, message):
    with pytest.raises(DecoderLimitError, match=message):
        descriptor(LayerGeometry("conv", 7, 5, 8, 8, 3, 2, 2, 1), PRESETS["tiny"], **kwargs)


@pytest.mark.parametrize("kept, steps, message", [
    ([2, 1], None, "strictly increasing"),
    ([12], None, r"must lie in \[0, 12\)"),
    ([1, 2], 1, r"steps \(1\) must be at least"),
])
def test_golden_rejects_bad_codes(kept, steps, message):
    with pytest.raises(ValueError, match=message):
        decoder_walk(LayerGeometry("conv", 7, 5, 8, 8, 3, 2, 2, 1), kept, PRESETS["tiny"],
                     steps=steps)
