"""Output folders and files replaced all at once (mars.sw.files): after a failure or a
signal at any point a reader finds the old output or the new one, never a mix, and the
next run cleans what a killed run left."""

import os
import time

import pytest

from mars.sw import files as emit
from mars.sw.files import STAGING_MARK, staging_folder, swap_into_place, write_atomically


class Killed(BaseException):
    """Stands for a signal."""


def files_of(text, names=("a.v", "b.v", "config.json")):
    return {name: (lambda name=name: f"{text} {name}") for name in names}


def contents(folder):
    return {p.name: p.read_text() for p in folder.iterdir()}


def test_new_folder_then_whole_replacement(tmp_path):
    out = tmp_path / "verilog"
    write_atomically(out, files_of("old"))
    inode = out.stat().st_ino
    write_atomically(out, files_of("new"))
    assert contents(out) == {n: f"new {n}" for n in ("a.v", "b.v", "config.json")}
    assert out.stat().st_ino != inode                        # swapped as one folder
    assert os.listdir(tmp_path) == ["verilog"]                # no staging litter


def test_failure_half_way_leaves_the_old_output(tmp_path):
    out = tmp_path / "verilog"
    write_atomically(out, files_of("old"))
    broken = files_of("new")

    def die():
        raise Killed
    broken["b.v"] = die
    with pytest.raises(Killed):
        write_atomically(out, broken)
    assert contents(out) == {n: f"old {n}" for n in ("a.v", "b.v", "config.json")}
    assert os.listdir(tmp_path) == ["verilog"]


def test_kill_between_the_files_cannot_mix_old_and_new(tmp_path, monkeypatch):
    # A signal while the new folder is being put in place: the old and new files never mix.
    out = tmp_path / "verilog"
    write_atomically(out, files_of("old"))
    real_replace = os.replace
    calls = []

    def replace_then_die(a, b):
        calls.append((a, b))
        if len(calls) == 2:
            raise Killed
        real_replace(a, b)
    monkeypatch.setattr(emit.os, "replace", replace_then_die)
    try:
        write_atomically(out, files_of("new"))
    except Killed:
        pass
    monkeypatch.undo()
    texts = set(text.split()[0] for text in contents(out).values())
    assert texts in ({"old"}, {"new"}) and len(contents(out)) == 3


def test_without_an_exchange_the_fallback_is_still_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(emit, "_exchange", lambda a, b: False)
    out = tmp_path / "verilog"
    write_atomically(out, files_of("old"))
    write_atomically(out, files_of("new"))
    assert contents(out) == {n: f"new {n}" for n in ("a.v", "b.v", "config.json")}
    assert os.listdir(tmp_path) == ["verilog"]


def test_a_folder_with_other_things_keeps_them(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    write_atomically(out, files_of("new"))
    assert contents(out) == {"notes.txt": "precious",
                             **{n: f"new {n}" for n in ("a.v", "b.v", "config.json")}}


def test_swap_into_place_refuses_a_file(tmp_path):
    staging = staging_folder(tmp_path / "out")
    (tmp_path / "out").write_text("a file, not a folder")
    with pytest.raises(OSError):
        swap_into_place(staging, tmp_path / "out")
    assert (tmp_path / "out").read_text() == "a file, not a folder"


def test_stale_staging_litter_is_cleaned(tmp_path):
    stale = tmp_path / f".verilog{STAGING_MARK}k1ll3d"
    stale.mkdir()
    (stale / "a.v").write_text("half")
    long_ago = time.time() - 2 * emit.STALE_STAGING_S
    os.utime(stale, (long_ago, long_ago))
    fresh = tmp_path / f".verilog{STAGING_MARK}l1v3"       # a live run's, maybe
    fresh.mkdir()
    other = tmp_path / ".verilog.keep"                          # not ours
    other.mkdir()
    write_atomically(tmp_path / "verilog", files_of("new"))
    assert not stale.exists() and fresh.exists() and other.exists()


@pytest.mark.parametrize("when", ["before the exchange", "after the exchange"])
def test_package_replacement_is_old_or_new_after_a_signal(tmp_path, monkeypatch, when):
    import json

    from mars.sw.package import write_folder_atomically

    manifest = json.dumps({"format": "mars-model-package"}).encode()
    out = tmp_path / "pkg"
    write_folder_atomically(out, {"manifest.json": manifest, "x": b"old"})
    real = emit._exchange

    def signalled(a, b):
        if when == "after the exchange":
            real(a, b)
        raise Killed
    monkeypatch.setattr(emit, "_exchange", signalled)
    with pytest.raises(Killed):
        write_folder_atomically(out, {"manifest.json": manifest, "x": b"new"})
    monkeypatch.undo()
    assert (out / "manifest.json").read_bytes() == manifest
    assert (out / "x").read_bytes() == (b"old" if when == "before the exchange" else b"new")
    write_folder_atomically(out, {"manifest.json": manifest, "x": b"newer"})   # next run works
    assert (out / "x").read_bytes() == b"newer"
    assert os.listdir(tmp_path) == ["pkg"]
