"""Atomic file writes: an interrupted run must never leave a half-written checkpoint or cache."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator


def _umask() -> int:
    try:  # Linux reports it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def _publish(tmp_name: str, path: Path, mode: int = 0o666) -> None:
    """Give the temp file the permissions a plain open() would have (mkstemp makes it 0600, which
    would hide checkpoints from the other users of a shared machine), then rename it into place."""
    os.chmod(tmp_name, mode & ~_umask())
    os.replace(tmp_name, path)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temp file beside `path`; on success rename it over `path`, on failure remove it.

    The temp file lives in the same directory so that the final os.replace is a rename on one
    file system, which POSIX and Windows both make atomic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _publish(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def atomic_save_with(path: str | os.PathLike, writer) -> None:
    """Atomically create `path` with a library writer that only accepts a file name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(tmp_name)
        _publish(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temp name beside `path`, then rename it into place.

    A run killed half-way leaves a hidden `.tmp` directory, never a half-written `path`. An
    existing `path` (an earlier run's directory of the same name) is replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        _publish(str(tmp), path, 0o777)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
