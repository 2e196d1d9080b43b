"""Unit tests of the NumPy golden model of one CIM macro compute step (`mars.sw.golden`).

The expectations are independent of the code under test: the plain integer dot product for
an exact readout, and a pure-Python loop written straight from docs/macro.md's formula for the
saturating one.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

from mars.config import PRESETS, MarsConfig, ReadoutMode
from mars.sw.golden import macro_step, pack_row, popcounts, readout, unpack_row

EXACT_PRESETS = sorted(n for n, c in PRESETS.items() if c.readout_mode is ReadoutMode.EXACT)


# -- independent references -----------------------------------------------------------------

def exact_bits(G: int) -> int:
    bits = 1
    while 2 ** bits - 1 < G:
        bits += 1
    return bits


def small_config(G, Wb, Ab, *, channels=1, mode="exact", readout_bits=None, apc=1):
    return MarsConfig(
        name="small", rows=G, cols=Wb * channels, partitions=1, rows_per_step=G,
        weight_bits=Wb, act_bits=Ab, act_bits_per_cycle=apc,
        readout_bits=exact_bits(G) if readout_bits is None else readout_bits,
        readout_mode=mode, cores=1, macros_per_core=1,
        weight_sram_rows=1 << max(0, (G - 1).bit_length()), act_buffer_words=1)


def twos(value: int, width: int) -> int:
    """The two's-complement code of `value` in `width` bits, without bit tricks."""
    return value + 2 ** width if value < 0 else value


def brief_step(x, w, config):
    """docs/macro.md ("Arithmetic"), literally: p[i][j] = popcount_g(x_bit_i AND w_bit_j),
    q = readout(p), y = sum_i sum_j 2^i * (j == Wb-1 ? -2^j : 2^j) * q.  `x` has G ints,
    `w` G rows of N."""
    G, Ab, Wb = config.rows_per_step, config.act_bits, config.weight_bits
    saturating = config.readout_mode is ReadoutMode.SATURATING
    out = []
    for n in range(len(w[0])):
        y = 0
        for i in range(Ab):
            for j in range(Wb):
                p = 0
                for g in range(G):
                    x_bit = (int(x[g]) >> i) & 1
                    w_bit = (twos(int(w[g][n]), Wb) >> j) & 1
                    p += x_bit & w_bit
                q = min(p, 2 ** config.readout_bits - 1) if saturating else p
                y += 2 ** i * (-(2 ** j) if j == Wb - 1 else 2 ** j) * q
        out.append(y)
    return out


def all_vectors(lo, hi, G):
    return np.array(list(itertools.product(range(lo, hi + 1), repeat=G)), dtype=np.int64)


def dot(x, w):
    """Plain integer x @ w with broadcasting over leading axes (x: (..., G); w: (..., G, N))."""
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    return (x[..., None, :] @ w)[..., 0, :]


def random_inputs(rng, config, x_shape, w_shape):
    x = rng.integers(0, config.act_max + 1, size=x_shape + (config.rows_per_step,))
    w = rng.integers(config.weight_min, config.weight_max + 1,
                     size=w_shape + (config.rows_per_step, config.channels_per_macro))
    return x, w


# -- exact readout = dot product ------------------------------------------------------------

@pytest.mark.parametrize("G, Wb, Ab", list(itertools.product([1, 2, 3], [2, 3], [1, 2]))
                         + [(4, 2, 2), (2, 4, 3), (5, 2, 1)])
def test_exact_equals_dot_product_exhaustively(G, Wb, Ab):
    config = small_config(G, Wb, Ab)
    xs = all_vectors(0, 2 ** Ab - 1, G)                          # (nx, G)
    ws = all_vectors(-(2 ** (Wb - 1)), 2 ** (Wb - 1) - 1, G)     # (nw, G)
    got = macro_step(xs[:, None, :], ws[None, :, :, None], config)   # (nx, nw, 1)
    assert got.shape == (len(xs), len(ws), 1)
    assert np.issubdtype(got.dtype, np.integer)
    expected = np.array([[sum(int(a) * int(b) for a, b in zip(x, w)) for w in ws] for x in xs])
    np.testing.assert_array_equal(got[..., 0], expected)


