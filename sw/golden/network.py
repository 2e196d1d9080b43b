"""Network-level golden model: the integer network (its graph) and its inference, in NumPy.

This is the reference the PyTorch quantised model, the accelerator's RTL and its
performance model are checked against: no PyTorch, no training code, no hardware.  The
model package that stores such a network is read and written by `mars.sw.package`.

Arithmetic (docs/model-package.md, "The integer inference", gives every detail):

- activations are HWC maps of unsigned Ab-bit integers;
- a conv/linear layer is ``acc[o] = sum_k W[o, k] * A[k] + bias[o]`` over the im2col rows
  of `mars.sw.layer.LayerGeometry` (K = kh*kw*Cin, Cin fastest, zero padding);
- ``act`` outputs are requantised: ``clamp((acc*M[o] + 2^(S[o]-1)) >> S[o], 0, 2^Ab - 1)``
  (int64 product, arithmetic shift = floor); ``acc`` outputs stay raw accumulators;
- max pooling acts on requantised values; flatten reads an HWC map in memory order;
- an add requantises both inputs to its output scale, adds and clamps:
  ``clamp(rescale(a, Ma, Sa) + rescale(b, Mb, Sb), 0, 2^Ab - 1)``.

The per-layer matrix product is a parameter of `run_network` (`exact_product` by default)
so that models of the macro (e.g. a saturating readout through
`mars.sw.golden.macro_step`) can replace it without touching the rest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from mars.config import MarsConfig
from mars.errors import MarsError
from mars.sw.layer import LayerGeometry, LayerKind

__all__ = [
    "LayerNode", "PoolNode", "FlattenNode", "AddNode", "Node", "IntegerNetwork", "Product",
    "exact_product", "requantise", "rescale", "im2col", "max_pool", "quantise_image",
    "run_network", "shift_range", "AccumulatorOverflow",
]


class AccumulatorOverflow(MarsError, OverflowError):
    """A layer's accumulator leaves the configuration's ``acc_bits`` range (the network's
    weights or biases are too large for it); the message names the layer."""

# -- the network -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class LayerNode:
    """A conv or linear layer: ``W`` (N, K) and ``bias`` (N,) as int64; ``output`` is
    ``"act"`` (requantised with per-channel ``multiplier``/``shift``) or ``"acc"``.
    ``scales`` (N, Wb) int64: the column scale factor codes of a binary/ternary readout
    (`mars.sw.golden.macro`), None for the other readouts."""

    name: str
    inputs: tuple[str, ...]
    geometry: LayerGeometry
    weight: np.ndarray
    bias: np.ndarray
    output: str
    multiplier: np.ndarray | None = None
    shift: np.ndarray | None = None
    scales: np.ndarray | None = None

    @property
    def op(self) -> str:
        return self.geometry.kind.value


@dataclasses.dataclass(frozen=True, eq=False)
class PoolNode:
    """Max pooling of an (H, W, C) map: square window `kernel`, `stride`, zero `pad`."""

    name: str
    inputs: tuple[str, ...]
    in_shape: tuple[int, int, int]
    kernel: int
    stride: int
    pad: int
    op = "maxpool"

    @property
    def out_shape(self) -> tuple[int, int, int]:
        h, w, c = self.in_shape
        k, s, p = self.kernel, self.stride, self.pad
        return (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1, c


@dataclasses.dataclass(frozen=True, eq=False)
class FlattenNode:
    """An (H, W, C) map read as a vector of H*W*C in memory (HWC) order."""

    name: str
    inputs: tuple[str, ...]
    in_shape: tuple[int, int, int]
    op = "flatten"


@dataclasses.dataclass(frozen=True, eq=False)
class AddNode:
    """Residual add: ``multiplier``/``shift`` have shape (2, C), one row per input."""

    name: str
    inputs: tuple[str, ...]
    multiplier: np.ndarray
    shift: np.ndarray
    op = "add"


Node = LayerNode | PoolNode | FlattenNode | AddNode


@dataclasses.dataclass(frozen=True, eq=False)
class IntegerNetwork:
    """An integer network: nodes in execution order; ``"input"`` names the image."""

    config: MarsConfig
    input_shape: tuple[int, int, int]     # (H, W, C)
    nodes: tuple[Node, ...]
    output: str

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def layers(self) -> list[LayerNode]:
        return [n for n in self.nodes if isinstance(n, LayerNode)]


# -- integer operations ----------------------------------------------------------------------

def shift_range(config: MarsConfig) -> tuple[int, int]:
    """Inclusive range of the requantisation shift S: 1 .. acc_bits + requant_mult_bits - 1.

    With S >= 1 the rounding constant 2^(S-1) is an integer; beyond the upper end every
    accumulator would requantise to 0 (|acc*M| < 2^(S-1))."""
    return 1, config.acc_bits + config.requant_mult_bits - 1


def rescale(values: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``(v*M + 2^(S-1)) >> S`` in int64 (arithmetic shift: floor), broadcast on the last
    axis (channels).  Rounds half up."""
    values = np.asarray(values, dtype=np.int64)
    multiplier = np.asarray(multiplier, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    return (values * multiplier + (np.int64(1) << (shift - 1))) >> shift


def requantise(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray,
               act_bits: int) -> np.ndarray:
    """``clamp((acc*M + 2^(S-1)) >> S, 0, 2^Ab - 1)``; the clamp at 0 is the ReLU."""
    return np.clip(rescale(acc, multiplier, shift), 0, (1 << act_bits) - 1)


def quantise_image(pixels: np.ndarray, pixel_max: int, act_bits: int) -> np.ndarray:
    """First-layer input: raw pixels in [0, pixel_max] to Ab-bit unsigned integers,
    ``q = floor(p * (2^Ab - 1) / pixel_max + 1/2)`` computed exactly in integers."""
    pixels = np.asarray(pixels)
    if pixels.dtype.kind not in "iu":
        raise ValueError(f"pixels must be integers, got dtype {pixels.dtype}")
    pixels = pixels.astype(np.int64)
    if pixels.size and (pixels.min() < 0 or pixels.max() > pixel_max):
        raise ValueError(f"pixels must lie in [0, {pixel_max}]")
    qmax = (1 << act_bits) - 1
    return (2 * pixels * qmax + pixel_max) // (2 * pixel_max)


def im2col(x: np.ndarray, geometry: LayerGeometry) -> np.ndarray:
    """Patches of HWC maps ``x`` (B, H, W, Cin): shape (B, out_h, out_w, K), K ordered
    (kernel row, kernel column, channel) with the channel fastest; padding reads 0."""
    g = geometry
    b = x.shape[0]
    if x.shape[1:] != (g.in_h, g.in_w, g.cin):
        raise ValueError(f"input map {x.shape[1:]} does not match the layer's "
                         f"{(g.in_h, g.in_w, g.cin)}")
    if g.kind is LayerKind.LINEAR:
        return x.reshape(b, 1, 1, g.cin)
    padded = np.zeros((b, g.in_h + 2 * g.pad, g.in_w + 2 * g.pad, g.cin), dtype=x.dtype)
    padded[:, g.pad:g.pad + g.in_h, g.pad:g.pad + g.in_w] = x
    cols = np.empty((b, g.out_h, g.out_w, g.kh, g.kw, g.cin), dtype=x.dtype)
    span_h = (g.out_h - 1) * g.stride + 1
    span_w = (g.out_w - 1) * g.stride + 1
    for r in range(g.kh):
        for c in range(g.kw):
            cols[:, :, :, r, c] = padded[:, r:r + span_h:g.stride, c:c + span_w:g.stride]
    return cols.reshape(b, g.out_h, g.out_w, g.k)


def max_pool(x: np.ndarray, kernel: int, stride: int, pad: int) -> np.ndarray:
    """Max pooling of HWC maps (B, H, W, C).  Inputs are unsigned, so padding with 0 is
    the same as ignoring the padded positions (every window holds a real element)."""
    b, h, w, c = x.shape
    oh, ow = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
    padded = np.zeros((b, h + 2 * pad, w + 2 * pad, c), dtype=x.dtype)
    padded[:, pad:pad + h, pad:pad + w] = x
    out = None
    for r in range(kernel):
        for s in range(kernel):
            window = padded[:, r:r + (oh - 1) * stride + 1:stride,
                            s:s + (ow - 1) * stride + 1:stride]
            out = window.copy() if out is None else np.maximum(out, window)
    return out


#: ``product(patches, weight, layer, config)``: patches (..., K) and W (N, K) as int64 ->
#: (..., N) int64 without bias.  Replace it to model the macro (e.g. a saturating ADC).
Product = Callable[[np.ndarray, np.ndarray, LayerNode, MarsConfig], np.ndarray]


def exact_product(patches: np.ndarray, weight: np.ndarray, layer: LayerNode,
                  config: MarsConfig) -> np.ndarray:
    """The exact integer matrix product ``patches @ W.T``.

    Computed through float64 BLAS when every partial sum is below 2^53 in magnitude (then
    each product and sum is exact), else in int64."""
    bound = int(np.abs(weight).sum(axis=1).max(initial=0)) * int(np.abs(patches).max(initial=0))
    if bound < 2 ** 53:
        return np.rint(patches.astype(np.float64) @ weight.T.astype(np.float64)).astype(
            np.int64)
    return patches.astype(np.int64) @ weight.T.astype(np.int64)


def _check_acc(layer: LayerNode, acc: np.ndarray, config: MarsConfig) -> None:
    lo, hi = -(1 << (config.acc_bits - 1)), (1 << (config.acc_bits - 1)) - 1
    if acc.size and (acc.min() < lo or acc.max() > hi):
        raise AccumulatorOverflow(f"layer {layer.name!r}: an accumulator leaves the "
                                  f"{config.acc_bits}-bit range (acc_bits)")


def run_network(network: IntegerNetwork, inputs: np.ndarray, *,
                product: Product = exact_product, batch: int = 256,
                keep: bool = False) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
    """Integer inference: Ab-bit images (B, H, W, C) -> int64 logits (B, classes).

    With ``keep=True`` also returns every node's output (B, H, W, C) by name, so that a
    model of the hardware can be compared layer by layer.  `batch` bounds the memory used
    by im2col; the results do not depend on it.
    """
    config = network.config
    x = np.asarray(inputs)
    if x.dtype.kind not in "iu":
        raise ValueError(f"inputs must be integers (quantised images), got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[1:] != network.input_shape:
        raise ValueError(f"inputs must have shape (B, {', '.join(map(str, network.input_shape))})"
                         f" (HWC), got {x.shape}")
    x = x.astype(np.int64)
    if x.size and (x.min() < 0 or x.max() > config.act_max):
        raise ValueError(f"inputs must lie in [0, {config.act_max}] (Ab = {config.act_bits})")
    logits, kept = [], {}
    for start in range(0, max(len(x), 1), batch):
        values = {"input": x[start:start + batch]}
        for node in network.nodes:
            values[node.name] = _run_node(node, values, config, product)
        out = values[network.output]
        logits.append(out.reshape(out.shape[0], -1))
        if keep:
            for name, value in values.items():
                kept.setdefault(name, []).append(value)
    result = np.concatenate(logits)
    if keep:
        return result, {name: np.concatenate(parts) for name, parts in kept.items()}
    return result


def _run_node(node: Node, values: dict[str, np.ndarray], config: MarsConfig,
              product: Product) -> np.ndarray:
    if isinstance(node, LayerNode):
        x = values[node.inputs[0]]
        g = node.geometry
        patches = im2col(x.reshape(x.shape[0], g.in_h, g.in_w, g.cin), g)
        acc = product(patches, node.weight, node, config) + node.bias
        _check_acc(node, acc, config)
        if node.output == "acc":
            return acc
        return requantise(acc, node.multiplier, node.shift, config.act_bits)
    if isinstance(node, PoolNode):
        return max_pool(values[node.inputs[0]], node.kernel, node.stride, node.pad)
    if isinstance(node, FlattenNode):
        x = values[node.inputs[0]]
        return x.reshape(x.shape[0], 1, 1, -1)
    if isinstance(node, AddNode):
        a, b = (values[name] for name in node.inputs)
        total = rescale(a, node.multiplier[0], node.shift[0]) + \
            rescale(b, node.multiplier[1], node.shift[1])
        return np.clip(total, 0, config.act_max)
    raise TypeError(f"unknown node {node!r}")
