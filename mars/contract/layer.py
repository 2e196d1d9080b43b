"""Geometry of one conv or linear layer as the accelerator sees it: a matrix product.

A layer is ``acc[o] = sum_k W[o, k] * A[k]`` with K = kh*kw*Cin rows, flattened with Cin
fastest, then kw, then kh, and N = Cout columns.  A linear layer is a 1x1 convolution of a
1x1 image with Cin = in_features.  Activations live in the buffers in HWC order (channel
fastest): element (y, x, c) of an H x W x C map is at ``(y*W + x)*C + c``.

Part of the hardware/software contract: the decoder format (`mars.contract.decoder`), the
sparse format, the decoder's golden model, the trainer's exporter and the network golden
model all read a layer through this one class, so they cannot disagree on an index.
"""

from __future__ import annotations

import dataclasses
import enum

import numpy as np

__all__ = ["LayerKind", "LayerGeometry"]


class LayerKind(enum.Enum):
    CONV = "conv"
    LINEAR = "linear"


@dataclasses.dataclass(frozen=True)
class LayerGeometry:
    """Shapes of one layer; validated at construction (`ValueError` naming the field)."""

    kind: LayerKind
    in_h: int
    in_w: int
    cin: int
    cout: int
    kh: int = 1
    kw: int = 1
    stride: int = 1
    pad: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.kind, LayerKind):
            try:
                object.__setattr__(self, "kind", LayerKind(self.kind))
            except ValueError:
                raise ValueError(f"kind must be 'conv' or 'linear', not {self.kind!r}") from None
        for field in ("in_h", "in_w", "cin", "cout", "kh", "kw", "stride"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{field} must be a positive integer, not {value!r}")
        if not isinstance(self.pad, int) or isinstance(self.pad, bool) or self.pad < 0:
            raise ValueError(f"pad must be a non-negative integer, not {self.pad!r}")
        if self.kind is LayerKind.LINEAR and (self.in_h, self.in_w, self.kh, self.kw,
                                              self.stride, self.pad) != (1, 1, 1, 1, 1, 0):
            raise ValueError("a linear layer has in_h = in_w = kh = kw = stride = 1, pad = 0")
        if self.pad >= self.kh or self.pad >= self.kw:
            raise ValueError(f"pad ({self.pad}) must be smaller than the kernel "
                             f"({self.kh}x{self.kw})")
        if self.out_h < 1 or self.out_w < 1:
            raise ValueError(f"a {self.kh}x{self.kw} kernel with pad {self.pad} does not fit "
                             f"a {self.in_h}x{self.in_w} input")

    @classmethod
    def linear(cls, in_features: int, out_features: int) -> LayerGeometry:
        return cls(LayerKind.LINEAR, 1, 1, in_features, out_features)

    @property
    def k(self) -> int:
        """Rows of the matrix product, kh*kw*Cin."""
        return self.kh * self.kw * self.cin

    @property
    def out_h(self) -> int:
        return (self.in_h + 2 * self.pad - self.kh) // self.stride + 1

    @property
    def out_w(self) -> int:
        return (self.in_w + 2 * self.pad - self.kw) // self.stride + 1

    @property
    def in_size(self) -> int:
        """Activations in the input map, H*W*Cin."""
        return self.in_h * self.in_w * self.cin

    @property
    def out_size(self) -> int:
        """Activations in the output map, out_h*out_w*Cout."""
        return self.out_h * self.out_w * self.cout

    def k_coords(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(kernel row, kernel column, input channel) of flattened K indices."""
        k = np.asarray(k)
        return k // (self.kw * self.cin), (k // self.cin) % self.kw, k % self.cin

    def im2col(self, oy: int, ox: int, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Buffer offsets (HWC) of the inputs that K rows `k` multiply at output pixel
        (oy, ox), and whether each is padding (then the offset is 0 and the value 0)."""
        r, c, ch = self.k_coords(k)
        iy = oy * self.stride - self.pad + r
        ix = ox * self.stride - self.pad + c
        padding = (iy < 0) | (iy >= self.in_h) | (ix < 0) | (ix >= self.in_w)
        offset = np.where(padding, 0, (iy * self.in_w + ix) * self.cin + ch)
        return offset, padding

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["kind"] = self.kind.value
        return d
