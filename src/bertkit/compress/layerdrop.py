"""LayerDrop (Fan, Grave and Joulin, 2019, "Reducing Transformer Depth on Demand with Structured Dropout").

Training with LayerDrop skips each encoder layer with probability p, one decision per layer per
batch (the whole batch skips it), so the network learns to work without any one layer. At
inference a sub-network of any depth can then be cut out without retraining; Fan et al. keep layers
evenly ("every other" layer for half the depth).

    set_layerdrop(model, 0.2)                 # config.layerdrop = 0.2; saved with the model
    ... train as usual (the Trainer, or bertkit run_classifier on a checkpoint whose config has it) ...
    half = prune_layers(model, "every_other")           # or [1, 3, 5, 7, 9, 11], "uniform:6", ...
    table = evaluate_depths(model, eval_fn)             # accuracy (or any metric) at every depth

The encoder implements the skipping itself (bertkit.modeling.BertEncoder), only in training mode:
eval mode, and p = 0, run every layer. The decisions come from the encoder's own generator, which
the Trainer seeds alike on every process: under DistributedDataParallel all processes skip the same
layers, and the Trainer asks the model (`may_leave_parameters_unused`) whether DDP must look for
parameters without a gradient. A 2-process run then trains the weights of a 1-process run.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

from torch import nn

from bertkit.compress.student import LayerSpec, keep_layers, resolve_layers, uniform_layers
from bertkit.errors import ConfigError

logger = logging.getLogger("bertkit.compress")


def set_layerdrop(model: nn.Module, p: float) -> nn.Module:
    """Skip each layer with probability `p` in training (0 turns LayerDrop off); recorded in the config."""
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"layerdrop must be in [0, 1), got {p}")
    model.config.layerdrop = float(p)  # the encoder reads it from the config it shares with the model
    return model


def prune_layers(model: nn.Module, layers: LayerSpec = "every_other", inplace: bool = False) -> nn.Module:
    """A model with only `layers` of the encoder (see compress.student.resolve_layers), for inference
    without retraining; `config.kept_layers` records which ones."""
    pruned = keep_layers(model, layers, inplace=inplace)
    logger.info("kept layers %s of the encoder", pruned.config.kept_layers)
    return pruned


def evaluate_depths(model: nn.Module, eval_fn: Callable[[nn.Module], Any], depths: Sequence[int] | None = None,
                    layer_sets: Sequence[LayerSpec] | None = None) -> list[dict]:
    """Evaluate the model cut to several depths: one row per depth, with the layers kept, the
    number of parameters, eval_fn's result and the time eval_fn took.

    eval_fn(model) -> a number or a dict of metrics (e.g. lambda m: {"accuracy": ...}).
    depths: default every depth from the full model down to 1, each cut with uniform_layers (the
    top layer is always kept, as LayerDrop's every-other pruning does); or give `layer_sets`
    explicitly (lists of indices or specs such as "every_other").
    """
    num_layers = len(model.base_model.encoder.layer)
    if layer_sets is None:
        depths = list(depths) if depths is not None else list(range(num_layers, 0, -1))
        layer_sets = [uniform_layers(num_layers, d) for d in depths]
    rows = []
    for spec in layer_sets:
        layers = resolve_layers(spec, num_layers)
        cut = model if layers == list(range(num_layers)) else keep_layers(model, layers)
        was_training = cut.training
        cut.eval()
        start = time.perf_counter()
        result = eval_fn(cut)
        seconds = time.perf_counter() - start
        cut.train(was_training)
        row = {"depth": len(layers), "layers": layers, "parameters": sum(p.numel() for p in cut.parameters()),
               "seconds": seconds}
        row.update(result if isinstance(result, dict) else {"metric": result})
        rows.append(row)
        logger.info("depth %d %s: %s", len(layers), layers,
                    {k: v for k, v in row.items() if k not in ("depth", "layers")})
        if cut is not model:
            del cut
    return rows


def format_depth_table(rows: list[dict]) -> str:
    """evaluate_depths' rows as a Markdown table."""
    keys = [k for k in rows[0] if k not in ("depth", "layers", "parameters", "seconds")] if rows else []
    lines = ["| depth | layers | parameters | " + " | ".join(keys) + " | eval seconds |",
             "|---:|---|---:|" + "---:|" * len(keys) + "---:|"]
    for row in rows:
        values = [f"{row[k]:.4f}" if isinstance(row[k], float) else str(row[k]) for k in keys]
        lines.append(f"| {row['depth']} | {','.join(map(str, row['layers']))} | {row['parameters']:,} | "
                     + " | ".join(values) + f" | {row['seconds']:.2f} |")
    return "\n".join(lines)


__all__ = ["set_layerdrop", "prune_layers", "evaluate_depths", "format_depth_table"]
