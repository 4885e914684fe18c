"""Convert a Google TF checkpoint, or a PyTorch .bin one, to HF layout with safetensors."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from bertkit import heads
from bertkit.checkpoint.inspect import inspect_checkpoint
from bertkit.io_utils import atomic_save_with

logger = logging.getLogger("bertkit.checkpoint")


def guess_model_class(mapped_names: dict[str, tuple[int, ...]]) -> tuple[type, dict]:
    """The head the checkpoint was trained with, read off its tensor names (and label count)."""
    if "classifier.weight" in mapped_names:
        return heads.BertForSequenceClassification, {"num_labels": mapped_names["classifier.weight"][0]}
    if "qa_outputs.weight" in mapped_names:
        return heads.BertForQuestionAnswering, {}
    if any(name.startswith("cls.") for name in mapped_names):
        return heads.BertForPreTraining, {}
    return heads.BertModel, {}


def convert_checkpoint(source, destination):
    """Load `source` with the head its names imply and save it to `destination` in HF layout.

    Returns the model; its load_report says what was converted and what was left out
    (optimizer slots, global_step).
    """
    files, rows = inspect_checkpoint(source)
    mapped = {row.maps_to: row.shape for row in rows if row.maps_to is not None}
    model_class, overrides = guess_model_class(mapped)
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
