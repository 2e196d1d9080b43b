"""Export of a trained `QNetwork` to the integer network of the model package.

The integer tensors are computed from the folded float tensors with the very functions
the fake-quantised forward pass uses (`weight_codes`, `bias_codes`), so the codes are the
ones that were trained.  The requantisation ratio ``r = s_in * s_w[o] / s_out`` becomes an
integer multiplier and shift, ``r ~ M / 2^S`` (`requant_parameters`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from mars.sw.golden.network import AddNode, FlattenNode, IntegerNetwork, LayerNode, PoolNode
from mars.sw.layer import LayerKind

from .quant import QNetwork, bias_codes, weight_codes
from .readout import is_exact
from .requant import ExportError, requant_parameters

__all__ = ["ExportError", "requant_parameters", "export_network", "NodeScales",
           "torch_integer_forward", "accumulator_bound", "scaled_accumulator_bound"]


@dataclasses.dataclass
class NodeScales:
    """Float steps of one layer (for the manifest): input, per-channel weight, output."""

    input: float | None = None
    weight: list[float] | None = None
    output: float | None = None
    inputs: list[float] | None = None     # add: the steps of its two inputs' real values


def accumulator_bound(weight: np.ndarray, bias: np.ndarray, act_max: int) -> int:
    """Largest |acc| any input can produce: ``max_o sum_k |W[o,k]| * act_max + |bias[o]|``."""
    return int((np.abs(weight).sum(axis=1) * act_max + np.abs(bias)).max(initial=0))


def scaled_accumulator_bound(scales: np.ndarray, bias: np.ndarray, k: int,
                             config) -> int:
    """Binary/ternary readouts: largest |acc|, ``(KG * act_max * max_n sum_j |a[n, j]|)
    >> scale_frac_bits + |bias|`` with KG = ceil(K / G) steps (the sum before the shift
    fits by the configuration's own check)."""
    k_groups = -(-k // config.rows_per_step)
    per_channel = (k_groups * config.act_max * np.abs(scales).sum(axis=1)) >> \
        config.scale_frac_bits
    return int((per_channel + np.abs(bias)).max(initial=0))


@torch.no_grad()
def export_network(qnet: QNetwork) -> tuple[IntegerNetwork, dict[str, NodeScales]]:
    """The integer network of a trained `QNetwork`, and the float steps behind it.

    Every integer is computed exactly as the fake-quantised forward pass computes it (the
    same float32 steps, the same functions), so the two agree.  Raises `ExportError`
    naming the layer if an accumulator could leave the ``acc_bits`` range or a
    requantisation ratio does not fit ``requant_mult_bits``.
    """
    config = qnet.config
    if config.acc_bits - 1 + config.requant_mult_bits > 62:
        raise ExportError(f"acc_bits ({config.acc_bits}) + requant_mult_bits "
                          f"({config.requant_mult_bits}) must be at most 63: the requantisation "
                          f"product acc*M is computed in 64 bits")
    # float32 step of every activation tensor; per-channel float32 step of accumulators
    steps: dict[str, torch.Tensor] = {"input": torch.tensor(qnet.input_scale)}
    acc_steps: dict[str, torch.Tensor] = {}
    nodes, scales = [], {}
    acc_limit = (1 << (config.acc_bits - 1)) - 1

    def ratio(in_step: torch.Tensor, out_step: torch.Tensor) -> np.ndarray:
        return (in_step.double() / out_step.double()).reshape(-1).numpy()

    for spec in qnet.nodes:
        where = f"layer {spec.source!r} ({spec.name})"
        if spec.is_layer:
            layer = qnet.layers[spec.name]
            w_f, b_f = layer.folded()
            s_w = layer.weight_scale(w_f)
            s_in = steps[spec.inputs[0]]
            codes = weight_codes(w_f, s_w, config.weight_bits)
            bias = bias_codes(b_f, s_in, s_w).double().numpy()
            if not np.all(np.isfinite(bias)):
                raise ExportError(f"{where}: the bias is not finite")
            if np.abs(bias).max(initial=0) > acc_limit:
                raise ExportError(f"{where}: a bias code ({np.abs(bias).max():.4g}) leaves "
                                  f"the {config.acc_bits}-bit accumulator")
            weight = layer.matrix(codes).numpy().astype(np.int64)
            bias = bias.astype(np.int64)
            column_scales = None
            if config.scaled_readout:
                column_scales = layer.scale_codes().numpy().astype(np.int64)
                bound = scaled_accumulator_bound(column_scales, bias, spec.geometry.k,
                                                 config)
            else:
                bound = accumulator_bound(weight, bias, config.act_max)
            if bound > acc_limit:
                raise ExportError(f"{where}: accumulators can reach {bound}, beyond the "
                                  f"{config.acc_bits}-bit range (acc_bits); K = "
                                  f"{spec.geometry.k} is too large for Wb={config.weight_bits}, "
                                  f"Ab={config.act_bits}")
            acc_step = s_in * s_w
            multiplier = shift = out_step = None
            if layer.out_quant is not None:
                out = layer.out_quant.step
                multiplier, shift = requant_parameters(ratio(acc_step, out), config, where)
                steps[spec.name] = out
                out_step = float(out)
            else:
                acc_steps[spec.name] = acc_step
            nodes.append(LayerNode(spec.name, spec.inputs, spec.geometry, weight, bias,
                                   spec.output, multiplier, shift, column_scales))
            scales[spec.name] = NodeScales(input=float(s_in),
                                           weight=s_w.double().numpy().tolist(),
                                           output=out_step)
        elif spec.op == "maxpool":
            nodes.append(PoolNode(spec.name, spec.inputs, spec.in_shape, spec.kernel,
                                  spec.stride, spec.pad))
            steps[spec.name] = steps[spec.inputs[0]]
        elif spec.op == "flatten":
            nodes.append(FlattenNode(spec.name, spec.inputs, spec.in_shape))
            steps[spec.name] = steps[spec.inputs[0]]
        elif spec.op == "add":
            out = qnet.adds[spec.name].step
            channels = spec.out_shape[2]
            ms, ss, in_steps = [], [], []
            for name in spec.inputs:
                in_step = acc_steps.get(name)
                if in_step is None:
                    in_step = steps[name]
                    in_steps.append(float(in_step))
                else:
                    in_steps.append(None)
                r = np.broadcast_to(ratio(in_step, out), (channels,))
                m, s = requant_parameters(r, config, f"add {spec.source!r} ({spec.name}) "
                                                     f"input {name!r}")
                ms.append(m)
                ss.append(s)
            nodes.append(AddNode(spec.name, spec.inputs, np.stack(ms), np.stack(ss)))
            steps[spec.name] = out
            scales[spec.name] = NodeScales(output=float(out), inputs=in_steps)
        else:
            raise TypeError(f"unknown op {spec.op!r}")
    network = IntegerNetwork(config, qnet.nodes[0].in_shape, tuple(nodes), nodes[-1].name)
    return network, scales


@torch.no_grad()
def torch_integer_forward(qnet: QNetwork, network: IntegerNetwork,
                          codes: torch.Tensor) -> torch.Tensor:
    """The integer network evaluated with PyTorch operators in PyTorch's own layouts.

    `codes` are Ab-bit images (N, C, H, W).  Weights go back to PyTorch's layout through
    each layer's `from_matrix` (undoing the HWC permutation of linear layers); maps stay
    NCHW; flatten is PyTorch's (CHW).  Convolutions run in float64, exact for integers
    below 2^53; requantisation in int64.  With a readout other than exact each product is
    the macro's (`QLayer.hardware_accumulators`, PyTorch's unfold and bit planes).
    Returns int64 logits.  An independent check of the export's layouts and of the
    readout against `mars.sw.golden.accel.run_accelerator` (HWC, im2col, `macro_step`).
    """
    def requant(acc: torch.Tensor, m: np.ndarray, s: np.ndarray) -> torch.Tensor:
        shape = (1, -1) + (1,) * (acc.dim() - 2)
        m_t = torch.from_numpy(m).view(shape)
        s_t = torch.from_numpy(s).view(shape)
        return torch.bitwise_right_shift(acc * m_t + torch.bitwise_left_shift(
            torch.ones_like(s_t), s_t - 1), s_t)

    act_max = network.config.act_max
    values = {"input": codes.to(torch.float64)}
    for node in network.nodes:
        src = values[node.inputs[0]]
        if isinstance(node, LayerNode):
            layer = qnet.layers[node.name]
            weight = layer.from_matrix(torch.from_numpy(node.weight)).to(torch.float64)
            bias = torch.from_numpy(node.bias).to(torch.float64)
            if not is_exact(network.config):
                # the macro's readout: per K-group, bit plane and bit column (readout.py)
                scales = None if node.scales is None else torch.from_numpy(node.scales)
                acc = layer.hardware_accumulators(src, weight, bias, scales)
            elif layer.kind is LayerKind.CONV:
                acc = F.conv2d(src, weight, bias, stride=layer.stride, padding=layer.pad)
            else:
                acc = F.linear(src, weight, bias)
            acc = torch.round(acc).to(torch.int64)
            if node.output == "acc":
                values[node.name] = acc
            else:
                values[node.name] = requant(acc, node.multiplier, node.shift).clamp(
                    0, act_max).to(torch.float64)
        elif isinstance(node, PoolNode):
            values[node.name] = F.max_pool2d(src, node.kernel, node.stride, node.pad)
        elif isinstance(node, FlattenNode):
            values[node.name] = torch.flatten(src, 1)
        elif isinstance(node, AddNode):
            parts = []
            for i, name in enumerate(node.inputs):
                value = values[name]
                value = value if value.dtype == torch.int64 else torch.round(value).to(
                    torch.int64)
                parts.append(requant(value, node.multiplier[i], node.shift[i]))
            values[node.name] = (parts[0] + parts[1]).clamp(0, act_max).to(torch.float64)
    out = values[network.output]
    return out.reshape(out.shape[0], -1).to(torch.int64)
