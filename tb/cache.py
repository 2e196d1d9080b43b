"""Build caches that several processes can share, and that a kill cannot damage.

A cache entry is a folder (a compiled simulator, say) named after the digest of everything
that went into it.  It is built in a private staging folder beside its final place, then a
stamp file (the digest and the size of each named output) is written last, and the folder
is renamed into place under a file lock.  Readers trust an entry only when its stamp
matches: a folder without a stamp, with another digest, or with an output whose size
disagrees (truncated by a crash after the rename) is built again.  So

- three processes that need the same, not yet built entry build it once: the first takes
  the lock and builds, the others wait and then use its result;
- a kill at any point leaves either no entry or a complete one, plus at most a staging
  folder, which the next build of any entry in that folder removes (its lock is free:
  the process that held it is gone);
- an environment problem (unwritable folder, missing tool) is one line
  (`mars.errors.EnvironmentProblem`) saying what to install or set.

Where the caches live: ``$MARS_BUILD_DIR`` if set, else ``build/`` in the repository
(`build_dir`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from filelock import FileLock, Timeout

from mars.errors import EnvironmentProblem

__all__ = ["BUILD_DIR_VARIABLE", "STAMP", "build_dir", "cached_entry", "entry_is_complete",
           "clean_staging"]

BUILD_DIR_VARIABLE = "MARS_BUILD_DIR"
#: Name of the stamp file in every complete entry.
STAMP = ".mars-complete.json"
_STAGING = ".staging-"
_TRASH = ".trash-"
_REPO_ROOT = Path(__file__).resolve().parent.parent


def build_dir(kind: str, override: Path | None = None) -> Path:
    """The folder that holds the caches of one `kind` (``"native"``, ``"sim"``, ...).

    `override` wins; then ``$MARS_BUILD_DIR/<kind>``; then ``build/<kind>`` in the
    repository.
    """
    if override is not None:
        return Path(override)
    base = os.environ.get(BUILD_DIR_VARIABLE)
    return (Path(base) if base else _REPO_ROOT / "build") / kind


def _read_stamp(entry: Path) -> dict | None:
    try:
        stamp = json.loads((entry / STAMP).read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def entry_is_complete(entry: Path, digest: str) -> bool:
    """Whether `entry` holds a finished build of `digest` with every output intact."""
    stamp = _read_stamp(entry)
    if stamp is None or stamp.get("digest") != digest:
        return False
    files = stamp.get("files")
    if not isinstance(files, dict):
        return False
    for name, size in files.items():
        try:
            if (entry / name).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def _lock(parent: Path, name: str) -> FileLock:
    return FileLock(parent / f".{name}.lock")


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def clean_staging(parent: Path, *, holding: str | None = None) -> list[Path]:
    """Remove staging and trash folders that killed builds left in `parent`.

    A staging folder belongs to the entry named in it; it is litter when nobody holds that
    entry's lock (a builder holds it for as long as its staging folder exists).  The lock
    of entry `holding` is taken to be held by the caller already.  Returns what was removed.
    """
    removed = []
    try:
        children = list(parent.iterdir())
    except OSError:
        return removed
    for path in children:
        name = path.name
        if not path.is_dir() or not name.startswith("."):
            continue
        for marker in (_STAGING, _TRASH):
            if marker in name:
                entry = name[1:name.index(marker)]
                break
        else:
            continue
        if entry == holding:
            _remove(path)
            removed.append(path)
            continue
        lock = _lock(parent, entry)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue                      # its builder is alive
        try:
            _remove(path)
            removed.append(path)
        finally:
            lock.release()
    return removed


def _write_stamp(folder: Path, digest: str, outputs: Iterable[str]) -> None:
    files = {}
    for name in outputs:
        path = folder / name
        if not path.is_file():
            raise RuntimeError(f"the build of {folder.name} produced no {name}")
        files[name] = path.stat().st_size
    stamp = folder / STAMP
    with open(stamp, "w") as f:
        json.dump({"digest": digest, "files": files}, f)
        f.flush()
        os.fsync(f.fileno())


def cached_entry(entry: Path, digest: str, build: Callable[[Path], None], *,
                 outputs: Iterable[str] = (), progress: Callable[[str], None] | None = None,
                 what: str | None = None) -> Path:
    """The folder `entry`, holding a complete build of `digest`; built first if needed.

    Parameters
    ----------
    entry : Path
        Final folder of the cache entry.  Its name should contain `digest` (or enough of
        it) so that different inputs never share an entry.
    digest : str
        Digest of every input of the build; recorded in the stamp.
    build : callable
        ``build(folder)`` fills the empty staging `folder` (same parent as `entry`, so the
        rename is atomic); it raises on failure.  The folder is renamed afterwards, so what
        it writes must not depend on its own absolute path at run time.
    outputs : iterable of str
        Paths, relative to the folder, of the files the build must produce; their sizes
        go in the stamp and are checked on every use.
    progress : callable, optional
        Receives one line when this process has to wait for another one's build.
    what : str, optional
        What is being built, for messages (default: the entry's name).

    Returns
    -------
    Path
        `entry`.

    Raises
    ------
    EnvironmentProblem
        If the cache folder cannot be created or written.
    Exception
        Whatever `build` raises; the staging folder is removed and `entry` left as it was.
    """
    entry = Path(entry)
    outputs = list(outputs)
    if entry_is_complete(entry, digest):
        return entry
    parent = entry.parent
    what = what or entry.name
    try:
        parent.mkdir(parents=True, exist_ok=True)
        lock = _lock(parent, entry.name)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if progress is not None:
                progress(f"waiting for another process to finish building {what} "
                         f"(lock {lock.lock_file})")
            lock.acquire()
    except OSError as error:
        raise EnvironmentProblem(
            f"cannot write the build cache {str(parent)!r}: {error.strerror or error}; "
            f"make it writable or set {BUILD_DIR_VARIABLE} to a writable folder") from None
    try:
        if entry_is_complete(entry, digest):          # built while we waited
            return entry
        clean_staging(parent, holding=entry.name)
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}{_STAGING}", dir=parent))
            staging.chmod(0o755)              # mkdtemp's 0700 would hide it from others
        except OSError as error:
            raise EnvironmentProblem(
                f"cannot write the build cache {str(parent)!r}: {error.strerror or error}; "
                f"make it writable or set {BUILD_DIR_VARIABLE} to a writable folder"
            ) from None
        try:
            build(staging)
            _write_stamp(staging, digest, outputs)
            if entry.exists() or entry.is_symlink():
                # A damaged or outdated entry: move it aside first (atomic), so the
                # final rename below never meets a half-deleted folder.
                trash = Path(tempfile.mkdtemp(prefix=f".{entry.name}{_TRASH}", dir=parent))
                os.replace(entry, trash / "old")
                _remove(trash)
            os.replace(staging, entry)
        except BaseException:
            _remove(staging)
            raise
        return entry
    finally:
        lock.release()
