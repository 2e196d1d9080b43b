"""Reading a model package: `load_package` checks a package folder and returns its network.

docs/model-package.md specifies every file and lists what is checked ("What load_package
checks"): every file's sha256, dtype and shape against the manifest, every integer against
its range, and each layer's sparse-format files against its dense weights.  Anything wrong
raises `PackageError` naming the file or node.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from mars.config import ConfigError, MarsConfig
from mars.sw.golden.network import (AddNode, FlattenNode, IntegerNetwork, LayerNode, Node,
                                    PoolNode, shift_range)
from mars.sw.layer import LayerGeometry

from .format import (PACKAGE_FORMAT, PACKAGE_VERSION, PackageError, acc_dtype, act_dtype,
                     weight_dtype)

__all__ = ["ModelPackage", "load_package"]


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
