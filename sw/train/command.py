"""``mars train``: arguments and the command (PyTorch is imported only when it runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mars.errors import MarsError

__all__ = ["OptionError", "add_arguments", "check_options", "run"]


class OptionError(MarsError, ValueError):
    """A ``mars train`` option out of its range or contradicting another (or the data set);
    the message names it."""


#: Integer options of ``mars train``: attribute, option, smallest and largest value (None:
#: unbounded).  An option left out (None) takes the configuration's or the default value;
#: 0 is a value like any other and is checked, never taken for "not given".
_INT_OPTIONS = (
    ("weight_bits", "--weight-bits", 2, None),       # two's complement needs a sign bit
    ("act_bits", "--act-bits", 1, None),
    ("epochs", "--epochs", 0, None),
    ("qat_epochs", "--qat-epochs", 0, None),
    ("batch_size", "--batch-size", 1, None),
    ("seed", "--seed", 0, 2 ** 63 - 1),              # what torch's generators take
    ("threads", "--threads", 1, None),
    ("train_subset", "--train-subset", 2, None),     # one image gives no training step
    ("test_subset", "--test-subset", 1, None),
    ("test_vectors", "--test-vectors", 0, None),
    ("readout_finetune", "--readout-finetune", 0, None),
    ("scale_calibration", "--scale-calibration", 1, None),
)


def _fraction(text: str) -> float:
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1) (or 0%% .. 99%%), not {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mars train`` (``--config`` is added by the caller)."""
    from .data import DATASETS            # no PyTorch behind these two imports

    parser.add_argument("--out", metavar="PKG",
                        help="package folder (default: build/packages/<dataset>-<config>)")
    parser.add_argument("--dataset", choices=DATASETS, default="digits",
                        help="data set; digits ships with scikit-learn")
    parser.add_argument("--data-path", metavar="DIR",
                        help="folder of CIFAR-10 python batches or MNIST idx files")
    parser.add_argument("--model", metavar="NAME",
                        help="digits-cnn, vgg8, vgg11, vgg16, resnet8, resnet20, resnet18 or "
                             "module:function (default: digits-cnn; resnet8 for cifar10)")
    parser.add_argument("--sparsity", type=_fraction, default=0.5,
                        help="target pruned fraction of groups (or weights), e.g. 0.75 or 75%%")
    parser.add_argument("--structure", choices=("group", "unstructured"), default="group",
                        help="prune CIM groups or single weights (the comparison)")
    parser.add_argument("--scope", choices=("layer", "block", "global"), default="layer",
                        help="where the target applies: each layer, each output block, or "
                             "over all layers")
    parser.add_argument("--prune-first", action="store_true",
                        help="prune the first layer too (default: keep it dense)")
    parser.add_argument("--keep-last-dense", action="store_true",
                        help="do not prune the last layer (the classifier)")
    parser.add_argument("--distill", type=float, default=0.9, metavar="W",
                        help="weight of the distillation loss from the float network during "
                             "QAT (0: plain cross-entropy)")
    parser.add_argument("--weight-bits", type=int, metavar="WB",
                        help="override the configuration's weight_bits")
    parser.add_argument("--act-bits", type=int, metavar="AB",
                        help="override the configuration's act_bits")
    parser.add_argument("--epochs", type=int, default=30, help="float training epochs")
    parser.add_argument("--qat-epochs", type=int, default=30,
                        help="quantisation-aware (and pruning) epochs")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch size")
    parser.add_argument("--lr", type=float, default=2e-3, help="float learning rate (Adam)")
    parser.add_argument("--qat-lr", type=float, default=5e-4, help="QAT learning rate (Adam)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed of initialisation, shuffling and pruning")
    parser.add_argument("--threads", type=int, default=1,
                        help="PyTorch CPU threads (the package depends on it)")
    parser.add_argument("--train-subset", type=int, metavar="N",
                        help="train on the first N training images only")
    parser.add_argument("--test-subset", type=int, metavar="N",
                        help="evaluate on the first N test images only")
    parser.add_argument("--test-vectors", type=int, default=1000, metavar="N",
                        help="test images stored in the package with their logits")
    parser.add_argument("--readout-aware", action="store_true",
                        help="QAT through the configured readout from the start (default: "
                             "QAT with the exact product, docs/training.md)")
    parser.add_argument("--readout-finetune", type=int, metavar="EPOCHS",
                        help="readout-aware fine-tuning epochs after QAT (default 5 for a "
                             "binary/ternary readout, 0 otherwise)")
    parser.add_argument("--readout-lr", type=float, metavar="LR",
                        help="learning rate of the readout-aware fine-tuning, Adam (default: "
                             "1e-3 for a binary/ternary readout, 2e-4 otherwise)")
    parser.add_argument("--scale-lr", type=float, metavar="LR",
                        help="learning rate of the binary/ternary column scale factors in "
                             "the fine-tuning (default: --readout-lr)")
    parser.add_argument("--ste", choices=("plain", "clipped"), default="plain",
                        help="gradient through the readout: the exact product's, or none "
                             "through a K-group the readout clips")
    parser.add_argument("--scale-calibration", type=int, default=256, metavar="N",
                        help="training images of the binary/ternary scale-factor start")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def check_options(args: argparse.Namespace) -> None:
    """Raise `OptionError` naming the first integer option out of its range."""
    for attribute, option, lo, hi in _INT_OPTIONS:
        value = getattr(args, attribute, None)
        if value is None:
            continue
        if value < lo:
            raise OptionError(f"{option} must be at least {lo}, not {value}")
        if hi is not None and value > hi:
            raise OptionError(f"{option} must be at most {hi}, not {value}")


def run(args: argparse.Namespace) -> int:
    """Run ``mars train``.  Errors the user can fix are `MarsError`s, reported once by
    `mars.sw.cli.main` (one line, exit status 2)."""
    from mars.config import load_config

    from .trainer import TrainOptions, train

    check_options(args)
    config = load_config(args.config)
    out = Path(args.out) if args.out is not None else Path("build") / "packages" / \
        f"{args.dataset}-{config.name}"
    try:
        options = TrainOptions(
            dataset=args.dataset, data_path=args.data_path, model=args.model,
            weight_bits=args.weight_bits, act_bits=args.act_bits, epochs=args.epochs,
            qat_epochs=args.qat_epochs, batch_size=args.batch_size, lr=args.lr,
            qat_lr=args.qat_lr, sparsity=args.sparsity, structure=args.structure,
            scope=args.scope, prune_first=args.prune_first,
            prune_last=not args.keep_last_dense, distill=args.distill, seed=args.seed,
            threads=args.threads, train_subset=args.train_subset,
            test_subset=args.test_subset, test_vectors=args.test_vectors,
            readout_aware=args.readout_aware, readout_finetune=args.readout_finetune,
            readout_lr=args.readout_lr, scale_lr=args.scale_lr, ste=args.ste,
            scale_calibration=args.scale_calibration)
    except ValueError as error:              # TrainOptions checks its fields
        raise OptionError(str(error)) from None
    try:
        train(config, options, out, progress=not args.no_progress)
    except MarsError:
        raise
    except ValueError as error:              # e.g. a model whose outputs miss the classes
        raise OptionError(str(error)) from None
    return 0
