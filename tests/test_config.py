"""Unit tests of `mars.config`: validation, derived values, JSON, content hash, loading.

Every expectation here is computed independently of the code under test: validity by a
predicate written from the rules in docs/configuration.md / the MarsConfig docstring,
derived widths by brute force, hashes only ever compared with other hashes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mars.config import (
    PRESETS,
    SCHEMA_VERSION,
    ConfigError,
    MarsConfig,
    ReadoutMode,
    SkipGranularity,
    load_config,
    preset,
)

FIELDS = [f.name for f in dataclasses.fields(MarsConfig)]
# the binary/ternary readout fields have their own rules (tests/test_train_readout.py)
SCALE_FIELDS = ("readout_threshold", "scale_bits", "scale_frac_bits", "scale_rounding")
INT_FIELDS = [name for name in FIELDS
              if name not in ("name", "readout_mode", "skip_granularity", "residual_adds",
                              "hide_loads", *SCALE_FIELDS)]
HYPO = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


# -- independent helpers --------------------------------------------------------------------

def min_unsigned_bits(value: int) -> int:
    """Smallest b >= 1 with 2**b - 1 >= value, by counting."""
    bits = 1
    while 2 ** bits - 1 < value:
        bits += 1
    return bits


def min_signed_bits(lo: int, hi: int) -> int:
    """Smallest two's-complement width holding every integer in [lo, hi], by counting."""
    bits = 1
    while not (-(2 ** (bits - 1)) <= lo and hi <= 2 ** (bits - 1) - 1):
        bits += 1
    return bits


def is_pow2(value: int) -> bool:
    return value in {2 ** k for k in range(value.bit_length() + 1)}


def next_pow2(value: int) -> int:
    k = 0
    while 2 ** k < value:
        k += 1
    return 2 ** k


