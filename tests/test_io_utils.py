"""Atomic writes: all or nothing, and files as readable as a plain open() makes them."""

import os
import stat

import pytest

from bertkit.io_utils import atomic_directory, atomic_save_with, atomic_write


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_files_get_the_umask_permissions(tmp_path, umask_022):
    with atomic_write(tmp_path / "a.txt") as handle:
        handle.write("x")
    atomic_save_with(tmp_path / "b.bin", lambda name: open(name, "wb").close())
    with atomic_directory(tmp_path / "d") as folder:
        (folder / "f").write_text("y")
    assert mode(tmp_path / "a.txt") == 0o644 and mode(tmp_path / "b.bin") == 0o644
    assert mode(tmp_path / "d") == 0o755


def test_interrupted_writes_leave_nothing(tmp_path):
    (tmp_path / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "a.txt") as handle:
            handle.write("half")
            raise RuntimeError("killed")
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "d") as folder:
            (folder / "f").write_text("y")
            raise RuntimeError("killed")
    assert (tmp_path / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
