"""Load a checkpoint with the head its config names; save a converted copy beside its companion files."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from bertkit.checkpoint.load import resolve_checkpoint
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


# What a converted copy needs from beside the source's weights to be used like the source: the
# tokenizer's files, sentence-transformers' module list and settings, and the model card. Named,
# not "everything but the weights": a training run's directory also holds eval_results.txt,
# metrics.jsonl, plots, prediction files and checkpoints, which describe the run, not the copy.
COMPANION_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json",
                   "added_tokens.json", "modules.json", "sentence_bert_config.json",
                   "config_sentence_transformers.json", "README.md")


def _is_companion(item: Path) -> bool:
    # sentence-transformers' module folders are numbered: 1_Pooling, 2_Normalize, ...
    return item.name in COMPANION_FILES if item.is_file() else bool(re.fullmatch(r"\d+_\w+", item.name))


def copy_companions(directory: Path, target: Path) -> None:
    """The companion files and folders of the checkpoint in `directory`, copied into `target`."""
    for item in sorted(directory.iterdir()):
        if not _is_companion(item):
            continue
        if item.is_dir():
            shutil.copytree(item, target / item.name)
        else:
            shutil.copyfile(item, target / item.name)


def save_with_companions(model, source, output_dir) -> Path:
    """save_pretrained into `output_dir` (atomically), plus the companion files beside the source's
    weights (vocab, tokenizer files, sentence-transformers' pooling; see COMPANION_FILES)."""
    directory = resolve_checkpoint(source).directory
    with atomic_directory(output_dir) as tmp:
        copy_companions(directory, tmp)
        model.save_pretrained(tmp)
    return Path(output_dir)