def violated_fields(d: dict) -> set[str]:
    """Field names of every rule the (integer-typed) field dict `d` breaks; empty if valid."""
    d = {**MarsConfig().to_dict(), **d}       # fields the example leaves at their default
    # below 1 stops the checks, but for fields with a range of their own (its rule below)
    small = {f for f in INT_FIELDS if d[f] < 1 and f not in RANGED}
    if small:
        return small
    R, C, P, G = d["rows"], d["cols"], d["partitions"], d["rows_per_step"]
    Wb, Ab, apc, rb = d["weight_bits"], d["act_bits"], d["act_bits_per_cycle"], d["readout_bits"]
    need = min_unsigned_bits(G)
    bad = set()
    if R % G:
        bad.add("rows_per_step")
    if C % P:
        bad.add("partitions")
    if Wb < 2:
        bad.add("weight_bits")
    if (C // P) % Wb:
        bad.add("weight_bits")
    if Ab % apc:
        bad.add("act_bits_per_cycle")
    if ReadoutMode(d["readout_mode"]) is ReadoutMode.EXACT and rb < need:
        bad.add("readout_bits")
    if rb > need + 8:
        bad.add("readout_bits")
    if not is_pow2(d["weight_sram_rows"]) or d["weight_sram_rows"] < R:
        bad.add("weight_sram_rows")
    if not is_pow2(d["act_buffer_words"]):
        bad.add("act_buffer_words")
    if not 2 <= d["act_regions"] <= 16:
        bad.add("act_regions")
    if not 2 <= d["writer_stages"] <= 6:
        bad.add("writer_stages")
    if not step_psum_bits(G, Wb, Ab, rb) < d["acc_bits"] <= 64:
        bad.add("acc_bits")
    if not 2 <= d["requant_mult_bits"] <= 32:
        bad.add("requant_mult_bits")
    if not bad & {"acc_bits", "requant_mult_bits"} and \
            d["acc_bits"] + d["requant_mult_bits"] > 63:
        bad |= {"acc_bits", "requant_mult_bits"}           # acc*M must fit int64
    for field in ("program_words", "param_words", "result_words", "max_phases"):
        if not is_pow2(d[field]):
            bad.add(field)
    return bad


def step_psum_bits(G, Wb, Ab, readout_bits):
    """Signed width of one step's extreme partial sums: every input at its maximum, every
    weight bit but the sign (largest) or only the sign (smallest), each popcount capped."""
    q = min(G, 2 ** readout_bits - 1)
    x = 2 ** Ab - 1
    return min_signed_bits(-x * 2 ** (Wb - 1) * q, x * (2 ** (Wb - 1) - 1) * q)


def ref_step(x, w, Ab, Wb, cap):
    """One channel's partial sum straight from the formula of docs/macro.md (Python ints)."""
    total = 0
    for i in range(Ab):
        for j in range(Wb):
            p = sum(((xg >> i) & 1) & (((wg % 2 ** Wb) >> j) & 1) for xg, wg in zip(x, w))
            q = p if cap is None else min(p, cap)
            total += 2 ** i * (-(2 ** j) if j == Wb - 1 else 2 ** j) * q
    return total


def all_psums(G, Wb, Ab, cap):
    """Every partial sum of one channel over all activation and weight vectors (NumPy,
    written independently of the golden model: bits by floor division, codes by mod)."""
    xs = np.array(list(itertools.product(range(2 ** Ab), repeat=G)), dtype=np.int64)
    ws = np.array(list(itertools.product(range(-(2 ** (Wb - 1)), 2 ** (Wb - 1)), repeat=G)),
                  dtype=np.int64)
    codes = np.mod(ws, 2 ** Wb)
    total = np.zeros((len(xs), len(ws)), dtype=np.int64)
    for i in range(Ab):
        xb = (xs // 2 ** i) % 2
        for j in range(Wb):
            wb = (codes // 2 ** j) % 2
            p = xb @ wb.T                      # (nx, nw) popcounts
            q = p if cap is None else np.minimum(p, cap)
            total += 2 ** i * (-(2 ** j) if j == Wb - 1 else 2 ** j) * q
    return total


def small_config(G, Wb, Ab, mode="exact", readout_bits=None, **extra):
    if readout_bits is None:
        readout_bits = min_unsigned_bits(G)
    fields = dict(name=f"g{G}w{Wb}a{Ab}", rows=G, cols=Wb, partitions=1, rows_per_step=G,
                  weight_bits=Wb, act_bits=Ab, act_bits_per_cycle=1,
                  readout_bits=readout_bits, readout_mode=mode, cores=1, macros_per_core=1,
                  weight_sram_rows=next_pow2(G), act_buffer_words=1, acc_bits=61,
                  requant_mult_bits=2)
    fields.update(extra)
    return MarsConfig(**fields)


@st.composite
def valid_fields(draw):
    """Field dicts that satisfy every rule, built constructively."""
    G = draw(st.integers(1, 20))
    R = G * draw(st.integers(1, 16))
    P = draw(st.integers(1, 8))
    Wb = draw(st.integers(2, 8))
    C = P * Wb * draw(st.integers(1, 4))
    Ab = draw(st.integers(1, 8))
    apc = draw(st.sampled_from([d for d in range(1, Ab + 1) if Ab % d == 0]))
    mode = draw(st.sampled_from(["exact", "saturating"]))
    need = min_unsigned_bits(G)
    rb = draw(st.integers(need if mode == "exact" else 1, need + 8))
    wsr = next_pow2(R) * 2 ** draw(st.integers(0, 4))
    acc = draw(st.integers(step_psum_bits(G, Wb, Ab, rb) + 1, 61))
    return dict(
        program_words=2 ** draw(st.integers(0, 10)), param_words=2 ** draw(st.integers(0, 10)),
        result_words=2 ** draw(st.integers(0, 10)), max_phases=2 ** draw(st.integers(0, 8)),
        acc_bits=acc, requant_mult_bits=draw(st.integers(2, min(32, 63 - acc))),
        name=draw(st.text(min_size=1, max_size=12)), rows=R, cols=C, partitions=P,
        rows_per_step=G, weight_bits=Wb, act_bits=Ab, act_bits_per_cycle=apc,
        readout_bits=rb, readout_mode=mode,
        skip_granularity=draw(st.sampled_from(["partition", "macro"])),
        cores=draw(st.integers(1, 8)), macros_per_core=draw(st.integers(1, 8)),
        weight_sram_rows=wsr, act_buffer_words=2 ** draw(st.integers(0, 16)))


valid_configs = valid_fields().map(lambda d: MarsConfig(**d))


# -- validation -----------------------------------------------------------------------------

def test_defaults_construct():
    config = MarsConfig()
    assert config.name == "default"
    assert config.readout_mode is ReadoutMode.EXACT
    assert config.skip_granularity is SkipGranularity.PARTITION


# A value the user wrote in JSON, as a message must spell it: JSON's true/false/null, not
# Python's True/False/None (strings stay quoted like every name in a message).
JSON_SPELLINGS = [("8", "'8'"), (True, "true"), (False, "false"), (8.0, "8.0"), (2.5, "2.5"),
                  (None, "null"), ([8], "[8]"), ([None, True], "[null, true]"),
                  ({"a": False}, '{"a": false}')]


@pytest.mark.parametrize("field", INT_FIELDS)
@pytest.mark.parametrize("bad, spelled", JSON_SPELLINGS)
def test_int_fields_reject_wrong_types(field, bad, spelled):
    with pytest.raises(ConfigError) as info:
        MarsConfig(**{field: bad})
    assert str(info.value) == f"{field} must be an integer, not {spelled}"


#: Integer fields with a range of their own, and how its message reads.
RANGED = {"requant_mult_bits": "requant_mult_bits must lie in [2, 32]",
          "act_regions": "act_regions must be 2 (the ping-pong halves) to 16",
          "writer_stages": "writer_stages must be 2 to 6"}


@pytest.mark.parametrize("field", [f for f in INT_FIELDS if f not in RANGED])
@pytest.mark.parametrize("bad", [0, -1, -256])
def test_int_fields_must_be_positive(field, bad):
    with pytest.raises(ConfigError, match=re.escape(f"{field} must be at least 1, not {bad}")):
        MarsConfig(**{field: bad})


@pytest.mark.parametrize("field", RANGED)
@pytest.mark.parametrize("bad", [1, 0, -1, -256])
def test_ranged_int_fields_name_their_whole_range_below_it(field, bad):
    """A value below the range gets the range (one message, one correction), not the
    generic "at least 1" that 1 would satisfy and the range then refuse."""
    with pytest.raises(ConfigError) as info:
        MarsConfig(**{field: bad})
    assert str(info.value) == f"{RANGED[field]}, not {bad}"


@pytest.mark.parametrize("bad, spelled", [("", "''"), (5, "5"), (None, "null"),
                                         (True, "true"), (b"tiny", "b'tiny'")])
def test_name_must_be_nonempty_string(bad, spelled):
    with pytest.raises(ConfigError) as info:
        MarsConfig(name=bad)
    assert str(info.value) == f"name must be a non-empty string, not {spelled}"


@pytest.mark.parametrize("field, enum_type", [("readout_mode", ReadoutMode),
                                               ("skip_granularity", SkipGranularity)])
@pytest.mark.parametrize("bad, spelled", [("EXACT", "'EXACT'"), ("adc", "'adc'"), ("", "''"),
                                         (1, "1"), (None, "null"), (["exact"], '["exact"]'),
                                         (False, "false")])
def test_enum_fields_reject_unknown_values_listing_allowed(field, enum_type, bad, spelled):
    with pytest.raises(ConfigError) as info:
        MarsConfig(**{field: bad})
    message = str(info.value)
    assert field in message
    assert message.endswith(f", not {spelled}"), message
    assert "None" not in message and "True" not in message and "False" not in message
    for member in enum_type:
        assert repr(member.value) in message
    expected = {"readout_mode": ["'exact'", "'saturating'"],
                "skip_granularity": ["'partition'", "'macro'"]}[field]
    for value in expected:
        assert value in message


def test_enum_fields_accept_their_string_values():
    config = MarsConfig(readout_mode="saturating", readout_bits=2, skip_granularity="macro")
    assert config.readout_mode is ReadoutMode.SATURATING
    assert config.skip_granularity is SkipGranularity.MACRO
    assert config == MarsConfig(readout_mode=ReadoutMode.SATURATING, readout_bits=2,
                                skip_granularity=SkipGranularity.MACRO)


# Each rule, broken on purpose on top of a fixed base (R=256, C=64, P=8, G=8, Wb=4, Ab=4),
# spelled out so that the table does not depend on the defaults.
BASE = dict(rows=256, cols=64, partitions=8, rows_per_step=8, weight_bits=4, act_bits=4,
            act_bits_per_cycle=1, readout_bits=4, readout_mode="exact",
            weight_sram_rows=4096, act_buffer_words=16384)
RULES = [
    (dict(rows=250), ["rows_per_step", "G=8", "rows", "R=250"]),
    (dict(rows_per_step=3), ["rows_per_step", "G=3", "R=256"]),
    (dict(cols=60), ["partitions", "P=8", "cols", "C=60"]),
    (dict(partitions=3), ["partitions", "P=3", "C=64"]),
    (dict(weight_bits=1), ["weight_bits", "at least 2", "not 1"]),
    (dict(weight_bits=3), ["weight_bits", "Wb=3", "C/P=8"]),
    (dict(cols=48, partitions=4, weight_bits=8), ["weight_bits", "Wb=8", "C/P=12"]),
    (dict(act_bits_per_cycle=3), ["act_bits_per_cycle", "(3)", "Ab=4"]),
    (dict(act_bits=6, act_bits_per_cycle=4), ["act_bits_per_cycle", "(4)", "Ab=6"]),
    (dict(readout_bits=3), ["readout_bits", "(3)", "exact", "G=8", "at least 4",
                            "saturating"]),
    (dict(rows_per_step=16, readout_bits=4), ["readout_bits", "(4)", "G=16", "at least 5"]),
    (dict(readout_bits=13), ["readout_bits", "(13)", "G=8", "4 bits"]),
    (dict(readout_bits=13, readout_mode="saturating"), ["readout_bits", "(13)"]),
    (dict(weight_sram_rows=3000), ["weight_sram_rows", "power of two", "3000"]),
    (dict(act_buffer_words=1000), ["act_buffer_words", "power of two", "1000"]),
    (dict(weight_sram_rows=128), ["weight_sram_rows", "(128)", "R=256"]),
    (dict(acc_bits=11), ["acc_bits", "(11)", "psum_bits (11)"]),
    (dict(acc_bits=65), ["acc_bits", "(65)", "at most 64"]),
    (dict(requant_mult_bits=1), ["requant_mult_bits", "[2, 32]", "not 1"]),
    (dict(requant_mult_bits=33), ["requant_mult_bits", "not 33"]),
    (dict(acc_bits=40, requant_mult_bits=24),
     ["acc_bits (40)", "requant_mult_bits (24)", "at most 63", "64-bit"]),
    (dict(acc_bits=64, requant_mult_bits=2), ["acc_bits (64)", "requant_mult_bits (2)"]),
    (dict(program_words=100), ["program_words", "power of two", "100"]),
    (dict(result_words=3), ["result_words", "power of two", "3"]),
]


@pytest.mark.parametrize("changes, fragments", RULES)
def test_each_rule_raises_naming_field_and_values(changes, fragments):
    with pytest.raises(ConfigError) as info:
        MarsConfig(**{**BASE, **changes})
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


@pytest.mark.parametrize("changes", [
    dict(readout_bits=3, readout_mode="saturating"),       # a narrow ADC is fine if saturating
    dict(readout_bits=1, readout_mode="saturating"),
    dict(readout_bits=12),                                  # exact width (4) + 8
    dict(weight_sram_rows=256),                             # exactly one macro's rows
    dict(act_bits_per_cycle=4),                             # bit-parallel
    dict(act_buffer_words=1),
    dict(weight_bits=8),                                    # C/P = 8
    dict(weight_bits=2),
    dict(rows=8, weight_sram_rows=8),                       # a single row slot
    dict(acc_bits=31, requant_mult_bits=32),                # acc*M just fits int64
    dict(acc_bits=61, requant_mult_bits=2),
])
def test_boundary_cases_accepted(changes):
    MarsConfig(**{**BASE, **changes})


def test_replace_validates_again():
    with pytest.raises(ConfigError, match="rows_per_step"):
        PRESETS["default"].replace(rows_per_step=7)
    assert PRESETS["default"].replace(name="x").name == "x"


def test_frozen():
    config = MarsConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rows = 128  # type: ignore[misc]


MUTATIONS = {
    **{field: st.integers(-1, 40) for field in INT_FIELDS},
    "rows": st.integers(-1, 300),
    "weight_sram_rows": st.sampled_from([0, 1, 2, 3, 8, 24, 32, 64, 96, 128, 256, 512]),
    "act_buffer_words": st.sampled_from([0, 1, 3, 4, 6, 1024, 1000]),
    "acc_bits": st.sampled_from([0, 1, 8, 11, 12, 16, 32, 64, 65]),
    "requant_mult_bits": st.sampled_from([0, 1, 2, 16, 32, 33]),
    "program_words": st.sampled_from([0, 1, 3, 64, 100]),
    "max_phases": st.sampled_from([0, 1, 12, 16]),
    "readout_mode": st.sampled_from(["exact", "saturating"]),
}


@st.composite
def near_valid_fields(draw):
    """A valid field dict with up to three fields replaced by arbitrary small values."""
    fields = draw(valid_fields())
    for field in draw(st.lists(st.sampled_from(sorted(MUTATIONS)), max_size=3, unique=True)):
        fields[field] = draw(MUTATIONS[field])
    return fields


@HYPO
@given(near_valid_fields())
def test_valid_exactly_when_every_rule_holds(fields):
    bad = violated_fields(fields)
    if not bad:
        config = MarsConfig(**fields)
        assert {k: config.to_dict()[k] for k in fields} == fields
    else:
        with pytest.raises(ConfigError) as info:
            MarsConfig(**fields)
        assert any(name in str(info.value) for name in bad), (bad, str(info.value))


# -- derived values -------------------------------------------------------------------------

def check_derived(config: MarsConfig) -> None:
    R, C, P, G = config.rows, config.cols, config.partitions, config.rows_per_step
    Wb, Ab = config.weight_bits, config.act_bits
    assert config.cols_per_partition * P == C
    assert config.channels_per_macro * Wb == C
    assert config.channels_per_partition * Wb * P == C
    assert config.channels_per_group == (
        C // Wb if config.skip_granularity is SkipGranularity.MACRO else C // P // Wb)
    assert config.row_slots * G == R
    assert config.exact_readout_bits == min_unsigned_bits(G)
    cap = (None if config.readout_mode is ReadoutMode.EXACT
           else 2 ** config.readout_bits - 1)
    assert config.readout_max == max(p if cap is None else min(p, cap) for p in range(G + 1))
    assert config.cycles_per_step * config.act_bits_per_cycle == Ab
    assert config.weight_min == -(2 ** (Wb - 1))
    assert config.weight_max == 2 ** (Wb - 1) - 1
    assert len(range(config.weight_min, config.weight_max + 1)) == 2 ** Wb
    assert config.act_max == 2 ** Ab - 1
    assert config.macros == config.cores * config.macros_per_core
    if config.scaled_readout:
        # Binary/ternary: one step sums 2^i s_j q_j a_j over bit planes i and columns j,
        # q_j in {0, 1}, a_j a scale_bits-bit code; psum_range must hold every such sum.
        top = 2 ** (config.scale_bits - 1)
        signs = [-1 if config.readout_mode is ReadoutMode.TERNARY and j == Wb - 1 else 1
                 for j in range(Wb)]
        per_col = [[s * q * a for q in (0, 1) for a in (-top, top - 1)] for s in signs]
        lo = (2 ** Ab - 1) * sum(min(c) for c in per_col)
        hi = (2 ** Ab - 1) * sum(max(c) for c in per_col)
        assert config.psum_range[0] <= lo and hi <= config.psum_range[1]
        assert config.psum_bits == min_signed_bits(*config.psum_range)
        return
    # The extremes of psum_range are reached (all-max inputs against all-min/max weights),
    # and psum_bits is the minimal signed width for them.
    lo, hi = config.psum_range
    x = [2 ** Ab - 1] * G
    assert lo == ref_step(x, [-(2 ** (Wb - 1))] * G, Ab, Wb, cap)
    assert hi == ref_step(x, [2 ** (Wb - 1) - 1] * G, Ab, Wb, cap)
    assert config.psum_bits == min_signed_bits(lo, hi)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_derived_values(name):
    check_derived(PRESETS[name])


@HYPO
@given(valid_configs)
def test_random_config_derived_values(config):
    check_derived(config)


@HYPO
@given(valid_configs, st.data())
def test_random_partial_sums_lie_in_psum_range(config, data):
    lo, hi = config.psum_range
    G, Ab, Wb = config.rows_per_step, config.act_bits, config.weight_bits
    cap = None if config.readout_mode is ReadoutMode.EXACT else 2 ** config.readout_bits - 1
    x = data.draw(st.lists(st.integers(0, 2 ** Ab - 1), min_size=G, max_size=G))
    w = data.draw(st.lists(st.integers(-(2 ** (Wb - 1)), 2 ** (Wb - 1) - 1),
                           min_size=G, max_size=G))
    assert lo <= ref_step(x, w, Ab, Wb, cap) <= hi


# (G, Wb, Ab, mode, readout_bits): brute force over every activation and weight vector.
PSUM_CASES = [
    (1, 2, 1, "exact", 1), (2, 2, 1, "exact", 2), (2, 3, 3, "exact", 2),
    (3, 2, 2, "exact", 2), (3, 3, 2, "exact", 3), (4, 2, 2, "exact", 3),
    (3, 2, 2, "saturating", 1), (4, 3, 2, "saturating", 2), (4, 2, 2, "saturating", 1),
    (5, 2, 1, "saturating", 2), (2, 4, 2, "exact", 2), (3, 2, 3, "saturating", 1),
]


@pytest.mark.parametrize("G, Wb, Ab, mode, rb", PSUM_CASES)
def test_psum_width_is_minimal_by_brute_force(G, Wb, Ab, mode, rb):
    config = small_config(G, Wb, Ab, mode, rb)
    psums = all_psums(G, Wb, Ab, None if mode == "exact" else 2 ** rb - 1)
    lo, hi = int(psums.min()), int(psums.max())
    assert config.psum_range == (lo, hi)
    assert config.psum_bits == min_signed_bits(lo, hi)
    # minimal: one bit fewer cannot hold both extremes
    bits = config.psum_bits
    assert -(2 ** (bits - 1)) <= lo and hi < 2 ** (bits - 1)
    assert not (-(2 ** (bits - 2)) <= lo and hi < 2 ** (bits - 2))


@pytest.mark.parametrize("G", list(range(1, 70))
                         + sorted({2 ** k + d for k in range(1, 41) for d in (-1, 0, 1)}))
def test_exact_readout_bits_minimal_for_zero_to_G(G):
    need = min_unsigned_bits(G)
    assert 2 ** need - 1 >= G and (need == 1 or 2 ** (need - 1) - 1 < G)
    config = MarsConfig(rows=G, rows_per_step=G, weight_sram_rows=next_pow2(G),
                        readout_bits=need, acc_bits=61, requant_mult_bits=2)
    assert config.exact_readout_bits == need
    assert config.readout_max == G
    if need > 1:
        with pytest.raises(ConfigError, match="too narrow"):
            config.replace(readout_bits=need - 1)


# -- presets --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_valid_and_named(name):
    config = PRESETS[name]
    assert config.name == name
    assert violated_fields(config.to_dict()) == set()
    assert MarsConfig(**config.to_dict()) == config
    assert preset(name) is config


def test_expected_presets_exist():
    assert {"default", "tiny", "adc3", "wide8"} <= set(PRESETS)
    adc3 = PRESETS["adc3"]
    assert adc3.readout_mode is ReadoutMode.SATURATING
    assert adc3.readout_bits < min_unsigned_bits(adc3.rows_per_step)   # really saturates


def test_unknown_preset():
    with pytest.raises(ConfigError) as info:
        preset("huge")
    assert "unknown preset 'huge'" in str(info.value)
    for name in PRESETS:
        assert name in str(info.value)


# -- JSON -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_json_round_trip(name):
    config = PRESETS[name]
    text = config.to_json()
    assert text.endswith("\n")
    assert MarsConfig.from_json(text) == config
    assert MarsConfig.from_json(text).to_json() == text
    doc = json.loads(text)
    assert doc["schema"] == "mars-config"
    assert doc["schema_version"] == SCHEMA_VERSION and type(doc["schema_version"]) is int
    assert doc["content_hash"] == config.content_hash
    assert doc["readout_mode"] == config.readout_mode.value
    assert doc["skip_granularity"] == config.skip_granularity.value
    assert set(doc) == set(FIELDS) | {"schema", "schema_version", "content_hash"}
    for field in FIELDS:
        value = getattr(config, field)
        assert doc[field] == getattr(value, "value", value)


@HYPO
@given(valid_configs)
def test_random_json_round_trip(config):
    text = config.to_json()
    again = MarsConfig.from_json(text)
    assert again == config
    assert again.to_json() == text
    assert MarsConfig.from_dict(config.to_dict()) == config


def test_missing_fields_take_defaults():
    assert MarsConfig.from_json("{}") == MarsConfig()
    assert MarsConfig.from_json('{"rows": 128}') == MarsConfig(rows=128)


def tiny_doc():
    return json.loads(PRESETS["tiny"].to_json())


def test_from_json_truncated():
    text = PRESETS["tiny"].to_json().rstrip()
    for cut in range(0, len(text), 7):
        with pytest.raises(ConfigError) as info:
            MarsConfig.from_json(text[:cut], source="cut.json")
        message = str(info.value)
        assert message.startswith("cut.json: ")
        assert "not valid JSON" in message
        assert re.search(r"line \d+, column \d+", message)


@pytest.mark.parametrize("text, kind", [("[]", "an array"), ("[1, 2]", "an array"),
                                        ("42", "a number"), ('"tiny"', "a string"),
                                        ("null", "null"), ("true", "true"),
                                        ("false", "false"), ("1.5", "a number")])
def test_from_json_non_object(text, kind):
    with pytest.raises(ConfigError,
                       match=re.escape(f"in.json: expected a JSON object, not {kind}")):
        MarsConfig.from_json(text, source="in.json")


def test_from_json_unknown_field():
    doc = tiny_doc()
    doc["rowz"] = 64
    with pytest.raises(ConfigError) as info:
        MarsConfig.from_json(json.dumps(doc), source="x.json")
    message = str(info.value)
    assert message.startswith("x.json: ")
    assert "unknown field 'rowz'" in message
    for field in FIELDS:                 # the known fields are listed as a hint
        assert field in message


@pytest.mark.parametrize("schema, spelled", [("gemmini-config", "'gemmini-config'"),
                                             ("", "''"), (None, "null"), (1, "1"),
                                             (False, "false")])
def test_from_json_wrong_schema(schema, spelled):
    doc = tiny_doc()
    doc["schema"] = schema
    with pytest.raises(ConfigError,
                       match=re.escape(f"schema must be 'mars-config', not {spelled}")):
        MarsConfig.from_json(json.dumps(doc))


@pytest.mark.parametrize("version, spelled", [
    (SCHEMA_VERSION + 1, str(SCHEMA_VERSION + 1)), (SCHEMA_VERSION - 1, str(SCHEMA_VERSION - 1)),
    (99, "99"), (str(SCHEMA_VERSION), repr(str(SCHEMA_VERSION))), (None, "null"),
    (True, "true"), (1.0, "1.0")])
def test_from_json_wrong_schema_version(version, spelled):
    doc = tiny_doc()
    doc["schema_version"] = version
    with pytest.raises(ConfigError) as info:
        MarsConfig.from_json(json.dumps(doc))
    message = str(info.value)
    assert f"schema_version {spelled} is not supported" in message
    assert f"version {SCHEMA_VERSION}" in message


def version1_doc(config: MarsConfig) -> dict:
    """`config` as a version-1 tool wrote it: ``max_layers`` for ``max_phases``, hashed so."""
    fields = {("max_layers" if k == "max_phases" else k): v for k, v in config.to_dict().items()}
    content = {k: v for k, v in fields.items() if k != "name"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return {"schema": "mars-config", "schema_version": 1, **fields,
            "content_hash": hashlib.sha256(canonical.encode()).hexdigest()}


def test_from_json_version1_names_the_rename():
    old = version1_doc(PRESETS["tiny"])
    with pytest.raises(ConfigError) as info:
        MarsConfig.from_json(json.dumps(old), source="old.json")
    message = str(info.value)
    assert message.startswith("old.json: schema_version 1 is not supported"), message
    assert "renamed max_layers to max_phases" in message, message
    assert "\n" not in message
    # Following the hint gives back the configuration.
    old["max_phases"] = old.pop("max_layers")
    old["schema_version"] = 2
    del old["content_hash"]
    assert MarsConfig.from_json(json.dumps(old)) == PRESETS["tiny"]


def test_from_json_tampered_hash():
    doc = tiny_doc()
    good = doc["content_hash"]
    last = "0" if good[-1] != "0" else "1"
    for bad in ["0" * 64, good[:-1] + last, good[:12], "", good.upper()]:
        doc["content_hash"] = bad
        with pytest.raises(ConfigError) as info:
            MarsConfig.from_json(json.dumps(doc), source="t.json")
        message = str(info.value)
        assert message.startswith("t.json: ")
        assert f"content_hash {bad!r} does not match" in message
        assert "edited or damaged" in message


def test_from_json_edited_field_detected_by_hash():
    doc = tiny_doc()
    doc["rows"] = 128                    # valid on its own, but the stored hash is stale
    with pytest.raises(ConfigError, match="content_hash .* does not match"):
        MarsConfig.from_json(json.dumps(doc))
    del doc["content_hash"]              # without a stored hash the edit is accepted
    assert MarsConfig.from_json(json.dumps(doc)) == PRESETS["tiny"].replace(rows=128)


def test_from_json_renamed_keeps_hash_valid():
    doc = tiny_doc()
    doc["name"] = "renamed"              # the name is not part of the hash
    assert MarsConfig.from_json(json.dumps(doc)) == PRESETS["tiny"].replace(name="renamed")


@pytest.mark.parametrize("field, value, fragment", [
    ("rows", "64", "rows must be an integer, not '64'"),
    ("rows", 64.0, "rows must be an integer, not 64.0"),
    ("cores", True, "cores must be an integer, not true"),
    ("cols", None, "cols must be an integer, not null"),
    ("rows_per_step", 3, "rows_per_step (G=3) must divide rows (R=64)"),
    ("readout_mode", "adc", "readout_mode must be one of 'exact', 'saturating', 'binary', "
                            "'ternary', not 'adc'"),
    ("skip_granularity", "row", "skip_granularity must be one of"),
    ("name", "", "name must be a non-empty string"),
])
def test_from_json_invalid_fields_prefixed_with_source(field, value, fragment):
    doc = tiny_doc()
    doc[field] = value
    del doc["content_hash"]
    with pytest.raises(ConfigError) as info:
        MarsConfig.from_json(json.dumps(doc), source="bad.json")
    assert str(info.value).startswith("bad.json: ")
    assert fragment in str(info.value)


# -- content hash ---------------------------------------------------------------------------

# One valid change of every field except `name`, on a configuration whose readout uses it:
# the defaults (exact readout, 4 partitions), the comparator and scale-factor fields on the
# ternary `hcim` preset.
HASH_CHANGES = {
    "rows": 1024, "cols": 128, "partitions": 2, "rows_per_step": 4, "weight_bits": 8,
    "act_bits": 8, "act_bits_per_cycle": 2, "readout_bits": 5,
    "readout_mode": "saturating", "skip_granularity": "macro", "cores": 3,
    "macros_per_core": 1, "weight_sram_rows": 8192, "act_buffer_words": 8192 * 2,
    "acc_bits": 24, "requant_mult_bits": 12, "program_words": 128, "param_words": 512,
    "result_words": 64, "max_phases": 32, "act_regions": 3, "residual_adds": True,
    "writer_stages": 3,
    "hide_loads": True,
    "readout_threshold": 2, "scale_bits": 10, "scale_frac_bits": 3, "scale_rounding": "floor",
}
HASH_BASE = {field: PRESETS["hcim"] if field in SCALE_FIELDS else MarsConfig()
             for field in HASH_CHANGES}

# Changes that leave the hardware and the readout's arithmetic alone (the base, the change):
# the comparator and scale-factor fields of exact and saturating readouts (no comparator,
# no scale factors), the ADC width of the comparator readouts (no ADC), the skip
# granularity of one-partition macros (a partition is the macro).
SAME_HARDWARE = [
    *[(name, {field: value}) for name in ("default", "tiny", "adc3")
      for field, value in (("readout_threshold", 2), ("scale_bits", 8),
                           ("scale_frac_bits", 5), ("scale_rounding", "floor"))],
    ("tiny", dict(readout_threshold=3, scale_bits=6, scale_frac_bits=3, scale_rounding="floor")),
    ("hcim", {"readout_bits": 3}), ("hcim", {"readout_bits": 10}),
    ("ice40", {"skip_granularity": "macro"}),
]


def test_hash_change_table_covers_every_field():
    assert set(HASH_CHANGES) == set(FIELDS) - {"name"}


def test_hash_changes_with_every_field_but_name():
    hashes = {base.content_hash for base in HASH_BASE.values()}
    for field, value in HASH_CHANGES.items():
        base = HASH_BASE[field]
        changed = base.replace(**{field: value})
        assert changed.content_hash != base.content_hash, field
        hashes.add(changed.content_hash)
    assert len(hashes) == len(HASH_CHANGES) + 2            # all different from each other


@pytest.mark.parametrize("name, changes", SAME_HARDWARE)
def test_hash_ignores_fields_the_readout_does_not_use(name, changes):
    base = PRESETS[name]
    changed = base.replace(**changes)
    assert changed.to_dict() != base.to_dict()            # the files differ ...
    assert changed.content_hash == base.content_hash      # ... the hardware does not
    # a file written by a tool that hashed every field is still read
    doc = json.loads(changed.to_json())
    doc["content_hash"] = changed.legacy_content_hash
    assert changed.legacy_content_hash != changed.content_hash
    assert MarsConfig.from_json(json.dumps(doc)) == changed


@pytest.mark.parametrize("name, changes", [("tiny", dict(readout_threshold=3, scale_bits=6,
                                                         scale_frac_bits=3)),
                                           ("ice40", {"skip_granularity": "macro"})])
def test_same_hash_means_the_same_verilog(name, changes):
    """The independent expectation of `test_hash_ignores_fields_the_readout_does_not_use`:
    the generators emit the same Verilog for both (the simulator caches named by the hash
    are therefore right to share one build)."""
    from mars.hw.blocks import to_verilog

    base = PRESETS[name]
    changed = base.replace(**changes)
    assert to_verilog("mars_top", changed) == to_verilog("mars_top", base)


@pytest.mark.parametrize("field", ["residual_adds", "hide_loads"])
@pytest.mark.parametrize("bad, spelled", [(1, "1"), ("true", "'true'"), (None, "null")])
def test_bool_fields_reject_other_values(field, bad, spelled):
    with pytest.raises(ConfigError) as info:
        MarsConfig(**{field: bad})
    assert str(info.value) == f"{field} must be true or false, not {spelled}"


def test_hide_loads_off_is_the_hardware_before_it():
    """``hide_loads`` off hashes as configurations from before the field (packages and
    caches stay theirs); on, it is another hardware (the controller's release rule)."""
    for name in ("default", "tiny", "ice40"):
        base = PRESETS[name]
        assert "hide_loads" not in base.hardware_fields(), name
        assert base.replace(hide_loads=True).content_hash != base.content_hash, name
    assert PRESETS["mars"].hide_loads


def test_hash_keeps_the_presets_hashes():
    """Normalising the unused fields left every preset's hash as it was when every field
    was hashed: packages and caches made before it are still theirs."""
    for name, config in PRESETS.items():
        assert config.content_hash == config.legacy_content_hash, name


def test_hash_of_the_full_writer_is_the_hash_before_the_field():
    """``writer_stages`` at 6, the full pipeline (every configuration before the field
    had the full pipeline of its day), is left out of the
    hash: the canonical JSON of the other fields, as tools before it hashed them, gives
    the same hash; any other value counts."""
    for config in (MarsConfig(), PRESETS["tiny"], PRESETS["mars"]):
        content = config.to_dict()
        del content["name"], content["writer_stages"]
        if not config.hide_loads:
            del content["hide_loads"]          # off: also left out (its own rule)
        old = hashlib.sha256(json.dumps(content, sort_keys=True,
                                        separators=(",", ":")).encode()).hexdigest()
        assert config.writer_stages == 6 and config.legacy_content_hash == old
        assert config.content_hash == old      # these presets' fields are all used
        for stages in (2, 3, 4, 5):
            assert config.replace(writer_stages=stages).content_hash != old


@pytest.mark.parametrize("value", [1, 7, 0, -5])
def test_writer_stages_out_of_range_is_one_line(value):
    with pytest.raises(ConfigError, match=rf"^writer_stages must be 2 to 6, not {value}$"):
        MarsConfig(writer_stages=value)


def test_hash_ignores_name_and_enum_spelling():
    base = PRESETS["adc3"]
    assert base.replace(name="other").content_hash == base.content_hash
    spelled = MarsConfig(**{**base.to_dict(), "name": "x"})   # enums given as strings
    assert spelled.content_hash == base.content_hash
    assert MarsConfig.from_json(base.to_json()).content_hash == base.content_hash


def test_hash_format():
    for config in PRESETS.values():
        assert re.fullmatch(r"[0-9a-f]{64}", config.content_hash)
        assert config.short_hash == config.content_hash[:12]
    assert len({c.content_hash for c in PRESETS.values()}) == len(PRESETS)


@HYPO
@given(valid_fields(), valid_fields())
def test_hash_equal_exactly_when_content_equal(a, b):
    ca, cb = MarsConfig(**a), MarsConfig(**b)
    def hardware(d):         # one partition: the skip granularity names the same groups
        return {k: v for k, v in d.items()
                if k != "name" and not (k == "skip_granularity" and d["partitions"] == 1)}

    same = hardware(a) == hardware(b)
    assert (ca.content_hash == cb.content_hash) == same
    assert MarsConfig(**{**a, "name": "other"}).content_hash == ca.content_hash


def test_hash_stable_across_processes():
    custom = dict(name="c", rows=24, cols=12, partitions=2, rows_per_step=3, weight_bits=3,
                  act_bits=2, act_bits_per_cycle=2, readout_bits=2,
                  readout_mode="saturating", weight_sram_rows=32, act_buffer_words=64)
    script = (
        "import json, sys\n"
        "from mars.config import PRESETS, MarsConfig\n"
        "out = {n: c.content_hash for n, c in PRESETS.items()}\n"
        f"out['custom'] = MarsConfig(**{custom!r}).content_hash\n"
        "print(json.dumps(out))\n")
    here = {n: c.content_hash for n, c in PRESETS.items()}
    here["custom"] = MarsConfig(**custom).content_hash
    for seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-c", script], capture_output=True,
                                text=True, env=env, check=True)
        assert json.loads(result.stdout) == here


# -- load_config ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PRESETS))
def test_load_config_preset(name):
    assert load_config(name) is PRESETS[name]


def test_load_config_json_path(tmp_path):
    config = PRESETS["tiny"].replace(name="mine", readout_mode="saturating", readout_bits=2)
    path = tmp_path / "mine.json"
    path.write_text(config.to_json())
    assert load_config(path) == config
    assert load_config(str(path)) == config
    other = tmp_path / "mine.cfg"        # an existing file need not end in .json
    other.write_text(config.to_json())
    assert load_config(other) == config


def test_load_config_unknown_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config("nosuch")
    message = str(info.value)
    assert "unknown preset 'nosuch'" in message
    assert "no such JSON file" in message
    for name in PRESETS:
        assert name in message


def test_load_config_missing_file(tmp_path):
    path = tmp_path / "missing.json"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "cannot read configuration" in message
    assert str(path) in message
    assert "No such file" in message


def test_load_config_directory(tmp_path):
    path = tmp_path / "dir.json"
    path.mkdir()
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(path)


def test_load_config_bad_file_names_path(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"rows": 64, "rows_per_step": 3')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: not valid JSON")
    path.write_text('{"rows": 64, "rows_per_step": 3}')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: rows_per_step (G=3) must divide rows (R=64)")


@pytest.mark.parametrize("bad, spelled", [(None, "null"), (0, "0"), (["x"], '["x"]'),
                                         (True, "true")])
def test_from_json_non_string_hash(bad, spelled):
    doc = tiny_doc()
    doc["content_hash"] = bad
    with pytest.raises(ConfigError,
                       match=re.escape(f"content_hash must be a string, not {spelled}")):
        MarsConfig.from_json(json.dumps(doc))


# -- the requantisation product fits the golden model's int64 -------------------------------

def extreme_requant_cases(acc_bits, mult_bits):
    """Accumulator, multiplier and shift at the ends of their ranges."""
    accs = (-(2 ** (acc_bits - 1)), 2 ** (acc_bits - 1) - 1)
    mults = (1, 2 ** mult_bits - 1)
    shifts = (1, acc_bits + mult_bits - 1)              # mars.sw.golden.network.shift_range
    return list(itertools.product(accs, mults, shifts))


@pytest.mark.parametrize("acc_bits, mult_bits", [(31, 32), (47, 16), (61, 2)])
def test_largest_allowed_requantisation_is_exact_in_the_golden_model(acc_bits, mult_bits):
    from mars.sw.golden.network import rescale

    MarsConfig(acc_bits=acc_bits, requant_mult_bits=mult_bits)       # allowed
    for acc, mult, shift in extreme_requant_cases(acc_bits, mult_bits):
        exact = (acc * mult + 2 ** (shift - 1)) // 2 ** shift         # Python integers
        got = rescale(np.array([acc]), np.array([mult]), np.array([shift]))
        assert int(got[0]) == exact, (acc, mult, shift)


@pytest.mark.parametrize("acc_bits, mult_bits", [(32, 32), (40, 24), (62, 2)])
def test_one_bit_more_would_overflow_int64(acc_bits, mult_bits):
    # The limit is tight: one bit more and some intermediate acc*M + 2^(S-1) leaves int64.
    assert any(acc * mult + 2 ** (shift - 1) > 2 ** 63 - 1
               for acc, mult, shift in extreme_requant_cases(acc_bits, mult_bits))
    with pytest.raises(ConfigError, match="at most 63"):
        MarsConfig(acc_bits=acc_bits, requant_mult_bits=mult_bits)
