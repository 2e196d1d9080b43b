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
- activations: unsigned Ab-bit after the ReLU with a learned step ``s_a`` per tensor
  (LSQ, Esser et al., ICLR 2020), initialised from a calibration batch, computed as the
  integer network does: the layer's accumulators are recovered as integers and
  requantised with the integer (M, S) of ``s_in * s_w[o] / s_a``,
  ``clamp(round(acc * M / 2^S), 0, 2^Ab - 1)`` (see `ActQuant`), so that the
  fake-quantised network and the exported integer network give the same outputs;
- the image: ``round(x * (2^Ab - 1))`` with x in [0, 1], a fixed scale;
- the product: with a readout other than ``exact`` (a saturating ADC, ...) each layer's
  integer accumulators are the accelerator's, ``readout_product`` of the activation and
  weight codes (per K-group of G rows, per activation bit and weight bit, the column
  popcount read out, then shift-added) plus the bias code, with the gradient of the exact
  product (straight through, `readout_ste`).

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
from .readout import (accelerator_patches, clipped_product, column_signs, is_exact,
                      readout_product, readout_ste)
from .requant import requant_parameters

__all__ = ["round_half_up", "round_ste", "ActQuant", "QLayer", "QNetwork", "input_codes",
           "weight_codes", "bias_codes", "ACT_INIT_QUANTILE"]

#: At most this many elements of a calibration batch are used (torch.quantile's input limit
#: is 2^24); they are evenly spaced over the batch.
CALIBRATION_SAMPLES = 1 << 20

