"""Random integer networks for the accelerator's tests and benchmarks.

Each builder returns an `IntegerNetwork` for a configuration, with random weights pruned
group by group (the unit the hardware skips) at a given group sparsity, random biases,
and requantisation parameters that keep activations spread over their range.  The shapes
cover what the top must handle: odd channel counts, stride 2, padding, 1x1 kernels, fused
pooling, linear-only networks, fully dense and heavily sparse layers.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

from mars.config import MarsConfig, preset
from mars.sw.golden.network import AddNode, FlattenNode, IntegerNetwork, LayerNode, PoolNode
from mars.sw.layer import LayerGeometry, LayerKind

__all__ = ["random_layer", "NETWORKS", "RESIDUAL_NETWORKS", "residual_config",
           "cifar_resnet_config", "random_add", "resnet_cifar", "random_inputs", "stable_seed",
           "write_random_package"]


def stable_seed(*parts: object) -> int:
    """A seed in [0, 2^31) from the parts' text (CRC-32): the same in every process, unlike
    ``hash()`` of a string, which Python randomises per process."""
    return zlib.crc32("/".join(map(str, parts)).encode()) & 0x7FFFFFFF


def random_layer(rng: np.random.Generator, config: MarsConfig, name: str, source: str,
                 geometry: LayerGeometry, output: str, sparsity: float) -> LayerNode:
    """A layer with random Wb-bit weights whose groups are pruned with probability
    `sparsity` (at least one group is kept unless `sparsity` is 1)."""
    g, cfg = geometry, config
    W = rng.integers(cfg.weight_min, cfg.weight_max + 1, size=(g.cout, g.k))
    G, cpg = cfg.rows_per_step, cfg.channels_per_group
    blocks, kgroups = -(-g.cout // cpg), -(-g.k // G)
    pruned = rng.random((blocks, kgroups)) < sparsity
    for cb, kg in zip(*np.nonzero(pruned)):
        W[cb * cpg:(cb + 1) * cpg, kg * G:(kg + 1) * G] = 0
    bias = rng.integers(-4 * g.k, 4 * g.k + 1, size=g.cout)
    if output == "acc":
        return LayerNode(name, (source,), g, W, bias, "acc")
    # Scale so that a typical accumulator (~ sqrt(K) * |w| * |x|) lands mid-range.
    typical = max(1.0, np.sqrt(g.k) * cfg.weight_max * cfg.act_max / 2)
    shift = rng.integers(12, 17, size=g.cout)
    mult = np.maximum(1, (cfg.act_max * 2.0 ** shift / typical
                          * rng.uniform(0.5, 1.5, size=g.cout)).astype(np.int64))
    mult = np.minimum(mult, 2 ** cfg.requant_mult_bits - 1)
    return LayerNode(name, (source,), g, W, bias, "act", mult, shift)


def _conv(h, w, cin, cout, k=3, stride=1, pad=1) -> LayerGeometry:
    return LayerGeometry(LayerKind.CONV, h, w, cin, cout, k, k, stride, pad)


def _cnn(config, rng, sparsity):
    """conv 3x3 pad 1 -> pool 2 -> conv 3x3 stride 2 -> flatten -> linear."""
    l1 = random_layer(rng, config, "c1", "input", _conv(6, 6, 3, 5), "act", sparsity)
    p1 = PoolNode("p1", ("c1",), (6, 6, 5), 2, 2, 0)
    l2 = random_layer(rng, config, "c2", "p1", _conv(3, 3, 5, 6, stride=2), "act", sparsity)
    f = FlattenNode("f", ("c2",), (2, 2, 6))
    l3 = random_layer(rng, config, "fc", "f", LayerGeometry.linear(24, 7), "acc", sparsity)
    return IntegerNetwork(config, (6, 6, 3), (l1, p1, l2, f, l3), "fc")


def _odd(config, rng, sparsity):
    """Odd channel counts, a 1x1 conv, no padding, an odd map with a floor-mode pool."""
    l1 = random_layer(rng, config, "c1", "input", _conv(7, 7, 3, 7, k=3, pad=0), "act",
                      sparsity)
    l2 = random_layer(rng, config, "c2", "c1", _conv(5, 5, 7, 9, k=1, pad=0), "act",
                      sparsity)
    p2 = PoolNode("p2", ("c2",), (5, 5, 9), 2, 2, 0)
    f = FlattenNode("f", ("p2",), (2, 2, 9))
    l3 = random_layer(rng, config, "fc", "f", LayerGeometry.linear(36, 3), "acc", sparsity)
    return IntegerNetwork(config, (7, 7, 3), (l1, l2, p2, f, l3), "fc")


def _mlp(config, rng, sparsity):
    """Linear layers only."""
    l1 = random_layer(rng, config, "fc1", "input", LayerGeometry.linear(20, 11), "act",
                      sparsity)
    l2 = random_layer(rng, config, "fc2", "fc1", LayerGeometry.linear(11, 5), "acc", sparsity)
    return IntegerNetwork(config, (1, 1, 20), (l1, l2), "fc2")


def random_add(rng: np.random.Generator, config: MarsConfig, name: str,
               inputs: tuple[str, str], sources: tuple, channels: int) -> AddNode:
    """A residual add of `inputs` with per-channel M and S that bring each input to about
    half the activation range: `sources[i]` is the LayerNode whose raw accumulators input
    i is, or None for an activation map."""
    cfg = config
    shift = rng.integers(12, 17, size=(2, channels))
    mult = np.empty((2, channels), dtype=np.int64)
    for i, layer in enumerate(sources):
        if layer is None:       # activations: about half their own size
            scale = 2.0 ** shift[i] * rng.uniform(0.3, 0.8, size=channels)
        else:                   # accumulators: a typical one to about half the range
            typical = max(1.0, np.sqrt(layer.geometry.k) * cfg.weight_max * cfg.act_max / 2)
            scale = (cfg.act_max * 2.0 ** shift[i] / typical / 2
                     * rng.uniform(0.5, 1.5, size=channels))
        mult[i] = np.clip(scale.astype(np.int64), 1, 2 ** cfg.requant_mult_bits - 1)
    return AddNode(name, inputs, mult, shift)


def cifar_resnet_config() -> MarsConfig:
    """The default configuration with residual adds and memories for the CIFAR ResNet8 and
    ResNet20 of `resnet_cifar` (32x32x16 maps, 16x16x32 shortcut accumulators)."""
    return residual_config(preset("default")).replace(
        result_words=8192, act_buffer_words=16384, weight_sram_rows=16384, param_words=64,
        program_words=128)


def residual_config(config: MarsConfig) -> MarsConfig:
    """`config` with residual adds (the writers' shortcut and partial-sum path), three
    activation regions (a pooled add over an identity shortcut needs a third), a result
    memory that holds the test networks' conv-shortcut accumulators and partial sums (512
    elements), a deeper index memory (``weight_sram_rows`` 1024) and deeper parameter and
    program memories (ResNet8 has 10 layers)."""
    return config.replace(name=f"{config.name}-res", residual_adds=True, act_regions=3,
                          result_words=max(config.result_words, 512),
                          weight_sram_rows=max(config.weight_sram_rows, 1024),
                          param_words=max(config.param_words, 32),
                          program_words=max(config.program_words, 64))


def _resnet(config, rng, sparsity, size=6, width=4, classes=5, pool=True):
    """A small ResNet: a 3x3 stem, an identity basic block, a downsampling block (3x3
    stride 2 body, 1x1 stride 2 conv shortcut whose raw accumulators wait in the result
    memory), a global max pool fused after the last add, a linear classifier."""
    c2 = 2 * width
    half = (size + 1) // 2
    stem = random_layer(rng, config, "stem", "input", _conv(size, size, 3, width), "act",
                        sparsity)
    a1 = random_layer(rng, config, "b1c1", "stem", _conv(size, size, width, width), "act",
                      sparsity)
    a2 = random_layer(rng, config, "b1c2", "b1c1", _conv(size, size, width, width), "acc",
                      sparsity)
    add1 = random_add(rng, config, "add1", ("b1c2", "stem"), (a2, None), width)
    d1 = random_layer(rng, config, "b2c1", "add1", _conv(size, size, width, c2, stride=2),
                      "act", sparsity)
    d2 = random_layer(rng, config, "b2c2", "b2c1", _conv(half, half, c2, c2), "acc", sparsity)
    sc = random_layer(rng, config, "b2sc", "add1",
                      _conv(size, size, width, c2, k=1, stride=2, pad=0), "acc", sparsity)
    add2 = random_add(rng, config, "add2", ("b2c2", "b2sc"), (d2, sc), c2)
    nodes = [stem, a1, a2, add1, d1, d2, sc, add2]
    last = "add2"
    if pool:
        nodes.append(PoolNode("gp", ("add2",), (half, half, c2), half, half, 0))
        last = "gp"
        flat_in = (1, 1, c2)
    else:
        flat_in = (half, half, c2)
    nodes.append(FlattenNode("f", (last,), flat_in))
    n = flat_in[0] * flat_in[1] * flat_in[2]
    nodes.append(random_layer(rng, config, "fc", "f", LayerGeometry.linear(n, classes),
                              "acc", sparsity))
    return IntegerNetwork(config, (size, size, 3), tuple(nodes), "fc")


def _resnet_identity_pool(config, rng, sparsity):
    """An identity block whose add is pooled (needs a third activation region: the add
    cannot write over its shortcut while other pixels still read it)."""
    stem = random_layer(rng, config, "stem", "input", _conv(6, 6, 3, 4), "act", sparsity)
    a1 = random_layer(rng, config, "c1", "stem", _conv(6, 6, 4, 4), "act", sparsity)
    a2 = random_layer(rng, config, "c2", "c1", _conv(6, 6, 4, 4), "acc", sparsity)
    add = random_add(rng, config, "add", ("stem", "c2"), (None, a2), 4)
    p = PoolNode("p", ("add",), (6, 6, 4), 2, 2, 0)
    f = FlattenNode("f", ("p",), (3, 3, 4))
    fc = random_layer(rng, config, "fc", "f", LayerGeometry.linear(36, 3), "acc", sparsity)
    return IntegerNetwork(config, (6, 6, 3), (stem, a1, a2, add, p, f, fc), "fc")


def resnet_cifar(config, rng, sparsity, *, depth=8, size=8, width=4, classes=10, cin=3,
                 stages=3, blocks=None):
    """Random weights on the topology of `mars.sw.train.models.resnet_cifar`: a 3x3 stem,
    three stages of (depth-2)/6 basic blocks at width, 2*width, 4*width (stride 2 and a
    1x1 conv shortcut at the start of the second and third), a global max pool, a linear
    classifier; the adds read (body, shortcut), as the model parser writes them.
    ``stages=4, blocks=2, width=64`` is the CIFAR ResNet18 (64 .. 512 channels)."""
    if blocks is None and (depth - 2) % 6:
        raise ValueError(f"depth must be 6n+2, not {depth}")
    per_stage = blocks or (depth - 2) // 6
    nodes = [random_layer(rng, config, "stem", "input", _conv(size, size, cin, width), "act",
                          sparsity)]
    cur, h, ch = "stem", size, width
    for stage in range(stages):
        out = width * 2 ** stage
        for block in range(1, per_stage + 1):
            stride = 2 if stage and block == 1 else 1
            tag = f"s{stage}b{block}"
            oh = (h + 1) // 2 if stride == 2 else h
            c1 = random_layer(rng, config, f"{tag}c1", cur, _conv(h, h, ch, out, stride=stride),
                              "act", sparsity)
            c2 = random_layer(rng, config, f"{tag}c2", c1.name, _conv(oh, oh, out, out), "acc",
                              sparsity)
            nodes += [c1, c2]
            if stride == 2 or ch != out:
                sc = random_layer(rng, config, f"{tag}sc", cur,
                                  _conv(h, h, ch, out, k=1, stride=stride, pad=0), "acc",
                                  sparsity)
                nodes.append(sc)
                add = random_add(rng, config, f"{tag}add", (c2.name, sc.name), (c2, sc), out)
            else:
                add = random_add(rng, config, f"{tag}add", (c2.name, cur), (c2, None), out)
            nodes.append(add)
            cur, h, ch = add.name, oh, out
    nodes.append(PoolNode("pool", (cur,), (h, h, ch), h, h, 0))
    nodes.append(FlattenNode("flat", ("pool",), (1, 1, ch)))
    nodes.append(random_layer(rng, config, "fc", "flat", LayerGeometry.linear(ch, classes),
                              "acc", sparsity))
    return IntegerNetwork(config, (size, size, cin), tuple(nodes), "fc")


def _ksplit(config, rng, sparsity):
    """Layers whose block sets keep more groups than a `tiny` macro's 16 row slots
    (K-splitting over several walks, the partial sums in the result memory): a split
    conv, a split conv with a fused identity add and a pool after it, a split linear
    layer (the logits)."""
    stem = random_layer(rng, config, "stem", "input", _conv(6, 6, 3, 8), "act", sparsity)
    c1 = random_layer(rng, config, "c1", "stem", _conv(6, 6, 8, 8), "act", sparsity)
    c2 = random_layer(rng, config, "c2", "c1", _conv(6, 6, 8, 8), "acc", sparsity)
    add = random_add(rng, config, "add", ("c2", "stem"), (c2, None), 8)
    p = PoolNode("p", ("add",), (6, 6, 8), 2, 2, 0)
    f = FlattenNode("f", ("p",), (3, 3, 8))
    fc = random_layer(rng, config, "fc", "f", LayerGeometry.linear(72, 5), "acc", sparsity)
    return IntegerNetwork(config, (6, 6, 3), (stem, c1, c2, add, p, f, fc), "fc")


def _ksplit_wide(config, rng, sparsity):
    """A 3x3 conv over 32 channels (288 K-rows: split wherever a macro has fewer than
    36 row slots of 8 rows) with a fused identity add and a pool after it: the last part
    reads a partial sum and a shortcut in one lane group."""
    stem = random_layer(rng, config, "stem", "input", _conv(4, 4, 3, 32), "act", sparsity)
    c2 = random_layer(rng, config, "c2", "stem", _conv(4, 4, 32, 32), "acc", sparsity)
    add = random_add(rng, config, "add", ("c2", "stem"), (c2, None), 32)
    p = PoolNode("p", ("add",), (4, 4, 32), 2, 2, 0)
    f = FlattenNode("f", ("p",), (2, 2, 32))
    fc = random_layer(rng, config, "fc", "f", LayerGeometry.linear(128, 5), "acc", sparsity)
    return IntegerNetwork(config, (4, 4, 3), (stem, c2, add, p, f, fc), "fc")


#: Residual networks: they need a configuration with residual adds (`residual_config`).
RESIDUAL_NETWORKS: dict[str, tuple[Callable, float]] = {
    "resnet": (_resnet, 0.3),
    "resnet-flat": (lambda c, r, s: _resnet(c, r, s, size=5, pool=False), 0.5),
    "resnet-pool": (_resnet_identity_pool, 0.3),
    "resnet8": (lambda c, r, s: resnet_cifar(c, r, s, depth=8, size=8, width=4), 0.7),
    "resnet20": (lambda c, r, s: resnet_cifar(c, r, s, depth=20, size=8, width=4), 0.7),
    "ksplit": (_ksplit, 0.0),
    "ksplit-wide": (_ksplit_wide, 0.0),
}


NETWORKS: dict[str, tuple[Callable, float]] = {
    "cnn": (_cnn, 0.5),
    "odd": (_odd, 0.4),
    "mlp": (_mlp, 0.5),
    "dense": (_cnn, 0.0),
    "sparse": (_odd, 0.9),
}


def random_inputs(network: IntegerNetwork, rng: np.random.Generator, count: int) -> np.ndarray:
    """Random Ab-bit images (count, H, W, C)."""
    return rng.integers(0, network.config.act_max + 1, size=(count, *network.input_shape))


def write_random_package(out, config: MarsConfig, name: str = "cnn", seed: int = 0,
                         count: int = 3) -> np.ndarray:
    """Write a model package (docs/model-package.md) of the random network `name` with
    `count` random test inputs, without training; returns its golden logits (count, N)."""
    from mars.sw.golden.network import run_network
    from mars.sw.package import build_package_files, sparse, write_folder_atomically

    build, sparsity = NETWORKS[name]
    network = build(config, np.random.default_rng(seed), sparsity)
    inputs = random_inputs(network, np.random.default_rng(seed + 1), count)
    logits = np.asarray(run_network(network, inputs)).reshape(count, -1)
    extra, node_extra = sparse.build(network)
    files = build_package_files(
        network, node_info={}, header={"input": {"shape": list(network.input_shape)}},
        test_inputs=inputs, test_labels=np.zeros(count, dtype=np.int32), test_logits=logits,
        extra_files=extra, node_extra=node_extra)
    write_folder_atomically(out, files)
    return logits
