"""The training pipeline behind ``mars train``: float training, QAT with BN folding and
CIM-aware pruning, integer export, verification and the model package.

Steps (docs/training.md):

1. **float**: the float network (BN in training mode) for ``epochs`` epochs -> the float
   baseline accuracy;
2. **qat**: the `QNetwork` (BN folded with frozen statistics, fake-quantised weights and
   activations, LSQ steps calibrated on one batch, the exact product unless
   ``readout_aware``) for ``qat_epochs`` epochs, pruned on Zhu & Gupta's cubic schedule
   from 0 to the target sparsity over the first ``prune_end`` fraction of the steps,
   then fine-tuned with fixed masks;
2b. **readout**: binary/ternary column scale factors start at the sequential
   least-squares fit (`mars.sw.train.calibrate`); ``readout_finetune`` epochs then train
   through the configured readout (straight-through or clipped gradient);
3. **export**: integer weights, biases, (M, S); the integer network is run in NumPy
   with the accelerator's arithmetic (`mars.sw.golden.accel.run_accelerator`: the
   configured readout of every macro step) over the whole test split, and checked
   against the same integers evaluated with PyTorch's operators in PyTorch's layouts
   (exactly equal logits required) -> the logits and accuracy the package reports;
4. **package**: written atomically.

Deterministic on CPU for a given seed and thread count: the same inputs give a
byte-identical package.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mars.errors import MarsError
from mars.config import MarsConfig
from mars.sw.golden.accel import run_accelerator
from mars.sw.golden.network import IntegerNetwork, run_network

from .calibrate import sequential_scale_fit
from .data import Dataset, load_dataset
from .export import NodeScales, export_network, torch_integer_forward
from .models import Node, build_model, default_model, parse_model
from mars.sw.package.writer import build_package_files, write_folder_atomically
from .prune import SCOPES, LayerSparsity, Pruner, agp_sparsity, group_shape, zero_groups
from .quant import QNetwork, input_codes
from .readout import is_exact, numpy_product

__all__ = ["TrainOptions", "TrainResult", "TrainingError", "train", "summary_table",
           "accuracy", "deterministic"]


#: Temperature of the distillation loss (Hinton et al. 2015).
DISTILL_T = 4.0

#: Gradients through the readout (`TrainOptions.ste`).
STES = ("plain", "clipped")

#: Readout-aware fine-tuning epochs of a binary/ternary readout unless told otherwise.
DEFAULT_FINETUNE = 5

#: Learning rate of the readout-aware fine-tuning unless told otherwise: binary/ternary
#: readouts (the sweep in docs/training.md), and the others (saturating ADCs).
DEFAULT_SCALED_LR = 1e-3
DEFAULT_READOUT_LR = 2e-4


class TrainingError(MarsError, RuntimeError):
    """Training that cannot go on (a loss that became NaN, ...); the message says where."""


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Everything `train` needs besides the configuration; defaults train the digits CNN.

    ``weight_bits``/``act_bits`` override the configuration's (the package's config.json
    carries the result).  ``sparsity`` is the target fraction of pruned groups (or
    weights, for ``structure="unstructured"``) per prunable layer (``scope="layer"``) or
    over all prunable layers (``"global"``); the first layer stays dense unless
    ``prune_first`` (the last layer too unless ``prune_last`` is false).  ``distill`` weighs
    the distillation loss from the float network in QAT (0 disables it).
    ``train_subset``/``test_subset`` keep the first images only (tests, quick looks).
    ``test_vectors`` test images go into the package with their expected logits.
    ``readout_aware`` true makes QAT compute every product with the configured readout
    (`mars.sw.train.readout`); false or None (default) trains QAT with the exact product
    (the package's logits are the accelerator's either way; on digits at 3-bit saturation
    readout-aware QAT from the start was unstable, docs/training.md).  After an exact
    QAT, a binary/ternary readout's column scale factors start at the sequential
    least-squares fit on ``scale_calibration`` training images
    (`mars.sw.train.calibrate.sequential_scale_fit`).  ``readout_finetune`` epochs of
    readout-aware fine-tuning follow at learning rate ``readout_lr`` (None:
    ``DEFAULT_SCALED_LR`` for binary/ternary readouts, ``DEFAULT_READOUT_LR`` otherwise;
    ``scale_lr`` for the column scale factors, None: the same) (masks fixed, any
    non-exact readout); None is ``DEFAULT_FINETUNE`` for binary/ternary readouts and 0
    otherwise.  ``ste`` is the gradient through the readout: ``"plain"`` (the exact
    product's) or ``"clipped"`` (none through a K-group any of whose popcounts the
    readout clips, `mars.sw.train.readout.clipped_ste`).
    """

    dataset: str = "digits"
    data_path: str | None = None
    model: str | None = None
    weight_bits: int | None = None
    act_bits: int | None = None
    epochs: int = 30
    qat_epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    qat_lr: float = 5e-4
    weight_decay: float = 1e-4
    sparsity: float = 0.5
    structure: str = "group"
    scope: str = "layer"
    prune_first: bool = False
    prune_last: bool = True
    prune_end: float = 0.6
    distill: float = 0.9
    seed: int = 0
    threads: int = 1
    train_subset: int | None = None
    test_subset: int | None = None
    test_vectors: int = 1000
    readout_aware: bool | None = None
    readout_finetune: int | None = None
    readout_lr: float | None = None
    scale_lr: float | None = None
    ste: str = "plain"
    scale_calibration: int = 256

    def check(self) -> None:
        for name in ("epochs", "qat_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0, not {getattr(self, name)}")
        if self.batch_size < 1 or self.threads < 1 or self.test_vectors < 0:
            raise ValueError("batch_size and threads must be positive, test_vectors >= 0")
        # A slice [:0] or [:-n] would be silent; one training image gives no step (_fit
        # skips the last batch of one).
        for name, lo in (("train_subset", 2), ("test_subset", 1)):
            value = getattr(self, name)
            if value is not None and value < lo:
                raise ValueError(f"{name} must be at least {lo}, not {value}")
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity must lie in [0, 1), not {self.sparsity}")
        if not 0.0 <= self.distill <= 1.0:
            raise ValueError(f"distill must lie in [0, 1], not {self.distill}")
        if not 0.0 < self.prune_end <= 1.0:
            raise ValueError(f"prune_end must lie in (0, 1], not {self.prune_end}")
        if self.structure not in ("group", "unstructured"):
            raise ValueError(f"structure must be 'group' or 'unstructured', not "
                             f"{self.structure!r}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {self.scope!r}")
        if self.scope == "block" and self.structure != "group":
            raise ValueError("scope 'block' needs group pruning")
        if self.readout_finetune is not None and self.readout_finetune < 0:
            raise ValueError(f"readout_finetune must be at least 0, not "
                             f"{self.readout_finetune}")
        if self.ste not in STES:
            raise ValueError(f"ste must be one of {', '.join(STES)}, not {self.ste!r}")
        if self.scale_calibration < 1:
            raise ValueError(f"scale_calibration must be at least 1, not "
                             f"{self.scale_calibration}")
        # `not 0 < x < inf` also refuses NaN; an infinite rate only fails at export.
        for name in ("lr", "qat_lr", "readout_lr", "scale_lr"):
            if name in ("scale_lr", "readout_lr") and getattr(self, name) is None:
                continue
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a positive finite number, not "
                                 f"{getattr(self, name)}")
        if not 0 <= self.weight_decay < math.inf:
            raise ValueError(f"weight_decay must be a finite number >= 0, not "
                             f"{self.weight_decay}")


