"""Reading a model package: `load_package` checks a package folder and returns its network.

docs/model-package.md specifies every file and lists what is checked ("What load_package
checks"): every manifest field's type and range (`mars.sw.package.fields`), every file's
sha256, dtype and shape against the manifest and the configuration, every integer against
its range, the worst-case accumulator against ``acc_bits``, and each layer's sparse-format
files against the ones its dense weights give.  Anything wrong raises one `PackageError`
naming the file, node and field.
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
from mars.errors import MarsError, json_text
from mars.sw.golden.network import (AddNode, FlattenNode, IntegerNetwork, LayerNode, Node,
                                    PoolNode, shift_range)
from mars.sw.layer import LayerGeometry

from . import fields as F
from .fields import Where
from .format import (PACKAGE_FORMAT, PACKAGE_VERSION, PackageError, acc_dtype, act_dtype,
                     parse_npy, weight_dtype)

__all__ = ["ModelPackage", "load_package", "package_folder"]


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
    def accuracy(self) -> float | None:
        """The integer model's test accuracy the package reports (fraction); None for a
        package without one (written by the writer alone, not by ``mars train``)."""
        value = self.manifest.get("accuracy", {}).get("integer")
        return None if value is None else float(value)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Reader:
    """Reads the files a manifest references, each checked against its reference."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def data(self, ref: dict[str, Any], where: Where) -> tuple[str, bytes]:
        """The bytes of the file `ref` names, checked against its ``sha256``."""
        rel = F.file_name(F.field(ref, "file", where), where / "file")
        digest = F.sha256(F.field(ref, "sha256", where), where / "sha256")
        try:
            data = (self.root / rel).read_bytes()
        except OSError:
            raise where.error(f"file {rel!r} is missing from the package") from None
        if _sha256(data) != digest:
            raise where.error(f"file {rel!r} does not match its sha256 in the manifest "
                              f"(damaged or edited)")
        return rel, data

    def array(self, ref: Any, where: Where, *, dtype: str,
              shape: tuple[int | None, ...]) -> np.ndarray:
        """The array of a tensor reference ``{file, dtype, shape, sha256}``: the reference
        must say `dtype` and `shape` (None: any length on that axis) and the file must hold
        exactly that."""
        ref = F.obj(ref, where)
        ref_dtype = F.string(F.field(ref, "dtype", where), where / "dtype")
        if ref_dtype != np.dtype(dtype).str:
            raise (where / "dtype").error(f"{ref_dtype!r} is not {np.dtype(dtype).str!r}, the "
                                          f"dtype of this tensor for this configuration")
        ref_shape = F.int_list(F.field(ref, "shape", where), where / "shape", 0, None,
                               len(shape))
        if any(want is not None and got != want for got, want in zip(ref_shape, shape)):
            shown = tuple("n" if want is None else want for want in shape)
            raise (where / "shape").error(f"{ref_shape} is not the shape {list(shown)} the "
                                          f"network needs")
        rel, data = self.data(ref, where)
        try:
            array = parse_npy(data)
        except ValueError as error:
            raise where.error(f"file {rel!r} is not a .npy array: {error}") from None
        if array.dtype != np.dtype(dtype) or list(array.shape) != ref_shape:
            raise where.error(f"file {rel!r} holds {array.dtype} {array.shape}, the manifest "
                              f"says {ref_dtype} {tuple(ref_shape)}")
        return array


def _check_range(where: Where, array: np.ndarray, lo: int, hi: int) -> None:
    if array.size and (array.min() < lo or array.max() > hi):
        raise where.error(f"values must lie in [{lo}, {hi}], found "
                          f"[{array.min()}, {array.max()}]")


def _requant_arrays(reader: _Reader, entry: dict, where: Where, shape: tuple[int, ...],
                    config: MarsConfig) -> tuple[np.ndarray, np.ndarray]:
    multiplier = reader.array(F.field(entry, "multiplier", where), where / "multiplier",
                              dtype="<u4", shape=shape).astype(np.int64)
    shift = reader.array(F.field(entry, "shift", where), where / "shift", dtype="|u1",
                         shape=shape).astype(np.int64)
    _check_range(where / "multiplier", multiplier, 0, (1 << config.requant_mult_bits) - 1)
    _check_range(where / "shift", shift, *shift_range(config))
    return multiplier, shift


