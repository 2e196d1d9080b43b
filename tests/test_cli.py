"""Tests of the ``mars`` command line: ``mars verilog`` and ``mars config``."""

from __future__ import annotations

import json

import pytest

from mars.config import PRESETS, MarsConfig
from mars.contract import contract_json
from mars.hw.blocks import BLOCKS
from mars.sw.cli import main


def run_ok(capsys, *argv):
    rc = main(list(argv))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert captured.err == ""
    return captured.out


def files_in(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# -- mars verilog ---------------------------------------------------------------------------

def test_verilog_writes_rtl_and_config(tmp_path, capsys):
    out = tmp_path / "rtl"
    stdout = run_ok(capsys, "verilog", "--config", "tiny", "--out", str(out))
    written = files_in(out)
    assert {"cim_macro.v", "config.json", "contract.json"} <= set(written)
    assert set(written) == {f"{name}.v" for name in BLOCKS} | {"config.json", "contract.json"}
    contract = json.loads(written["contract.json"])
    assert contract == contract_json(PRESETS["tiny"])
    verilog = written["cim_macro.v"].decode()
    assert "module cim_macro" in verilog
    assert "endmodule" in verilog
    assert str(tmp_path) not in verilog and "/work/" not in verilog    # no source paths
    config = MarsConfig.from_json(written["config.json"].decode())
    assert config == PRESETS["tiny"]
    assert config.name == "tiny"
    assert PRESETS["tiny"].short_hash in stdout
    # nothing but the output folder appears beside it (no staging folder left)
    assert [p.name for p in tmp_path.iterdir()] == ["rtl"]


def test_verilog_is_deterministic(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    run_ok(capsys, "verilog", "--config", "tiny", "--out", str(first))
    run_ok(capsys, "verilog", "--config", "tiny", "--out", str(second))
    assert files_in(first) == files_in(second)
    # running again into an existing folder replaces the files with identical ones
    run_ok(capsys, "verilog", "--config", "tiny", "--out", str(first))
    assert files_in(first) == files_in(second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_verilog_from_json_file(tmp_path, capsys):
    config = PRESETS["tiny"].replace(name="custom", readout_mode="saturating", readout_bits=2)
    source = tmp_path / "custom.json"
    source.write_text(config.to_json())
    out = tmp_path / "rtl"
    run_ok(capsys, "verilog", "--config", str(source), "--out", str(out))
    text = (out / "config.json").read_text()
    assert MarsConfig.from_json(text) == config
    assert text == source.read_text()
    # a different configuration gives different RTL
    run_ok(capsys, "verilog", "--config", "tiny", "--out", str(tmp_path / "tiny"))
    assert (out / "cim_macro.v").read_bytes() != (tmp_path / "tiny" / "cim_macro.v").read_bytes()


def test_verilog_default_out_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_ok(capsys, "verilog", "--config", "tiny")
    out = tmp_path / "build" / "verilog" / "tiny"
    assert MarsConfig.from_json((out / "config.json").read_text()) == PRESETS["tiny"]
    assert (out / "cim_macro.v").is_file()


BAD_JSON = {
    # name -> (file text, fragments the error must contain)
    "impossible": (json.dumps({"rows": 64, "rows_per_step": 3}),
                   ["rows_per_step (G=3) must divide rows (R=64)"]),
    "narrow": (json.dumps({"rows_per_step": 16, "readout_bits": 3}),
               ["readout_bits (3) is too narrow"]),
    "truncated": (PRESETS["tiny"].to_json()[:100], ["not valid JSON"]),
    "tampered": (PRESETS["tiny"].to_json().replace('"rows": 64', '"rows": 128'),
                 ["content_hash", "does not match"]),
    "unknown_field": (json.dumps({"rowz": 64}), ["unknown field 'rowz'"]),
    "not_object": ("[1, 2, 3]", ["expected a JSON object, not an array"]),
    "wrong_type": (json.dumps({"rows": "64"}), ["rows must be an integer, not '64'"]),
}


def check_failed(capsys, tmp_path, rc, out, fragments, inputs=("in",)):
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.out == ""
    assert captured.err.startswith("mars: error: ")
    for fragment in fragments:
        assert fragment in captured.err, (fragment, captured.err)
    assert not out.exists()
    # nothing else appeared: no hidden staging folder, no parent folders
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(inputs)


def test_bad_json_cases_really_are_edited():
    tampered = json.loads(BAD_JSON["tampered"][0])
    assert tampered["rows"] == 128
    assert tampered["content_hash"] == PRESETS["tiny"].content_hash


@pytest.mark.parametrize("case", sorted(BAD_JSON))
def test_verilog_bad_json_writes_nothing(tmp_path, capsys, case):
    text, fragments = BAD_JSON[case]
    (tmp_path / "in").mkdir()
    source = tmp_path / "in" / f"{case}.json"
    source.write_text(text)
    out = tmp_path / "rtl"
    rc = main(["verilog", "--config", str(source), "--out", str(out)])
    check_failed(capsys, tmp_path, rc, out, [str(source)] + fragments)


def test_verilog_unknown_preset_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    out = tmp_path / "rtl"
    rc = main(["verilog", "--config", "huge", "--out", str(out)])
    check_failed(capsys, tmp_path, rc, out, ["unknown preset 'huge'", "tiny", "default"])


def test_verilog_missing_file_writes_nothing(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    out = tmp_path / "rtl"
    rc = main(["verilog", "--config", str(tmp_path / "in" / "nope.json"), "--out", str(out)])
    check_failed(capsys, tmp_path, rc, out, ["cannot read configuration", "nope.json"])


def test_verilog_bad_input_leaves_existing_output_alone(tmp_path, capsys):
    out = tmp_path / "rtl"
    run_ok(capsys, "verilog", "--config", "tiny", "--out", str(out))
    before = files_in(out)
    (tmp_path / "in").mkdir()
    source = tmp_path / "in" / "bad.json"
    source.write_text(BAD_JSON["truncated"][0])
    assert main(["verilog", "--config", str(source), "--out", str(out)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert files_in(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "rtl"]


@pytest.mark.parametrize("fail_in", ["verilog", "config.json"])
def test_verilog_failure_half_way_writes_nothing(tmp_path, capsys, monkeypatch, fail_in):
    """A generator that fails after other files were produced leaves no trace."""
    def boom(*args, **kwargs):
        raise RuntimeError("generator failed")

    if fail_in == "verilog":
        monkeypatch.setattr("mars.sw.emit.to_verilog", boom)
    else:                                  # the last file, after the Verilog was produced
        monkeypatch.setattr(MarsConfig, "to_json", boom)
    out = tmp_path / "rtl"
    with pytest.raises(RuntimeError, match="generator failed"):
        main(["verilog", "--config", "tiny", "--out", str(out)])
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_verilog_bad_arguments():
    with pytest.raises(SystemExit) as info:
        main(["verilog", "--no-such-option"])
    assert info.value.code == 2


# -- mars config ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_prints_preset_json(capsys, name):
    stdout = run_ok(capsys, "config", "--config", name)
    assert MarsConfig.from_json(stdout) == PRESETS[name]
    doc = json.loads(stdout)
    assert doc["name"] == name
    assert doc["content_hash"] == MarsConfig.from_json(stdout).content_hash


def test_config_tiny(capsys):
    stdout = run_ok(capsys, "config", "--config", "tiny")
    assert MarsConfig.from_json(stdout) == PRESETS["tiny"]


def test_config_from_file_and_errors(tmp_path, capsys):
    config = PRESETS["adc3"].replace(name="mine")
    path = tmp_path / "mine.json"
    path.write_text(config.to_json())
    assert MarsConfig.from_json(run_ok(capsys, "config", "--config", str(path))) == config
    assert main(["config", "--config", "huge"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "unknown preset 'huge'" in captured.err
