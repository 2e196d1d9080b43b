"""Float network definitions and their translation into the accelerator's graph.

Networks are ``torch.nn.Sequential`` containers (nested freely) of the supported layers:

=====================  ===================================================================
``nn.Conv2d``          square kernel, equal stride and padding on both axes, zero padding,
                       no dilation or groups; bias optional
``nn.BatchNorm2d``     directly after a ``Conv2d`` (folded into it)
``nn.Linear``          bias optional; after ``nn.Flatten`` or another ``Linear``
``nn.BatchNorm1d``     directly after a ``Linear`` (folded into it)
``nn.ReLU``            the requantisation's clamp at 0
``nn.MaxPool2d``       square window, no dilation, ``ceil_mode=False``
``nn.Flatten``         ``start_dim=1, end_dim=-1``
`Residual`             ``relu(body(x) + shortcut(x))``, the ResNet basic block
=====================  ===================================================================

Every convolution or linear layer except the last is followed by a ReLU (possibly after
max pooling, with which it commutes): the accelerator's activations are unsigned.  The last
layer has no ReLU: its raw accumulators are the logits.  Anything else is rejected with a
`ModelError` naming the layer by its module path and type.

`parse_model` turns such a network into a list of `Node`\\ s (conv/linear with its BN,
max pool, flatten, add) in execution order, with the tensor shapes (H, W, C) of the
accelerator's HWC maps.  The QAT network, the exporter and the package are built from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from mars.errors import MarsError
from mars.sw.layer import LayerGeometry, LayerKind

__all__ = ["ModelError", "Residual", "Node", "parse_model", "digits_cnn", "vgg_cifar",
           "resnet_cifar", "resnet18_cifar", "MODELS", "build_model", "default_model"]


class ModelError(MarsError, ValueError):
    """A network the accelerator cannot run; the message names the offending layer."""


class Residual(nn.Module):
    """``relu(body(x) + shortcut(x))``: the residual (basic) block.

    `body` is a Sequential of supported layers; `shortcut` is ``None`` (identity) or a
    Sequential (typically a 1x1 ``Conv2d`` and ``BatchNorm2d``).  In the integer network
    the add is an ``add`` node: both inputs requantised to the output scale, added and
    clamped to [0, 2^Ab - 1] (docs/model-package.md).
    """

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        return torch.relu(self.body(x) + skip)


# -- the graph -------------------------------------------------------------------------------

@dataclasses.dataclass
class Node:
    """One operation of the accelerator graph.

    ``op`` is ``conv``, ``linear``, ``maxpool``, ``flatten`` or ``add``.  ``inputs`` names
    earlier nodes (or ``"input"``); shapes are (H, W, C) of HWC maps, a vector being
    (1, 1, F).  For conv/linear, ``module`` and ``bn`` are the float layers,
    ``geometry`` the matrix-product geometry, ``output`` is ``"act"`` (requantised,
    ReLU) or ``"acc"`` (raw int32 accumulators), and ``flatten_from`` the (H, W, C) map a
    linear layer's input was flattened from (its columns are permuted to HWC order).
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    source: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    module: nn.Module | None = None
    bn: nn.Module | None = None
    geometry: LayerGeometry | None = None
    output: str = "act"
    flatten_from: tuple[int, int, int] | None = None
    kernel: int = 0
    stride: int = 0
    pad: int = 0

    @property
    def is_layer(self) -> bool:
        return self.op in ("conv", "linear")


def _pair(value, what: str, path: str, module: nn.Module) -> int:
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(set(values)) != 1:
        raise ModelError(f"layer {path!r} ({type(module).__name__}): {what} must be equal on "
                         f"both axes, not {values}")
    return int(values[0])


def _describe(path: str, module: nn.Module) -> str:
    return f"layer {path!r} ({type(module).__name__})"


SUPPORTED = ("Conv2d", "BatchNorm2d", "Linear", "BatchNorm1d", "ReLU", "MaxPool2d", "Flatten",
             "Sequential", "mars.sw.train.models.Residual")


