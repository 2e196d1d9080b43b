"""Tests of the index encodings (`mars.sw.sparse.index`): exact round trips, code lengths
against formulas written from each encoding's definition, and clear errors for codes that
do not describe a valid set of kept K-groups."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mars.sw.sparse import (
    ENCODINGS,
    Bits,
    IndexCodeError,
    check_index_code,
    decode_index,
    encode_index,
    entropy_bits,
    index_bits,
)

HYPO = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@st.composite
def index_codes(draw):
    n_kgroups = draw(st.integers(1, 600))
    mode = draw(st.sampled_from(["empty", "full", "random", "sparse"]))
    if mode == "empty":
        return n_kgroups, []
    if mode == "full":
        return n_kgroups, list(range(n_kgroups))
    if mode == "sparse":
        kept = draw(st.sets(st.integers(0, n_kgroups - 1), max_size=6))
    else:
        seed = draw(st.integers(0, 2 ** 32 - 1))
        rng = np.random.default_rng(seed)
        kept = np.flatnonzero(rng.random(n_kgroups) < rng.random()).tolist()
    return n_kgroups, sorted(kept)


def expected_length(kept, n_kgroups, encoding):
    """Code length from the definition of each encoding."""
    count_bits = n_kgroups.bit_length()
    index_width = max(1, math.ceil(math.log2(n_kgroups))) if n_kgroups > 1 else 1
    gaps = [b - a - 1 for a, b in zip([-1] + kept, kept)]
    if encoding == "bitmap":
        return n_kgroups
    if encoding == "absolute":
        return count_bits + len(kept) * index_width
    if encoding.startswith("delta"):
        b = int(encoding[5:])
        escape = 2 ** b - 1
        return count_bits + b * sum(gap // escape + 1 for gap in gaps)
    if encoding == "gamma":
        return count_bits + sum(2 * int(math.floor(math.log2(gap + 1))) + 1 for gap in gaps)
    raise AssertionError(encoding)


@HYPO
@given(index_codes(), st.sampled_from(sorted(ENCODINGS)))
def test_round_trip_and_length(case, encoding):
    n_kgroups, kept = case
    bits = encode_index(kept, n_kgroups, encoding)
    assert bits.length == expected_length(kept, n_kgroups, encoding)
    assert index_bits(kept, n_kgroups, encoding) == bits.length
    assert decode_index(bits, n_kgroups, encoding).tolist() == kept


@HYPO
@given(index_codes())
def test_fixed_codes_are_not_below_the_entropy(case):
    """No code can beat log2(C(n, k)) for every mask; bitmap and absolute never do."""
    n_kgroups, kept = case
    bound = entropy_bits(len(kept), n_kgroups)
    assert index_bits(kept, n_kgroups, "bitmap") >= bound - 1e-9
    assert index_bits(kept, n_kgroups, "absolute") >= bound - 1e-9


def test_examples_by_hand():
    # 10 K-groups, kept 1, 2, 9: gaps 1, 0, 6; count field 4 bits (holds 0..10)
    assert str(encode_index([1, 2, 9], 10, "bitmap")) == "0110000001"
    assert str(encode_index([1, 2, 9], 10, "absolute")) == "0011" + "0001" + "0010" + "1001"
    assert str(encode_index([1, 2, 9], 10, "delta2")) == "0011" + "01" + "00" + "11" + "11" + "00"
    assert str(encode_index([1, 2, 9], 10, "gamma")) == "0011" + "010" + "1" + "00111"


@pytest.mark.parametrize("kept, message", [
    ([3, 2], "entry 1 .* does not follow entry 0"),
    ([1, 1], "strictly increasing"),
    ([0, 10], "entry 1 is K-group 10, out of range"),
    ([-1], "out of range"),
    ([[1, 2]], "1-D list"),
    ([0.5], "must be integers"),
])
def test_bad_codes_are_rejected(kept, message):
    with pytest.raises(IndexCodeError, match=message):
        check_index_code(kept, 10)
    with pytest.raises(IndexCodeError):
        encode_index(kept, 10, "bitmap")


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_damaged_bits_are_rejected(encoding):
    kept, n = [0, 5, 6, 40], 50
    bits = encode_index(kept, n, encoding)
    with pytest.raises(IndexCodeError, match="truncated|has 50 bits"):
        decode_index(Bits(bits.value >> 3, bits.length - 3), n, encoding)
    with pytest.raises(IndexCodeError, match="left over|has 50 bits"):
        decode_index(Bits(bits.value << 2, bits.length + 2), n, encoding)


def test_decoded_index_out_of_range_is_rejected():
    # absolute: count 1, index 7 of 6 K-groups (3-bit indices hold up to 7)
    with pytest.raises(IndexCodeError, match="out of range"):
        decode_index(Bits(0b001_111, 6), 6, "absolute")
    # delta: a gap that runs past the last K-group
    with pytest.raises(IndexCodeError, match="out of range"):
        decode_index(Bits(0b001_11_11_00, 9), 6, "delta2")
    with pytest.raises(IndexCodeError, match="claims 7 kept groups of 6"):
        decode_index(Bits(0b111, 3), 6, "delta3")


def test_unknown_encoding():
    with pytest.raises(ValueError, match="unknown index encoding 'huffman'"):
        encode_index([1], 4, "huffman")