@pytest.mark.parametrize("name", EXACT_PRESETS)
@pytest.mark.parametrize("x_shape, w_shape", [
    ((), ()), ((7,), ()), ((2, 3), ()), ((2, 3), (3,)), ((4, 1), (5,)), ((6,), (6,)),
    ((1,), (2, 3)),
])
def test_exact_equals_dot_product_random_batches(name, x_shape, w_shape):
    config = PRESETS[name]
    rng = np.random.default_rng(zlib.crc32(repr((name, x_shape, w_shape)).encode()))
    x, w = random_inputs(rng, config, x_shape, w_shape)
    got = macro_step(x, w, config)
    expected = dot(x, w)
    batch = np.broadcast_shapes(x_shape, w_shape)
    assert got.shape == batch + (config.channels_per_macro,)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", EXACT_PRESETS)
def test_exact_extremes_and_python_lists(name):
    config = PRESETS[name]
    G, N = config.rows_per_step, config.channels_per_macro
    x = [config.act_max] * G
    for value in (config.weight_min, config.weight_max, -1, 0, 1):
        w = [[value] * N] * G
        assert macro_step(x, w, config).tolist() == [config.act_max * value * G] * N


def test_exact_matches_brief_loop_for_presets():
    rng = np.random.default_rng(1)
    for name in EXACT_PRESETS:
        config = PRESETS[name]
        x, w = random_inputs(rng, config, (5,), (5,))
        got = macro_step(x, w, config)
        for b in range(5):
            assert got[b].tolist() == brief_step(x[b], w[b], config)


# -- saturating readout ---------------------------------------------------------------------

SATURATING_SMALL = [  # (G, Wb, Ab, readout_bits), all with readout_bits < exact width
    (2, 2, 2, 1), (3, 2, 2, 1), (3, 3, 1, 1), (4, 2, 1, 1), (4, 2, 1, 2), (4, 3, 1, 2),
    (5, 2, 1, 2),
]


@pytest.mark.parametrize("G, Wb, Ab, rb", SATURATING_SMALL)
def test_saturating_matches_brief_loop_exhaustively(G, Wb, Ab, rb):
    config = small_config(G, Wb, Ab, mode="saturating", readout_bits=rb)
    assert rb < exact_bits(G)
    xs = all_vectors(0, 2 ** Ab - 1, G)
    ws = all_vectors(-(2 ** (Wb - 1)), 2 ** (Wb - 1) - 1, G)
    got = macro_step(xs[:, None, :], ws[None, :, :, None], config)[..., 0]
    expected = np.array([[brief_step(x, w[:, None], config)[0] for w in ws] for x in xs])
    np.testing.assert_array_equal(got, expected)
    # a narrow ADC really changes some results, so the comparison above could fail
    assert (got != xs @ ws.T).any()


def test_saturating_adc3_random_against_brief_loop():
    config = PRESETS["adc3"]
    assert config.readout_mode is ReadoutMode.SATURATING
    assert 2 ** config.readout_bits - 1 < config.rows_per_step
    rng = np.random.default_rng(3)
    G, N = config.rows_per_step, config.channels_per_macro
    x_uniform, w_uniform = random_inputs(rng, config, (60,), (60,))
    # biased draws: mostly large activations and weights with many one bits (-1, min),
    # so that popcounts overflow the 3-bit readout often
    x_biased = rng.choice([0, config.act_max, config.act_max - 1], p=[0.1, 0.7, 0.2],
                          size=(60, G))
    w_biased = rng.choice([-1, config.weight_min, config.weight_max, 0], size=(60, G, N))
    x = np.concatenate([x_uniform, x_biased])
    w = np.concatenate([w_uniform, w_biased])
    got = macro_step(x, w, config)
    assert got.shape == (120, N)
    for b in range(len(x)):
        assert got[b].tolist() == brief_step(x[b], w[b], config), b
    assert (got != dot(x, w)).any()
    # broadcasting: one activation vector against a batch of weights and vice versa
    np.testing.assert_array_equal(macro_step(x[0], w, config),
                                  np.stack([macro_step(x[0], wb, config) for wb in w]))
    np.testing.assert_array_equal(macro_step(x, w[0], config),
                                  np.stack([macro_step(xb, w[0], config) for xb in x]))