def _flatten_items(module: nn.Module, path: str) -> list[tuple[str, nn.Module]]:
    """The leaves of nested Sequentials in order, with their module paths."""
    if type(module) is nn.Sequential:
        items = []
        for name, child in module.named_children():
            items.extend(_flatten_items(child, f"{path}.{name}" if path else name))
        return items
    return [(path or type(module).__name__, module)]


class _Parser:
    def __init__(self, input_shape: tuple[int, int, int]) -> None:
        self.nodes: list[Node] = []
        self.counters: dict[str, int] = {}
        self.input_shape = input_shape    # (H, W, C)

    def _name(self, prefix: str) -> str:
        index = self.counters.get(prefix, 0)
        self.counters[prefix] = index + 1
        return f"{prefix}{index}"

    def add(self, **fields) -> Node:
        node = Node(**fields)
        self.nodes.append(node)
        return node

    def producer(self, name: str) -> Node | None:
        return next((n for n in self.nodes if n.name == name), None)

    def sequence(self, items: list[tuple[str, nn.Module]], cur: str,
                 shape: tuple[int, int, int]) -> tuple[str, tuple[int, int, int], str]:
        """Parse `items` starting from tensor `cur`; returns the output tensor, its shape
        and its kind ("act" or "acc")."""
        kind = "act"
        i = 0
        while i < len(items):
            path, module = items[i]
            if kind == "acc":
                raise ModelError(
                    f"{_describe(path, module)} follows the raw accumulators of "
                    f"{self.nodes[-1].source!r}, which has no ReLU; only the last layer may "
                    f"omit it (activations are unsigned)")
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                i, cur, shape, kind = self.layer(items, i, cur, shape)
            elif type(module) is nn.ReLU:
                i += 1                              # activations are already clamped at 0
            elif type(module) is nn.MaxPool2d:
                cur, shape = self.maxpool(path, module, cur, shape)
                i += 1
            elif type(module) is nn.Flatten:
                if (module.start_dim, module.end_dim) != (1, -1):
                    raise ModelError(f"{_describe(path, module)}: only start_dim=1, "
                                     f"end_dim=-1 is supported")
                node = self.add(name=self._name("flatten"), op="flatten", inputs=(cur,),
                                source=path, in_shape=shape,
                                out_shape=(1, 1, shape[0] * shape[1] * shape[2]))
                cur, shape = node.name, node.out_shape
                i += 1
            elif type(module) is Residual:
                cur, shape = self.residual(path, module, cur, shape)
                i += 1
            elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
                raise ModelError(f"{_describe(path, module)} must directly follow a Conv2d "
                                 f"or Linear layer (it is folded into its weights)")
            else:
                raise ModelError(f"{_describe(path, module)} is not supported; supported "
                                 f"layers: {', '.join(SUPPORTED)}")
        return cur, shape, kind

    def maxpool(self, path, module, cur, shape):
        k = _pair(module.kernel_size, "kernel_size", path, module)
        s = _pair(module.stride if module.stride is not None else k, "stride", path, module)
        p = _pair(module.padding, "padding", path, module)
        if _pair(module.dilation, "dilation", path, module) != 1 or module.ceil_mode:
            raise ModelError(f"{_describe(path, module)}: dilation and ceil_mode are not "
                             f"supported")
        if module.return_indices:
            raise ModelError(f"{_describe(path, module)}: return_indices is not supported")
        if 2 * p > k:
            raise ModelError(f"{_describe(path, module)}: padding {p} exceeds half the window")
        h, w, c = shape
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if oh < 1 or ow < 1:
            raise ModelError(f"{_describe(path, module)}: a {k}x{k} window does not fit the "
                             f"{h}x{w} input")
        node = self.add(name=self._name("pool"), op="maxpool", inputs=(cur,), source=path,
                        in_shape=shape, out_shape=(oh, ow, c), kernel=k, stride=s, pad=p)
        return node.name, node.out_shape

    def layer(self, items, i, cur, shape):
        path, module = items[i]
        bn = None
        if i + 1 < len(items):
            bn_type = nn.BatchNorm2d if isinstance(module, nn.Conv2d) else nn.BatchNorm1d
            if type(items[i + 1][1]) is bn_type:
                bn = items[i + 1][1]
                if bn.num_features != (module.out_channels if isinstance(module, nn.Conv2d)
                                       else module.out_features):
                    raise ModelError(f"{_describe(items[i + 1][0], bn)}: {bn.num_features} "
                                     f"features after {module}")
                if not bn.track_running_stats or not bn.affine:
                    raise ModelError(f"{_describe(items[i + 1][0], bn)}: needs "
                                     f"affine=True and track_running_stats=True")
        h, w, c = shape
        if isinstance(module, nn.Conv2d):
            if module.groups != 1 or _pair(module.dilation, "dilation", path, module) != 1:
                raise ModelError(f"{_describe(path, module)}: groups and dilation are not "
                                 f"supported")
            if module.padding_mode != "zeros" or isinstance(module.padding, str):
                raise ModelError(f"{_describe(path, module)}: only numeric zero padding is "
                                 f"supported")
            source = self.producer(cur)
            if module.in_channels != c or source is not None and source.op in ("flatten",
                                                                               "linear"):
                raise ModelError(f"{_describe(path, module)}: expects {module.in_channels} "
                                 f"input channels, gets a {h}x{w}x{c} map")
            kh = _pair(module.kernel_size, "kernel_size", path, module)
            try:
                geometry = LayerGeometry(
                    LayerKind.CONV, h, w, c, module.out_channels, kh, kh,
                    _pair(module.stride, "stride", path, module),
                    _pair(module.padding, "padding", path, module))
            except ValueError as error:
                raise ModelError(f"{_describe(path, module)}: {error}") from None
            out_shape = (geometry.out_h, geometry.out_w, geometry.cout)
            op, prefix, flat = "conv", "conv", None
        else:
            if shape[:2] != (1, 1):
                raise ModelError(f"{_describe(path, module)} gets a {h}x{w}x{c} map: put an "
                                 f"nn.Flatten before it")
            if module.in_features != c:
                raise ModelError(f"{_describe(path, module)}: expects {module.in_features} "
                                 f"inputs, gets {c}")
            geometry = LayerGeometry.linear(module.in_features, module.out_features)
            out_shape = (1, 1, module.out_features)
            op, prefix = "linear", "fc"
            source = self.producer(cur)
            flat = source.in_shape if source is not None and source.op == "flatten" else None
        j = i + (2 if bn is not None else 1)
        relu = False
        pools = []
        while j < len(items) and type(items[j][1]) in (nn.ReLU, nn.MaxPool2d):
            if type(items[j][1]) is nn.ReLU:
                relu = True
            else:
                pools.append(items[j])
            j += 1
        if not relu and pools:
            raise ModelError(f"{_describe(*pools[0])} follows {_describe(path, module)} "
                             f"without a ReLU; only ReLU'd activations can be pooled")
        if not relu and j < len(items):
            nxt = items[j]
            raise ModelError(f"{_describe(path, module)} is followed by {_describe(*nxt)} "
                             f"without a ReLU; only the last layer may omit it (activations "
                             f"are unsigned)")
        node = self.add(name=self._name(prefix), op=op, inputs=(cur,), source=path,
                        in_shape=shape, out_shape=out_shape, module=module, bn=bn,
                        geometry=geometry, output="act" if relu else "acc",
                        flatten_from=flat)
        cur, shape = node.name, out_shape
        for pool_path, pool in pools:
            cur, shape = self.maxpool(pool_path, pool, cur, shape)
        return j, cur, shape, node.output

    def residual(self, path, module: Residual, cur, shape):
        outputs = []
        for part, sub in (("body", module.body), ("shortcut", module.shortcut)):
            if sub is None:
                outputs.append((cur, shape))
                continue
            items = _flatten_items(sub, f"{path}.{part}")
            out, out_shape, _ = self.sequence(items, cur, shape)
            outputs.append((out, out_shape))
        (a, a_shape), (b, b_shape) = outputs
        if a_shape != b_shape:
            raise ModelError(f"layer {path!r} (Residual): body gives a "
                             f"{'x'.join(map(str, a_shape))} map, shortcut "
                             f"{'x'.join(map(str, b_shape))}")
        if a == b:
            raise ModelError(f"layer {path!r} (Residual): body has no layers")
        node = self.add(name=self._name("add"), op="add", inputs=(a, b), source=path,
                        in_shape=a_shape, out_shape=a_shape)
        return node.name, node.out_shape


