"""Quantisation-aware training with batch norm folded into the weights.

The float network is rebuilt as a `QNetwork`: one `QLayer` per conv/linear layer with its
batch norm folded in (Jacob et al., CVPR 2018, section 3.2; Krishnamoorthi, arXiv
1806.08342, section 3.2, with the batch-norm statistics frozen)::

    scale[o] = gamma[o] / sqrt(running_var[o] + eps)
    W_f[o]   = W[o] * scale[o]
    b_f[o]   = beta[o] + (b[o] - running_mean[o]) * scale[o]

and the folded tensors are fake-quantised as the integer network will use them:

- weights: per-output-channel symmetric, ``s_w[o] = max|W_f[o]| / (2^(Wb-1) - 1)``, codes
  ``round(W_f / s_w)`` in [-(2^(Wb-1) - 1), 2^(Wb-1) - 1] (the code -2^(Wb-1) is never
  used).  The last layer uses one scale for all its channels so that its raw integer
  accumulators are proportional to the float logits (same arg-max);
- bias: ``round(b_f / (s_in * s_w[o]))``, the accumulator's own scale;
- activations: unsigned Ab-bit after the ReLU, ``clamp(round(y / s_a), 0, 2^Ab - 1)``,
  with a learned step ``s_a`` per tensor (LSQ, Esser et al., ICLR 2020), initialised
  from a calibration batch;
- the image: ``round(x * (2^Ab - 1))`` with x in [0, 1], a fixed scale.

``round`` is round-half-up, ``floor(v + 1/2)``, everywhere, as in the integer network;
gradients pass it straight through (STE, Bengio et al. 2013).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mars.config import MarsConfig
from mars.sw.layer import LayerKind

from .models import Node, hwc_permutation

__all__ = ["round_half_up", "round_ste", "ActQuant", "QLayer", "QNetwork", "input_codes",
           "weight_codes", "bias_codes", "ACT_INIT_QUANTILE"]

#: Activation steps start at this quantile of a calibration batch divided by 2^Ab - 1.
ACT_INIT_QUANTILE = 0.999


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x + 0.5)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round-half-up in the forward pass, identity in the backward pass."""
    return x + (round_half_up(x) - x).detach()


def _grad_scale(x: torch.Tensor, factor: float) -> torch.Tensor:
    return (x - x * factor).detach() + x * factor


def input_codes(images: torch.Tensor, act_bits: int) -> torch.Tensor:
    """Ab-bit codes of images in [0, 1] (float tensor of integers)."""
    qmax = (1 << act_bits) - 1
    return torch.clamp(round_half_up(images * qmax), 0, qmax)


def weight_codes(w_f: torch.Tensor, s_w: torch.Tensor, weight_bits: int,
                 ste: bool = False) -> torch.Tensor:
    """``clamp(round(W_f / s_w), -(2^(Wb-1) - 1), 2^(Wb-1) - 1)`` per output channel."""
    qmax = (1 << (weight_bits - 1)) - 1
    ratio = w_f / s_w.view(-1, *([1] * (w_f.dim() - 1)))
    return torch.clamp(round_ste(ratio) if ste else round_half_up(ratio), -qmax, qmax)


def bias_codes(b_f: torch.Tensor, s_in: torch.Tensor, s_w: torch.Tensor,
               ste: bool = False) -> torch.Tensor:
    ratio = b_f / (s_in * s_w)
    return round_ste(ratio) if ste else round_half_up(ratio)


class ActQuant(nn.Module):
    """Unsigned Ab-bit activation quantiser with a learned step (LSQ).

    ``forward(parts)`` returns ``clamp(sum_p round(p / s), 0, 2^Ab - 1) * s``: one part for
    a layer's output, two for a residual add (each input rounded to the step first, as
    the integer add does).
    """

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.qmax = (1 << bits) - 1
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("initialised", torch.tensor(False))

    def calibrate(self, value: torch.Tensor) -> None:
        """Set the step from a float activation (before it is quantised)."""
        flat = value.detach().flatten().float()
        if flat.numel() > 1 << 20:
            flat = flat[torch.linspace(0, flat.numel() - 1, 1 << 20).long()]
        top = torch.quantile(flat, ACT_INIT_QUANTILE)
        if not torch.isfinite(top) or top <= 0:
            top = flat.abs().max().clamp_min(1e-3)
        with torch.no_grad():
            self.scale.fill_(float(top) / self.qmax)
            self.initialised.fill_(True)

    def forward(self, parts: list[torch.Tensor]) -> torch.Tensor:
        numel = parts[0][0].numel()
        step = _grad_scale(self.scale.abs().clamp_min(1e-8), 1.0 / (numel * self.qmax) ** 0.5)
        codes = sum(round_ste(p / step) for p in parts)
        return torch.clamp(codes, 0, self.qmax) * step


