"""The command line's contract with its user: every subcommand's help shows each default
once, and bad inputs end in one line ``mars: error: ...`` with exit status 2, never a
traceback."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import numpy as np
import pytest

from mars.config import PRESETS
from mars.sw.cli import build_parser, main
from mars.tb.networks import stable_seed, write_random_package

TINY = PRESETS["tiny"]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def option_blocks(help_text: str) -> dict[str, str]:
    """An option's help text, keyed by its first flag (wrapped lines joined)."""
    blocks: dict[str, str] = {}
    current = None
    for line in help_text.splitlines():
        match = re.match(r"^  (-[-\w]+)", line)
        if match:
            current = match.group(1)
            blocks[current] = line
        elif current and line.startswith("    "):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return blocks


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_help_shows_each_default_once(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    blocks = option_blocks(text)
    assert blocks, text
    for flag, block in blocks.items():
        assert block.count("(default") <= 1, f"mars {command} {flag}: {block}"
        assert "(default: None)" not in block, f"mars {command} {flag}: {block}"


def test_config_means_the_configuration_to_use_everywhere():
    for command, parser in subcommands().items():
        for action in parser._actions:
            if "--config" in action.option_strings:
                assert action.help.startswith("the configuration to use"), command


def one_line_error(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mars: error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """A small package of a random network for `tiny`, written by the package writer."""
    out = tmp_path_factory.mktemp("cli") / "pkg"
    write_random_package(out, TINY, "cnn", seed=stable_seed("cli", "cnn"))
    return out


def test_run_package_works(package, tmp_path, capsys):
    assert main(["run", "--package", str(package), "--out", str(tmp_path / "y.npz")]) == 0
    assert "3 inputs on golden" in capsys.readouterr().out


def test_run_missing_package(tmp_path, capsys):
    line = one_line_error(capsys, "run", "--package", str(tmp_path / "nothing"))
    assert "manifest.json" in line


def test_run_config_must_be_the_packages(package, tmp_path, capsys):
    line = one_line_error(capsys, "run", "--package", str(package), "--config", "default",
                          "--out", str(tmp_path / "y.npz"))
    assert "--config" in line
    assert main(["run", "--package", str(package), "--config", "tiny",
                 "--out", str(tmp_path / "y.npz")]) == 0


def test_run_bad_inputs(package, tmp_path, capsys):
    bad = tmp_path / "x.npy"
    bad.write_bytes(b"not an array")
    assert "cannot read inputs" in one_line_error(
        capsys, "run", "--package", str(package), "--inputs", str(bad))
    np.save(bad, np.zeros((2, 3, 3, 3), dtype=np.uint8))
    assert "shape" in one_line_error(capsys, "run", "--package", str(package),
                                     "--inputs", str(bad))


def test_run_unwritable_output(package, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = one_line_error(capsys, "run", "--package", str(package),
                          "--out", str(blocker / "y.npz"))
    assert "cannot write" in line


def test_flow_config_must_be_the_packages(package, tmp_path, capsys):
    line = one_line_error(capsys, "flow", "--package", str(package), "--config", "wide8",
                          "--out", str(tmp_path / "flow"))
    assert "--config" in line


def test_a_real_process_exits_2_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mars.sw.cli", "verilog", "--config", str(tmp_path / "x.json")],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("mars: error: ")


# -- a package named by its manifest -----------------------------------------------------------

def test_run_takes_the_manifest_path(package, tmp_path, capsys):
    """``--package PKG/manifest.json`` reads the folder PKG: the same logits."""
    by_folder, by_manifest = tmp_path / "a.npz", tmp_path / "b.npz"
    assert main(["run", "--package", str(package), "--out", str(by_folder)]) == 0
    assert main(["run", "--package", str(package / "manifest.json"),
                 "--out", str(by_manifest)]) == 0
    capsys.readouterr()
    np.testing.assert_array_equal(np.load(by_folder)["logits"], np.load(by_manifest)["logits"])


@pytest.mark.parametrize("name", ["config.json", "tests/inputs.npy"])
def test_run_refuses_another_file_of_the_package(package, capsys, name):
    line = one_line_error(capsys, "run", "--package", str(package / name))
    assert name.split("/")[-1] in line and "give the package folder" in line, line


# -- mars train options that would do nothing ---------------------------------------------------

FAST = ["--epochs", "0", "--qat-epochs", "0", "--train-subset", "8", "--test-subset", "4",
        "--no-progress"]
HCIM_FAST = ["--config", "hcim", "--epochs", "0", "--train-subset", "8", "--test-subset", "4",
             "--no-progress"]

# (arguments, the option refused, words of the reason)
NOTHING_TO_DO = [
    # every readout option on an exact readout (the default preset)
    (["--readout-aware", *FAST], "--readout-aware", "readout is exact"),
    (["--readout-finetune", "3", *FAST], "--readout-finetune", "readout is exact"),
    (["--readout-finetune", "0", *FAST], "--readout-finetune", "readout is exact"),
    (["--readout-lr", "1e-3", *FAST], "--readout-lr", "readout is exact"),
    (["--ste", "clipped", *FAST], "--ste", "readout is exact"),
    (["--ste", "plain", *FAST], "--ste", "readout is exact"),
    (["--scale-calibration", "16", *FAST], "--scale-calibration", "readout is exact"),
    # a saturating readout as wide as the popcount clips nothing: its gradients are exact
    (["--config", "{wide_saturating}", "--ste", "clipped", *FAST], "--ste",
     "never clips a popcount"),
    (["--config", "{wide_saturating}", "--readout-aware", *FAST], "--readout-aware",
     "never clips a popcount"),
    (["--config", "{wide_saturating}", "--scale-calibration", "9", *FAST],
     "--scale-calibration", "no column scale factors"),
    # a saturating readout has no scale factors; no fine-tuning runs by default on it
    (["--config", "adc3", "--scale-calibration", "16", *FAST], "--scale-calibration",
     "no column scale factors"),
    (["--config", "adc3", "--readout-lr", "1e-3", *FAST], "--readout-lr",
     "no readout-aware fine-tuning"),
    (["--config", "adc3", "--ste", "clipped", *FAST], "--ste", "no training step"),
    (["--scale-lr", "1e-3", *FAST], "--scale-lr", "no column scale factors"),
    (["--config", "adc3", "--scale-lr", "1e-3", *FAST], "--scale-lr", "no column scale factors"),
    (["--readout-finetune", "0", "--scale-lr", "1e-3", *HCIM_FAST], "--scale-lr",
     "--readout-finetune is 0"),
    # a ternary readout: the sequential fit is not the start with --readout-aware, ...
    (["--readout-aware", "--scale-calibration", "16", "--qat-epochs", "1", *HCIM_FAST],
     "--scale-calibration", "--readout-aware"),
    # ... and no fine-tuning with --readout-finetune 0
    (["--readout-finetune", "0", "--readout-lr", "1e-3", *HCIM_FAST], "--readout-lr",
     "--readout-finetune is 0"),
    (["--readout-finetune", "0", "--ste", "clipped", "--qat-epochs", "1", *HCIM_FAST],
     "--ste", "no training step"),
    # rates of phases that do not run, pruning options with nothing to prune
    (["--lr", "1e-3", *FAST], "--lr", "--epochs is 0"),
    (["--qat-lr", "1e-3", *FAST], "--qat-lr", "--qat-epochs is 0"),
    (["--distill", "0.5", *FAST], "--distill", "--qat-epochs 0"),
    (["--sparsity", "0", "--scope", "block", *FAST], "--scope", "--sparsity is 0"),
    (["--sparsity", "0", "--structure", "group", *FAST], "--structure", "--sparsity is 0"),
    (["--sparsity", "0", "--prune-first", *FAST], "--prune-first", "--sparsity is 0"),
    (["--sparsity", "0", "--keep-last-dense", *FAST], "--keep-last-dense", "--sparsity is 0"),
]


@pytest.fixture(scope="module")
def wide_saturating(tmp_path_factory):
    """A saturating readout of 4 bits on 8 rows: it never clips (the readout is exact)."""
    path = tmp_path_factory.mktemp("cfg") / "sat.json"
    path.write_text(PRESETS["default"].replace(name="sat4", readout_mode="saturating").to_json())
    return path


@pytest.mark.parametrize("argv, option, reason", NOTHING_TO_DO,
                         ids=[f"{i}{case[1]}" for i, case in enumerate(NOTHING_TO_DO)])
def test_train_refuses_an_option_that_would_do_nothing(argv, option, reason, capsys, tmp_path,
                                                      wide_saturating):
    argv = [str(wide_saturating) if a == "{wide_saturating}" else a for a in argv]
    out = tmp_path / "pkg"
    line = one_line_error(capsys, "train", "--out", str(out), *argv)
    assert line.startswith(f"mars: error: {option} does nothing"), line
    assert reason in line, line
    assert not out.exists()


@pytest.mark.parametrize("argv", [
    [*FAST],                                                 # nothing given: nothing refused
    ["--config", "adc3", "--readout-aware", "--ste", "clipped", *FAST],
    ["--config", "adc3", "--readout-finetune", "2", "--readout-lr", "1e-3", *FAST],
    ["--scale-calibration", "16", "--readout-finetune", "0", *HCIM_FAST],
    # fine-tuning epochs through a saturating readout that never clips are still epochs
    ["--config", "{wide_saturating}", "--readout-finetune", "2", "--readout-lr", "1e-3",
     *FAST],
    ["--readout-lr", "1e-3", "--ste", "clipped", *HCIM_FAST],   # 5 fine-tuning epochs
    ["--scale-lr", "1e-2", *HCIM_FAST],                         # the same epochs
    ["--lr", "1e-3", "--epochs", "1", "--qat-lr", "1e-3", "--qat-epochs", "1",
     "--distill", "0.5", "--sparsity", "0.5", "--scope", "block", "--prune-first",
     "--keep-last-dense"],
])
def test_train_accepts_options_that_have_an_effect(argv, wide_saturating):
    """The same options where they change the training: not refused (the training itself
    is not run here)."""
    from mars.sw.cli import _given_options, _unused_train_option

    argv = [str(wide_saturating) if a == "{wide_saturating}" else a for a in argv]
    args = build_parser().parse_args(["train", *argv])
    given = _given_options(args)
    from mars.config import load_config
    assert _unused_train_option(args, given, load_config(args.config)) is None
    assert isinstance(args.lr, float) and isinstance(args.ste, str)    # defaults unwrapped


def test_train_refusal_comes_after_the_range_checks(capsys, tmp_path):
    """An option out of its range is named with its range, even where it does nothing."""
    line = one_line_error(capsys, "train", "--out", str(tmp_path / "p"),
                          "--scale-calibration", "0", *FAST)
    assert "--scale-calibration must be at least 1" in line


# -- a trained package that does not map ---------------------------------------------------------

def test_train_warns_when_its_package_does_not_map(tmp_path, capsys):
    """The digits network at 50 % group sparsity keeps more groups in a block set of its
    second conv than tiny's 16 row slots: the package is written (its accuracy and
    golden-model logits are real) and the last line says that mars run will refuse it, and
    why, in the words mars run then uses."""
    out = tmp_path / "pkg"
    rc = main(["train", "--config", "tiny", "--out", str(out), "--sparsity", "0.5",
               "--epochs", "1", "--qat-epochs", "1", "--train-subset", "128",
               "--test-subset", "16", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    warning = captured.err.strip().splitlines()[-1]
    assert warning.startswith(f"mars: warning: the package {str(out)!r} does not map"), warning
    refusal = one_line_error(capsys, "run", "--package", str(out), "--out",
                             str(tmp_path / "y.npz"))
    reason = refusal.removeprefix("mars: error: ")
    assert warning.endswith(reason), (warning, refusal)
    assert "layer '" in reason and ("residual_adds" in reason or "_words" in reason), reason