@dataclasses.dataclass
class TrainResult:
    """What a training run produced (accuracies are fractions of the test split)."""

    package: Path | None
    config: MarsConfig
    network: IntegerNetwork
    layers: list[LayerSparsity]
    float_accuracy: float
    qat_accuracy: float
    integer_accuracy: float
    agreement: float             # fake-quantised vs integer predictions, fraction equal
    test_images: int
    seconds: dict[str, float]
    package_bytes: int = 0
    qnet: QNetwork | None = dataclasses.field(default=None, repr=False)
    #: integer accuracy (the accelerator's) before the readout-aware fine-tuning, if any
    start_accuracy: float | None = None


@contextlib.contextmanager
def deterministic(seed: int, threads: int) -> Iterator[None]:
    """Seeded, deterministic PyTorch on `threads` CPU threads; restores the settings."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _progress(iterable, *, enabled: bool, **kwargs):
    if not enabled:
        return iterable
    from tqdm import tqdm

    # disable=None: bars on a terminal only, not in logs captured from a pipe
    return tqdm(iterable, leave=False, dynamic_ncols=True, disable=None, **kwargs)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    model.eval()
    return torch.cat([model(images[i:i + batch]).argmax(dim=1)
                      for i in range(0, len(images), batch)])


def _fraction(predictions, labels) -> float:
    """Fraction of equal entries, from exact integer counts."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return int((predictions == labels).sum()) / len(labels) if len(labels) else 0.0


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    return _fraction(predict(model, images).numpy(), labels.numpy())


