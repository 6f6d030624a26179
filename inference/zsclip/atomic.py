"""Atomic writes of files and folders: a crash at any moment leaves the previous one or none, never a partial one."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator, Optional

from zsclip.errors import InputDataError


def current_umask() -> int:
    """The process umask, read without changing it where Linux reports it (/proc), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file next to `path`; on success fsync it and rename it onto `path`.

    The file gets the permissions a plain `open()` would give it (0666 minus the umask), not
    mkstemp's private 0600, so other users and tools can read the result as usual.

    Raises:
        InputDataError: the file cannot be created or written (read-only file system, disk full, ...).
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.resolve().parent))
    except OSError as exc:
        raise InputDataError(f"cannot write {path} ({exc.strerror or exc})") from None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputDataError(f"cannot write {path} ({exc.strerror or exc})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_prefix(target: Path, pid: int) -> str:
    """Name prefix of the build folders of process `pid` on this host for `target`."""
    host = socket.gethostname().replace("-", "_") or "host"
    return f".{target.name}.tmp-{host}-{pid}-"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_dead_builds(target: Path) -> None:
    """Remove build folders (and their swapped-out `.old`) left beside `target` by processes of this host
    that no longer run (kill -9, power loss). Another host's or a live process's folders are left alone."""
    head = build_prefix(target, 0)[: -len("0-")]
    for folder in target.parent.glob(glob.escape(head) + "*"):
        pid_text = folder.name[len(head):].split("-", 1)[0]
        if folder.is_dir() and pid_text.isdigit() and not process_alive(int(pid_text)):
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(target: Path, build_name: Optional[str] = None) -> Iterator[Path]:
    """Yield an empty folder next to `target` to build in; when the block succeeds it takes `target`'s place.

    An existing `target` is moved aside first and removed only after the new folder is in place; on any
    error (or Ctrl-C) the build folder is removed and `target` is left as it was. Callers decide beforehand
    whether `target` may be replaced at all.

    The build folder's name is unique (`.NAME.tmp-HOST-PID-XXXXXXXX`); build folders that a killed process on
    this host left beside `target` are removed first (`remove_dead_builds`). `build_name` fixes the name
    instead: for a single writer that is re-run after being killed, whose leftover build folder (and
    swapped-out folder) is then removed first.

    Raises:
        InputDataError: the build folder cannot be created next to `target`, or the swap fails.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if build_name:
            work = target.parent / build_name
            for leftover in (work, work.with_name(f"{work.name}.old")):
                shutil.rmtree(leftover, ignore_errors=True)
            work.mkdir()
        else:
            remove_dead_builds(target)
            work = Path(tempfile.mkdtemp(prefix=build_prefix(target, os.getpid()), dir=str(target.parent)))
            os.chmod(work, 0o777 & ~current_umask())  # what a plain mkdir gives, not mkdtemp's private 0700
    except OSError as exc:
        raise InputDataError(f"{target}: cannot write in {target.parent} ({exc.strerror or exc})") from None
    try:
        yield work
        old = work.with_name(f"{work.name}.old")
        try:
            if target.exists():
                os.replace(target, old)
            os.replace(work, target)
        except OSError as exc:
            if old.exists() and not target.exists():
                os.replace(old, target)
            raise InputDataError(f"cannot replace {target} ({exc.strerror or exc})") from None
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