def parse_model(model: nn.Module, image_shape: tuple[int, int, int]) -> list[Node]:
    """The accelerator graph of `model` for images of shape (C, H, W).

    Raises `ModelError` naming the layer if the network uses anything unsupported or
    does not end in a conv/linear layer without ReLU (the logits).
    """
    if type(model) is not nn.Sequential:
        raise ModelError(f"the model must be an nn.Sequential of supported layers, not "
                         f"{type(model).__name__} (supported: {', '.join(SUPPORTED)})")
    c, h, w = image_shape
    parser = _Parser((h, w, c))
    out, _, kind = parser.sequence(_flatten_items(model, ""), "input", (h, w, c))
    nodes = parser.nodes
    if not nodes or kind != "acc" or not nodes[-1].is_layer or nodes[-1].name != out:
        raise ModelError("the network must end in a Conv2d or Linear layer without ReLU: its "
                         "raw accumulators are the logits")
    layers = [n for n in nodes if n.is_layer]
    for node in layers[:-1]:
        consumers = [m for m in nodes if node.name in m.inputs]
        if node.output == "acc" and any(m.op != "add" for m in consumers):
            raise ModelError(f"layer {node.source!r} has no ReLU but feeds "
                             f"{consumers[0].source!r}")
    return nodes


# -- model definitions -----------------------------------------------------------------------

