"""Write files and folders all at once or not at all (Verilog folders, model packages,
reports).

Everything is produced in a hidden temporary folder beside the destination first; only
when every file is complete are they moved into place.  A failure half way leaves the
destination as it was, so nothing half-written ever looks valid.  Single files (reports)
go through `replace_file`: a private temporary file beside the target, then
``os.replace``, so a reader, a parallel writer or a kill sees the old file or the new
one, never a torn one.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["replace_file", "staging_folder", "swap_into_place", "write_atomically",
           "glob_escape", "STAGING_MARK", "STALE_STAGING_S"]


def replace_file(path: Path, data: str | bytes) -> Path:
    """Write `data` (text or bytes) to `path` atomically; returns `path`.

    The temporary file has a unique name (``.<name>.<random>.tmp``) in the same folder, so
    parallel writers never share it; it is removed if writing fails.  Raises `OSError` if
    the folder cannot be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


#: Marks the hidden staging folders of `staging_folder` (``.<name>.mars-staging-<random>``).
STAGING_MARK = ".mars-staging-"
#: A staging folder untouched for this long belongs to a killed run (a live one is written
#: to within seconds) and is removed by the next run that writes the same output.
STALE_STAGING_S = 3600.0
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def staging_folder(out_dir: Path) -> Path:
    """A new empty hidden folder beside `out_dir`, on the same file system (so that
    `swap_into_place` is a rename); stale staging folders of `out_dir` are removed first.
    Raises `OSError` if the parent folder cannot be written."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{out_dir.name}{STAGING_MARK}"
    now = time.time()
    for old in out_dir.parent.glob(f"{glob_escape(prefix)}*"):
        try:
            if old.is_dir() and now - old.stat().st_mtime > STALE_STAGING_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=out_dir.parent))
    staging.chmod(0o755)                      # mkdtemp's 0700 would hide the result
    return staging


def glob_escape(text: str) -> str:
    """`text` with glob's special characters quoted."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``);
    False where the system or file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(error, os.strerror(error), str(b))


def swap_into_place(staging: Path, out_dir: Path) -> None:
    """Make the complete folder `staging` be `out_dir`; the old `out_dir` is deleted.

    A reader, or a kill at any moment, sees the whole old folder or the whole new one:
    a missing `out_dir` is created by one rename, an existing one is exchanged with
    `staging` in one step.  Only where the file system cannot exchange (not Linux, some
    network file systems) two renames are used, and a kill between them leaves the old
    folder in the hidden staging folder, not at `out_dir`.
    """
    staging, out_dir = Path(staging), Path(out_dir)
    try:
        os.rename(staging, out_dir)           # atomic; fails if out_dir is a non-empty dir
        return
    except OSError as error:
        if not out_dir.is_dir() or error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    if _exchange(staging, out_dir):
        shutil.rmtree(staging, ignore_errors=True)       # now holds the old folder
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}{STAGING_MARK}", dir=out_dir.parent))
    os.replace(out_dir, old / "old")
    os.replace(staging, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def write_atomically(out_dir: Path, files: dict[str, Callable[[], str]]) -> list[Path]:
    """Produce each file's text by calling its function, then move all into `out_dir`.

    If `out_dir` does not exist or holds nothing but these files (an earlier run's
    output), the whole folder is replaced at once (`swap_into_place`): after any signal it
    is all old or all new.  A folder with other things in it is updated file by file
    instead (each file old or new), so nothing of the user's is lost.
    """
    out_dir = Path(out_dir)
    staging = staging_folder(out_dir)
    try:
        for name, produce in files.items():
            (staging / name).write_text(produce())
        if not out_dir.exists() or (not out_dir.is_symlink() and out_dir.is_dir()
                                    and set(os.listdir(out_dir)) <= set(files)):
            swap_into_place(staging, out_dir)
        else:
            for name in files:
                os.replace(staging / name, out_dir / name)
        return [out_dir / name for name in files]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
