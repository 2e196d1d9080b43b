"""Network-level golden model: integer inference of a model package, in NumPy alone.

This is the reference the PyTorch quantised model, the accelerator's RTL and its
performance model are checked against.  It reads everything from the package folder
(docs/model-package.md): no PyTorch, no training code.

Arithmetic (BRIEF.md, "The arithmetic"; docs/model-package.md gives every detail):

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
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mars.errors import MarsError
from mars.config import ConfigError, MarsConfig
from mars.sw.layer import LayerGeometry, LayerKind

__all__ = [
    "PACKAGE_FORMAT", "PACKAGE_VERSION", "PackageError", "LayerNode", "PoolNode", "FlattenNode",
    "AddNode", "IntegerNetwork", "ModelPackage", "Product", "exact_product", "requantise",
    "rescale", "im2col", "max_pool", "quantise_image", "run_network", "load_package",
    "shift_range", "weight_dtype", "acc_dtype", "act_dtype",
]

PACKAGE_FORMAT = "mars-model-package"
#: Bumped whenever the manifest or a file of the package changes meaning.
PACKAGE_VERSION = 1


class PackageError(MarsError, ValueError):
    """A model package that is missing, malformed or inconsistent; the message names the
    file or node."""


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
        raise OverflowError(f"layer {layer.name!r}: an accumulator leaves the "
                            f"{config.acc_bits}-bit range")


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


# -- reading a package -----------------------------------------------------------------------

def weight_dtype(weight_bits: int) -> str:
    """NumPy dtype of weight codes in a package: int8 up to 8 bits, else int16."""
    return "|i1" if weight_bits <= 8 else "<i2"


def acc_dtype(acc_bits: int) -> str:
    """NumPy dtype of biases and logits: int32 up to 32-bit accumulators, else int64."""
    return "<i4" if acc_bits <= 32 else "<i8"


def act_dtype(act_bits: int) -> str:
    """NumPy dtype of activations (test inputs): uint8 up to 8 bits, else uint16."""
    return "|u1" if act_bits <= 8 else "<u2"


@dataclasses.dataclass(frozen=True, eq=False)
class ModelPackage:
    """A model package read from its folder: the manifest, the network and the test
    vectors (Ab-bit HWC inputs, labels and the expected int32 logits)."""

    path: Path
    manifest: dict[str, Any]
    network: IntegerNetwork
    test_inputs: np.ndarray
    test_labels: np.ndarray
    test_logits: np.ndarray

    @property
    def accuracy(self) -> float:
        """The integer model's test accuracy the package reports (fraction)."""
        return float(self.manifest["accuracy"]["integer"])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Reader:
    def __init__(self, root: Path) -> None:
        self.root = root

    def array(self, ref: Any, where: str, *, dtype: str | None = None,
              shape: tuple[int, ...] | None = None) -> np.ndarray:
        import io

        if not isinstance(ref, dict) or not {"file", "dtype", "shape", "sha256"} <= set(ref):
            raise PackageError(f"{where}: expected a tensor reference with file, dtype, shape "
                               f"and sha256, got {ref!r}")
        rel = ref["file"]
        if not isinstance(rel, str) or rel.startswith("/") or ".." in Path(rel).parts:
            raise PackageError(f"{where}: bad file name {rel!r}")
        path = self.root / rel
        try:
            data = path.read_bytes()
        except OSError:
            raise PackageError(f"{where}: file {rel!r} is missing from the package") from None
        if _sha256(data) != ref["sha256"]:
            raise PackageError(f"{where}: file {rel!r} does not match its sha256 in the "
                               f"manifest (damaged or edited)")
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as error:
            raise PackageError(f"{where}: file {rel!r} is not a .npy array: {error}") from None
        if array.dtype != np.dtype(ref["dtype"]) or list(array.shape) != list(ref["shape"]):
            raise PackageError(f"{where}: file {rel!r} holds {array.dtype} {array.shape}, the "
                               f"manifest says {ref['dtype']} {tuple(ref['shape'])}")
        if dtype is not None and array.dtype != np.dtype(dtype):
            raise PackageError(f"{where}: file {rel!r} must be {dtype}, not {array.dtype}")
        if shape is not None and array.shape != shape:
            raise PackageError(f"{where}: file {rel!r} must have shape {shape}, not "
                               f"{array.shape}")
        return array


def _check_range(where: str, array: np.ndarray, lo: int, hi: int) -> None:
    if array.size and (array.min() < lo or array.max() > hi):
        raise PackageError(f"{where}: values must lie in [{lo}, {hi}], found "
                           f"[{array.min()}, {array.max()}]")


def _requant_arrays(reader: _Reader, entry: dict, where: str, shape: tuple[int, ...],
                    config: MarsConfig) -> tuple[np.ndarray, np.ndarray]:
    multiplier = reader.array(entry.get("multiplier"), f"{where} multiplier", dtype="<u4",
                              shape=shape).astype(np.int64)
    shift = reader.array(entry.get("shift"), f"{where} shift", dtype="|u1",
                         shape=shape).astype(np.int64)
    _check_range(f"{where} multiplier", multiplier, 0, (1 << config.requant_mult_bits) - 1)
    _check_range(f"{where} shift", shift, *shift_range(config))
    return multiplier, shift


