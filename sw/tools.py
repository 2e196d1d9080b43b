"""Running an external FPGA tool (nextpnr, ecppack, icepack) the one way the flows need.

`run_tool` runs a command in a working folder and turns every way it can fail into one
`MarsError` whose first line names the tool and what it worked on:

* the program cannot be started (``OSError``: missing, not executable): `EnvironmentProblem`,
  one line, ``cannot run TOOL (COMMAND) WHAT: REASON``;
* it exits nonzero, or an output it must write is missing: the caller's error class,
  ``TOOL failed WHAT (exit N[, log LOG])[WHY]: LAST ERROR LINE`` and then the tail of its
  log (`log_tail`) on the following lines (``killed by SIGTERM`` instead of ``exit N``
  when a signal ended it: someone or something else stopped it);
* a watcher the caller passes says it will not finish (router2 that does not converge):
  it is terminated, ``TOOL stopped WHAT (REASON, log LOG)`` and the log's tail.

`yowasp_command` is the command line of a YoWASP tool (a child process of this interpreter)
unless an environment variable names another.  YoWASP tools see only the directory tree
they run in: every path passed must be relative to the working folder.

Before it returns a YoWASP command, `yowasp_command` runs the tool once under a file lock
(`warm_yowasp`).  yowasp-runtime compiles a tool's WebAssembly on its first run and
writes the machine code into its cache file in place (``open("wb")``: no lock, no
rename), then maps that file.  Two first runs at once (pytest-xdist workers, two ``mars
synth``) both compile, and the later write truncates the file the earlier run has mapped:
it dies of SIGBUS (Yosys on the whole top, exit -7, 2026-12-06).  Under the lock only one
process compiles; the others wait, then find a complete file, which nothing rewrites.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mars.errors import EnvironmentProblem, MarsError

__all__ = ["LOG_TAIL_LINES", "yowasp_command", "warm_yowasp", "log_tail", "last_error_line",
           "run_tool"]

#: Lines of a failed tool's log shown after the one-line message.
LOG_TAIL_LINES = 25

_ERROR_LINE = re.compile(r"\b(error|fatal|exception|failed|trap)\b", re.I)


def yowasp_command(tool: str, module: str, function: str, env: str) -> list[str]:
    """The command line that runs `tool`.

    Parameters
    ----------
    tool : str
        The program's name, for messages (``nextpnr-ecp5``, ``icepack``).
    module, function : str
        The YoWASP package's module and its ``run_*`` function.
    env : str
        Environment variable whose value (a command line) overrides the YoWASP tool.

    Raises
    ------
    EnvironmentProblem
        Neither the override nor the YoWASP package: one line saying what to install.
    """
    override = os.environ.get(env)
    if override:
        return shlex.split(override)
    if importlib.util.find_spec(module) is None:
        # Say what to install instead of letting the tool's log end in an ImportError.
        raise EnvironmentProblem(
            f"{tool} is not installed: pip install {module.replace('_', '-')} (or "
            f"pip install -e '.[synth]'), or set {env} to a {tool} command")
    warm_yowasp(module, function)
    return _yowasp_argv(module, function)


def _yowasp_argv(module: str, function: str) -> list[str]:
    return [sys.executable, "-c",
            f"import sys, {module}; sys.exit({module}.{function}(sys.argv[1:]))"]


def _yowasp_cache() -> Path:
    """yowasp-runtime's cache folder, by its own rule (``YOWASP_CACHE_DIR`` if set, even
    empty, else the user's cache folder).  A relative ``YOWASP_CACHE_DIR`` is made absolute
    in this process's environment: yowasp-runtime resolves it in each tool's working
    folder, which would give each output folder a cache of its own, outside the lock."""
    import platformdirs                  # a dependency of yowasp-runtime

    value = os.environ.get("YOWASP_CACHE_DIR")
    if value is None:
        return Path(platformdirs.user_cache_dir("YoWASP", appauthor=False))
    folder = Path(value).resolve()
    os.environ["YOWASP_CACHE_DIR"] = str(folder)
    return folder


@functools.cache
def warm_yowasp(module: str, function: str) -> bool:
    """Run a YoWASP tool once (``--version``, whatever it answers) under a file lock in
    yowasp-runtime's cache folder, so that its compiled code is in the cache, whole, before
    this process runs it for real (module docstring).  Once per process and tool; one lock
    per package (a package's tools may share a WebAssembly file).  A cache folder that
    cannot be written takes no lock: nothing can be compiled into it either.  While
    another process holds the lock, one line on stderr says so.

    Returns
    -------
    bool
        Whether this call compiled the tool (yowasp-runtime said "Preparing to run").
    """
    from filelock import FileLock, Timeout

    argv = [*_yowasp_argv(module, function), "--version"]
    cache = _yowasp_cache()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        lock = FileLock(cache / f"mars-{module}.lock")
        try:
            lock.acquire(timeout=1)
        except Timeout:
            print(f"mars: waiting for another process to compile {module} "
                  f"(lock {lock.lock_file})", file=sys.stderr, flush=True)
            lock.acquire()
    except OSError:                      # read-only cache: nothing to guard
        lock = None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    finally:
        if lock is not None:
            lock.release()
    return "Preparing to run" in done.stderr


def log_tail(log: Path | None, fallback: str, stderr: str = "") -> str:
    """The end of the tool's log, then the end of its stderr when the log lacks it: a
    WebAssembly trap (e.g. Yosys out of its 4 GB) is reported there, not in the log.

    `fallback` (the whole output) stands in for a missing or empty log.
    """
    text = log.read_text(errors="replace") if log is not None and log.exists() else ""
    if not text.strip():
        return "\n".join(fallback.strip().splitlines()[-LOG_TAIL_LINES:])
    tail = text.strip().splitlines()[-LOG_TAIL_LINES:]
    extra = [line for line in stderr.strip().splitlines()
             if line.strip() and not line.startswith("Preparing to run")
             and line not in tail][-10:]
    return "\n".join(tail + (["(stderr)", *extra] if extra else []))


def last_error_line(text: str) -> str:
    """The last line of `text` that reports an error (``ERROR:``, ``Error``, a trap, ...),
    stripped and cut to 160 characters; empty if there is none."""
    for line in reversed(text.strip().splitlines()):
        if _ERROR_LINE.search(line):
            line = line.strip()
            return line if len(line) <= 160 else line[:157] + "..."
    return ""


#: Seconds a stopped tool gets to end after SIGTERM before its process group is killed.
STOP_GRACE_S = 10.0


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:           # already gone
        pass


def _run(argv: list[str], cwd: Path, watch: Callable[[], str] | None,
         poll_s: float) -> tuple[subprocess.CompletedProcess, str]:
    """Run `argv`; with `watch`, ask it every `poll_s` seconds whether to stop the run
    (a non-empty reason).  Returns the run and the reason.

    A watched tool runs in a process group of its own, so that stopping it also stops
    what it started (a wrapper script's nextpnr): SIGTERM to the group, SIGKILL after
    `STOP_GRACE_S`; the same if `watch` itself raises, before the error goes on."""
    if watch is None:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                              check=False), ""
    with subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=True) as process:
        stop = ""
        try:
            while True:
                try:
                    # communicate() again after a timeout loses no output (Python's docs)
                    out, err = process.communicate(timeout=STOP_GRACE_S if stop else poll_s)
                    break
                except subprocess.TimeoutExpired:
                    if stop:                  # SIGTERM was not enough
                        _signal_group(process, signal.SIGKILL)
                        out, err = process.communicate()
                        break
                    stop = watch()
                    if stop:
                        _signal_group(process, signal.SIGTERM)
        except BaseException:
            _signal_group(process, signal.SIGKILL)
            raise
        return subprocess.CompletedProcess(argv, process.returncode, out, err), stop


def run_tool(command: Sequence[str], args: Sequence[str], *, tool: str, what: str,
             cwd: Path, error: type[MarsError] = MarsError, log: Path | None = None,
             outputs: Sequence[Path] = (), why: Callable[[str], str] | None = None,
             watch: Callable[[], str] | None = None, poll_s: float = 5.0
             ) -> subprocess.CompletedProcess:
    """Run ``command + args`` in `cwd`, capturing its output as text.

    Parameters
    ----------
    command : sequence of str
        The program (e.g. `yowasp_command`'s result).
    args : sequence of str
        Its arguments, paths relative to `cwd`.
    tool : str
        The tool's name for messages.
    what : str
        What it works on, after the tool's name: ``"on block 'x' for ecp5"``,
        ``"for board 'ulx3s'"``.
    cwd : Path
        The working folder.
    error : type of MarsError
        Raised when the tool fails.
    log : Path, optional
        The tool's own log file (its tail is shown; stdout and stderr otherwise).
    outputs : sequence of Path
        Files the tool must have written; a missing one is a failure even at exit 0.
    why : callable, optional
        Given the log's and the output's text, returns a reason to append to the first line
        (``"; does not fit PART: DP16KD 300/208"``) or ``""``.
    watch : callable, optional
        Called every `poll_s` seconds while the tool runs; a non-empty return value is why
        the run will not finish (`mars.sw.congestion.RouterWatch`): the tool is stopped
        (`_run`) and `error` raised with that reason, then `why`'s.
    poll_s : float
        Seconds between calls of `watch`.

    Returns
    -------
    subprocess.CompletedProcess
        The finished run (exit 0, every output present).

    Raises
    ------
    EnvironmentProblem
        The program cannot be started.
    error
        It exited nonzero or left an output unwritten: the first line names `tool`, `what`,
        the exit status, the log and its last error line; the log's tail follows.  Or
        `watch` stopped it: the first line names `tool`, `what`, the reason and the log.
    """
    command = list(command)
    try:
        done, stopped = _run([*command, *args], cwd, watch, poll_s)
    except OSError as problem:
        raise EnvironmentProblem(f"cannot run {tool} ({shlex.join(command)}) {what}: "
                                 f"{problem.strerror or problem}") from None
    where = f", log {log}" if log is not None else ""
    missing = [path for path in outputs if not path.exists()]
    if done.returncode == 0 and not missing:     # (also if it finished as it was stopped)
        return done
    full = done.stdout + done.stderr
    log_text = log.read_text(errors="replace") if log is not None and log.exists() else ""
    reason = why(log_text + "\n" + full) if why else ""
    if stopped:
        raise error(f"{tool} stopped {what} ({stopped}{reason}{where})\n"
                    + log_tail(log, full, done.stderr))
    if done.returncode == 0:
        reason += f"; it wrote no {', '.join(path.name for path in missing)}"
    last = last_error_line(log_text + "\n" + done.stderr) or last_error_line(full)
    status = f"exit {done.returncode}"
    if done.returncode < 0:               # POSIX: killed by a signal (not its own failure)
        try:
            status = f"killed by {signal.Signals(-done.returncode).name}"
        except ValueError:
            status = f"killed by signal {-done.returncode}"
    head = f"{tool} failed {what} ({status}{where}){reason}"
    head += f": {last}\n" if last else ":\n"
    raise error(head + log_tail(log, full, done.stderr))
