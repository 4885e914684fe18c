"""from_pretrained: find the files, read the tensors safely, map names, apply surgery, report.

Supported inputs:
  * HF layout: a directory (or a file in it) with config.json and model.safetensors,
    pytorch_model.bin, or their sharded `*.index.json` forms;
  * Google layout: bert_config.json with bert_model.ckpt.{index,data-*} (see tf_bundle.py);
  * a model name: "minilm" (the packaged model) or a hub name such as "bert-base-uncased",
    found in the local Hugging Face cache or downloaded (see hub.py).
"""

from __future__ import annotations

import json
import logging
import pickle
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bertkit.checkpoint import names
from bertkit.checkpoint.hub import resolve_name
from bertkit.checkpoint.surgery import Surgery
from bertkit.checkpoint.report import LoadReport
from bertkit.checkpoint.tf_bundle import TFCheckpointReader, UnsupportedTensorError, find_tf_checkpoint
from bertkit.config import BertConfig
from bertkit.errors import CheckpointError, ConfigError
from bertkit.modeling import deferred_init

logger = logging.getLogger("bertkit.checkpoint")

HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                   "pytorch_model.bin.index.json")
CONFIG_FILES = ("config.json", "bert_config.json")


@dataclass
class CheckpointFiles:
    """Where a checkpoint's pieces are on disk."""

    directory: Path
    format: str  # "safetensors", "pytorch" or "google-tf"
    weight_files: list[Path] = field(default_factory=list)
    config_file: Path | None = None
    vocab_file: Path | None = None
    tf_prefix: Path | None = None

    @property
    def description(self) -> str:
        if self.format == "google-tf":
            return f"Google TF checkpoint {self.tf_prefix}"
        shards = f", {len(self.weight_files)} shards" if len(self.weight_files) > 1 else ""
        return f"HF {self.format}{shards}"


def resolve_checkpoint(path: str | Path) -> CheckpointFiles:
    """Find config, weights and vocab for a directory, a weights file, a TF checkpoint prefix, or a model
    name (checkpoint/hub.py: "minilm", or a hub name such as "bert-base-uncased" in the local HF cache)."""
    path = Path(path).expanduser()
    tf_prefix = None
    if path.is_dir():
        directory = path
        # One format only, in order of preference: safetensors needs no unpickling at all.
        weights = [directory / n for n in HF_WEIGHT_FILES if (directory / n).is_file()][:1]
        if not weights:
            tf_prefix = find_tf_checkpoint(directory)
            if tf_prefix is None:
                raise CheckpointError(
                    f"no weights found in {directory}: looked for {', '.join(HF_WEIGHT_FILES)} "
                    "and a Google checkpoint (bert_model.ckpt.index)"
                )
    elif path.is_file() and (path.name.endswith((".safetensors", ".bin", ".index.json"))):
        directory, weights = path.parent, [path]
    elif path.is_file() and path.name in CONFIG_FILES:
        return resolve_checkpoint(path.parent)
    else:
        tf_prefix = find_tf_checkpoint(path)
        if tf_prefix is None:
            named = resolve_name(str(path))  # a model name: "minilm", or a hub id in the local HF cache
            if named is not None:
                return resolve_checkpoint(named)
            raise CheckpointError(
                f"checkpoint not found: {path} (give a directory with config.json and model.safetensors or "
                "pytorch_model.bin, one of those files, a Google checkpoint prefix such as .../bert_model.ckpt, "
                "or a model name: minilm, or a Hugging Face hub name such as bert-base-uncased)"
            )
        directory, weights = Path(tf_prefix).parent, []

    config_file = next((directory / n for n in CONFIG_FILES if (directory / n).is_file()), None)
    vocab_file = directory / "vocab.txt" if (directory / "vocab.txt").is_file() else None
    if tf_prefix is not None:
        return CheckpointFiles(directory, "google-tf", [], config_file, vocab_file, Path(tf_prefix))
    weight = weights[0]
    if weight.name.endswith(".index.json"):
        weights = _sharded_files(weight)
    fmt = "safetensors" if weights[0].name.endswith(".safetensors") else "pytorch"
    return CheckpointFiles(directory, fmt, weights, config_file, vocab_file)