def test_saturating_adc3_hand_computed():
    config = PRESETS["adc3"]          # G=16, Wb=4, Ab=4, 3-bit readout (saturates at 7)
    G, N = config.rows_per_step, config.channels_per_macro
    x = np.full(G, 15)
    w = np.full((G, N), -1)           # every popcount is 16 -> read as 7
    # sum_i 2^i = 15; sum_j s_j 2^j = 1 + 2 + 4 - 8 = -1; times 7
    assert macro_step(x, w, config).tolist() == [-105] * N
    assert dot(x, w).tolist() == [-240] * N


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("extra", [0, 1, 8])
def test_saturating_wide_enough_is_exact(name, extra):
    base = PRESETS[name]
    rb = exact_bits(base.rows_per_step) + extra
    config = base.replace(readout_mode="saturating", readout_bits=rb)
    rng = np.random.default_rng(extra)
    x, w = random_inputs(rng, config, (40,), (40,))
    x[:5] = config.act_max                            # include full popcounts
    w[:5] = -1
    np.testing.assert_array_equal(macro_step(x, w, config), dot(x, w))


@pytest.mark.parametrize("G, Wb, Ab", [(3, 2, 2), (4, 3, 1)])
def test_saturating_at_exact_width_exhaustively(G, Wb, Ab):
    config = small_config(G, Wb, Ab, mode="saturating")
    xs = all_vectors(0, 2 ** Ab - 1, G)
    ws = all_vectors(-(2 ** (Wb - 1)), 2 ** (Wb - 1) - 1, G)
    got = macro_step(xs[:, None, :], ws[None, :, :, None], config)[..., 0]
    np.testing.assert_array_equal(got, xs @ ws.T)


def test_activation_bits_per_cycle_does_not_change_the_arithmetic():
    rng = np.random.default_rng(5)
    for apc in (1, 2, 4):
        config = small_config(4, 3, 4, channels=2, apc=apc, mode="saturating", readout_bits=2)
        x, w = random_inputs(rng, config, (30,), (30,))
        got = macro_step(x, w, config)
        for b in range(30):
            assert got[b].tolist() == brief_step(x[b], w[b], config)


# -- popcounts and readout on their own -----------------------------------------------------

def test_popcounts_against_loop():
    config = PRESETS["tiny"]
    rng = np.random.default_rng(7)
    G, Ab, Wb, N = (config.rows_per_step, config.act_bits, config.weight_bits,
                    config.channels_per_macro)
    x, w = random_inputs(rng, config, (3,), ())
    p = popcounts(x, w, config)
    assert p.shape == (3, Ab, Wb, N)
    for b, i, j, n in itertools.product(range(3), range(Ab), range(Wb), range(N)):
        expected = sum(((int(x[b, g]) >> i) & 1) * ((twos(int(w[g, n]), Wb) >> j) & 1)
                       for g in range(G))
        assert p[b, i, j, n] == expected


def test_readout_modes():
    p = np.arange(0, 17)
    np.testing.assert_array_equal(readout(p, PRESETS["tiny"]), p)
    adc3 = PRESETS["adc3"]
    np.testing.assert_array_equal(readout(p, adc3), [min(v, 7) for v in range(17)])


# -- pack_row / unpack_row ------------------------------------------------------------------

def expected_word(weights, Wb):
    """Bit j of channel n's two's-complement code in column n*Wb + j, built as a bit string."""
    columns = []
    for value in weights:
        code = format(twos(int(value), Wb), f"0{Wb}b")   # MSB first
        columns.extend(reversed(code))                      # column order: LSB first
    return int("".join(reversed(columns)), 2) if columns else 0


