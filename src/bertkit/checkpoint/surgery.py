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
from bertkit.modeling import BertModel, BertPreTrainedModel, init_module


def base_model(model: nn.Module) -> BertModel:
    """`model.base_model` (a method of the model now); this function is kept for one release."""
    if not isinstance(model, BertPreTrainedModel):
        raise TypeError(f"{type(model).__name__} has no BertModel inside (expected a bertkit model)")
    return model.base_model


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
    bert = model.base_model
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


POSITION_INITS = ("random", "tile", "hierarchical", "interpolate")
HIERARCHICAL_ALPHA = 0.4  # Su Jianlin's choice (bert4torch's default); any alpha in (0, 0.5) keeps u_i away from u_1


def hierarchical_positions(trained: torch.Tensor, rows: int, alpha: float = HIERARCHICAL_ALPHA) -> torch.Tensor:
    """Su Jianlin's hierarchical decomposition: n trained rows p -> up to n * n rows q.

    Position k = i * n + j (0-based) gets q_k = alpha * u_i + (1 - alpha) * u_j with
    u = (p - alpha * p_0) / (1 - alpha); for i = 0 that is exactly p_j, so the first n rows
    are the trained ones, and every later block repeats the trained table shifted by u_i.
    """
    n = trained.shape[0]
    if rows > n * n:
        raise ConfigError(f"hierarchical position init reaches {n} * {n} = {n * n} positions from {n} trained rows, "
                          f"not {rows}; use position_init='interpolate' or 'random'")
    if not 0 < alpha < 1:
        raise ConfigError(f"the hierarchical alpha must be in (0, 1), got {alpha}")
    u = (trained.double() - alpha * trained[0].double()) / (1 - alpha)
    k = torch.arange(rows, device=trained.device)
    return (alpha * u[k // n] + (1 - alpha) * u[k % n]).to(trained.dtype)


def interpolated_positions(trained: torch.Tensor, rows: int) -> torch.Tensor:
    """The trained table stretched to `rows` rows by linear interpolation (Chen et al. 2023's
    position interpolation): row r sits at trained position r * (n - 1) / (rows - 1), so the
    first and last rows are the trained ones and the ones between are blends of neighbours."""
    table = trained.double().t().unsqueeze(0)  # (1, hidden, n)
    stretched = torch.nn.functional.interpolate(table, size=rows, mode="linear", align_corners=True)
    return stretched.squeeze(0).t().to(trained.dtype)


@torch.no_grad()
def resize_position_embeddings(model: nn.Module, max_position_embeddings: int, init: str = "random",
                               report: LoadReport | None = None, alpha: float = HIERARCHICAL_ALPHA) -> None:
    """Grow (or cut) the position table to `max_position_embeddings` rows.

    How the rows past the trained ones are made (`init`):
      random: drawn like any embedding; the trained rows are copied unchanged.
      tile: row i = trained row i mod n, which keeps the outputs sensible past the old limit
        before any training; the trained rows are copied unchanged.
      hierarchical: Su Jianlin's decomposition (`hierarchical_positions`, `alpha`); the trained
        rows are copied unchanged and the new ones are distinct from them and from each other.
      interpolate: the whole table is the trained one stretched to the new length
        (`interpolated_positions`): no row keeps its trained position except the first.
    """
    if init not in POSITION_INITS:
        raise ConfigError(f"position init {init!r} is not supported; use one of {', '.join(POSITION_INITS)}")
    bert = model.base_model
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
        elif init == "hierarchical":
            new.weight[old_rows:] = hierarchical_positions(old.weight, max_position_embeddings, alpha)[old_rows:]
        elif init == "interpolate":
            new.weight[:] = interpolated_positions(old.weight, max_position_embeddings)
            how = f"the {old_rows} trained rows interpolated linearly to {max_position_embeddings}"
        how += {"random": f", rows [{old_rows}:] initialised randomly",
                "tile": f", rows [{old_rows}:] tiled from the trained rows",
                "hierarchical": f", rows [{old_rows}:] by hierarchical decomposition (alpha={alpha})",
                "interpolate": ""}[init]
    new.weight.requires_grad_(old.weight.requires_grad)
    bert.embeddings.position_embeddings = new
    model.config.max_position_embeddings = max_position_embeddings  # shared with model.bert
    prefix = "" if bert is model else "bert."
    _report(model, report).resized.append(
        (f"{prefix}embeddings.position_embeddings.weight", (old_rows, hidden), (max_position_embeddings, hidden), how)
    )


@dataclass(frozen=True)
class Surgery:
    """What from_pretrained changes after loading, one typed argument:

        from_pretrained(path, surgery=Surgery(reinit_top_layers=1, max_position_embeddings=1024))

    Applied in this order: the position table is extended (trained rows copied, the others
    drawn per `position_init`), the named parameters are re-drawn, then the top layers (and the
    pooler, with `reinit_pooler`). Every step is recorded in the model's load report.
    """

    max_position_embeddings: int | None = None
    position_init: str = "random"  # POSITION_INITS: how the rows past the checkpoint's are made
    position_alpha: float = HIERARCHICAL_ALPHA  # for position_init="hierarchical"
    reinit: tuple[str, ...] = ()  # parameter names or glob patterns to re-initialise
    reinit_top_layers: int = 0
    reinit_pooler: bool = True

    def __post_init__(self):
        object.__setattr__(self, "reinit", tuple(self.reinit))
        if self.position_init not in POSITION_INITS:
            raise ConfigError(f"position_init {self.position_init!r} is not supported; "
                              f"use one of {', '.join(POSITION_INITS)}")
        if self.max_position_embeddings is not None and self.max_position_embeddings < 1:
            raise ConfigError(f"max_position_embeddings must be positive, got {self.max_position_embeddings}")
        if self.reinit_top_layers < 0:
            raise ConfigError(f"reinit_top_layers must be 0 or more, got {self.reinit_top_layers}")

    def apply(self, model: nn.Module, report: LoadReport | None = None) -> None:
        if self.max_position_embeddings is not None:
            resize_position_embeddings(model, self.max_position_embeddings, self.position_init, report,
                                       alpha=self.position_alpha)
        if self.reinit:
            reinit_parameters(model, list(self.reinit), report)
        if self.reinit_top_layers:
            reinit_top_layers(model, self.reinit_top_layers, include_pooler=self.reinit_pooler, report=report)
