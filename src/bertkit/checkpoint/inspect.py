"""List a checkpoint's variables and what each maps to, without building a model.

This is the table that articles on Google's `init_from_checkpoint` print: every variable with its
shape and dtype, where it goes in the model, and why it is left out when it is.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

from bertkit.checkpoint import names
from bertkit.checkpoint.load import CheckpointFiles, _torch_load_weights_only, reading_safetensors, resolve_checkpoint
from bertkit.checkpoint.tf_bundle import TFCheckpointReader
from bertkit.errors import CheckpointError


@dataclass
class VariableRow:
    name: str
    shape: tuple[int, ...]
    dtype: str
    maps_to: str | None  # the HF / bertkit parameter name, None when not loaded
    note: str = ""  # "transposed", or why the variable is not a model weight

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def inspect_checkpoint(path) -> tuple[CheckpointFiles, list[VariableRow]]:
    files = resolve_checkpoint(path)
    if files.format == "google-tf":
        return files, _google_rows(files)
    return files, _hf_rows(files)


def _google_rows(files: CheckpointFiles) -> list[VariableRow]:
    rows = []
    with TFCheckpointReader(files.tf_prefix) as reader:
        for variable in reader.list_variables():
            skip = names.google_skip_reason(variable.name)
            mapped = None if skip else names.google_to_hf(variable.name)
            if mapped is None:
                note = skip or ("string, not a weight" if variable.dtype == "string" else "not a BERT weight")
                rows.append(VariableRow(variable.name, tuple(variable.shape), variable.dtype, None, note))
            else:
                target, transpose = mapped
                rows.append(VariableRow(variable.name, tuple(variable.shape), variable.dtype, target,
                                        "transposed" if transpose else ""))
    return rows


def _hf_rows(files: CheckpointFiles) -> list[VariableRow]:
    rows = []
    for file in files.weight_files:
        if files.format == "safetensors":
            from safetensors import safe_open

            with reading_safetensors(file), safe_open(file, "pt") as handle:  # reads the header only
                for name in handle.keys():
                    tensor = handle.get_slice(name)
                    rows.append(_hf_row(name, tuple(tensor.get_shape()), str(tensor.get_dtype()).lower()))
        else:
            for name, tensor in _torch_load_weights_only(file).items():
                rows.append(_hf_row(name, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch.")))
    return sorted(rows, key=lambda row: row.name)


def _hf_row(name: str, shape: tuple[int, ...], dtype: str) -> VariableRow:
    if names.is_ignored_buffer(name):
        return VariableRow(name, shape, dtype, None, "buffer, recomputed by the model")
    normalized = names.normalize_hf_name(name)
    return VariableRow(name, shape, dtype, normalized, "renamed" if normalized != name else "")


def module_of(parameter: str) -> str:
    """Group a parameter name into the module that a parameter count is reported for."""
    name = parameter.removeprefix("bert.")
    match = re.match(r"encoder\.layer\.(\d+)\.", name)
    if match:
        return f"encoder.layer.{match.group(1)}"
    if name.startswith("embeddings.word_embeddings"):
        return "embeddings.word_embeddings"
    if name.startswith("embeddings."):
        return "embeddings (position, token type, LayerNorm)"
    return name.split(".")[0] if not name.startswith("cls.") else ".".join(name.split(".")[:2])


def parameter_counts(rows: list[VariableRow]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        if row.maps_to is not None:
            counts[module_of(row.maps_to)] = counts.get(module_of(row.maps_to), 0) + row.size
    return counts


def inspection_as_dict(files: CheckpointFiles, rows: list[VariableRow]) -> dict:
    counts = parameter_counts(rows)
    return {
        "source": files.description,
        "config": str(files.config_file) if files.config_file else None,
        "vocab": str(files.vocab_file) if files.vocab_file else None,
        "total_parameters": sum(counts.values()),
        "parameters_by_module": counts,
        "variables": [{**asdict(row), "shape": list(row.shape)} for row in rows],
    }


def format_inspection(files: CheckpointFiles, rows: list[VariableRow]) -> str:
    if not rows:
        raise CheckpointError(f"{files.directory}: the checkpoint holds no tensors")
    width = max(len(row.name) for row in rows)
    lines = [f"{files.description}", "",
             f"{'variable':<{width}}  {'shape':<16}{'dtype':<10}maps to"]
    for row in rows:
        target = row.maps_to if row.maps_to is not None else "-"
        note = f"  ({row.note})" if row.note else ""
        lines.append(f"{row.name:<{width}}  {str(list(row.shape)):<16}{row.dtype:<10}{target}{note}")
    counts = parameter_counts(rows)
    total = sum(counts.values())
    lines += ["", f"{'module':<46}{'parameters':>14}{'share':>9}"]
    for module, count in counts.items():
        lines.append(f"{module:<46}{count:>14,}{count / total:>9.1%}")
    lines.append(f"{'total':<46}{total:>14,}")
    skipped = [row for row in rows if row.maps_to is None]
    if skipped:
        lines.append(f"{len(skipped)} variables are not loaded ({sum(r.size for r in skipped):,} values)")
    return "\n".join(lines)
