"""Load a checkpoint with the head its config names; save a converted copy beside its companion files."""

from __future__ import annotations

import shutil
from pathlib import Path

from bertkit.checkpoint.load import CONFIG_FILES, HF_WEIGHT_FILES, resolve_checkpoint
from bertkit.config import BertConfig
from bertkit.errors import CheckpointError, ConfigError
from bertkit.heads import model_class_for
from bertkit.io_utils import atomic_directory


def load_for_export(path):
    """The checkpoint at `path` as the class its config.json names (BertModel when none), in eval mode."""
    if path is None:
        raise ConfigError("give --model: the trained checkpoint to convert (a config file alone has no weights)")
    files = resolve_checkpoint(path)
    if files.config_file is None:
        raise CheckpointError(f"no config.json in {files.directory}: it says which head the checkpoint has")
    model_class = model_class_for(BertConfig.from_json_file(files.config_file))
    return model_class.from_pretrained(path).eval()


def save_with_companions(model, source, output_dir) -> Path:
    """save_pretrained into `output_dir` (atomically), plus every file and folder beside the source's
    weights that is not weights or config: vocab, tokenizer files, sentence-transformers' pooling."""
    directory = resolve_checkpoint(source).directory
    skip = set(HF_WEIGHT_FILES) | set(CONFIG_FILES)
    with atomic_directory(output_dir) as tmp:
        for item in directory.iterdir():
            if item.name in skip or item.name.startswith(".") or item.suffix in (".bin", ".safetensors", ".onnx"):
                continue
            if item.is_dir():
                shutil.copytree(item, tmp / item.name)
            else:
                shutil.copyfile(item, tmp / item.name)
        model.save_pretrained(tmp)
    return Path(output_dir)
