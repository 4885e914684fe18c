"""File handling for user-given paths: atomic writes (an interrupted run must never leave a
half-written checkpoint or cache), and input files and output paths checked up front, so that a
path that cannot work is one DataError / ConfigError naming it instead of an OSError traceback."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

from bertkit.errors import ConfigError, DataError


def open_input(path: str | os.PathLike, what: str, encoding: str = "utf-8", newline: str | None = None) -> IO:
    """Open a user's input file for reading text; a missing file, a directory in its place or an
    unreadable one is a DataError naming the path and, in `what`, what the file should be."""
    path = Path(path)
    try:
        return open(path, encoding=encoding, newline=newline)
    except (FileNotFoundError, NotADirectoryError):  # NotADirectoryError: a file where a folder was expected
        raise DataError(f"{path}: file not found; {what}") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a file; {what}") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied; make the file readable") from None


def first_non_utf8_line(path: str | os.PathLike) -> int:
    """1-based number of the first line that does not decode (the decoder only knows its chunk)."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 1


def read_text_lines(path: str | os.PathLike, what: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of a plain UTF-8 text file; `what` says what the file should be (e.g.
    "a text file, one sentence per line"). A binary file (a NUL byte, bytes that are not UTF-8) is
    a DataError naming the line, never text read with replacement characters."""
    with open_input(path, f"expected {what}") as handle:
        try:
            for number, line in enumerate(handle, 1):
                if "\x00" in line:
                    raise DataError(f"{path}:{number}: holds a NUL byte, so it is not text; expected {what}")
                yield number, line
        except UnicodeDecodeError as err:
            raise DataError(f"{path}:{first_non_utf8_line(path)}: not UTF-8 text ({err.reason}); "
                            "convert the file to UTF-8") from None


def _named(flag: str, path: Path) -> str:
    """How a message names the path: `--output_dir=out`, or `destination out` for a positional argument."""
    return f"{flag}={path}" if flag.startswith("-") else f"{flag} {path}"


def _require_writable(folder: Path, named: str, where: str) -> None:
    """A ConfigError `<named>: no permission to write in <where>` unless this process can create
    files in `folder` (the output itself, or the folder a new output or its temp file goes in)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{named} no permission to write in {where}; choose a directory you can write to")


def _check_creatable(path: Path, flag: str) -> None:
    """The nearest existing folder above `path` must be a folder this process can write in."""
    parent = path.absolute().parent
    while not parent.exists():  # exists() is False under a file too: the walk stops at the file
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{_named(flag, path)} cannot be created: {parent} is a file, not a directory; "
                          "choose another path")
    _require_writable(parent, f"{_named(flag, path)} cannot be created:", str(parent))


def check_output_dir(path: str | os.PathLike, flag: str = "--output_dir") -> Path:
    """Check, before any work and without creating anything, that `path` is, or can be made, a
    directory to write in; else a ConfigError naming `flag`."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{_named(flag, path)} is a file, not a directory; give a directory "
                              "(it is created if needed)")
        _require_writable(path, f"{_named(flag, path)}:", "it")
    else:
        _check_creatable(path, flag)
    return path


def check_output_file(path: str | os.PathLike, flag: str = "--output_file") -> Path:
    """Check, before any work and without creating anything, that the file `path` can be written
    (its folders are created if needed); else a ConfigError naming `flag`."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{_named(flag, path)} is a directory; give the name of a file to write")
    if path.exists():
        # Atomic writes replace it from a temp file beside it.
        _require_writable(path.parent, f"{_named(flag, path)}:", str(path.parent))
    else:
        _check_creatable(path, flag)
    return path


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