def _accumulator_bound(layer: LayerNode, config: MarsConfig) -> int:
    """Largest |acc| any input can produce: the exporter's bound
    (`mars.sw.train.export.accumulator_bound` and ``scaled_accumulator_bound``)."""
    bias = np.abs(layer.bias)
    if layer.scales is not None:
        k_groups = -(-layer.geometry.k // config.rows_per_step)
        per_channel = (k_groups * config.act_max * np.abs(layer.scales).sum(axis=1)) \
            >> config.scale_frac_bits
    else:
        per_channel = np.abs(layer.weight).sum(axis=1) * config.act_max
    return int((per_channel + bias).max(initial=0))


_SPARSE_CACHE: dict[tuple, tuple[dict[str, bytes], dict[str, Any]]] = {}


def _expected_sparse(layer: LayerNode, config: MarsConfig
                     ) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The sparse files and ``sparse`` field the writer makes for a layer's weights
    (`mars.sw.package.sparse.build`).  Remembered for the last few layers: reading a
    package again, as the tests and the fuzz campaign do, skips the packing."""
    from .sparse import build

    key = (layer.name, layer.geometry, layer.weight.tobytes(), config.content_hash)
    if key not in _SPARSE_CACHE:
        files, entries = build(IntegerNetwork(config, (1, 1, layer.geometry.cin), (layer,),
                                              layer.name))
        if len(_SPARSE_CACHE) >= 64:
            _SPARSE_CACHE.pop(next(iter(_SPARSE_CACHE)))
        _SPARSE_CACHE[key] = files, entries[layer.name]["sparse"]
    return _SPARSE_CACHE[key]


def _check_sparse(entry: Any, reader: _Reader, layer: LayerNode, config: MarsConfig) -> None:
    """The sparse-format fields and files of a layer are exactly the ones its dense weights
    give (`mars.sw.package.sparse.build`, deterministic): the group map, the counts, and
    every memory image, byte for byte."""
    where = Where.of_node(layer.name) / "sparse"
    entry = F.obj(entry, where)
    try:
        files, expected = _expected_sparse(layer, config)
    except MarsError as error:
        raise where.error(str(error)) from None
    kept = reader.array(F.field(entry, "kept", where), where / "kept", dtype="|b1",
                        shape=tuple(expected["kept"]["shape"]))
    if not np.array_equal(kept, np.load(io.BytesIO(files[expected["kept"]["file"]]))):
        raise (where / "kept").error("the group map disagrees with the weights' zero groups")
    for key in ("stored_groups", "stored_slots"):
        value = F.integer(F.field(entry, key, where), where / key, 0)
        if value != expected[key]:
            raise (where / key).error(f"{value}, the weights give {expected[key]}")
    steps = F.int_list(F.field(entry, "set_steps", where), where / "set_steps", 0)
    if steps != expected["set_steps"]:
        raise (where / "set_steps").error(f"{steps}, the weights give {expected['set_steps']}")
    bits = F.obj(F.field(entry, "index_bits", where), where / "index_bits")
    for encoding, want in expected["index_bits"].items():
        value = F.integer(F.field(bits, encoding, where / "index_bits"),
                          where / "index_bits" / encoding, 0)
        if value != want:
            raise (where / "index_bits" / encoding).error(f"{value}, the weights give {want}")
    images = F.field(entry, "index_images", where)
    if not isinstance(images, list) or len(images) != len(expected["index_images"]):
        raise (where / "index_images").error(
            f"expected a list of {len(expected['index_images'])} image references (one per "
            f"word-line domain), got {json_text(images, 60)}")
    pairs = [(where / "weights_image", F.field(entry, "weights_image", where),
              expected["weights_image"]),
             (where / "ktable_image", F.field(entry, "ktable_image", where),
              expected["ktable_image"])]
    pairs += [(where / "index_images" / d, ref, want)
              for d, (ref, want) in enumerate(zip(images, expected["index_images"]))]
    for place, ref, want in pairs:
        ref = F.obj(ref, place)
        words = F.integer(F.field(ref, "words", place), place / "words", 0)
        rel, data = reader.data(ref, place)
        if data != files[want["file"]]:
            what = ("does not unpack to the weights" if want is expected["weights_image"]
                    else "is not the image the weights give")
            raise place.error(f"file {rel!r} {what}")
        if words != want["words"]:
            raise (place / "words").error(f"{words}, the image holds {want['words']} words")


def _check_node_info(entry: dict, node: Node, in_shape: tuple[int, int, int],
                     out_shape: tuple[int, int, int], kept: np.ndarray | None,
                     config: MarsConfig) -> None:
    """The informational fields the trainer adds to a node, checked when present:
    ``source``, ``in_shape``, ``out_shape``, ``batch_norm_folded``, the float ``scales``,
    ``columns_permuted_from_chw`` and the ``sparsity`` counts."""
    where = Where.of_node(node.name)
    if "source" in entry:
        F.string(entry["source"], where / "source")
    for key, want in (("in_shape", in_shape), ("out_shape", out_shape)):
        if key in entry and F.shape3(entry[key], where / key) != want:
            raise (where / key).error(f"{entry[key]}, the network gives {list(want)}")
    if "batch_norm_folded" in entry:
        F.boolean(entry["batch_norm_folded"], where / "batch_norm_folded")
    if "columns_permuted_from_chw" in entry:
        chw = F.shape3(entry["columns_permuted_from_chw"], where / "columns_permuted_from_chw")
        if not isinstance(node, LayerNode) or node.op != "linear" \
                or chw[0] * chw[1] * chw[2] != node.geometry.cin:
            raise (where / "columns_permuted_from_chw").error(
                f"{list(chw)} must be the [H, W, C] of a linear layer's cin inputs")
    scales = entry.get("scales")
    if scales is not None and not (isinstance(node, LayerNode) and config.scaled_readout):
        scales = F.obj(scales, where / "scales")
        for key in ("input", "output"):
            if key in scales:
                F.number(scales[key], where / "scales" / key, 0.0, nullable=True)
        if "weight" in scales:
            n = node.geometry.cout if isinstance(node, LayerNode) else None
            values = scales["weight"]
            if not isinstance(values, list) or (n is not None and len(values) != n):
                raise (where / "scales" / "weight").error(
                    f"expected a list of {n} numbers, got {json_text(values, 60)}")
            for i, value in enumerate(values):
                F.number(value, where / "scales" / "weight" / i, 0.0)
        if "inputs" in scales:
            values = scales["inputs"]
            if not isinstance(values, list) or len(values) != len(node.inputs):
                raise (where / "scales" / "inputs").error(
                    f"expected a list of {len(node.inputs)} numbers or nulls, got "
                    f"{json_text(values, 60)}")
            for i, value in enumerate(values):
                F.number(value, where / "scales" / "inputs" / i, 0.0, nullable=True)
    if "sparsity" in entry and isinstance(node, LayerNode):
        info = F.obj(entry["sparsity"], where / "sparsity")
        place = where / "sparsity"
        if "prunable" in info:
            F.boolean(info["prunable"], place / "prunable")
        for key in ("group_sparsity", "weight_sparsity"):
            if key in info:
                F.number(info[key], place / key, 0.0, 1.0)
        groups = kept.size if kept is not None else None
        zero = int(kept.size - kept.sum()) if kept is not None else None
        for key, want in (("groups", groups), ("zero_groups", zero),
                          ("stored_groups", None if kept is None else groups - zero),
                          ("pruned_groups", None)):
            if key in info:
                value = F.integer(info[key], place / key, 0, groups)
                if want is not None and value != want:
                    raise (place / key).error(f"{value}, the weights give {want}")


_GEOMETRY_FIELDS = tuple(f.name for f in dataclasses.fields(LayerGeometry))


def _parse_layer(entry: dict, where: Where, op: str, inputs: tuple[str, ...],
                 in_shape: tuple[int, int, int], reader: _Reader,
                 config: MarsConfig) -> LayerNode:
    geometry_doc = F.obj(F.field(entry, "geometry", where), where / "geometry")
    for key in _GEOMETRY_FIELDS:
        F.field(geometry_doc, key, where / "geometry")
    for key, value in geometry_doc.items():
        if key == "kind":
            F.string(value, where / "geometry" / key, ("conv", "linear"))
        else:
            F.integer(value, where / "geometry" / key, 0)
    try:
        geometry = LayerGeometry(**geometry_doc)
    except (TypeError, ValueError) as error:
        raise (where / "geometry").error(str(error)) from None
    if geometry.kind.value != op:
        raise (where / "geometry" / "kind").error(f"{geometry.kind.value!r} is not the node's "
                                                  f"op {op!r}")
    expected_in = (geometry.in_h, geometry.in_w, geometry.cin) if op == "conv" \
        else (1, 1, geometry.cin)
    if in_shape != expected_in:
        raise (where / "geometry").error(f"input {inputs[0]!r} is {in_shape}, the geometry "
                                         f"expects {expected_in}")
    n, k = geometry.cout, geometry.k
    weight = reader.array(F.field(entry, "weight", where), where / "weight",
                          dtype=weight_dtype(config.weight_bits), shape=(n, k)).astype(np.int64)
    _check_range(where / "weight", weight, config.weight_min, config.weight_max)
    bias = reader.array(F.field(entry, "bias", where), where / "bias",
                        dtype=acc_dtype(config.acc_bits), shape=(n,)).astype(np.int64)
    acc_max = (1 << (config.acc_bits - 1)) - 1
    _check_range(where / "bias", bias, -acc_max, acc_max)
    output = F.string(F.field(entry, "output", where), where / "output", ("act", "acc"))
    multiplier = shift = None
    if output == "act":
        multiplier, shift = _requant_arrays(reader, entry, where, (n,), config)
    else:
        for key in ("multiplier", "shift"):
            if key in entry:
                raise (where / key).error("only a layer with output 'act' is requantised")
    scales = None
    if config.scaled_readout:
        # column scale factors of the binary/ternary readout (docs/model-package.md)
        scales = reader.array(F.field(entry, "scales", where), where / "scales", dtype="<i4",
                              shape=(n, config.weight_bits)).astype(np.int64)
        _check_range(where / "scales", scales, -(1 << (config.scale_bits - 1)),
                     (1 << (config.scale_bits - 1)) - 1)
    layer = LayerNode(entry["name"], inputs, geometry, weight, bias, output, multiplier,
                      shift, scales)
    bound = _accumulator_bound(layer, config)
    if bound > acc_max:
        raise where.error(f"accumulators can reach {bound}, beyond the {config.acc_bits}-bit "
                          f"range (acc_bits): the weights or the bias are too large for this "
                          f"configuration")
    return layer


def _parse_node(entry: Any, index: int, reader: _Reader, config: MarsConfig,
                shapes: dict[str, tuple[int, int, int]], raw: set[str]) -> Node:
    """One node: its fields checked, its inputs among `shapes` (the earlier nodes' output
    shapes, updated here); `raw` holds the nodes whose outputs are raw accumulators."""
    entry = F.obj(entry, Where("nodes") / index)
    name = F.string(F.field(entry, "name", Where("nodes") / index), Where("nodes") / index
                    / "name")
    where = Where.of_node(name)
    if not name or name == "input" or name in shapes:
        raise (where / "name").error("a node name must be non-empty, not 'input', and used "
                                     "once")
    op = F.string(F.field(entry, "op", where), where / "op",
                  ("conv", "linear", "maxpool", "flatten", "add"))
    inputs = F.field(entry, "inputs", where)
    arity = 2 if op == "add" else 1
    if not isinstance(inputs, list) or len(inputs) != arity \
            or any(not isinstance(i, str) or i not in shapes for i in inputs):
        raise (where / "inputs").error(f"{json_text(inputs, 60)} must be {arity} name(s) of "
                                       f"earlier nodes or 'input'")
    inputs = tuple(inputs)
    if op != "add" and inputs[0] in raw:
        raise (where / "inputs").error(f"{inputs[0]!r} holds raw accumulators (output "
                                       f"'acc'): only an add may take them")
    in_shape = shapes[inputs[0]]
    node: Node
    if op in ("conv", "linear"):
        node = _parse_layer(entry, where, op, inputs, in_shape, reader, config)
        out_shape = (node.geometry.out_h, node.geometry.out_w, node.geometry.cout)
        if node.output == "acc":
            raw.add(name)
    elif op == "maxpool":
        kernel, stride = (F.integer(F.field(entry, key, where), where / key, 1)
                          for key in ("kernel", "stride"))
        pad = F.integer(F.field(entry, "pad", where), where / "pad", 0, kernel // 2)
        node = PoolNode(name, inputs, in_shape, kernel, stride, pad)
        if min(node.out_shape) < 1:
            raise where.error(f"the {kernel}x{kernel} window does not fit the {in_shape} "
                              f"input")
        out_shape = node.out_shape
    elif op == "flatten":
        node = FlattenNode(name, inputs, in_shape)
        out_shape = (1, 1, in_shape[0] * in_shape[1] * in_shape[2])
    else:
        if shapes[inputs[1]] != in_shape:
            raise (where / "inputs").error(f"an add takes two inputs of one shape, not "
                                           f"{in_shape} and {shapes[inputs[1]]}")
        multiplier, shift = _requant_arrays(reader, entry, where, (2, in_shape[2]), config)
        node = AddNode(name, inputs, multiplier, shift)
        out_shape = in_shape
    shapes[name] = out_shape
    return node


def _read_config(root: Path) -> MarsConfig:
    try:
        text = (root / "config.json").read_bytes().decode("utf-8")
    except OSError:
        raise PackageError(f"{str(root)!r}: config.json is missing") from None
    except UnicodeDecodeError:
        raise PackageError(f"{str(root / 'config.json')!r} is not UTF-8 text") from None
    try:
        return MarsConfig.from_json(text, source=str(root / "config.json"))
    except ConfigError as error:
        raise PackageError(str(error)) from None


def package_folder(path: Path | str) -> Path:
    """The package folder `path` names: the folder itself, or the folder of a
    ``manifest.json`` given instead.  Any other file, or nothing there, is a
    `PackageError` saying to give the package folder."""
    path = Path(path)
    if path.is_file():
        if path.name == "manifest.json":
            return path.parent
        raise PackageError(f"{str(path)!r} is not a model package but a file: give the "
                           f"package folder (the one holding manifest.json)")
    if not path.exists():
        raise PackageError(f"{str(path)!r} is not a model package: no manifest.json (there "
                           f"is nothing there; give the package folder)")
    return path


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / "manifest.json"
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise PackageError(f"{str(root)!r} is not a model package: no manifest.json") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise PackageError(f"{str(path)!r} is not valid JSON: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PACKAGE_FORMAT:
        raise PackageError(f"{str(root)!r}: manifest format must be {PACKAGE_FORMAT!r}")
    version = manifest.get("format_version")
    if version != PACKAGE_VERSION or isinstance(version, bool):
        raise PackageError(f"{str(root)!r}: format_version {json_text(version)} is not "
                           f"supported (this tool reads {PACKAGE_VERSION})")
    return manifest


def _check_config_ref(manifest: dict[str, Any], config: MarsConfig) -> None:
    where = Where("config")
    ref = F.obj(F.field(manifest, "config", Where()), where)
    digest = F.sha256(F.field(ref, "content_hash", where), where / "content_hash")
    if digest != config.content_hash and digest == config.legacy_content_hash:
        # its memory images carry that hash too: they cannot be checked against this one
        raise (where / "content_hash").error(
            f"the package was written by an older mars, whose configuration hash covered "
            f"fields the {config.readout_mode.value} readout does not use; train it again")
    if digest != config.content_hash:
        raise (where / "content_hash").error(
            f"config.json hashes to {config.short_hash}, the manifest names another "
            f"configuration")
    if F.string(F.field(ref, "file", where), where / "file") != "config.json":
        raise (where / "file").error("must be 'config.json'")
    if F.string(F.field(ref, "name", where), where / "name") != config.name:
        raise (where / "name").error(f"{ref['name']!r} is not config.json's name "
                                     f"{config.name!r}")


def _check_input(manifest: dict[str, Any], config: MarsConfig) -> tuple[int, int, int]:
    where = Where("input")
    info = F.obj(F.field(manifest, "input", Where()), where)
    shape = F.shape3(F.field(info, "shape", where), where / "shape")
    if "layout" in info:
        F.string(info["layout"], where / "layout", ("HWC",))
    if "bits" in info and F.integer(info["bits"], where / "bits") != config.act_bits:
        raise (where / "bits").error(f"{info['bits']} is not the configuration's act_bits "
                                     f"({config.act_bits})")
    if "scale" in info:
        F.number(info["scale"], where / "scale", 0.0)
    if "pixel_max" in info:
        F.integer(info["pixel_max"], where / "pixel_max", 1)
    if "quantisation" in info:
        F.string(info["quantisation"], where / "quantisation")
    return shape


def load_package(path: Path | str, *, check_sparse: bool = True) -> ModelPackage:
    """Read and check a model package folder (docs/model-package.md).

    Every manifest field is checked for its type and range; every file's sha256, dtype and
    shape against the manifest and the configuration, and every integer against its range;
    each layer's worst-case accumulator must fit ``acc_bits``; each layer's sparse-format
    files must be the ones its dense weights give (with `check_sparse` they must also be
    present).  `path` is the package folder, or its ``manifest.json`` (its folder is read).
    Raises `PackageError` naming the file, node and field that is wrong.
    """
    root = package_folder(path)
    manifest = _read_manifest(root)
    config = _read_config(root)
    _check_config_ref(manifest, config)
    F.check_header(manifest)
    input_shape = _check_input(manifest, config)
    reader = _Reader(root)
    nodes_doc = F.field(manifest, "nodes", Where())
    if not isinstance(nodes_doc, list) or not nodes_doc:
        raise Where("nodes").error("expected a non-empty list of nodes")
    shapes: dict[str, tuple[int, int, int]] = {"input": input_shape}
    raw: set[str] = set()
    nodes = []
    for index, entry in enumerate(nodes_doc):
        node = _parse_node(entry, index, reader, config, shapes, raw)
        in_shape = shapes[node.inputs[0]]
        kept = None
        if isinstance(node, LayerNode) and (check_sparse or "sparse" in entry):
            _check_sparse(F.field(entry, "sparse", Where.of_node(node.name)), reader, node,
                          config)
            kept = np.load(io.BytesIO(reader.data(entry["sparse"]["kept"], Where())[1]))
        _check_node_info(entry, node, in_shape, shapes[node.name], kept, config)
        nodes.append(node)
    where = Where("output")
    output_doc = F.obj(F.field(manifest, "output", Where()), where)
    output = F.string(F.field(output_doc, "node", where), where / "node")
    last = nodes[-1]
    if output != last.name or not isinstance(last, LayerNode) or last.output != "acc":
        raise (where / "node").error(f"{output!r}: the output must be the last node, a layer "
                                     f"with raw accumulators (output 'acc')")
    classes = last.geometry.cout * last.geometry.out_h * last.geometry.out_w
    if "kind" in output_doc:
        F.string(output_doc["kind"], where / "kind", ("logits",))
    if "classes" in output_doc and F.integer(output_doc["classes"], where / "classes") \
            != last.geometry.cout:
        raise (where / "classes").error(f"{output_doc['classes']}, the last layer has "
                                        f"{last.geometry.cout} output channels")
    sparsity = manifest.get("sparsity", {})
    for key, want in (("group_rows", config.rows_per_step),
                      ("group_channels", config.channels_per_group)):
        if key in sparsity and sparsity[key] != want:
            raise (Where("sparsity") / key).error(f"{sparsity[key]} is not the "
                                                  f"configuration's {want}")
    network = IntegerNetwork(config, input_shape, tuple(nodes), output)
    where = Where("test_vectors")
    tests = F.obj(F.field(manifest, "test_vectors", Where()), where)
    inputs = reader.array(F.field(tests, "inputs", where), where / "inputs",
                          dtype=act_dtype(config.act_bits), shape=(None, *input_shape))
    count = inputs.shape[0]
    if "count" in tests and F.integer(tests["count"], where / "count", 0) != count:
        raise (where / "count").error(f"{tests['count']}, the inputs hold {count} images")
    _check_range(where / "inputs", inputs, 0, config.act_max)
    labels = reader.array(F.field(tests, "labels", where), where / "labels", dtype="<i4",
                          shape=(count,))
    _check_range(where / "labels", labels, 0, classes - 1)
    logits = reader.array(F.field(tests, "logits", where), where / "logits",
                          dtype=acc_dtype(config.acc_bits), shape=(count, classes))
    return ModelPackage(root, manifest, network, inputs, labels, logits)
