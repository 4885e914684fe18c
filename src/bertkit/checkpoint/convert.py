"""Convert a Google TF checkpoint, or a PyTorch .bin one, to HF layout with safetensors."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from bertkit.checkpoint.inspect import inspect_checkpoint
from bertkit.checkpoint.load import resolve_checkpoint
from bertkit.io_utils import atomic_save_with

logger = logging.getLogger("bertkit.checkpoint")


def mapped_names(source) -> dict[str, tuple[int, ...]]:
    """The checkpoint's parameters, by the HF name each maps to, with their shapes."""
    _, rows = inspect_checkpoint(source)
    return {row.maps_to: row.shape for row in rows if row.maps_to is not None}


def convert_checkpoint(source, destination, model_class, **overrides):
    """Load `source` as `model_class` (the head its weights were trained with: the task registry's
    `for_weights(mapped_names(source))` tells) and save it to `destination` in HF layout.

    Returns the model; its load_report says what was converted and what was left out
    (optimizer slots, global_step).
    """
    files = resolve_checkpoint(source)
    model = model_class.from_pretrained(source, **overrides)
    destination = Path(destination)
    model.save_pretrained(destination)
    for name in ("vocab.txt", "tokenizer_config.json"):
        path = files.directory / name
        if path.is_file() and path.resolve() != (destination / name).resolve():
            atomic_save_with(destination / name, lambda tmp, src=path: shutil.copyfile(src, tmp))
    if files.vocab_file is None:
        logger.warning("no vocab.txt beside %s; copy the checkpoint's vocabulary into %s yourself", source, destination)
    return model
