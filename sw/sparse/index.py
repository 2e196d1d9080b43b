"""Index codes: which K-groups of one output block are kept, in several bit encodings.

The index code of a (layer, output block) is the increasing list of its kept K-groups
``kg`` in ``[0, n_kgroups)``.  This module encodes it as a bit string in each encoding we
measured (bench/sparse_index.py, docs/sparse-format.md) and decodes it back exactly:

``bitmap``
    ``n_kgroups`` bits, bit ``kg`` (in writing order) set iff group ``kg`` is kept.
``absolute``
    a count field, then each kept ``kg`` in ``ceil(log2(n_kgroups))`` bits.
``delta2``, ``delta3``, ``delta4`` (``delta<b>``)
    a count field, then for each kept group the gap (pruned groups skipped since the
    previous kept one) in ``b``-bit fields: the all-ones field ``E = 2**b - 1`` is an escape
    meaning "E more pruned groups, the gap continues", any other value ends the gap.  This
    is a run-length code of the pruned groups.
``gamma``
    a count field, then each gap + 1 in an Elias gamma code (``n - 1`` zeros, then the
    ``n``-bit value).

The count field is ``bit_length(n_kgroups)`` bits (it holds 0..n_kgroups).  Bits are
written most significant first; a `Bits` holds the string as an integer and a length.
The hardware uses a fixed-width absolute form instead (see `mars.contract.decoder`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np

from mars.errors import MarsError

__all__ = ["Bits", "ENCODINGS", "IndexCodeError", "check_index_code", "encode_index",
           "decode_index", "index_bits", "entropy_bits"]


class IndexCodeError(MarsError, ValueError):
    """An index code that does not describe a valid set of kept K-groups."""


@dataclasses.dataclass(frozen=True)
class Bits:
    """A bit string, most significant (first written) bit first: `length` bits of `value`."""

    value: int
    length: int

    def __post_init__(self) -> None:
        if self.length < 0 or not 0 <= self.value < 1 << self.length:
            raise ValueError(f"{self.value:#x} does not fit in {self.length} bits")

    def __str__(self) -> str:
        return format(self.value, f"0{self.length}b") if self.length else ""


class _Writer:
    def __init__(self) -> None:
        self.value = 0
        self.length = 0

    def put(self, field: int, width: int) -> None:
        assert 0 <= field < 1 << width, (field, width)
        self.value = (self.value << width) | field
        self.length += width

    def bits(self) -> Bits:
        return Bits(self.value, self.length)


class _Reader:
    def __init__(self, bits: Bits) -> None:
        self._bits = bits
        self._left = bits.length

    def get(self, width: int) -> int:
        if width > self._left:
            raise IndexCodeError(f"index code truncated: needed {width} more bits, "
                                 f"{self._left} left of {self._bits.length}")
        self._left -= width
        return (self._bits.value >> self._left) & ((1 << width) - 1)

    def finish(self) -> None:
        if self._left:
            raise IndexCodeError(f"index code has {self._left} bits left over after the "
                                 f"last kept group")


def _index_width(n_kgroups: int) -> int:
    """Bits of an absolute K-group index, at least 1."""
    return max(1, (n_kgroups - 1).bit_length())


def _count_width(n_kgroups: int) -> int:
    return n_kgroups.bit_length()


def check_index_code(kept: Sequence[int] | np.ndarray, n_kgroups: int) -> np.ndarray:
    """`kept` as an int64 array, checked to be strictly increasing in [0, n_kgroups).

    Raises
    ------
    IndexCodeError
        Naming the first offending entry.
    """
    if not isinstance(n_kgroups, (int, np.integer)) or n_kgroups < 1:
        raise IndexCodeError(f"n_kgroups must be a positive integer, not {n_kgroups!r}")
    array = np.asarray(kept)
    if array.ndim != 1:
        raise IndexCodeError(f"an index code is a 1-D list of K-groups, got shape {array.shape}")
    if array.size and array.dtype.kind not in "iu":
        raise IndexCodeError(f"K-group indices must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64)
    bad = np.flatnonzero((array < 0) | (array >= n_kgroups))
    if bad.size:
        i = int(bad[0])
        raise IndexCodeError(f"index entry {i} is K-group {array[i]}, out of range "
                             f"[0, {n_kgroups})")
    order = np.flatnonzero(np.diff(array) <= 0)
    if order.size:
        i = int(order[0]) + 1
        raise IndexCodeError(f"index entry {i} (K-group {array[i]}) does not follow entry "
                             f"{i - 1} (K-group {array[i - 1]}): codes must be strictly "
                             f"increasing")
    return array


# -- the encodings --------------------------------------------------------------------------

def _encode_bitmap(kept: np.ndarray, n_kgroups: int) -> Bits:
    mask = np.zeros(n_kgroups, dtype=bool)
    mask[kept] = True
    writer = _Writer()
    for bit in mask.tolist():
        writer.put(int(bit), 1)
    return writer.bits()


def _decode_bitmap(bits: Bits, n_kgroups: int) -> list[int]:
    if bits.length != n_kgroups:
        raise IndexCodeError(f"a bitmap index code of {n_kgroups} K-groups has {n_kgroups} "
                             f"bits, got {bits.length}")
    return [kg for kg in range(n_kgroups) if (bits.value >> (n_kgroups - 1 - kg)) & 1]


def _encode_absolute(kept: np.ndarray, n_kgroups: int) -> Bits:
    writer = _Writer()
    writer.put(len(kept), _count_width(n_kgroups))
    for kg in kept.tolist():
        writer.put(kg, _index_width(n_kgroups))
    return writer.bits()


def _read_count(reader: _Reader, n_kgroups: int) -> int:
    count = reader.get(_count_width(n_kgroups))
    if count > n_kgroups:
        raise IndexCodeError(f"index code claims {count} kept groups of {n_kgroups}")
    return count


def _decode_absolute(bits: Bits, n_kgroups: int) -> list[int]:
    reader = _Reader(bits)
    count = _read_count(reader, n_kgroups)
    kept = [reader.get(_index_width(n_kgroups)) for _ in range(count)]
    reader.finish()
    return kept


def _gaps(kept: np.ndarray) -> list[int]:
    """Pruned groups before each kept one (since the previous kept one)."""
    return (np.diff(kept, prepend=-1) - 1).tolist()


def _encode_delta(width: int) -> Callable[[np.ndarray, int], Bits]:
    escape = (1 << width) - 1

    def encode(kept: np.ndarray, n_kgroups: int) -> Bits:
        writer = _Writer()
        writer.put(len(kept), _count_width(n_kgroups))
        for gap in _gaps(kept):
            while gap >= escape:
                writer.put(escape, width)
                gap -= escape
            writer.put(gap, width)
        return writer.bits()
    return encode


def _decode_delta(width: int) -> Callable[[Bits, int], list[int]]:
    escape = (1 << width) - 1

    def decode(bits: Bits, n_kgroups: int) -> list[int]:
        reader = _Reader(bits)
        kept, previous = [], -1
        for _ in range(_read_count(reader, n_kgroups)):
            gap = 0
            while (field := reader.get(width)) == escape:
                gap += escape
            previous += gap + field + 1
            kept.append(previous)
        reader.finish()
        return kept
    return decode


def _encode_gamma(kept: np.ndarray, n_kgroups: int) -> Bits:
    writer = _Writer()
    writer.put(len(kept), _count_width(n_kgroups))
    for gap in _gaps(kept):
        value = gap + 1
        length = value.bit_length()
        writer.put(0, length - 1)
        writer.put(value, length)
    return writer.bits()


def _decode_gamma(bits: Bits, n_kgroups: int) -> list[int]:
    reader = _Reader(bits)
    kept, previous = [], -1
    for _ in range(_read_count(reader, n_kgroups)):
        zeros = 0
        while reader.get(1) == 0:
            zeros += 1
            if zeros > n_kgroups.bit_length():
                raise IndexCodeError("gamma code has a run of zeros longer than any gap")
        value = (1 << zeros) | reader.get(zeros)
        previous += value
        kept.append(previous)
    reader.finish()
    return kept


@dataclasses.dataclass(frozen=True)
class _Encoding:
    encode: Callable[[np.ndarray, int], Bits]
    decode: Callable[[Bits, int], list[int]]


#: Every index encoding by name.
ENCODINGS: dict[str, _Encoding] = {
    "bitmap": _Encoding(_encode_bitmap, _decode_bitmap),
    "absolute": _Encoding(_encode_absolute, _decode_absolute),
    **{f"delta{b}": _Encoding(_encode_delta(b), _decode_delta(b)) for b in (2, 3, 4)},
    "gamma": _Encoding(_encode_gamma, _decode_gamma),
}


def _encoding(name: str) -> _Encoding:
    try:
        return ENCODINGS[name]
    except KeyError:
        raise ValueError(f"unknown index encoding {name!r} "
                         f"(encodings: {', '.join(ENCODINGS)})") from None


def encode_index(kept: Sequence[int] | np.ndarray, n_kgroups: int, encoding: str) -> Bits:
    """The bit string of the index code `kept` (increasing K-groups of n_kgroups)."""
    scheme = _encoding(encoding)
    return scheme.encode(check_index_code(kept, n_kgroups), int(n_kgroups))


def decode_index(bits: Bits, n_kgroups: int, encoding: str) -> np.ndarray:
    """Inverse of `encode_index`; `IndexCodeError` if `bits` is not a valid code."""
    scheme = _encoding(encoding)
    if not isinstance(n_kgroups, (int, np.integer)) or n_kgroups < 1:
        raise IndexCodeError(f"n_kgroups must be a positive integer, not {n_kgroups!r}")
    kept = scheme.decode(bits, int(n_kgroups))
    return check_index_code(np.array(kept, dtype=np.int64), n_kgroups)


def index_bits(kept: Sequence[int] | np.ndarray, n_kgroups: int, encoding: str) -> int:
    """Length in bits of `kept` in `encoding`."""
    return encode_index(kept, n_kgroups, encoding).length


def entropy_bits(n_kept: int, n_kgroups: int) -> float:
    """log2 of the number of possible codes with `n_kept` of `n_kgroups` kept: the fewest
    bits any encoding needs on average over uniformly random masks of that size."""
    return math.log2(math.comb(n_kgroups, n_kept))