class QLayer(nn.Module):
    """A conv or linear layer with its batch norm folded in, fake-quantised.

    `mask` (the weight's shape) zeroes pruned weights.  `matrix`/`from_matrix` convert
    between the PyTorch weight layout and the accelerator's (Cout, K) matrix (K in
    `flatten_conv_weight` order; a linear layer after a flatten has its columns permuted
    from PyTorch's CHW order to HWC).
    """

    def __init__(self, node: Node, config: MarsConfig, *, per_channel: bool) -> None:
        super().__init__()
        module, bn = node.module, node.bn
        self.node_name = node.name
        self.kind = node.geometry.kind
        self.stride, self.pad = node.geometry.stride, node.geometry.pad
        self.weight_bits = config.weight_bits
        self.per_channel = per_channel
        cout = module.weight.shape[0]
        self.weight = nn.Parameter(module.weight.detach().clone())
        bias = module.bias.detach().clone() if module.bias is not None else torch.zeros(cout)
        self.bias = nn.Parameter(bias)
        self.folds_bn = bn is not None
        if bn is not None:
            self.gamma = nn.Parameter(bn.weight.detach().clone())
            self.beta = nn.Parameter(bn.bias.detach().clone())
            self.register_buffer("running_mean", bn.running_mean.detach().clone())
            self.register_buffer("running_var", bn.running_var.detach().clone())
            self.eps = bn.eps
        self.register_buffer("mask", torch.ones_like(self.weight))
        perm = hwc_permutation(node.flatten_from) if node.flatten_from is not None else None
        self.register_buffer("perm", None if perm is None else torch.from_numpy(perm))
        self.out_quant = ActQuant(config.act_bits) if node.output == "act" else None

    # -- layouts --------------------------------------------------------------------------

    def matrix(self, tensor: torch.Tensor) -> torch.Tensor:
        """PyTorch-layout weight-shaped tensor -> (Cout, K) in the accelerator's order."""
        if self.kind is LayerKind.CONV:
            return tensor.permute(0, 2, 3, 1).reshape(tensor.shape[0], -1)
        return tensor if self.perm is None else tensor[:, self.perm]

    def from_matrix(self, matrix: torch.Tensor) -> torch.Tensor:
        """Inverse of `matrix`."""
        shape = self.weight.shape
        if self.kind is LayerKind.CONV:
            cout, cin, kh, kw = shape
            return matrix.reshape(cout, kh, kw, cin).permute(0, 3, 1, 2).contiguous()
        if self.perm is None:
            return matrix
        out = torch.empty_like(matrix)
        out[:, self.perm] = matrix
        return out

    # -- folding and quantisation ---------------------------------------------------------

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Folded float weight (PyTorch layout, pruned weights zero) and bias."""
        weight = self.weight * self.mask
        if not self.folds_bn:
            return weight, self.bias
        scale = self.gamma / torch.sqrt(self.running_var + self.eps)
        w_f = weight * scale.view(-1, *([1] * (weight.dim() - 1)))
        b_f = self.beta + (self.bias - self.running_mean) * scale
        return w_f, b_f

    def weight_scale(self, w_f: torch.Tensor) -> torch.Tensor:
        """Per-channel step ``max|W_f[o]| / (2^(Wb-1) - 1)`` (detached); a channel of zeros
        takes the layer's largest step; the last layer one shared step."""
        qmax = (1 << (self.weight_bits - 1)) - 1
        absmax = w_f.detach().abs().reshape(w_f.shape[0], -1).amax(dim=1)
        top = absmax.max()
        if not self.per_channel or top == 0:
            absmax = torch.full_like(absmax, float(top) if top > 0 else 1.0)
        absmax = torch.where(absmax > 0, absmax, top)
        return absmax / qmax

    def forward(self, x: torch.Tensor, s_in: torch.Tensor | None) -> torch.Tensor:
        """Pre-activation output: float if `s_in` is None, else fake-quantised weights and
        bias for an input of step `s_in`."""
        w_f, b_f = self.folded()
        if s_in is not None:
            s_w = self.weight_scale(w_f)
            w_f = weight_codes(w_f, s_w, self.weight_bits, ste=True) * \
                s_w.view(-1, *([1] * (w_f.dim() - 1)))
            b_f = bias_codes(b_f, s_in, s_w, ste=True) * (s_in * s_w)
        if self.kind is LayerKind.CONV:
            return F.conv2d(x, w_f, b_f, stride=self.stride, padding=self.pad)
        return F.linear(x, w_f, b_f)


