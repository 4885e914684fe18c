"""Smaller students cut out of a teacher, DistilBERT style: keep some encoder layers, copy the rest.

DistilBERT (Sanh et al., 2019) initialises a 6-layer student from every other layer of BERT-base:
the embeddings, the chosen layers, the pooler and the task head are copied unchanged, so the student
starts close to the teacher and distillation only has to close the gap the missing layers open.

    student = student_from_teacher(teacher, "every_other")      # layers 0, 2, 4, ... of the teacher
    student = student_from_teacher(teacher, [0, 5, 11])
    print(student.load_report)                                  # what was copied, in `notes`
    student.config.kept_layers                                  # [0, 2, 4, ...]: the teacher's indices

`keep_layers` (the same cut, applied in place) also serves LayerDrop's pruning at inference
(compress/layerdrop.py). Per-layer records in the config (`layer_num_heads`,
`layer_intermediate_sizes`, `pruned_heads` from compress/prune.py) follow the kept layers.
"""

from __future__ import annotations

import copy
import re
from typing import Sequence, Union

import torch
from torch import nn

from bertkit.checkpoint.report import LoadReport
from bertkit.config import BertConfig
from bertkit.errors import ConfigError

LayerSpec = Union[str, Sequence[int]]


def resolve_layers(spec: LayerSpec, num_layers: int) -> list[int]:
    """The layer indices named by `spec`, for a model of `num_layers` layers.

    spec: a list of indices ([0, 2, 4]), the same as text ("0,2,4"), "every_other" (0, 2, 4, ...),
    "bottom:N" (the first N), "top:N" (the last N), or "uniform:N" (N evenly spaced layers, the top
    one included: uniform:6 of 12 keeps 1, 3, 5, 7, 9, 11).
    """
    if isinstance(spec, str):
        text = spec.strip().lower()
        match = re.fullmatch(r"(bottom|first|top|last|uniform):(\d+)", text)
        if text in ("every_other", "every-other", "alternate"):
            layers = list(range(0, num_layers, 2))
        elif match:
            kind, n = match.group(1), int(match.group(2))
            if not 0 < n <= num_layers:
                raise ConfigError(f"layer spec {spec!r}: N must be between 1 and {num_layers}")
            if kind in ("bottom", "first"):
                layers = list(range(n))
            elif kind in ("top", "last"):
                layers = list(range(num_layers - n, num_layers))
            else:
                layers = uniform_layers(num_layers, n)
        elif re.fullmatch(r"\d+(\s*,\s*\d+)*", text):
            layers = [int(x) for x in text.split(",")]
        else:
            raise ConfigError(f"layer spec {spec!r} is not understood; use e.g. 'every_other', '0,2,4', "
                              "'bottom:6', 'top:6' or 'uniform:6'")
    else:
        layers = [int(x) for x in spec]
    if not layers:
        raise ConfigError(f"layer spec {spec!r} keeps no layer; keep at least one")
    bad = [i for i in layers if not 0 <= i < num_layers]
    if bad:
        raise ConfigError(f"layer spec {spec!r}: layer(s) {bad} do not exist; the model has layers 0..{num_layers - 1}")
    if any(b <= a for a, b in zip(layers, layers[1:])):
        raise ConfigError(f"layer spec {spec!r}: give each layer once, in increasing order")
    return layers


def uniform_layers(num_layers: int, depth: int) -> list[int]:
    """`depth` evenly spaced layers out of `num_layers`, ending with the top layer (as LayerDrop's
    "every other" pruning: 6 of 12 -> 1, 3, 5, 7, 9, 11)."""
    if not 0 < depth <= num_layers:
        raise ConfigError(f"depth {depth} is not between 1 and {num_layers}")
    return [round((i + 1) * num_layers / depth) - 1 for i in range(depth)]


def _cut_config(config: BertConfig, layers: list[int]) -> None:
    """Cut the config's per-layer records to `layers` (renumbered 0..), in place."""
    if config.layer_num_heads is not None:
        config.layer_num_heads = [config.layer_num_heads[i] for i in layers]
    if config.layer_intermediate_sizes is not None:
        config.layer_intermediate_sizes = [config.layer_intermediate_sizes[i] for i in layers]
    config.pruned_heads = {new: config.pruned_heads[old] for new, old in enumerate(layers) if old in config.pruned_heads}
    config.kept_layers = [config.kept_layers[i] for i in layers] if config.kept_layers else list(layers)
    config.num_hidden_layers = len(layers)
    config.validate()


def keep_layers(model: nn.Module, layers: LayerSpec, inplace: bool = False) -> nn.Module:
    """Keep only the encoder layers `layers` (see resolve_layers), in order; returns the model.

    The config follows: num_hidden_layers, the per-layer records of pruning, and `kept_layers`,
    the kept layers' indices in the original model (composed when a model is cut twice).
    """
    if not inplace:
        model = copy.deepcopy(model)
    bert = model.base_model
    chosen = resolve_layers(layers, len(bert.encoder.layer))
    bert.encoder.layer = nn.ModuleList(bert.encoder.layer[i] for i in chosen)
    _cut_config(model.config, chosen)  # one config object: the encoder's is the model's
    return model


def student_from_teacher(teacher: nn.Module, layers: LayerSpec = "every_other") -> nn.Module:
    """A student of the teacher's class and width with the teacher's `layers` only, DistilBERT style.

    Embeddings, the kept layers, the pooler and the task head are copies of the teacher's tensors
    (the teacher is not changed). The student's `load_report` lists every copied tensor in `loaded`
    and says which layers became which in `notes`; `config.kept_layers` records them too.
    """
    num_layers = len(teacher.base_model.encoder.layer)
    chosen = resolve_layers(layers, num_layers)
    report = getattr(teacher, "load_report", None)
    source = report.source if report is not None and report.source else "(in memory)"
    teacher.load_report = None  # not deep-copied into the student
    try:
        student = keep_layers(teacher, chosen, inplace=False)
    finally:
        teacher.load_report = report
    for param in student.parameters():
        param.requires_grad_(True)
    others = [name for name, module in (("pooler", student.base_model.pooler),) if module is not None]
    others += [name for name, _ in student.named_children() if name not in ("bert", "dropout")]
    notes = [
        f"student from teacher {source}: teacher layers {chosen} of {num_layers} copied as student layers "
        f"0..{len(chosen) - 1}; embeddings{''.join(', ' + o for o in others)} copied unchanged",
    ]
    student.load_report = LoadReport(source=f"teacher {source}", format="layers copied from the teacher",
                                     model_class=type(student).__name__,
                                     loaded=list(student.state_dict()), notes=notes)
    return student


def copied_from(student_layer: int, config: BertConfig) -> int:
    """The teacher layer that student layer `student_layer` was copied from."""
    return config.kept_layers[student_layer] if config.kept_layers else student_layer


@torch.no_grad()
def same_tensors(a: nn.Module, b: nn.Module) -> bool:
    """Whether two models hold equal state_dicts (names, shapes and values)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