def _sharded_files(index_file: Path) -> list[Path]:
    expected = "it needs a 'weight_map' object of tensor name -> shard file beside it"
    try:
        weight_map = json.loads(index_file.read_text(encoding="utf-8"))["weight_map"]
    except (ValueError, KeyError, TypeError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError too
        raise CheckpointError(f"{index_file}: not a valid sharded-checkpoint index ({type(err).__name__}: "
                              f"{err}); {expected}") from None
    if not isinstance(weight_map, dict) or not weight_map or not all(
            isinstance(f, str) and f and Path(f).name == f for f in weight_map.values()):
        raise CheckpointError(f"{index_file}: its 'weight_map' is {str(weight_map)[:80]!r}; {expected}")
    files = [index_file.parent / f for f in dict.fromkeys(weight_map.values())]
    for file in files:
        if not file.is_file():
            raise CheckpointError(f"{index_file} names the shard {file.name}, which is missing from {file.parent}")
    return files


def read_state_dict(files: CheckpointFiles, report: LoadReport) -> dict[str, torch.Tensor]:
    """Read every tensor of a checkpoint; never unpickles anything but tensors."""
    if files.format == "google-tf":
        state = _read_google(files, report)
        check_finite(state, files.tf_prefix)
        return state
    state: dict[str, torch.Tensor] = {}
    for file in files.weight_files:
        if files.format == "safetensors":
            from safetensors.torch import load_file

            with reading_safetensors(file):
                part = load_file(file)
        else:
            part = _torch_load_weights_only(file)
        check_finite(part, file)
        state.update(part)
    return state


@contextmanager
def reading_safetensors(file: Path):
    """The safetensors library's errors while reading `file` (truncated, damaged, not safetensors at
    all) as one CheckpointError naming it: every reader of .safetensors files goes through here."""
    from safetensors import SafetensorError

    try:
        yield
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{file}: cannot read safetensors file ({err}); it is truncated, damaged or not a "
                              "safetensors file: save or download it again") from None


def check_finite(state: dict[str, torch.Tensor], source) -> None:
    """A NaN or infinite weight makes every output NaN without any error: refuse it here, naming it."""
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            continue
        if tensor.element_size() == 1:  # torch has no isfinite for some float8 types
            tensor = tensor.float()
        if not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{source}: tensor {name} holds {bad} NaN or infinite value(s) of {tensor.numel()}; "
                                  "the checkpoint is damaged or was saved from a diverged run: use an earlier "
                                  "checkpoint")


# How torch's safe unpickler names a class it does not allow.
_DISALLOWED_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global")