def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU()]


def digits_cnn(image_shape=(1, 8, 8), classes: int = 10, width: int = 16) -> nn.Sequential:
    """The default network: three 3x3 conv-BN-ReLU layers, two 2x2 max pools, a linear
    classifier.  On 8x8 digits: 8x8x16, 8x8x32 -> 4x4x32, 4x4x32 -> 2x2x32, 128 -> 10."""
    c, h, w = image_shape
    return nn.Sequential(
        *_conv_bn_relu(c, width),
        *_conv_bn_relu(width, 2 * width), nn.MaxPool2d(2),
        *_conv_bn_relu(2 * width, 2 * width), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * (h // 4) * (w // 4), classes))


VGG_CFGS = {
    "vgg8": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M"],
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    # Simonyan & Zisserman's 13 conv layers (MARS's VGG16 on CIFAR).
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
}


def vgg_cifar(image_shape=(3, 32, 32), classes: int = 10, cfg: str = "vgg8",
              width: float = 1.0) -> nn.Sequential:
    """VGG-style CIFAR network: 3x3 conv-BN-ReLU stacks with 2x2 max pools, a linear
    classifier on the flattened map.  `width` scales every channel count."""
    c, h, w = image_shape
    layers: list[nn.Module] = []
    channels = c
    for entry in VGG_CFGS[cfg]:
        if entry == "M":
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        else:
            out = max(1, round(entry * width))
            layers.extend(_conv_bn_relu(channels, out))
            channels = out
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * h * w, classes))


def _basic_block(cin: int, cout: int, stride: int) -> Residual:
    body = nn.Sequential(*_conv_bn_relu(cin, cout, stride),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
    shortcut = None
    if stride != 1 or cin != cout:
        shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                 nn.BatchNorm2d(cout))
    return Residual(body, shortcut)


