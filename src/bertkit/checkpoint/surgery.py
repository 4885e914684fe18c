"""Model surgery: re-initialise parts of a model and resize its position table.

Each function works on a model in memory and records what it did in a LoadReport, so that
`from_pretrained(..., surgery=Surgery(reinit_top_layers=2))` and a call after loading give the same report.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import torch
from torch import nn

from bertkit.checkpoint.report import LoadReport
from bertkit.errors import ConfigError
from bertkit.modeling import BertModel, init_module


def base_model(model: nn.Module) -> BertModel:
    """The BertModel inside a task model (`model.bert`), or the model itself."""
    if isinstance(model, BertModel):
        return model
    inner = getattr(model, "bert", None)
    if isinstance(inner, BertModel):
        return inner
    raise TypeError(f"{type(model).__name__} has no BertModel inside (expected a `bert` attribute)")


def _report(model: nn.Module, report: LoadReport | None) -> LoadReport:
    if report is not None:
        return report
    if getattr(model, "load_report", None) is None:
        model.load_report = LoadReport(model_class=type(model).__name__, source="(in memory)")
    return model.load_report


@torch.no_grad()
def reinit_parameters(model: nn.Module, names: list[str], report: LoadReport | None = None,
                      initializer_range: float | None = None) -> list[str]:
    """Re-draw the parameters whose names match any of `names` (exact names or glob patterns).

    A Linear or Embedding weight gets Google's truncated normal, a bias zeros, a LayerNorm 1 and 0.
    A pattern that matches nothing is an error: a typo must not leave the model silently unchanged.
    """
    std = initializer_range if initializer_range is not None else model.config.initializer_range
    params = dict(model.named_parameters())  # tied parameters appear once, under their first name
    matched: list[str] = []
    for pattern in names:
        hits = [n for n in params if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            examples = ", ".join(list(params)[:3])
            raise ConfigError(
                f"reinit pattern {pattern!r} matches no parameter of {type(model).__name__}; "
                f"names look like: {examples} (glob patterns such as 'bert.encoder.layer.11.*' work)"
            )
        matched += [n for n in hits if n not in matched]
    modules = dict(model.named_modules())
    for name in matched:
        owner_name, _, leaf = name.rpartition(".")
        owner = modules[owner_name]
        param = params[name]
        if isinstance(owner, nn.LayerNorm):
            param.fill_(1.0 if leaf == "weight" else 0.0)
        elif leaf == "bias" or param.dim() == 1:
            param.zero_()
        else:
            nn.init.trunc_normal_(param, mean=0.0, std=std, a=-2 * std, b=2 * std)
    record = _report(model, report)
    record.reinitialized += [n for n in matched if n not in record.reinitialized]
    record.notes.append(f"reinit {names}: {len(matched)} tensors re-drawn")
    return matched


@torch.no_grad()
def reinit_top_layers(model: nn.Module, num_layers: int, include_pooler: bool = True,
                      report: LoadReport | None = None) -> list[str]:
    """Re-initialise the top `num_layers` encoder layers (and the pooler), as in "Revisiting
    Few-sample BERT Fine-tuning" (Zhang et al., 2021): the top layers are the most task-specific."""
    bert = base_model(model)
    total = len(bert.encoder.layer)
    if not 0 < num_layers <= total:
        raise ConfigError(f"reinit_top_layers={num_layers}, but the model has {total} encoder layers; "
                          f"use a number from 1 to {total}")
    prefix = "" if bert is model else "bert."
    patterns = [f"{prefix}encoder.layer.{i}.*" for i in range(total - num_layers, total)]
    if include_pooler and bert.pooler is not None:
        patterns.append(f"{prefix}pooler.*")
    matched = reinit_parameters(model, patterns, report)
    _report(model, report).notes[-1] = (
        f"reinit_top_layers={num_layers}: layers {total - num_layers}..{total - 1}"
        f"{' and the pooler' if include_pooler and bert.pooler is not None else ''} re-drawn ({len(matched)} tensors)"
    )
    return matched