def _check_sparse(entry: Any, reader: _Reader, layer: LayerNode, config: MarsConfig) -> None:
    """The sparse-format files of a layer agree with its dense weights: the group map is
    the weights' zero groups and the packed weight image unpacks to exactly ``W``."""
    from mars.sw.sparse import ImageError, MemoryImage, groups_of, unpack_layer

    where = f"node {layer.name!r} sparse"
    if not isinstance(entry, dict):
        raise PackageError(f"{where}: expected an object, got {entry!r}")
    expected = groups_of(layer.weight, config).kept
    kept = reader.array(entry.get("kept"), f"{where} kept", dtype="|b1", shape=expected.shape)
    if not np.array_equal(kept, expected):
        raise PackageError(f"{where}: the group map disagrees with the weights' zero groups")
    refs = [entry.get("weights_image"), entry.get("ktable_image"),
            *(entry.get("index_images") or [])]
    texts = []
    for ref in refs:
        if not isinstance(ref, dict) or not isinstance(ref.get("file"), str):
            raise PackageError(f"{where}: bad image reference {ref!r}")
        try:
            data = (reader.root / ref["file"]).read_bytes()
        except OSError:
            raise PackageError(f"{where}: file {ref['file']!r} is missing") from None
        if _sha256(data) != ref.get("sha256"):
            raise PackageError(f"{where}: file {ref['file']!r} does not match its sha256")
        texts.append(data.decode("ascii", errors="replace"))
    try:
        image = MemoryImage.from_hex(texts[0], config, "weights", source=refs[0]["file"])
        codes = [np.flatnonzero(row) for row in kept]
        weights = unpack_layer(image.words, codes, layer.geometry, config)
    except (ImageError, ValueError) as error:
        raise PackageError(f"{where}: {error}") from None
    if not np.array_equal(weights, layer.weight):
        raise PackageError(f"{where}: the packed weight image does not unpack to the weights")


def _shape3(value: Any, where: str) -> tuple[int, int, int]:
    if not (isinstance(value, list) and len(value) == 3
            and all(isinstance(v, int) and v > 0 for v in value)):
        raise PackageError(f"{where}: expected [H, W, C] of positive integers, got {value!r}")
    return tuple(value)


def _parse_node(entry: Any, reader: _Reader, config: MarsConfig,
                shapes: dict[str, tuple[int, int, int]]) -> Node:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise PackageError(f"manifest: a node must be an object with a name, got {entry!r}")
    name, op = entry["name"], entry.get("op")
    where = f"node {name!r}"
    if name in shapes:
        raise PackageError(f"{where}: the name is used twice")
    inputs = entry.get("inputs")
    if not isinstance(inputs, list) or not inputs or any(i not in shapes for i in inputs):
        raise PackageError(f"{where}: inputs {inputs!r} must name earlier nodes or 'input'")
    inputs = tuple(inputs)
    in_shape = shapes[inputs[0]]
    if op in ("conv", "linear"):
        try:
            geometry = LayerGeometry(**entry["geometry"])
        except (KeyError, TypeError, ValueError) as error:
            raise PackageError(f"{where}: bad geometry: {error}") from None
        if geometry.kind.value != op:
            raise PackageError(f"{where}: geometry kind {geometry.kind.value!r} is not {op!r}")
        expected_in = (geometry.in_h, geometry.in_w, geometry.cin) if op == "conv" \
            else (1, 1, geometry.cin)
        if in_shape != expected_in:
            raise PackageError(f"{where}: input {inputs[0]!r} is {in_shape}, the geometry "
                               f"expects {expected_in}")
        n, k = geometry.cout, geometry.k
        weight = reader.array(entry.get("weight"), f"{where} weight",
                              dtype=weight_dtype(config.weight_bits),
                              shape=(n, k)).astype(np.int64)
        _check_range(f"{where} weight", weight, config.weight_min, config.weight_max)
        bias = reader.array(entry.get("bias"), f"{where} bias", dtype=acc_dtype(config.acc_bits),
                            shape=(n,)).astype(np.int64)
        output = entry.get("output")
        if output not in ("act", "acc"):
            raise PackageError(f"{where}: output must be 'act' or 'acc', not {output!r}")
        multiplier = shift = None
        if output == "act":
            multiplier, shift = _requant_arrays(reader, entry, where, (n,), config)
        scales = None
        if config.scaled_readout:
            # column scale factors of the binary/ternary readout (docs/model-package.md)
            scales = reader.array(entry.get("scales"), f"{where} scales", dtype="<i4",
                                  shape=(n, config.weight_bits)).astype(np.int64)
            _check_range(f"{where} scales", scales, -(1 << (config.scale_bits - 1)),
                         (1 << (config.scale_bits - 1)) - 1)
        shapes[name] = (geometry.out_h, geometry.out_w, n)
        return LayerNode(name, inputs, geometry, weight, bias, output, multiplier, shift,
                         scales)
    if op == "maxpool":
        try:
            kernel, stride, pad = (int(entry[key]) for key in ("kernel", "stride", "pad"))
        except (KeyError, TypeError, ValueError):
            raise PackageError(f"{where}: maxpool needs integer kernel, stride, pad") from None
        if kernel < 1 or stride < 1 or not 0 <= 2 * pad <= kernel:
            raise PackageError(f"{where}: bad window kernel={kernel} stride={stride} pad={pad}")
        node = PoolNode(name, inputs, in_shape, kernel, stride, pad)
        if min(node.out_shape) < 1:
            raise PackageError(f"{where}: the window does not fit the {in_shape} input")
        shapes[name] = node.out_shape
        return node
    if op == "flatten":
        shapes[name] = (1, 1, in_shape[0] * in_shape[1] * in_shape[2])
        return FlattenNode(name, inputs, in_shape)
    if op == "add":
        if len(inputs) != 2 or shapes[inputs[1]] != in_shape:
            raise PackageError(f"{where}: an add takes two inputs of one shape")
        multiplier, shift = _requant_arrays(reader, entry, where, (2, in_shape[2]), config)
        shapes[name] = in_shape
        return AddNode(name, inputs, multiplier, shift)
    raise PackageError(f"{where}: unknown op {op!r}")


