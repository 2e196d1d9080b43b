"""What the sparse-weight decoder RTL reads: widths, the k-table and the layer descriptor.

Part of the hardware/software contract (`mars.contract`): the RTL (`mars.hw.decoder`) builds
its ports from the layouts here and the software (`mars.sw.sparse`, the mapper) fills them
from the functions here.

Everything the decoder (`mars.hw.decoder`) needs besides the index code is computed here,
in software, once per layer, so that the per-cycle path of the RTL has no division and only
one multiplication (by the input row pitch, in a DSP block):

* `DecoderFormat` derives every memory depth and field width from the configuration.
* The **k-table** has one word per K-group ``kg``: the kernel row ``kh0`` and the position
  ``p0`` within it of its first K-row, and a ``wraps`` mask marking the lanes that start a
  new kernel row (see `ktable_words`).  The decoder expands the G lanes from it.
* The **descriptor** holds the layer's runtime parameters (shapes turned into address
  steps, buffer base, where the block's index code lies, ...; see `descriptor`).  Columns
  are in elements (``bx0``, ``step_x``, ``row_size``), rows in input rows (``by0``,
  ``step_y``, ``in_h``).

Address arithmetic, with HWC buffers (channel fastest), ``P = W*Cin`` (one input row),
``L = kw*Cin`` (one kernel row) and ``J = P - L``::

    k  = kh_i*L + p                    p = kw_i*Cin + cin, 0 <= p < L
    bx     = (ox*s - pad) * Cin        x origin of output pixel (oy, ox), elements
    by     = oy*s - pad                y origin, input rows
    x ok   <=> 0 <= bx + p < P                 (0 <= ix < W)
    y ok   <=> 0 <= by + kh_i < H              (0 <= iy < H)
    addr   = (act_base + (by + kh_i)*P + bx + p) mod act_buffer_words,  0 for padding

Lane g of K-group kg lies ``w`` kernel rows below the group's first K-row (``w`` = the
wraps at lanes 1..g), so ``kh_i = kh0 + w``, ``p = p0 + g - w*L`` and its address is
``(act_base + (by + kh0)*P + bx + p0) + g + w*J``.
The derivation and the widths are in docs/decoder.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from mars.config import MarsConfig
from mars.errors import MarsError
from mars.contract.layer import LayerGeometry

__all__ = ["DecoderLimitError", "DecoderFormat", "ktable_words", "ktable_fields",
           "descriptor", "descriptor_fields", "payload_fields",
           "descriptor_layout", "payload_layout", "error_layout", "index_write_layout",
           "ktable_write_layout", "ktable_layout"]


class DecoderLimitError(MarsError, ValueError):
    """A layer or descriptor that does not fit the decoder of this configuration."""


def _bits(count: int) -> int:
    """Bits of an unsigned index into `count` things (at least 1)."""
    return max(1, (count - 1).bit_length())


@dataclasses.dataclass(frozen=True)
class DecoderFormat:
    """Depths and widths of the decoder of `config`, all derived from it.

    Members
    -------
    addr_bits : int
        Activation-buffer address width, log2(act_buffer_words) (at least 1).
    max_kgroups : int
        K-table depth, ceil(act_buffer_words / G): a layer's K may not exceed
        ``max_k = max_kgroups * G`` (at least the buffer size, so any kernel window of an
        input map that fits the buffer fits the table).
    index_depth : int
        Index-memory depth, weight_sram_rows / G: one entry per row slot of the core's
        weight SRAM (a block's stored groups live there, one slot each).
    kgroup_bits, slot_bits : int
        Widths of a K-group index (an index-memory word) and of a row slot.
    value_bits : int
        Unsigned width of layer sizes and steps (addr_bits + 1: they reach the buffer size).
    pos_bits : int
        Unsigned width of the k-table's ``kh0`` and ``p0`` (both below ``max_k``).
    wrap_bits : int
        Width of the k-table's ``wraps`` mask: G - 1 (lanes 1 .. G-1), at least 1.
    offset_bits : int
        Signed width of the running window origins, columns in elements and rows in input
        rows (addr_bits + 3).
    """

    config: MarsConfig

    @property
    def lanes(self) -> int:
        """G: K-rows per group, addresses per payload."""
        return self.config.rows_per_step

    @property
    def addr_bits(self) -> int:
        return _bits(self.config.act_buffer_words)

    @property
    def max_kgroups(self) -> int:
        return -(-self.config.act_buffer_words // self.config.rows_per_step)

    @property
    def max_k(self) -> int:
        return self.max_kgroups * self.config.rows_per_step

    @property
    def index_depth(self) -> int:
        return self.config.weight_sram_rows // self.config.rows_per_step

    @property
    def kgroup_bits(self) -> int:
        return _bits(self.max_kgroups)

    @property
    def slot_bits(self) -> int:
        return _bits(self.index_depth)

    @property
    def value_bits(self) -> int:
        return self.addr_bits + 1

    @property
    def pos_bits(self) -> int:
        return _bits(self.max_k)

    @property
    def wrap_bits(self) -> int:
        return max(1, self.lanes - 1)

    @property
    def offset_bits(self) -> int:
        return self.addr_bits + 3

    @property
    def ktable_bits(self) -> int:
        """Width of a k-table word: ``p0``, ``kh0`` (pos_bits each), ``wraps`` (wrap_bits)."""
        return 2 * self.pos_bits + self.wrap_bits

    @property
    def storage_bits(self) -> int:
        """Bits of the decoder's two memories (index and k-table)."""
        return self.index_depth * self.kgroup_bits + self.max_kgroups * self.ktable_bits

    # -- layer checks ----------------------------------------------------------------------

    def _fits_unsigned(self, name: str, value: int, bits: int) -> None:
        if not 0 <= value < 1 << bits:
            raise DecoderLimitError(
                f"{name} = {value} does not fit the decoder's {bits}-bit unsigned field "
                f"(config {self.config.name}: act_buffer_words={self.config.act_buffer_words})")

    def _fits_signed(self, name: str, lo: int, hi: int) -> None:
        bits = self.offset_bits
        if not (-(1 << (bits - 1)) <= lo and hi < 1 << (bits - 1)):
            raise DecoderLimitError(
                f"{name} ranges over [{lo}, {hi}], beyond the decoder's {bits}-bit signed "
                f"offsets (config {self.config.name}: act_buffer_words="
                f"{self.config.act_buffer_words})")

    def check_layer(self, geometry: LayerGeometry) -> None:
        """Raise `DecoderLimitError` naming the limit if `geometry` does not fit."""
        g, cfg = geometry, self.config
        if g.in_size > cfg.act_buffer_words:
            raise DecoderLimitError(
                f"the input map ({g.in_h}x{g.in_w}x{g.cin} = {g.in_size} activations) does "
                f"not fit an activation buffer of {cfg.act_buffer_words} words")
        if g.k > self.max_k:
            raise DecoderLimitError(
                f"K = {g.k} exceeds the decoder's k-table ({self.max_kgroups} K-groups of "
                f"G={cfg.rows_per_step}, K <= {self.max_k})")
        fields = _descriptor_values(g, cfg)
        for name, bits, is_signed in descriptor_fields(cfg):
            if not is_signed and name in fields:
                self._fits_unsigned(name, fields[name], bits)
        p, kh = _lane_positions(g, cfg)
        p_max, kh_max = int(p.max()), int(kh.max())
        self._fits_unsigned("k-table p0", p_max, self.pos_bits)
        self._fits_unsigned("k-table kh0", kh_max, self.pos_bits)
        # Every running value of the lane arithmetic (docs/decoder.md) is a signed
        # offset_bits-bit register: columns in elements, rows in input rows.
        P, H = fields["row_size"], fields["in_h"]
        bx_lo, bx_hi = fields["bx0"], fields["bx0"] + (g.out_w - 1) * fields["step_x"]
        by_lo, by_hi = fields["by0"], fields["by0"] + (g.out_h - 1) * fields["step_y"]
        self._fits_signed("row_jump", fields["row_jump"], fields["row_jump"])
        self._fits_signed("the window column bx", bx_lo, bx_hi)
        self._fits_signed("the x position bx + p", bx_lo, bx_hi + p_max)
        self._fits_signed("the columns left P - bx - p", P - bx_hi - p_max, P - bx_lo)
        self._fits_signed("the window row by", by_lo, by_hi)
        self._fits_signed("the input row by + kh", by_lo, by_hi + kh_max)
        self._fits_signed("the rows left H - by - kh", H - by_hi - kh_max, H - by_lo)


def _lane_positions(geometry: LayerGeometry,
                    config: MarsConfig) -> tuple[np.ndarray, np.ndarray]:
    """Position ``p(k)`` in its kernel row and kernel row ``kh(k)`` of every lane of every
    K-group (k < ceil(K/G)*G, lanes past K included: they continue the same count)."""
    g, G = geometry, config.rows_per_step
    n = -(-g.k // G) * G
    k = np.arange(n, dtype=np.int64)
    row_len = g.kw * g.cin
    return k % row_len, k // row_len


def ktable_fields(config: MarsConfig) -> list[tuple[str, int]]:
    """Fields of a k-table word, least significant first: (name, bits)."""
    fmt = DecoderFormat(config)
    return [("p0", fmt.pos_bits), ("kh0", fmt.pos_bits), ("wraps", fmt.wrap_bits)]


def ktable_words(geometry: LayerGeometry, config: MarsConfig) -> list[int]:
    """The k-table of a layer, one word per K-group ``kg`` (fields `ktable_fields`):

    * ``p0``, ``kh0``: position in its kernel row and kernel row of K-row ``kg*G``;
    * ``wraps``: bit ``g-1`` set when lane g (K-row ``kg*G + g``, g = 1..G-1) starts a
      kernel row (``p = 0``), so lane g lies ``popcount(wraps[:g])`` kernel rows below
      lane 0.  Lanes past K continue the count (the decoder masks them).

    Raises
    ------
    DecoderLimitError
        If the layer does not fit the decoder of `config`.
    """
    fmt = DecoderFormat(config)
    fmt.check_layer(geometry)
    p, kh = _lane_positions(geometry, config)
    G = config.rows_per_step
    p, kh = p.reshape(-1, G), kh.reshape(-1, G)
    wraps = ((p[:, 1:] == 0) << np.arange(G - 1, dtype=np.int64)).sum(axis=1)
    return [int(p0) | int(kh0) << fmt.pos_bits | int(w) << 2 * fmt.pos_bits
            for p0, kh0, w in zip(p[:, 0], kh[:, 0], wraps)]


def descriptor_fields(config: MarsConfig) -> list[tuple[str, int, bool]]:
    """Fields of the decoder's descriptor in order (LSB first): (name, bits, signed)."""
    fmt = DecoderFormat(config)
    vb, ob = fmt.value_bits, fmt.offset_bits
    depth_bits = fmt.index_depth.bit_length()
    return [
        ("out_h", vb, False), ("out_w", vb, False),
        ("step_x", vb, False), ("step_y", vb, False),
        ("bx0", ob, True), ("by0", ob, True),
        ("row_size", vb, False), ("in_h", vb, False),
        ("row_len", vb, False), ("row_jump", ob, True),
        ("act_base", fmt.addr_bits, False),
        ("k_groups", fmt.max_kgroups.bit_length(), False),
        ("last_lanes", config.rows_per_step.bit_length(), False),
        ("ktable_base", fmt.kgroup_bits, False),
        ("index_start", fmt.slot_bits, False),
        ("count", depth_bits, False), ("steps", depth_bits, False),
        ("slot_base", fmt.slot_bits, False),
    ]


def payload_fields(config: MarsConfig) -> list[tuple[str, int, int]]:
    """Fields of one decoder output payload in order (LSB first): (name, bits, count);
    ``count`` > 1 is an array of that many elements (the G lane addresses)."""
    fmt = DecoderFormat(config)
    G = config.rows_per_step
    return [("slot", fmt.slot_bits, 1), ("kgroup", fmt.kgroup_bits, 1),
            ("addrs", fmt.addr_bits, G), ("pad", G, 1),
            ("first", 1, 1), ("last", 1, 1), ("walk_first", 1, 1), ("walk_last", 1, 1),
            ("filler", 1, 1)]


def _descriptor_values(geometry: LayerGeometry, config: MarsConfig) -> dict[str, int]:
    g, G = geometry, config.rows_per_step
    pitch = g.in_w * g.cin
    k_groups = -(-g.k // G)
    return {
        "out_h": g.out_h, "out_w": g.out_w,
        "step_x": g.stride * g.cin, "step_y": g.stride,
        "bx0": -g.pad * g.cin, "by0": -g.pad,
        "row_size": pitch, "in_h": g.in_h,
        "row_len": g.kw * g.cin, "row_jump": pitch - g.kw * g.cin,
        "k_groups": k_groups, "last_lanes": g.k - (k_groups - 1) * G,
    }


def descriptor(geometry: LayerGeometry, config: MarsConfig, *, count: int,
               steps: int | None = None, act_base: int = 0, ktable_base: int = 0,
               index_start: int = 0, slot_base: int = 0) -> dict[str, int]:
    """The decoder descriptor of one output block's walk over a layer.

    Parameters
    ----------
    geometry : LayerGeometry
        The layer.
    count : int
        Kept K-groups of the block (entries of its index code).
    steps : int, optional
        Payloads per output pixel, at least `count` (default: `count`).  Payloads past
        `count` are fillers (all lanes padding), so that the D decoders of a block set stay
        in step when their blocks keep different numbers of groups.
    act_base : int
        Buffer address of input element (0, 0, 0).
    ktable_base : int
        K-table word of the layer's K-group 0.
    index_start : int
        Index-memory word of the block's first kept K-group.
    slot_base : int
        Row slot emitted with the block's first stored group (then +1 per step).

    Returns
    -------
    dict
        Field name to integer, in `descriptor_fields` order.

    Raises
    ------
    DecoderLimitError
        If the layer or a field does not fit the decoder.
    """
    fmt = DecoderFormat(config)
    fmt.check_layer(geometry)
    values = _descriptor_values(geometry, config)
    steps = count if steps is None else steps
    if not 0 <= count <= values["k_groups"]:
        raise DecoderLimitError(f"count ({count}) must lie in [0, {values['k_groups']}] "
                                f"(the layer's K-groups)")
    if steps < count:
        raise DecoderLimitError(f"steps ({steps}) must be at least count ({count})")
    if index_start < 0 or index_start + count > fmt.index_depth:
        raise DecoderLimitError(
            f"index entries [{index_start}, {index_start + count}) exceed the index memory "
            f"({fmt.index_depth} words)")
    if slot_base < 0 or slot_base + steps > fmt.index_depth:
        raise DecoderLimitError(
            f"row slots [{slot_base}, {slot_base + steps}) exceed the weight SRAM "
            f"({fmt.index_depth} slots of G rows)")
    if ktable_base < 0 or ktable_base + values["k_groups"] > fmt.max_kgroups:
        raise DecoderLimitError(
            f"k-table words [{ktable_base}, {ktable_base + values['k_groups']}) exceed the "
            f"k-table ({fmt.max_kgroups} words)")
    if not 0 <= act_base < config.act_buffer_words:
        raise DecoderLimitError(f"act_base ({act_base}) must lie in "
                                f"[0, {config.act_buffer_words})")
    values.update(act_base=act_base, ktable_base=ktable_base, index_start=index_start,
                  count=count, steps=steps, slot_base=slot_base)
    return {name: values[name] for name, _, _ in descriptor_fields(config)}


# -- Amaranth layouts of the decoder's words -----------------------------------------------

def descriptor_layout(config: MarsConfig) -> data.StructLayout:
    """The runtime parameters of one walk (the fields of `descriptor`)."""
    return data.StructLayout({
        name: signed(bits) if is_signed else unsigned(bits)
        for name, bits, is_signed in descriptor_fields(config)})


def payload_layout(config: MarsConfig) -> data.StructLayout:
    """One output payload: row slot, K-group, G addresses, padding mask and markers."""
    fields = {}
    for name, bits, count in payload_fields(config):
        fields[name] = data.ArrayLayout(unsigned(bits), count) if count > 1 else unsigned(bits)
    return data.StructLayout(fields)


def ktable_layout(config: MarsConfig) -> data.StructLayout:
    """A k-table word: ``p0`` (position in the kernel row), ``kh0`` (kernel row) of the
    K-group's first K-row, ``wraps`` (the lanes that start a kernel row)."""
    return data.StructLayout({name: unsigned(bits) for name, bits in ktable_fields(config)})


def error_layout() -> data.StructLayout:
    """Sticky error flags of the last walk."""
    return data.StructLayout({"descriptor": 1, "index_range": 1, "index_order": 1})


def index_write_layout(config: MarsConfig) -> data.StructLayout:
    fmt = DecoderFormat(config)
    return data.StructLayout({"addr": unsigned(fmt.slot_bits),
                              "data": unsigned(fmt.kgroup_bits)})


def ktable_write_layout(config: MarsConfig) -> data.StructLayout:
    fmt = DecoderFormat(config)
    return data.StructLayout({"addr": unsigned(fmt.kgroup_bits),
                              "data": unsigned(fmt.ktable_bits)})