def _torch_load_weights_only(file: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as err:
        raise CheckpointError(f"{file}: cannot open it ({err.strerror})") from None
    except Exception as err:  # noqa: BLE001 - torch.load reads nothing but this file, so any failure is the file's
        with open(file, "rb") as handle:
            head = handle.read(2)
        # torch.save writes a zip archive ("PK"), older torch a pickle ("\x80" and its protocol 2-5).
        if head != b"PK" and not (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
            raise CheckpointError(f"{file}: not a PyTorch checkpoint (neither the zip archive nor the pickle that "
                                  "torch.save writes); is it the right file? Download or save it again") from None
        if isinstance(err, pickle.UnpicklingError):
            other = _DISALLOWED_GLOBAL.search(str(err))
            what = (f"{other.group(1)}, an object other than tensors" if other
                    else f"objects other than tensors, or is damaged (the safe unpickler stopped at: {_first_line(err)})")
            raise CheckpointError(
                f"{file}: refused to unpickle it: it holds {what}. bertkit reads only tensors from .bin files, since "
                "unpickling anything else can run any code: save the state_dict alone, or as safetensors, where the "
                "file was made"
            ) from None
        raise CheckpointError(f"{file}: cannot read PyTorch checkpoint ({_first_line(err)}); it is truncated or "
                              "damaged: download or save it again") from None
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(torch.is_tensor(v) for v in loaded.values()):
        raise CheckpointError(f"{file}: expected a state_dict (a dict of tensor name -> tensor)")
    return loaded


def _first_line(err: Exception) -> str:
    """The gist of a torch.load error, without the advice torch appends (which may be to turn the safe
    loader off: bertkit never does)."""
    message = str(err)
    detail = message.split("WeightsUnpickler error:")[-1].strip() if "WeightsUnpickler error:" in message else message
    return (detail.splitlines() or [type(err).__name__])[0].strip() or type(err).__name__


def _read_google(files: CheckpointFiles, report: LoadReport) -> dict[str, torch.Tensor]:
    """Google variable names -> HF names, kernels transposed; optimizer slots and strings skipped."""
    state: dict[str, torch.Tensor] = {}
    with TFCheckpointReader(files.tf_prefix) as reader:
        for variable in reader.list_variables():
            reason = names.google_skip_reason(variable.name)
            mapped = names.google_to_hf(variable.name)
            if reason is not None or mapped is None:
                if reason is not None:
                    report.skipped.append((variable.name, reason))
                else:
                    report.unexpected.append(variable.name)
                continue
            try:
                tensor = reader.get_tensor(variable.name)
            except UnsupportedTensorError as err:
                report.skipped.append((variable.name, err.reason))
                continue
            hf_name, transpose = mapped
            state[hf_name] = tensor.t().contiguous() if transpose else tensor
    report.notes.append(f"{len(state)} Google variable names mapped to HF names (dense kernels transposed)")
    return state


def load_state_into(model, state: dict[str, torch.Tensor], report: LoadReport,
                    ignore_mismatched_sizes: bool = False) -> None:
    """Copy checkpoint tensors into `model` by name and fill in the report."""
    model_state = model.state_dict()
    model_keys = set(model_state)
    prefix = model.base_model_prefix
    assigned: set[str] = set()
    prefix_changes = 0
    with torch.no_grad():
        for ckpt_name, tensor in state.items():
            if names.is_ignored_buffer(ckpt_name):
                report.skipped.append((ckpt_name, "buffer, recomputed by the model"))
                continue
            target = names.match_to_model(ckpt_name, model_keys, prefix)
            if target is None:
                report.unexpected.append(ckpt_name)
                continue
            if target in model.tied_weights:
                report.skipped.append((ckpt_name, f"tied to {model.tied_weights[target]}"))
                continue
            if target in assigned:
                # Two checkpoint names for one tensor (HF writes the MLM bias under two names).
                report.skipped.append((ckpt_name, f"duplicate of {target}"))
                continue
            expected = model_state[target]
            if tuple(tensor.shape) != tuple(expected.shape):
                in_base = prefix == "" or target.startswith(prefix + ".")
                if in_base and not ignore_mismatched_sizes:
                    raise CheckpointError(
                        f"{report.source}: tensor {ckpt_name} has shape {tuple(tensor.shape)} but "
                        f"{type(model).__name__} built from this config expects {tuple(expected.shape)} for "
                        f"{target}; the config (or an override such as vocab_size or hidden_size) does not fit "
                        "the checkpoint. Fix the config, or pass ignore_mismatched_sizes=True to re-initialise it"
                    )
                report.mismatched.append((target, tuple(tensor.shape), tuple(expected.shape)))
                continue
            expected.copy_(tensor)
            assigned.add(target)
            report.loaded.append(target)
            if names.normalize_hf_name(ckpt_name) != ckpt_name:
                report.renamed.append((ckpt_name, target))
            elif ckpt_name != target:
                prefix_changes += 1
    mismatched = {name for name, _, _ in report.mismatched}
    report.missing += [k for k in model_state
                       if k not in assigned and k not in model.tied_weights and k not in mismatched]
    if prefix_changes:
        report.notes.append(f"base-model prefix '{prefix or 'bert'}.' added or removed on {prefix_changes} names")
    model.tie_weights()


def from_pretrained(cls, path, *, config: BertConfig | None = None, surgery: Surgery | None = None,
                    ignore_mismatched_sizes: bool = False, **config_overrides):
    """Build `cls` from a checkpoint and record what happened in `model.load_report`.

    config_overrides set config fields (num_labels=3, hidden_dropout_prob=0.2, ...); `surgery`
    (a checkpoint.surgery.Surgery) changes the loaded model: a longer position table,
    re-initialised parameters or top layers.
    """
    if "max_position_embeddings" in config_overrides:
        raise ConfigError(f"max_position_embeddings={config_overrides['max_position_embeddings']} would change the "
                          "checkpoint's position table: pass surgery=Surgery(max_position_embeddings=...), which "
                          "copies the trained rows and initialises the rest")
    files = resolve_checkpoint(path)
    if config is None:
        if files.config_file is None:
            raise CheckpointError(f"no config.json or bert_config.json in {files.directory}; "
                                  "put the checkpoint's config beside its weights")
        config = BertConfig.from_json_file(files.config_file, **config_overrides)
    elif config_overrides:
        config = BertConfig.from_dict(config.to_dict(), **config_overrides)
    report = LoadReport(source=str(path), format=files.description, model_class=cls.__name__)
    state = read_state_dict(files, report)
    with deferred_init():  # the checkpoint's tensors overwrite any initialisation: only the rest gets one
        model = cls(config)
    if config.quantization_config is not None:
        from bertkit.int8 import prepare_quantized

        prepare_quantized(model, config.quantization_config)  # int8 modules for the int8 tensors
    load_state_into(model, state, report, ignore_mismatched_sizes)
    model.init_parameters([*report.missing, *(name for name, _, _ in report.mismatched)])
    model.load_report = report
    if surgery is not None:
        surgery.apply(model, report)
    # Missing or mismatched tensors are newly initialised: worth a warning (transformers warns too) even
    # where the log is quiet, as `bertkit predict` is by default; a clean load is an INFO line.
    logger.log(logging.WARNING if report.missing or report.mismatched else logging.INFO, "Loaded %s", report.summary())
    return model