def load_package(path: Path | str, *, check_sparse: bool = True) -> ModelPackage:
    """Read and check a model package folder (docs/model-package.md).

    Every file's sha256, dtype and shape is checked against the manifest and every integer
    against its range; each layer's sparse-format files (group map, packed weight image)
    must agree with its dense weights (with `check_sparse`, they must also be present).
    `PackageError` names what is wrong.
    """
    root = Path(path)
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except FileNotFoundError:
        raise PackageError(f"{str(root)!r} is not a model package: no manifest.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PackageError(f"{str(root / 'manifest.json')!r} is not valid JSON: {error}") \
            from None
    if not isinstance(manifest, dict) or manifest.get("format") != PACKAGE_FORMAT:
        raise PackageError(f"{str(root)!r}: manifest format must be {PACKAGE_FORMAT!r}")
    if manifest.get("format_version") != PACKAGE_VERSION:
        raise PackageError(f"{str(root)!r}: format_version {manifest.get('format_version')!r} "
                           f"is not supported (this tool reads {PACKAGE_VERSION})")
    try:
        config_text = (root / "config.json").read_text()
    except OSError:
        raise PackageError(f"{str(root)!r}: config.json is missing") from None
    try:
        config = MarsConfig.from_json(config_text, source=str(root / "config.json"))
    except ConfigError as error:
        raise PackageError(str(error)) from None
    if manifest.get("config", {}).get("content_hash") != config.content_hash:
        raise PackageError(f"{str(root)!r}: config.json hashes to {config.short_hash}, the "
                           f"manifest names another configuration")
    reader = _Reader(root)
    try:
        info = manifest["input"]
        input_shape = _shape3(info["shape"], "manifest input")
        nodes_doc = manifest["nodes"]
        output = manifest["output"]["node"]
        tests = manifest["test_vectors"]
    except (KeyError, TypeError) as error:
        raise PackageError(f"{str(root)!r}: manifest lacks {error}") from None
    if not isinstance(nodes_doc, list) or not nodes_doc:
        raise PackageError(f"{str(root)!r}: manifest has no nodes")
    shapes = {"input": input_shape}
    nodes = tuple(_parse_node(entry, reader, config, shapes) for entry in nodes_doc)
    for entry, node in zip(nodes_doc, nodes):
        if isinstance(node, LayerNode) and (check_sparse or "sparse" in entry):
            if "sparse" not in entry:
                raise PackageError(f"node {node.name!r}: no sparse-format files")
            _check_sparse(entry["sparse"], reader, node, config)
    if output != nodes[-1].name or not isinstance(nodes[-1], LayerNode) \
            or nodes[-1].output != "acc":
        raise PackageError(f"{str(root)!r}: the output must be the last node, a layer with "
                           f"raw accumulators")
    network = IntegerNetwork(config, input_shape, nodes, output)
    inputs = reader.array(tests.get("inputs"), "test_vectors inputs",
                          dtype=act_dtype(config.act_bits))
    count = inputs.shape[0]
    if inputs.shape[1:] != input_shape:
        raise PackageError(f"test_vectors inputs: shape {inputs.shape} is not (n, "
                           f"{', '.join(map(str, input_shape))})")
    _check_range("test_vectors inputs", inputs, 0, config.act_max)
    labels = reader.array(tests.get("labels"), "test_vectors labels", dtype="<i4",
                          shape=(count,))
    classes = nodes[-1].geometry.cout * nodes[-1].geometry.out_h * nodes[-1].geometry.out_w
    logits = reader.array(tests.get("logits"), "test_vectors logits",
                          dtype=acc_dtype(config.acc_bits),
                          shape=(count, classes))
    return ModelPackage(root, manifest, network, inputs, labels, logits)
