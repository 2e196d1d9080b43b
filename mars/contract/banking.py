"""How activations and results lie in the top's block RAMs (docs/banking.md).

Part of the hardware/software contract (`mars.contract`): the top (`mars.hw.top`), the
gather and the writer build their memories and ports from `Banking`, and the software that
writes inputs and reads results (the host driver, `mars.sw.run`) packs and unpacks with the
same object.

* **Activation words.** The activation memory holds *words* of G activations (G =
  ``rows_per_step``, ``G * act_bits`` bits): element ``e`` (the HWC address the decoder
  computes) is field ``e % G`` of word ``e // G``.  Half (ping-pong bank) ``h`` is words
  ``h * half_words ..``.  A K-group whose G K-rows are one aligned run (a layer with a
  channel count that is a multiple of G) is one word: each word-line domain reads one word a
  step.  Other groups take one read per distinct word (the gather fetches them in turn).
* **Result words.** The result memory holds words of ``lanes`` raw accumulators (the
  writer's lanes per cycle): element ``e`` is field ``e % lanes`` of word ``e // lanes``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mars.config import MarsConfig
from mars.errors import MarsError

from .program import UnitFormat

__all__ = ["BankingError", "Banking"]


class BankingError(MarsError, ValueError):
    """A configuration whose activation memory cannot be banked (names the field)."""


def _log2(value: int) -> int:
    return value.bit_length() - 1


@dataclasses.dataclass(frozen=True)
class Banking:
    """Word layout of the activation and result memories of `config`.

    Members
    -------
    group : int
        G, activations per activation word (a power of two).
    word_bits : int
        Bits of an activation word, ``G * act_bits``.
    half_words : int
        Words of one half (ping-pong bank), ``act_buffer_words / G``.
    lanes : int
        Raw accumulators per result word: the writer's lanes (`UnitFormat.write_lanes`).
    result_depth : int
        Result-memory words, ``ceil(result_words / lanes)``.

    Raises
    ------
    BankingError
        If ``rows_per_step`` is not a power of two or exceeds ``act_buffer_words``.
    """

    config: MarsConfig

    def __post_init__(self) -> None:
        cfg, G = self.config, self.config.rows_per_step
        if G & (G - 1):
            raise BankingError(f"rows_per_step (G={G}) must be a power of two: activation "
                               f"words hold G activations and are addressed by shifts")
        if G > cfg.act_buffer_words:
            raise BankingError(f"act_buffer_words ({cfg.act_buffer_words}) must be at least "
                               f"rows_per_step (G={G})")

    @property
    def group(self) -> int:
        return self.config.rows_per_step

    @property
    def group_bits(self) -> int:
        """log2(G): element address bits that pick a field of a word."""
        return _log2(self.group)

    @property
    def word_bits(self) -> int:
        return self.group * self.config.act_bits

    @property
    def half_words(self) -> int:
        return self.config.act_buffer_words // self.group

    @property
    def regions(self) -> int:
        """Regions (ping-pong halves and, with ``act_regions`` > 2, shortcut regions) of
        ``half_words`` words each."""
        return self.config.act_regions

    @property
    def region_bits(self) -> int:
        """Width of a region number (the top bits of a word address)."""
        return max(1, (self.regions - 1).bit_length())

    @property
    def half_addr_bits(self) -> int:
        """Width of a word address inside one region."""
        return max(0, (self.half_words - 1).bit_length())

    @property
    def words(self) -> int:
        """Words of the activation memory (every region)."""
        return self.regions * self.half_words

    @property
    def word_addr_bits(self) -> int:
        """Width of a word address: the word in its region, the region on top."""
        return self.half_addr_bits + self.region_bits

    @property
    def lanes(self) -> int:
        return UnitFormat(self.config).write_lanes

    @property
    def lane_bits(self) -> int:
        return _log2(self.lanes)

    @property
    def result_depth(self) -> int:
        return -(-self.config.result_words // self.lanes)

    @property
    def result_addr_bits(self) -> int:
        return max(1, (self.result_depth - 1).bit_length())

    # -- software side: packing --------------------------------------------------------------

    def pack(self, values) -> list[int]:
        """Activation words holding `values` (elements 0, 1, ... of a half, HWC order).

        Parameters
        ----------
        values : sequence of int
            Activations in [0, 2^act_bits - 1]; the last word is zero-filled.

        Returns
        -------
        list of int
            ``ceil(len(values) / G)`` words of `word_bits` bits.
        """
        G, Ab = self.group, self.config.act_bits
        flat = np.asarray(values, dtype=np.int64).reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= 1 << Ab):
            raise ValueError(f"activations must lie in [0, {(1 << Ab) - 1}]")
        padded = np.zeros(-(-flat.size // G) * G, dtype=object)
        padded[:flat.size] = flat.tolist()
        fields = padded.reshape(-1, G)
        shifts = [Ab * g for g in range(G)]
        return [sum(int(v) << s for v, s in zip(row, shifts)) for row in fields]

    def unpack(self, words, count: int | None = None) -> list[int]:
        """The activations of `words` (the inverse of `pack`); the first `count` if given."""
        G, Ab = self.group, self.config.act_bits
        mask = (1 << Ab) - 1
        out = [(int(w) >> (Ab * g)) & mask for w in words for g in range(G)]
        return out if count is None else out[:count]

    def input_words(self, image) -> list[int]:
        """The words the host writes into half 0 (from word 0) for an input map (HWC).

        Raises
        ------
        ValueError
            If the map exceeds a half or holds values outside [0, 2^act_bits - 1].
        """
        values = np.asarray(image, dtype=np.int64).reshape(-1)
        if values.size > self.config.act_buffer_words:
            raise ValueError(f"the input ({values.size} activations) exceeds an activation "
                             f"buffer ({self.config.act_buffer_words} words)")
        return self.pack(values)