@pytest.mark.parametrize("Wb, channels", [(2, 3), (3, 2), (2, 1), (4, 2)])
def test_pack_unpack_exhaustive(Wb, channels):
    config = small_config(2, Wb, 1, channels=channels)
    C = config.cols
    seen = set()
    for weights in itertools.product(range(-(2 ** (Wb - 1)), 2 ** (Wb - 1)), repeat=channels):
        word = pack_row(np.array(weights), config)
        assert type(word) is int
        assert 0 <= word < 2 ** C
        assert word == expected_word(weights, Wb)
        assert unpack_row(word, config).tolist() == list(weights)
        seen.add(word)
    assert len(seen) == 2 ** C                           # a bijection onto C-bit words
    for word in range(2 ** C):
        assert pack_row(unpack_row(word, config), config) == word


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_pack_unpack_random_presets(name):
    config = PRESETS[name]
    rng = np.random.default_rng(11)
    N, Wb = config.channels_per_macro, config.weight_bits
    for _ in range(100):
        weights = rng.integers(config.weight_min, config.weight_max + 1, size=N)
        word = pack_row(weights, config)
        assert word == expected_word(weights, Wb)
        assert 0 <= word < 2 ** config.cols
        unpacked = unpack_row(word, config)
        assert unpacked.dtype == np.int64
        np.testing.assert_array_equal(unpacked, weights)
    for _ in range(100):
        word = int.from_bytes(rng.bytes(config.cols // 8 + 1), "little") % 2 ** config.cols
        assert pack_row(unpack_row(word, config), config) == word


def test_pack_row_bit_layout_by_hand():
    config = PRESETS["tiny"]                  # Wb=4, 4 channels, 16 columns
    assert config.weight_bits == 4 and config.channels_per_macro == 4
    assert pack_row([1, -1, -8, 7], config) == 0x78F1
    assert pack_row([0, 0, -8, 0], config) == 1 << (2 * 4 + 3)      # sign bit of channel 2
    assert pack_row([0, 1, 0, 0], config) == 1 << 4                 # bit 0 of channel 1
    assert pack_row([-1, -1, -1, -1], config) == 0xFFFF
    assert unpack_row(0x8000, config).tolist() == [0, 0, 0, -8]
    assert unpack_row(0x0007, config).tolist() == [7, 0, 0, 0]
    for n, j in itertools.product(range(4), range(4)):
        # a single set column n*Wb+j is bit j of channel n and nothing else
        values = [0] * 4
        values[n] = -8 if j == 3 else 2 ** j
        assert unpack_row(1 << (n * 4 + j), config).tolist() == values


# -- bad input ------------------------------------------------------------------------------

def test_bad_activations():
    config = PRESETS["tiny"]
    G, N = config.rows_per_step, config.channels_per_macro
    w = np.zeros((G, N), dtype=np.int64)
    for bad in (-1, 16, 1000):
        x = np.zeros(G, dtype=np.int64)
        x[1] = bad
        with pytest.raises(ValueError, match=rf"activations must lie in \[0, 15\], found {bad}"):
            macro_step(x, w, config)


def test_bad_weights():
    config = PRESETS["tiny"]
    G, N = config.rows_per_step, config.channels_per_macro
    x = np.ones(G, dtype=np.int64)
    for bad in (-9, 8, -1000):
        w = np.zeros((G, N), dtype=np.int64)
        w[2, 3] = bad
        with pytest.raises(ValueError, match=rf"weights must lie in \[-8, 7\], found {bad}"):
            macro_step(x, w, config)


@pytest.mark.parametrize("x_shape, w_shape", [
    ((3,), (4, 4)), ((5,), (4, 4)), ((4,), (3, 4)), ((4,), (5, 4)), ((2, 3), (4, 4)),
    ((), (4, 4)), ((4,), (4,)),
])
def test_wrong_number_of_rows(x_shape, w_shape):
    config = PRESETS["tiny"]                  # G=4
    with pytest.raises(ValueError, match=r"a compute step takes G=4 rows"):
        macro_step(np.zeros(x_shape, dtype=np.int64), np.zeros(w_shape, dtype=np.int64),
                   config)


def test_pack_row_bad_input():
    config = PRESETS["tiny"]                  # 4 channels of 4 bits
    for shape in [(3,), (5,), (1, 4), ()]:
        with pytest.raises(ValueError, match=r"a macro row holds 4 weights"):
            pack_row(np.zeros(shape, dtype=np.int64), config)
    for bad in (8, -9):
        with pytest.raises(ValueError, match=rf"weights must lie in \[-8, 7\], found {bad}"):
            pack_row([0, bad, 0, 0], config)


def test_unpack_row_bad_input():
    config = PRESETS["tiny"]                  # 16 columns
    for bad in (-1, 1 << 16, 1 << 40):
        with pytest.raises(ValueError, match=r"a macro row word has 16 bits"):
            unpack_row(bad, config)


@pytest.mark.parametrize("bad", ["activations", "weights"])
def test_fractional_values_are_refused(bad):
    config = PRESETS["tiny"]
    G, N = config.rows_per_step, config.channels_per_macro
    x = np.ones(G, dtype=np.int64)
    w = np.ones((G, N), dtype=np.int64)
    if bad == "activations":
        x = x + 0.5
    else:
        w = w * 1.0
    with pytest.raises(ValueError, match=f"{bad} must be integers"):
        macro_step(x, w, config)