class QNetwork(nn.Module):
    """The accelerator graph (`parse_model`) as a PyTorch module.

    ``quantised = False`` runs the folded float network (equal to the float network in
    eval mode); ``True`` runs it fake-quantised.  Takes images in [0, 1] (N, C, H, W)."""

    def __init__(self, nodes: list[Node], config: MarsConfig) -> None:
        super().__init__()
        self.nodes = list(nodes)
        self.config = config
        layers = [n for n in nodes if n.is_layer]
        self.layers = nn.ModuleDict({
            n.name: QLayer(n, config, per_channel=n is not layers[-1]) for n in layers})
        self.adds = nn.ModuleDict({
            n.name: ActQuant(config.act_bits) for n in nodes if n.op == "add"})
        self.quantised = False
        self.calibrating = False

    @property
    def input_scale(self) -> float:
        return 1.0 / ((1 << self.config.act_bits) - 1)

    def activation_scale(self, name: str) -> torch.Tensor | None:
        """Step of the activation tensor `name` (None for raw accumulators)."""
        if name == "input":
            return torch.tensor(self.input_scale)
        node = next(n for n in self.nodes if n.name == name)
        if node.is_layer:
            quant = self.layers[name].out_quant
            return None if quant is None else quant.scale.abs().clamp_min(1e-8)
        if node.op == "add":
            return self.adds[name].scale.abs().clamp_min(1e-8)
        return self.activation_scale(node.inputs[0])

    def _quantise(self, quant: ActQuant, parts: list[torch.Tensor]) -> torch.Tensor:
        if not self.quantised:
            return torch.relu(sum(parts))
        if self.calibrating and not bool(quant.initialised):
            quant.calibrate(torch.relu(sum(parts)))
        return quant(parts)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.quantised:
            x = input_codes(images, self.config.act_bits) * self.input_scale
            steps = {"input": torch.tensor(self.input_scale)}
        else:
            x, steps = images, {}
        values = {"input": x}
        for node in self.nodes:
            src = values[node.inputs[0]]
            if node.is_layer:
                layer = self.layers[node.name]
                y = layer(src, steps.get(node.inputs[0]) if self.quantised else None)
                if layer.out_quant is not None:
                    y = self._quantise(layer.out_quant, [y])
                    steps[node.name] = layer.out_quant.scale.abs().clamp_min(1e-8)
            elif node.op == "maxpool":
                y = F.max_pool2d(src, node.kernel, node.stride, node.pad)
                if node.inputs[0] in steps:
                    steps[node.name] = steps[node.inputs[0]]
            elif node.op == "flatten":
                y = torch.flatten(src, 1)
                if node.inputs[0] in steps:
                    steps[node.name] = steps[node.inputs[0]]
            elif node.op == "add":
                quant = self.adds[node.name]
                y = self._quantise(quant, [src, values[node.inputs[1]]])
                steps[node.name] = quant.scale.abs().clamp_min(1e-8)
            else:
                raise TypeError(f"unknown op {node.op!r}")
            values[node.name] = y
        return values[self.nodes[-1].name]

    @torch.no_grad()
    def calibrate(self, images: torch.Tensor) -> None:
        """Initialise every activation step from one batch (LSQ's data-driven start)."""
        was_training = self.training
        self.eval()
        self.quantised, self.calibrating = True, True
        try:
            self(images)
        finally:
            self.calibrating = False
            self.train(was_training)

    def prunable(self) -> list[QLayer]:
        return list(self.layers.values())


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()