def resnet_cifar(image_shape=(3, 32, 32), classes: int = 10, depth: int = 8,
                 width: int = 16) -> nn.Sequential:
    """ResNet-style CIFAR network (He et al. 2016, the CIFAR variant): a 3x3 stem, three
    stages of (depth-2)/6 basic blocks at width, 2*width, 4*width (stride 2 at the start of
    the second and third), a global max pool (average pooling is not an accelerator
    operation) and a linear classifier."""
    if (depth - 2) % 6:
        raise ValueError(f"depth must be 6n+2, not {depth}")
    c, h, w = image_shape
    blocks_per_stage = (depth - 2) // 6
    layers: list[nn.Module] = [*_conv_bn_relu(c, width)]
    channels = width
    for stage in range(3):
        out = width * 2 ** stage
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(_basic_block(channels, out, stride))
            channels = out
            h, w = (h + 1) // 2 if stride == 2 else h, (w + 1) // 2 if stride == 2 else w
    return nn.Sequential(*layers, nn.MaxPool2d(h), nn.Flatten(), nn.Linear(channels, classes))


def resnet18_cifar(image_shape=(3, 32, 32), classes: int = 10, width: float = 1.0
                   ) -> nn.Sequential:
    """ResNet18 for CIFAR (He et al. 2016, the common CIFAR form; MARS's ResNet18): a 3x3
    stem of 64 channels, four stages of two basic blocks at 64, 128, 256, 512 channels
    (stride 2 at the start of stages 2 to 4, 1x1 convolutions on the changed shortcuts), a
    global max pool (average pooling is not an accelerator operation) and a linear
    classifier; `width` scales every channel count (tests use small ones)."""
    c, h, w = image_shape
    channels = max(1, round(64 * width))
    layers: list[nn.Module] = [*_conv_bn_relu(c, channels)]
    for stage, base in enumerate((64, 128, 256, 512)):
        out = max(1, round(base * width))
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(_basic_block(channels, out, stride))
            channels = out
            if stride == 2:
                h, w = (h + 1) // 2, (w + 1) // 2
    return nn.Sequential(*layers, nn.MaxPool2d(h), nn.Flatten(), nn.Linear(channels, classes))


MODELS: dict[str, Callable[..., nn.Sequential]] = {
    "digits-cnn": digits_cnn,
    "vgg8": lambda image_shape, classes: vgg_cifar(image_shape, classes, "vgg8"),
    "vgg11": lambda image_shape, classes: vgg_cifar(image_shape, classes, "vgg11"),
    "resnet8": lambda image_shape, classes: resnet_cifar(image_shape, classes, 8),
    "resnet20": lambda image_shape, classes: resnet_cifar(image_shape, classes, 20),
    "vgg16": lambda image_shape, classes: vgg_cifar(image_shape, classes, "vgg16"),
    "resnet18": resnet18_cifar,
}


def default_model(dataset: str) -> str:
    """The model `mars train` uses for a data set when none is named."""
    return {"cifar10": "resnet8"}.get(dataset, "digits-cnn")


def build_model(name: str, image_shape: tuple[int, int, int], classes: int) -> nn.Sequential:
    """A named model (`MODELS`), or ``module:function`` naming a factory that takes
    ``(image_shape, classes)`` and returns an nn.Sequential."""
    if name in MODELS:
        return MODELS[name](image_shape, classes)
    if ":" in name:
        import importlib

        module_name, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as error:
            raise ModelError(f"cannot load model factory {name!r}: {error}") from None
        return factory(image_shape, classes)
    raise ModelError(f"unknown model {name!r} (known: {', '.join(MODELS)}, or "
                     f"module:function)")


def hwc_permutation(shape: tuple[int, int, int]) -> np.ndarray:
    """Column permutation for a linear layer after a flatten of an (H, W, C) map.

    PyTorch flattens NCHW maps channel-plane first: column ``c*H*W + y*W + x``.  The
    accelerator's maps are HWC: element (y, x, c) at ``(y*W + x)*C + c``.  Returns ``perm``
    with ``W_hwc = W_torch[:, perm]``.
    """
    h, w, c = shape
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