@torch.no_grad()
def resize_position_embeddings(model: nn.Module, max_position_embeddings: int, init: str = "random",
                               report: LoadReport | None = None) -> None:
    """Grow (or cut) the position table to `max_position_embeddings` rows.

    The trained rows are copied unchanged. New rows are drawn like any embedding (`init="random"`)
    or repeat the trained rows (`init="tile"`: row i = row i mod old, which keeps the model's
    outputs sensible past the old limit before any training).
    """
    if init not in ("random", "tile"):
        raise ConfigError(f"position init {init!r} is not supported; use 'random' or 'tile'")
    bert = base_model(model)
    old = bert.embeddings.position_embeddings
    old_rows, hidden = old.weight.shape
    if max_position_embeddings == old_rows:
        return
    if max_position_embeddings < 1:
        raise ConfigError(f"max_position_embeddings must be positive, got {max_position_embeddings}")
    new = nn.Embedding(max_position_embeddings, hidden, device=old.weight.device, dtype=old.weight.dtype)
    init_module(new, model.config.initializer_range)
    keep = min(old_rows, max_position_embeddings)
    new.weight[:keep] = old.weight[:keep]
    how = f"rows [:{keep}] copied"
    if max_position_embeddings > old_rows:
        if init == "tile":
            index = torch.arange(old_rows, max_position_embeddings, device=new.weight.device) % old_rows
            new.weight[old_rows:] = old.weight[index]
        how += f", rows [{old_rows}:] {'tiled from the trained rows' if init == 'tile' else 'initialised randomly'}"
    new.weight.requires_grad_(old.weight.requires_grad)
    bert.embeddings.position_embeddings = new
    model.config.max_position_embeddings = max_position_embeddings  # shared with model.bert
    prefix = "" if bert is model else "bert."
    _report(model, report).resized.append(
        (f"{prefix}embeddings.position_embeddings.weight", (old_rows, hidden), (max_position_embeddings, hidden), how)
    )


POSITION_INITS = ("random", "tile")


@dataclass(frozen=True)
class Surgery:
    """What from_pretrained changes after loading, one typed argument:

        from_pretrained(path, surgery=Surgery(reinit_top_layers=1, max_position_embeddings=1024))

    Applied in this order: the position table is extended (trained rows copied, the others
    drawn per `position_init`), the named parameters are re-drawn, then the top layers (and the
    pooler, with `reinit_pooler`). Every step is recorded in the model's load report.
    """

    max_position_embeddings: int | None = None
    position_init: str = "random"  # "random" or "tile" for the rows past the checkpoint's
    reinit: tuple[str, ...] = ()  # parameter names or glob patterns to re-initialise
    reinit_top_layers: int = 0
    reinit_pooler: bool = True

    def __post_init__(self):
        object.__setattr__(self, "reinit", tuple(self.reinit))
        if self.position_init not in POSITION_INITS:
            raise ConfigError(f"position_init {self.position_init!r} is not supported; use 'random' or 'tile'")
        if self.max_position_embeddings is not None and self.max_position_embeddings < 1:
            raise ConfigError(f"max_position_embeddings must be positive, got {self.max_position_embeddings}")
        if self.reinit_top_layers < 0:
            raise ConfigError(f"reinit_top_layers must be 0 or more, got {self.reinit_top_layers}")

    def apply(self, model: nn.Module, report: LoadReport | None = None) -> None:
        if self.max_position_embeddings is not None:
            resize_position_embeddings(model, self.max_position_embeddings, self.position_init, report)
        if self.reinit:
            reinit_parameters(model, list(self.reinit), report)
        if self.reinit_top_layers:
            reinit_top_layers(model, self.reinit_top_layers, include_pooler=self.reinit_pooler, report=report)
