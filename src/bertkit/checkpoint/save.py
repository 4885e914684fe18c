"""save_pretrained: HF layout (config.json, model.safetensors, vocab.txt), every file written atomically."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file

from bertkit.io_utils import atomic_save_with


def save_pretrained(model, directory, tokenizer=None) -> Path:
    """Write `model` (and the tokenizer's vocab) so that bertkit and transformers both load it.

    Tied parameters are written once: safetensors refuses shared storage, and both libraries
    re-tie the MLM decoder to the word embeddings on load.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        name: tensor.detach().contiguous().cpu()
        for name, tensor in model.state_dict().items()
        if name not in model.tied_weights
    }
    atomic_save_with(directory / "model.safetensors", lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    model.config.to_json_file(directory / "config.json", architecture=type(model).__name__)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return directory