def _cosine(step: int, total: int) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float,
         weight_decay: float, batch_size: int, generator: torch.Generator, phase: str,
         show: bool, before_step: Callable[[int, int], None] | None = None,
         teacher: nn.Module | None = None, distill: float = 0.0,
         scale_lr: float | None = None) -> None:
    """Adam with a cosine learning-rate decay; `before_step(step, total)` runs first at
    every step (the pruning schedule).  A last batch of a single image is skipped (batch
    norm cannot train on it).  `scale_lr`: the learning rate of the column scale factors
    (binary/ternary readouts), else `lr`."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    is_scale = [n.rsplit(".", 1)[-1] == "column_scale" for n, _ in named]
    groups = [{"params": [p for (_, p), s in zip(named, is_scale) if not s], "base": lr}]
    if any(is_scale):
        groups.append({"params": [p for (_, p), s in zip(named, is_scale) if s],
                       "base": lr if scale_lr is None else scale_lr})
    optimiser = torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    starts = [s for s in range(0, len(x), batch_size) if len(x) - s > 1]
    total = epochs * len(starts)
    step = 0
    bar = _progress(range(epochs), enabled=show, desc=phase, unit="epoch")
    for epoch in bar:
        model.train()
        order = torch.randperm(len(x), generator=generator)
        running, batches = 0.0, 0
        for start in starts:
            if before_step is not None:
                before_step(step, total)
            index = order[start:start + batch_size]
            logits = model(x[index])
            loss = F.cross_entropy(logits, y[index])
            if teacher is not None and distill > 0:
                with torch.no_grad():
                    target = F.softmax(teacher(x[index]) / DISTILL_T, dim=1)
                soft = F.kl_div(F.log_softmax(logits / DISTILL_T, dim=1), target,
                                reduction="batchmean") * DISTILL_T ** 2
                loss = (1 - distill) * loss + distill * soft
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"{phase}: the loss became {loss.item()} at epoch {epoch + 1}, step "
                    f"{start // batch_size + 1}; try a lower learning rate")
            for group in optimiser.param_groups:
                group["lr"] = group["base"] * _cosine(step, total)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            running += loss.item()
            batches += 1
            step += 1
        if show:
            bar.set_postfix(loss=f"{running / max(batches, 1):.4f}")


def _to_hwc_codes(codes: torch.Tensor, act_bits: int) -> np.ndarray:
    dtype = np.uint8 if act_bits <= 8 else np.uint16
    return codes.permute(0, 2, 3, 1).numpy().astype(dtype)


def _layer_sparsity(network: IntegerNetwork, qnet: QNetwork, prunable: set[str],
                    config: MarsConfig) -> list[LayerSparsity]:
    rows = []
    G, cpg = config.rows_per_step, config.channels_per_group
    for layer in network.layers:
        n, k = layer.weight.shape
        blocks, kgroups = group_shape(n, k, G, cpg)
        mask = qnet.layers[layer.name].matrix(qnet.layers[layer.name].mask).numpy()
        rows.append(LayerSparsity(
            name=layer.name, prunable=layer.name in prunable, groups=blocks * kgroups,
            pruned_groups=int(zero_groups(mask, G, cpg).sum()),
            zero_groups=int(zero_groups(layer.weight, G, cpg).sum()),
            weights=n * k, zero_weights=int((layer.weight == 0).sum())))
    return rows


def finetune_epochs(options: TrainOptions, config: MarsConfig) -> int:
    """Readout-aware fine-tuning epochs: ``options.readout_finetune``, or by default
    `DEFAULT_FINETUNE` for a binary/ternary readout and 0 for the others."""
    if options.readout_finetune is not None:
        return options.readout_finetune if not is_exact(config) else 0
    return DEFAULT_FINETUNE if config.scaled_readout else 0


def finetune_lr(options: TrainOptions, config: MarsConfig) -> float:
    """Learning rate of the readout-aware fine-tuning: ``options.readout_lr``, or by
    default `DEFAULT_SCALED_LR` for a binary/ternary readout, `DEFAULT_READOUT_LR` for the
    others."""
    if options.readout_lr is not None:
        return options.readout_lr
    return DEFAULT_SCALED_LR if config.scaled_readout else DEFAULT_READOUT_LR


@torch.no_grad()
def fit_column_scales(qnet: QNetwork, images: torch.Tensor) -> None:
    """Set every layer's column scale factors to the sequential least-squares fit
    (`mars.sw.train.calibrate.sequential_scale_fit`) of the integer network the QAT
    network exports, on `images` (N, C, H, W) in [0, 1]."""
    config = qnet.config
    network, _ = export_network(qnet)
    codes = _to_hwc_codes(input_codes(images, config.act_bits), config.act_bits)
    fitted = sequential_scale_fit(network, codes)
    frac = float(2 ** config.scale_frac_bits)
    for node in fitted.layers:
        layer = qnet.layers[node.name]
        layer.column_scale.copy_(torch.from_numpy(node.scales / frac).to(
            layer.column_scale.dtype))
        layer.scales_ready.fill_(True)


def check_fits(nodes: list[Node], config: MarsConfig) -> None:
    """Before training, what no trained weights can change: every layer must fit the
    sparse decoder of `config` (its k-table and the activation buffer its input map is
    read from), and a residual add needs ``residual_adds``; `SparseExportError` names the
    node and the configuration field (the mapper checks the rest, which depends on the kept groups,
    after training: `check_maps`)."""
    from mars.sw.sparse import DecoderLimitError, ktable_words

    from mars.sw.package.sparse import SparseExportError

    for node in nodes:
        if node.op == "add" and not config.residual_adds:
            raise SparseExportError(
                f"node {node.source!r} ({node.name}) is a residual add: configuration "
                f"{config.name} has residual_adds off (the 'mars' preset, or a configuration "
                f"JSON with \"residual_adds\": true, runs them)")
        if node.is_layer:
            try:
                ktable_words(node.geometry, config)
            except DecoderLimitError as error:
                raise SparseExportError(f"layer {node.source!r} ({node.name}): {error}") \
                    from None


def summary_table(result: TrainResult, nodes: list[Node]) -> str:
    """Per-layer table (shape, group sparsity, stored groups) and the accuracies."""
    by_name = {n.name: n for n in nodes}
    head = (f"{'layer':<8} {'source':<22} {'op':<6} {'N x K':>11} {'groups':>7} "
            f"{'pruned':>7} {'stored':>7} {'group sp.':>9} {'weight sp.':>10}")
    lines = [head, "-" * len(head)]
    total = stored = 0
    for row in result.layers:
        node = by_name[row.name]
        n, k = node.geometry.cout, node.geometry.k
        lines.append(
            f"{row.name:<8} {node.source[:22]:<22} {node.op:<6} {f'{n} x {k}':>11} "
            f"{row.groups:>7} {row.pruned_groups:>7} {row.stored_groups:>7} "
            f"{100 * row.group_sparsity:>8.1f}% {100 * row.weight_sparsity:>9.1f}%"
            + ("" if row.prunable else "  (dense)"))
        total += row.groups
        stored += row.stored_groups
    lines.append("-" * len(head))
    lines.append(f"{'total':<8} {'':<22} {'':<6} {'':>11} {total:>7} {'':>7} {stored:>7} "
                 f"{100 * (1 - stored / max(total, 1)):>8.1f}%   (prunable layers: "
                 f"{100 * _prunable_sparsity(result.layers):.1f}%)")
    lines.append("")
    lines.append(f"accuracy on {result.test_images} test images:  float "
                 f"{100 * result.float_accuracy:.2f} %   QAT (fake-quant) "
                 f"{100 * result.qat_accuracy:.2f} %   "
                 f"integer {100 * result.integer_accuracy:.2f} %"
                 f"   (fake-quant/integer predictions agree on "
                 f"{100 * result.agreement:.2f} %)")
    secs = result.seconds
    lines.append("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in secs.items()))
    return "\n".join(lines)


def _prunable_sparsity(layers: list[LayerSparsity]) -> float:
    """Fraction of the groups of the prunable layers that are not stored."""
    rows = [r for r in layers if r.prunable]
    total = sum(r.groups for r in rows)
    return 1 - sum(r.stored_groups for r in rows) / total if total else 0.0


def _dataset_header(data: Dataset, options: TrainOptions, model_name: str) -> dict[str, Any]:
    from .data import DIGITS_SPLIT_SEED, DIGITS_TEST_FRACTION

    split = (f"stratified: per class, np.random.default_rng({DIGITS_SPLIT_SEED} + label)"
             f".permutation; the first round({DIGITS_TEST_FRACTION} * n) are test images"
             if data.name == "digits" else "official train/test files")
    return {"name": data.name, "split": split, "train_images": len(data.x_train),
            "test_images": len(data.x_test), "classes": int(data.classes),
            "image_shape_chw": list(data.image_shape), "pixel_max": int(data.pixel_max),
            "fingerprint": data.fingerprint()}


#: Configuration fields that only the readout phases (2b, 3) read: a QAT with the exact
#: product does not depend on them, so `train`'s ``qat_cache`` shares one QAT network
#: between the readouts of one geometry.
READOUT_FIELDS = ("name", "readout_mode", "readout_bits", "readout_threshold", "scale_bits",
                  "scale_frac_bits", "scale_rounding")

#: `TrainOptions` fields that only the readout phases and the export read.
READOUT_OPTIONS = ("readout_finetune", "readout_lr", "ste", "scale_calibration",
                   "test_vectors", "scale_lr")

#: QNetwork entries of a binary/ternary readout only (the column scale factors), left out
#: of a cached QAT network: the scale start sets them after QAT.
_SCALE_KEYS = ("column_scale", "scales_ready")


def qat_cache_key(config: MarsConfig, options: TrainOptions, model_name: str,
                  data: Dataset) -> str:
    """SHA-256 (hex, 24 digits) of everything the float and QAT phases depend on: the
    configuration without `READOUT_FIELDS`, the options without `READOUT_OPTIONS`, the
    model name, the data's fingerprint and torch's version."""
    import hashlib
    import json

    cfg = {k: (v.value if hasattr(v, "value") else v)
           for k, v in dataclasses.asdict(config).items() if k not in READOUT_FIELDS}
    opts = {k: v for k, v in dataclasses.asdict(options).items() if k not in READOUT_OPTIONS}
    text = json.dumps({"config": cfg, "options": opts, "model": model_name,
                       "data": data.fingerprint(), "torch": torch.__version__},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _save_qat(path: Path, model: nn.Module, qnet: QNetwork, generator: torch.Generator,
              float_acc: float, seconds: dict[str, float]) -> None:
    state = {k: v for k, v in qnet.state_dict().items()
             if k.rsplit(".", 1)[-1] not in _SCALE_KEYS}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{id(state)}.tmp")
    torch.save({"model": model.state_dict(), "qnet": state,
                "generator": generator.get_state(), "rng": torch.get_rng_state(),
                "float_acc": float_acc, "seconds": dict(seconds)}, tmp)
    tmp.replace(path)       # atomic: parallel runs of the same key write the same bytes


def _load_qat(path: Path, model: nn.Module, qnet: QNetwork,
              generator: torch.Generator) -> tuple[float, dict[str, float]]:
    saved = torch.load(path, weights_only=False)
    model.load_state_dict(saved["model"])
    missing, unexpected = qnet.load_state_dict(saved["qnet"], strict=False)
    if unexpected or any(k.rsplit(".", 1)[-1] not in _SCALE_KEYS for k in missing):
        raise RuntimeError(f"internal error: the cached QAT network {path} does not fit "
                           f"(missing {missing}, unexpected {unexpected})")
    generator.set_state(saved["generator"])
    torch.set_rng_state(saved["rng"])
    return saved["float_acc"], saved["seconds"]


def _qnet(nodes: list[Node], config: MarsConfig, options: TrainOptions) -> QNetwork:
    """The QAT network of the (trained) float layers of `nodes`, its product exact unless
    ``options.readout_aware``."""
    qnet = QNetwork(nodes, config)
    for layer in qnet.layers.values():
        layer.readout_aware = bool(options.readout_aware)
        layer.ste = options.ste
    return qnet


def _float_and_qat(model: nn.Module, nodes: list[Node], config: MarsConfig,
                   options: TrainOptions, x_train: torch.Tensor, y_train: torch.Tensor,
                   x_test: torch.Tensor, y_test: torch.Tensor, generator: torch.Generator,
                   exempt: tuple[str, ...], seconds: dict[str, float], progress: bool,
                   log: Callable[[str], None]) -> tuple[float, QNetwork]:
    """Phases 1 and 2 of `train`: the float network, then QAT with pruning; returns the
    float accuracy and the QAT network, fills ``seconds["float"]`` and ``seconds["qat"]``."""
    # 1. float
    t0 = time.perf_counter()
    _fit(model, x_train, y_train, epochs=options.epochs, lr=options.lr,
         weight_decay=options.weight_decay, batch_size=options.batch_size,
         generator=generator, phase="float", show=progress)
    float_acc = accuracy(model, x_test, y_test)
    seconds["float"] = time.perf_counter() - t0
    log(f"float: {100 * float_acc:.2f} % test accuracy ({options.epochs} epochs, "
        f"{seconds['float']:.1f} s)")

    # 2. QAT with BN folding and pruning
    t0 = time.perf_counter()
    qnet = _qnet(nodes, config, options)
    qnet.calibrate(x_train[:512])
    qnet.quantised = True
    pruner = Pruner(list(qnet.layers.values()), G=config.rows_per_step,
                    cpg=config.channels_per_group, sparsity=options.sparsity,
                    structure=options.structure, scope=options.scope, exempt=exempt)
    per_epoch = math.ceil(len(x_train) / options.batch_size)
    every = max(1, per_epoch // 4)

    def schedule(step: int, total: int) -> None:
        end = max(1, round(options.prune_end * total))
        if step % every == 0 or step == end:
            pruner.step(agp_sparsity(step, 0, end, options.sparsity))

    model.eval()
    _fit(qnet, x_train, y_train, epochs=options.qat_epochs, lr=options.qat_lr,
         weight_decay=0.0, batch_size=options.batch_size, generator=generator,
         phase="qat", show=progress, before_step=schedule, teacher=model,
         distill=options.distill)
    pruner.step(options.sparsity)      # the target, also with zero QAT epochs
    seconds["qat"] = time.perf_counter() - t0
    log(f"qat: {options.qat_epochs} epochs, {options.structure} sparsity "
        f"{options.sparsity:.0%}, {seconds['qat']:.1f} s")
    return float_acc, qnet


def train(config: MarsConfig, options: TrainOptions = TrainOptions(),
          out: Path | str | None = None, *, model: nn.Sequential | None = None,
          data: Dataset | None = None, progress: bool = True,
          log: Callable[[str], None] = print,
          qat_cache: Path | str | None = None, golden: bool = True) -> TrainResult:
    """Train, export and (if `out` is given) write the model package.

    `model` replaces the named model (an nn.Sequential of supported layers); `data`
    replaces loading ``options.dataset``.  `log` receives progress lines and the summary.
    `qat_cache`, a folder: the float and QAT phases are loaded from it if a run with the
    same `qat_cache_key` saved them there, else run and saved (benchmarks: the readouts
    of one geometry share them; the result is the same as without the cache, tested).
    Not used with ``readout_aware`` QAT or a `model` object.  `golden` false (sweeps; no
    package): the test logits come from `run_network` with the bit-plane readout product
    (`numpy_product`, equal to the golden model's `macro_product`, tested) instead of the
    much slower `run_accelerator`.
    """
    if not golden and out is not None:
        raise ValueError("a package's logits come from the golden model: golden=False "
                         "needs out=None")
    options.check()
    if options.weight_bits is not None or options.act_bits is not None:
        config = config.replace(
            weight_bits=config.weight_bits if options.weight_bits is None
            else options.weight_bits,
            act_bits=config.act_bits if options.act_bits is None else options.act_bits)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    with deterministic(options.seed, options.threads):
        if data is None:
            data = load_dataset(options.dataset, options.data_path)
        data = data.subset(options.train_subset, options.test_subset)
        model_name = "user" if model is not None else (options.model or
                                                       default_model(data.name))
        if model is None:
            model = build_model(model_name, data.image_shape, data.classes)
        nodes = parse_model(model, data.image_shape)
        check_fits(nodes, config)
        classes = nodes[-1].geometry.cout * nodes[-1].out_shape[0] * nodes[-1].out_shape[1]
        if classes != data.classes:
            raise ValueError(f"the network outputs {classes} logits, the {data.name} data "
                             f"set has {data.classes} classes")
        x_train, y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
        x_test, y_test = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
        generator = torch.Generator().manual_seed(options.seed)
        seconds["data"] = time.perf_counter() - start

        aware = bool(options.readout_aware)
        cache = None
        if qat_cache is not None and not aware and options.model is None and \
                model_name != "user":
            cache = Path(qat_cache) / \
                f"qat-{qat_cache_key(config, options, model_name, data)}.pt"
        layer_names = [n.name for n in nodes if n.is_layer]
        exempt = (() if options.prune_first else (layer_names[0],)) + \
            (() if options.prune_last else (layer_names[-1],))
        if cache is not None and cache.exists():
            qnet = _qnet(nodes, config, options)
            float_acc, cached = _load_qat(cache, model, qnet, generator)
            qnet.quantised = True
            model.eval()
            seconds.update({k: v for k, v in cached.items() if k in ("float", "qat")})
            log(f"float and qat: loaded from {cache}")
        else:
            float_acc, qnet = _float_and_qat(model, nodes, config, options, x_train,
                                             y_train, x_test, y_test, generator, exempt,
                                             seconds, progress, log)
            if cache is not None:
                _save_qat(cache, model, qnet, generator, float_acc, seconds)

        # 2b. the readout: scale-factor start, readout-aware fine-tuning
        t0 = time.perf_counter()
        if config.scaled_readout and not aware:
            fit_column_scales(qnet, x_train[:options.scale_calibration])
        finetune = finetune_epochs(options, config)
        start_acc = None
        if finetune:
            # the accelerator's accuracy before the fine-tuning (the readout-unaware figure)
            start_net, _ = export_network(qnet)
            start_acc = _fraction(run_network(start_net, _to_hwc_codes(
                input_codes(x_test, config.act_bits), config.act_bits),
                product=numpy_product).argmax(axis=1), y_test.numpy())
            log(f"readout: {100 * start_acc:.2f} % integer accuracy before fine-tuning")
            for layer in qnet.layers.values():
                layer.readout_aware = True
            _fit(qnet, x_train, y_train, epochs=finetune, lr=finetune_lr(options, config),
                 weight_decay=0.0, batch_size=options.batch_size, generator=generator,
                 phase="readout", show=progress, teacher=model, distill=options.distill,
                 scale_lr=options.scale_lr)
        seconds["readout"] = time.perf_counter() - t0
        qat_pred = predict(qnet, x_test)
        qat_acc = _fraction(qat_pred.numpy(), y_test.numpy())
        log(f"qat: {100 * qat_acc:.2f} % test accuracy (readout "
            f"{config.readout_mode.value}, {finetune} readout-aware fine-tuning epochs, "
            f"{seconds['readout']:.1f} s)")

        # 3. export and verification
        t0 = time.perf_counter()
        network, scales = export_network(qnet)
        codes = input_codes(x_test, config.act_bits)
        hwc = _to_hwc_codes(codes, config.act_bits)
        # the accelerator's arithmetic (its readout included): what the hardware computes
        logits = run_accelerator(network, hwc) if golden else \
            run_network(network, hwc, product=numpy_product)
        int_pred = logits.argmax(axis=1)
        int_acc = _fraction(int_pred, y_test.numpy())
        torch_logits = torch.cat([torch_integer_forward(qnet, network, codes[i:i + 500])
                                  for i in range(0, len(codes), 500)]) if len(codes) else \
            torch.zeros((0, classes), dtype=torch.int64)
        if not np.array_equal(torch_logits.numpy(), logits):
            bad = int(np.flatnonzero((torch_logits.numpy() != logits).any(axis=1))[0])
            raise RuntimeError(f"internal error: the integer network in NumPy and in PyTorch "
                               f"disagree on test image {bad}")
        agreement = _fraction(int_pred, qat_pred.numpy()) if len(y_test) else 1.0
        seconds["export"] = time.perf_counter() - t0
        prunable = {n for n in layer_names if n not in exempt}
        layers = _layer_sparsity(network, qnet, prunable, config)
        result = TrainResult(None, config, network, layers, float_acc, qat_acc, int_acc,
                             agreement, len(y_test), seconds, qnet=qnet,
                             start_accuracy=start_acc)

        # 4. package
        if out is not None:
            t0 = time.perf_counter()
            files = _package_files(result, nodes, scales, options, data, model_name, hwc,
                                   y_test.numpy(), logits)
            result.package = write_folder_atomically(Path(out), files)
            result.package_bytes = sum(len(v) for v in files.values())
            seconds["package"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - start
    log(summary_table(result, nodes))
    if result.package is not None:
        log(f"package: {result.package} ({result.package_bytes / 1024:.1f} KiB, config "
            f"{config.name}, hash {config.short_hash})")
    return result


def _package_files(result: TrainResult, nodes: list[Node], scales: dict[str, NodeScales],
                   options: TrainOptions, data: Dataset, model_name: str, hwc: np.ndarray,
                   labels: np.ndarray, logits: np.ndarray) -> dict[str, bytes]:
    import mars.sw.package.reader  # noqa: F401  (the reader of what is written here)
    from mars.sw.package import sparse as sparse_files

    config, network = result.config, result.network
    sparsity = {row.name: row for row in result.layers}
    node_info: dict[str, dict[str, Any]] = {}
    for node in nodes:
        info: dict[str, Any] = {"source": node.source, "in_shape": list(node.in_shape),
                                "out_shape": list(node.out_shape)}
        scale = scales.get(node.name)
        if node.is_layer:
            info["batch_norm_folded"] = node.bn is not None
            if node.flatten_from is not None:
                info["columns_permuted_from_chw"] = list(node.flatten_from)
            info["scales"] = {"input": scale.input, "weight": scale.weight,
                              "output": scale.output}
            row = sparsity[node.name]
            info["sparsity"] = {
                "prunable": row.prunable, "groups": row.groups,
                "pruned_groups": row.pruned_groups, "zero_groups": row.zero_groups,
                "stored_groups": row.stored_groups, "group_sparsity": row.group_sparsity,
                "weight_sparsity": row.weight_sparsity}
        elif node.op == "add":
            info["scales"] = {"output": scale.output, "inputs": scale.inputs}
        node_info[node.name] = info
    count = min(options.test_vectors, len(hwc))
    total_groups = sum(r.groups for r in result.layers)
    stored = sum(r.stored_groups for r in result.layers)
    header = {
        "generator": {"tool": "mars train", "mars": _version(), "torch": torch.__version__,
                      "numpy": np.__version__},
        "dataset": _dataset_header(data, options, model_name),
        "model": {"name": model_name},
        "training": {
            "seed": options.seed, "threads": options.threads, "epochs": options.epochs,
            "qat_epochs": options.qat_epochs, "batch_size": options.batch_size,
            "lr": options.lr, "qat_lr": options.qat_lr, "weight_decay": options.weight_decay,
            "distill": options.distill,
            "readout_aware": bool(options.readout_aware),
            "readout_finetune": finetune_epochs(options, config),
            "readout_lr": finetune_lr(options, config), "ste": options.ste,
            **({"scale_lr": finetune_lr(options, config) if options.scale_lr is None
                else options.scale_lr} if config.scaled_readout else {}),
            # what the scale-factor start used: the images there were, not the ones asked for
            **(({"scale_start": "sequential least squares on the first "
                                f"{min(options.scale_calibration, len(data.x_train))} "
                                "training images",
                 "scale_calibration": min(options.scale_calibration, len(data.x_train))}
                if not options.readout_aware else
                {"scale_start": "least squares on the calibration batch"})
               if config.scaled_readout else {}),
            "method": "BN folded with frozen statistics (Jacob et al. 2018, Krishnamoorthi "
                      "2018); per-channel symmetric weights; LSQ activation steps (Esser "
                      "et al. 2020); STE rounding; distillation from the float network "
                      "(Hinton et al. 2015)",
        },
        "sparsity": {
            "structure": options.structure, "scope": options.scope,
            "target": options.sparsity, "first_layer_dense": not options.prune_first,
            "last_layer_dense": not options.prune_last,
            "schedule": f"cubic (Zhu & Gupta 2017) over the first {options.prune_end:.0%} "
                        f"of QAT steps",
            "group_rows": config.rows_per_step, "group_channels": config.channels_per_group,
            "groups": total_groups, "stored_groups": stored,
            "group_sparsity": 1 - stored / max(total_groups, 1),
            "prunable_group_sparsity": _prunable_sparsity(result.layers)},
        "input": {"shape": list(network.input_shape), "layout": "HWC", "bits": config.act_bits,
                  "scale": 1.0 / config.act_max, "pixel_max": int(data.pixel_max),
                  "quantisation": "q = floor(p * (2^Ab - 1) / pixel_max + 1/2), p the raw "
                                  "pixel in [0, pixel_max]"},
        "accuracy": {"float": result.float_accuracy, "qat": result.qat_accuracy,
                     "integer": result.integer_accuracy, "test_images": result.test_images,
                     "fake_quant_agreement": result.agreement,
                     "test_vectors": _fraction(logits[:count].argmax(axis=1), labels[:count])},
    }
    extra_files, node_extra = sparse_files.build(network)
    return build_package_files(network, node_info=node_info, header=header,
                               test_inputs=hwc[:count], test_labels=labels[:count],
                               test_logits=logits[:count], extra_files=extra_files,
                               node_extra=node_extra)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mars-cim")
    except PackageNotFoundError:
        return "unknown"