#: Activation steps start at this quantile of a calibration batch divided by 2^Ab - 1.
ACT_INIT_QUANTILE = 0.999


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x + 0.5)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round-half-up in the forward pass, identity in the backward pass."""
    return x + (round_half_up(x) - x).detach()


def _grad_scale(x: torch.Tensor, factor: float) -> torch.Tensor:
    """`x` in the forward pass (exactly), gradient times `factor` in the backward pass."""
    scaled = x * factor
    return x.detach() + (scaled - scaled.detach())


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
    """Unsigned Ab-bit activation quantiser with a learned step s (LSQ).

    ``forward(parts)`` takes integer-valued tensors with their steps, ``(codes, step)``
    (a layer's accumulators with ``s_in * s_w[o]``, or activations with theirs), and
    returns ``clamp(sum_p round(codes_p * M_p / 2^S_p), 0, 2^Ab - 1) * s`` where
    ``M_p / 2^S_p`` is `requant_parameters` of ``step_p / s``: exactly the integer
    network's requantisation (evaluated in float64, exact for these magnitudes), with
    gradients flowing as if ``M / 2^S`` were ``step_p / s`` (straight through).
    """

    def __init__(self, config: MarsConfig) -> None:
        super().__init__()
        self.config = config
        self.qmax = config.act_max
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("initialised", torch.tensor(False))

    @property
    def step(self) -> torch.Tensor:
        return self.scale.abs().clamp_min(1e-8)

    def calibrate(self, value: torch.Tensor) -> None:
        """Set the step from a float activation (before it is quantised)."""
        flat = value.detach().flatten().float()
        if flat.numel() > CALIBRATION_SAMPLES:
            # Evenly spaced indices in integer arithmetic: a float32 linspace rounds indices
            # past the end once the map has more than 2^24 elements (CIFAR batches).
            n = flat.numel()
            picks = torch.arange(CALIBRATION_SAMPLES, dtype=torch.int64)
            flat = flat[picks * (n - 1) // (CALIBRATION_SAMPLES - 1)]
        top = torch.quantile(flat, ACT_INIT_QUANTILE)
        if not torch.isfinite(top) or top <= 0:
            top = flat.abs().max().clamp_min(1e-3)
        with torch.no_grad():
            self.scale.fill_(float(top) / self.qmax)
            self.initialised.fill_(True)

    def forward(self, parts: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        codes0 = parts[0][0]
        numel = codes0[0].numel()
        step = _grad_scale(self.step, 1.0 / (numel * self.qmax) ** 0.5)
        total = 0
        for codes, in_step in parts:
            ratio = in_step.double() / step.double()
            m, s = requant_parameters(ratio.detach().numpy(), self.config, strict=False)
            exact = torch.from_numpy(np.ldexp(m.astype(np.float64), -s)).reshape(ratio.shape)
            ratio = ratio + (exact - ratio).detach()          # value exactly M / 2^S
            if ratio.dim() == 1 and codes.dim() == 4:
                ratio = ratio.view(1, -1, 1, 1)
            total = total + round_ste(codes.double() * ratio)
        return torch.clamp(total, 0, self.qmax).float() * step


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
        self.config = config
        #: compute the accelerator's readout in the quantised forward pass (else the exact
        #: product, the readout-unaware baseline)
        self.readout_aware = True
        #: the gradient through the readout: "plain" (the exact product's) or "clipped"
        #: (none through the K-groups the readout clipped, `clipped_product`)
        self.ste = "plain"
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
        if config.scaled_readout:
            # binary/ternary readouts: per-column scale factors in product units (trained),
            # set from the first quantised batch (`init_column_scales`)
            self.column_scale = nn.Parameter(torch.ones(cout, config.weight_bits))
            self.register_buffer("scales_ready", torch.tensor(False))
        perm = hwc_permutation(node.flatten_from) if node.flatten_from is not None else None
        self.register_buffer("perm", None if perm is None else torch.from_numpy(perm))
        self.out_quant = ActQuant(config) if node.output == "act" else None

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

    def forward(self, x: torch.Tensor, s_in: torch.Tensor | None,
                codes: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pre-activation output: float if `s_in` is None; else fake-quantised weights and
        bias for an input of step `s_in`, returned as integer accumulators (straight
        through) with their per-channel step ``s_in * s_w``.  `codes` are the input's
        integer codes (``x / s_in``); with a readout other than exact the accumulators are
        the accelerator's (`hardware_accumulators`), the gradient the exact product's."""
        w_f, b_f = self.folded()
        acc_step = None
        if s_in is not None:
            s_w = self.weight_scale(w_f)
            w_codes = weight_codes(w_f, s_w, self.weight_bits, ste=True)
            b_codes = bias_codes(b_f, s_in, s_w, ste=True)
            w_f = w_codes * s_w.view(-1, *([1] * (w_f.dim() - 1)))
            b_f = b_codes * (s_in * s_w)
            acc_step = s_in * s_w
        if self.kind is LayerKind.CONV:
            y = F.conv2d(x, w_f, b_f, stride=self.stride, padding=self.pad)
        else:
            y = F.linear(x, w_f, b_f)
        if acc_step is None:
            return y, None
        shape = (1, -1, 1, 1) if y.dim() == 4 else (1, -1)
        acc = round_ste(y / acc_step.view(shape))
        if codes is None:
            codes = torch.round(x / s_in)
        if self.config.scaled_readout and not bool(self.scales_ready):
            self.init_column_scales(codes.detach(), w_codes.detach())
        if self.readout_aware and not is_exact(self.config):
            scales = self.scale_codes(ste=True) if self.config.scaled_readout else None
            clipped = self.ste == "clipped"
            hw = self.hardware_accumulators(codes.detach(), w_codes.detach(),
                                            b_codes.detach(), scales, clip_mask=clipped)
            if clipped:
                hw, mask = hw
                # the gradient of the exact product without the clipped K-groups
                patches = self.patches(x / s_in)
                prod = clipped_product(patches.reshape(-1, patches.shape[-1]),
                                       self.matrix(w_f), mask, self.config.rows_per_step)
                acc = (self.to_layout(prod, codes.shape) + b_f.view(shape)) \
                    / acc_step.view(shape)
            acc = readout_ste(acc, hw)
        return acc, acc_step

    def patches(self, codes: torch.Tensor) -> torch.Tensor:
        """`accelerator_patches` of this layer's input (NCHW or (B, K))."""
        return accelerator_patches(codes, self.kind is LayerKind.CONV,
                                   self.weight.shape[-1] if self.weight.dim() == 4 else 1,
                                   self.stride, self.pad, self.perm)

    def to_layout(self, prod: torch.Tensor, in_shape: torch.Size) -> torch.Tensor:
        """A product (B*L, N) or (B, L, N) in the layer's output layout (NCHW or (B, N))
        for an input of shape `in_shape`."""
        if self.kind is not LayerKind.CONV:
            return prod.reshape(in_shape[0], -1)
        b, cout = in_shape[0], self.weight.shape[0]
        h_out = (in_shape[2] + 2 * self.pad - self.weight.shape[2]) // self.stride + 1
        w_out = (in_shape[3] + 2 * self.pad - self.weight.shape[3]) // self.stride + 1
        return prod.reshape(b, h_out, w_out, cout).permute(0, 3, 1, 2)

    def scale_codes(self, ste: bool = False) -> torch.Tensor:
        """Fixed-point codes of the column scale factors, (N, Wb): ``round(a * 2^F)``
        (or floor, ``scale_rounding``) clamped to ``scale_bits`` signed; float tensor of
        integers (straight-through gradient if `ste`)."""
        cfg = self.config
        value = self.column_scale * float(2 ** cfg.scale_frac_bits)
        if cfg.scale_rounding == "floor":
            rounded = torch.floor(value)
            codes = value + (rounded - value).detach() if ste else rounded
        else:
            codes = round_ste(value) if ste else round_half_up(value)
        top = float(2 ** (cfg.scale_bits - 1))
        return torch.clamp(codes, -top, top - 1)

    @torch.no_grad()
    def init_column_scales(self, codes: torch.Tensor, w_codes: torch.Tensor) -> None:
        """Start the scale factors at the least-squares fit, per output channel, of the
        exact product by the comparator bits of this batch: ``a[n, :]`` minimises
        ``sum_m (exact[m, n] - sum_j a[n, j] * s'_j * Q[m, j, n])^2`` with ``Q`` the
        comparator bits summed over K-groups and bit planes (``2^i`` each) and ``s'_j``
        the column signs (ternary); ``s_j * 2^j * mean popcount`` where the fit is
        singular."""
        cfg = self.config
        patches = accelerator_patches(codes, self.kind is LayerKind.CONV,
                                      self.weight.shape[-1] if self.weight.dim() == 4 else 1,
                                      self.stride, self.pad, self.perm)
        patches = patches.reshape(-1, patches.shape[-1]).to(torch.float64)
        matrix = self.matrix(w_codes).to(torch.float64)
        signs = column_signs(cfg)
        counts = readout_product(patches, matrix, cfg) * signs[None, :, None]  # (M, Wb, N)
        exact = patches @ matrix.T                                              # (M, N)
        a = torch.einsum("mjn,mkn->njk", counts, counts)                        # (N, Wb, Wb)
        b = torch.einsum("mjn,mn->nj", counts, exact)                           # (N, Wb)
        eye = torch.eye(cfg.weight_bits, dtype=torch.float64)
        ridge = 1e-6 * a.diagonal(dim1=1, dim2=2).sum(dim=1).clamp_min(1.0)
        fit = torch.linalg.solve(a + ridge[:, None, None] * eye, b[..., None])[..., 0]
        j = torch.arange(cfg.weight_bits, dtype=torch.float64)
        fallback = torch.pow(2.0, j) * torch.where(j == cfg.weight_bits - 1, -1.0, 1.0) \
            / signs * max(1.0, cfg.readout_threshold)
        fit = torch.where(torch.isfinite(fit) & (fit != 0), fit, fallback[None, :])
        self.column_scale.copy_(fit.to(self.column_scale.dtype))
        self.scales_ready.fill_(True)

    def hardware_accumulators(self, codes: torch.Tensor, w_codes: torch.Tensor,
                              b_codes: torch.Tensor, scales: torch.Tensor | None = None,
                              clip_mask: bool = False):
        """The accelerator's accumulators for input codes (NCHW or (B, K)), the weight
        codes (PyTorch layout), bias codes and (binary/ternary) column scale codes (N, Wb):
        `readout_product` plus the bias, in the layer's output layout, float64.  Only the
        scale codes carry a gradient.  `clip_mask`: also `readout_product`'s mask of the
        unclipped K-groups."""
        patches = self.patches(codes)
        out = readout_product(patches, self.matrix(w_codes), self.config, scales=scales,
                              clip_mask=clip_mask)
        prod, mask = out if clip_mask else (out, None)
        prod = self.to_layout(prod + b_codes.to(torch.float64), codes.shape)
        return (prod, mask) if clip_mask else prod


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
            n.name: ActQuant(config) for n in nodes if n.op == "add"})
        self.quantised = False
        self.calibrating = False

    @property
    def input_scale(self) -> float:
        return 1.0 / ((1 << self.config.act_bits) - 1)

    def _quantise(self, quant: ActQuant, parts: list[tuple[torch.Tensor, torch.Tensor]]
                  ) -> torch.Tensor:
        if self.calibrating and not bool(quant.initialised):
            shape = [(1, -1, 1, 1) if step.dim() == 1 and codes.dim() == 4 else
                     ((1, -1) if step.dim() == 1 else ()) for codes, step in parts]
            quant.calibrate(torch.relu(sum(codes * step.view(sh) if sh else codes * step
                                           for (codes, step), sh in zip(parts, shape))))
        return quant(parts)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.quantised:
            return self._forward_float(images)
        # every tensor as (integer codes, step): activations with a scalar step, raw
        # accumulators with a per-channel step
        step0 = torch.tensor(self.input_scale)
        ints = {"input": (input_codes(images, self.config.act_bits), step0)}
        for node in self.nodes:
            codes, step = ints[node.inputs[0]]
            if node.is_layer:
                layer = self.layers[node.name]
                acc, acc_step = layer(codes * step, step, codes)
                if layer.out_quant is not None:
                    value = self._quantise(layer.out_quant, [(acc, acc_step)])
                    out_step = layer.out_quant.step
                    ints[node.name] = (round_ste(value / out_step), out_step)
                else:
                    ints[node.name] = (acc, acc_step)
            elif node.op == "maxpool":
                ints[node.name] = (F.max_pool2d(codes, node.kernel, node.stride, node.pad), step)
            elif node.op == "flatten":
                ints[node.name] = (torch.flatten(codes, 1), step)
            elif node.op == "add":
                quant = self.adds[node.name]
                value = self._quantise(quant, [ints[node.inputs[0]], ints[node.inputs[1]]])
                ints[node.name] = (round_ste(value / quant.step), quant.step)
            else:
                raise TypeError(f"unknown op {node.op!r}")
        codes, step = ints[self.nodes[-1].name]
        shape = (1, -1, 1, 1) if codes.dim() == 4 else (1, -1)
        return codes * step.view(shape)

    def _forward_float(self, images: torch.Tensor) -> torch.Tensor:
        """The folded float network (no quantisation): equals the float model in eval."""
        values = {"input": images}
        for node in self.nodes:
            src = values[node.inputs[0]]
            if node.is_layer:
                layer = self.layers[node.name]
                y, _ = layer(src, None)
                values[node.name] = torch.relu(y) if layer.out_quant is not None else y
            elif node.op == "maxpool":
                values[node.name] = F.max_pool2d(src, node.kernel, node.stride, node.pad)
            elif node.op == "flatten":
                values[node.name] = torch.flatten(src, 1)
            elif node.op == "add":
                values[node.name] = torch.relu(src + values[node.inputs[1]])
            else:
                raise TypeError(f"unknown op {node.op!r}")
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
