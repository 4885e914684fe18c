"""Pruning: attention heads and FFN neurons removed for real, and unstructured magnitude pruning.

Structured pruning scores every head (or FFN neuron) and removes the lowest-scoring ones: the rows
of query/key/value and the columns of the attention output dense for a head; the row of the
intermediate dense and the column of the output dense for a neuron. The matrices really shrink, so
the model is smaller and faster, not just masked.

Scores:
  * "importance" (Michel, Levy and Neubig, 2019, "Are Sixteen Heads Really Better than One?"): a
    gate of 1 multiplies each head's attention probabilities (the model's head_mask) and each FFN
    neuron's activation; the importance is |d loss / d gate| accumulated over batches of task data,
    then L2-normalised within each layer (their Section 4.1) so that layers compare;
  * "magnitude": no data needed. A head scores the Frobenius norm of its value-output map
    (W_O[:, h] @ W_V[h]), a neuron the norm of its input row times that of its output column.

The pruned structure is kept in the config, so that save_pretrained / from_pretrained round-trip:
  * `pruned_heads` ({"layer": [head, ...]} in config.json, original head numbers) exactly as transformers v4 wrote
    it: a model with only heads pruned loads in transformers versions that still prune on load
    (v4's `BertModel` calls prune_heads(config.pruned_heads) in init_weights; v5 removed that);
  * `layer_num_heads` and `layer_intermediate_sizes` (one entry per layer), which bertkit's encoder
    reads to build each layer at its pruned size.

    scores = importance_scores(model, batches)                   # batches: dicts with labels
    summary = prune_structured(model, heads=0.5, neurons=0.5, scores=scores)
    model.save_pretrained(out)                                    # loads again with from_pretrained

Unstructured pruning (`magnitude_prune`) zeroes the smallest weights of the encoder's dense layers
(globally or per tensor) and `sparsity_report` counts zeros; the shapes stay the same, so it saves
nothing without a sparse kernel, but it is the baseline the structured numbers compare against.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import torch
from torch import nn

from bertkit.errors import ConfigError

logger = logging.getLogger("bertkit.compress")


# ---------------------------------------------------------------------------------------------
# Bookkeeping: which heads are left, and the config records.


def remaining_heads(config, layer: int) -> list[int]:
    """Original numbers of the heads layer `layer` still has, in their order in the weights."""
    gone = set(config.pruned_heads.get(layer, ()))
    return [h for h in range(config.num_attention_heads) if h not in gone]


def _record_sizes(model: nn.Module) -> None:
    """Write the per-layer head counts and FFN sizes of the built model into its config."""
    layers = model.base_model.encoder.layer
    model.config.layer_num_heads = [layer.attention.self.num_heads for layer in layers]
    model.config.layer_intermediate_sizes = [layer.intermediate.dense.out_features for layer in layers]


def _linear(weight: torch.Tensor, bias: torch.Tensor | None, like: nn.Linear) -> nn.Linear:
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                    device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    new.weight.requires_grad_(like.weight.requires_grad)
    if bias is not None:
        new.bias.requires_grad_(like.bias.requires_grad)
    return new


def _rows(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    return _linear(linear.weight[index], None if linear.bias is None else linear.bias[index], linear)


def _columns(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    return _linear(linear.weight[:, index], linear.bias, linear)


# ---------------------------------------------------------------------------------------------
# Physical pruning.


@torch.no_grad()
def prune_heads(model: nn.Module, heads_to_prune: Mapping[int, Iterable[int]]) -> dict[int, list[int]]:
    """Remove attention heads: {layer: [original head numbers]}, as transformers' prune_heads.

    Heads already pruned are ignored; removing every head of a layer is refused (drop the layer
    with compress.student.keep_layers instead). Returns {layer: heads removed by this call}.
    """
    bert = model.base_model
    config = model.config
    done: dict[int, list[int]] = {}
    for layer_index, heads in sorted(heads_to_prune.items()):
        layer_index = int(layer_index)
        if not 0 <= layer_index < len(bert.encoder.layer):
            raise ConfigError(f"prune_heads: layer {layer_index} does not exist (the model has "
                              f"{len(bert.encoder.layer)} layers)")
        left = remaining_heads(config, layer_index)
        bad = [h for h in heads if not 0 <= int(h) < config.num_attention_heads]
        if bad:
            raise ConfigError(f"prune_heads: layer {layer_index} has no head(s) {bad} "
                              f"(num_attention_heads={config.num_attention_heads})")
        remove = sorted({int(h) for h in heads} & set(left))
        if not remove:
            continue
        if len(remove) == len(left):
            raise ConfigError(f"prune_heads: removing heads {remove} would leave layer {layer_index} without "
                              "attention heads; keep at least one, or drop the layer (compress.student.keep_layers)")
        attention = bert.encoder.layer[layer_index].attention
        size = attention.self.head_size
        keep = [position for position, original in enumerate(left) if original not in remove]
        index = torch.cat([torch.arange(p * size, (p + 1) * size) for p in keep]).to(attention.self.query.weight.device)
        for name in ("query", "key", "value"):
            setattr(attention.self, name, _rows(getattr(attention.self, name), index))
        attention.output.dense = _columns(attention.output.dense, index)
        attention.self.num_heads = len(keep)
        record = config.pruned_heads
        record[layer_index] = sorted(set(record.get(layer_index, [])) | set(remove))
        config.pruned_heads = dict(sorted(record.items()))
        done[layer_index] = remove
    _record_sizes(model)
    return done


@torch.no_grad()
def prune_neurons(model: nn.Module, neurons_to_prune: Mapping[int, Iterable[int]]) -> dict[int, list[int]]:
    """Remove FFN neurons: {layer: [positions in the layer's current intermediate dense]}."""
    bert = model.base_model
    done = {}
    for layer_index, neurons in sorted(neurons_to_prune.items()):
        layer = bert.encoder.layer[int(layer_index)]
        size = layer.intermediate.dense.out_features
        remove = sorted({int(n) for n in neurons})
        if not remove:
            continue
        if remove[0] < 0 or remove[-1] >= size:
            raise ConfigError(f"prune_neurons: layer {layer_index} has neurons 0..{size - 1}, not {remove}")
        if len(remove) == size:
            raise ConfigError(f"prune_neurons: removing all {size} neurons of layer {layer_index} is not supported")
        gone = set(remove)
        index = torch.tensor([n for n in range(size) if n not in gone], device=layer.intermediate.dense.weight.device)
        layer.intermediate.dense = _rows(layer.intermediate.dense, index)
        layer.output.dense = _columns(layer.output.dense, index)
        done[int(layer_index)] = remove
    _record_sizes(model)
    return done


# ---------------------------------------------------------------------------------------------
# Scores.


@dataclass
class PruningScores:
    heads: list[torch.Tensor]  # per layer, one score per head present (current order)
    neurons: list[torch.Tensor]  # per layer, one score per FFN neuron present
    method: str
    batches: int = 0


def _default_loss(model: nn.Module, batch: dict, head_mask) -> torch.Tensor:
    output = model(**batch, head_mask=head_mask)
    loss = getattr(output, "loss", None)
    if loss is None:
        raise ConfigError("importance scores need a loss: give batches with labels (or a loss_fn)")
    return loss


def importance_scores(model: nn.Module, batches: Iterable[dict], *, normalize: bool = True,
                      loss_fn: Callable | None = None, device: torch.device | str | None = None,
                      max_batches: int | None = None) -> PruningScores:
    """Michel et al.'s importance of every head and FFN neuron: sum over batches of
    |d loss / d gate|, the gates being 1 (the model's output is unchanged), in eval mode.

    batches: dicts of tensors as the model takes them, with labels. loss_fn(model, batch,
    head_mask) -> loss replaces `model(**batch, head_mask=head_mask).loss`.
    """
    bert = model.base_model
    device = torch.device(device) if device is not None else next(model.parameters()).device
    layers = bert.encoder.layer
    head_gates = [torch.ones(layer.attention.self.num_heads, device=device, requires_grad=True) for layer in layers]
    neuron_gates = [torch.ones(layer.intermediate.dense.out_features, device=device, requires_grad=True)
                    for layer in layers]
    head_scores = [torch.zeros_like(g) for g in head_gates]
    neuron_scores = [torch.zeros_like(g) for g in neuron_gates]
    hooks = [layer.intermediate.register_forward_hook(lambda module, args, out, gate=gate: out * gate)
             for layer, gate in zip(layers, neuron_gates)]
    was_training = model.training
    requires = {p: p.requires_grad for p in model.parameters()}
    model.eval()
    for p in requires:
        p.requires_grad_(False)  # only the gates' gradients are needed
    count = 0
    try:
        for batch in batches:
            if max_batches is not None and count >= max_batches:
                break
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            loss = (loss_fn or _default_loss)(model, batch, head_gates)
            grads = torch.autograd.grad(loss, head_gates + neuron_gates)
            for score, grad in zip(head_scores + neuron_scores, grads):
                score += grad.abs()
            count += 1
    finally:
        for hook in hooks:
            hook.remove()
        for p, flag in requires.items():
            p.requires_grad_(flag)
        model.train(was_training)
    if count == 0:
        raise ConfigError("importance scores need at least one batch of task data")
    if normalize:
        head_scores = [_l2_normalized(s) for s in head_scores]
        neuron_scores = [_l2_normalized(s) for s in neuron_scores]
    return PruningScores([s.detach().cpu() for s in head_scores], [s.detach().cpu() for s in neuron_scores],
                         "importance", count)


def _l2_normalized(score: torch.Tensor) -> torch.Tensor:
    return score / (score.norm() + 1e-20)


@torch.no_grad()
def magnitude_scores(model: nn.Module, normalize: bool = True) -> PruningScores:
    """Data-free scores: a head's ||W_O[:, h] W_V[h]||_F, a neuron's ||W_in[j]|| * ||W_out[:, j]||."""
    heads, neurons = [], []
    for layer in model.base_model.encoder.layer:
        attention = layer.attention
        size, n = attention.self.head_size, attention.self.num_heads
        value = attention.self.value.weight.view(n, size, -1)  # (nh, hs, H)
        out = attention.output.dense.weight.view(-1, n, size).transpose(0, 1)  # (nh, H, hs)
        heads.append(torch.linalg.matrix_norm(out @ value).float().cpu())  # (nh,)
        w_in, w_out = layer.intermediate.dense.weight, layer.output.dense.weight
        neurons.append((w_in.norm(dim=1) * w_out.norm(dim=0)).float().cpu())
    if normalize:
        heads = [_l2_normalized(s) for s in heads]
        neurons = [_l2_normalized(s) for s in neurons]
    return PruningScores(heads, neurons, "magnitude")


def select_lowest(scores: list[torch.Tensor], amount: float | int, scope: str = "global",
                  min_keep: int = 1) -> dict[int, list[int]]:
    """The lowest-scoring units to remove: {layer: [positions]}.

    amount: a fraction of all units (0.5) or a count (an int >= 1). scope "global" ranks every
    layer's units together (Michel et al.), "layer" removes the same fraction from every layer.
    Each layer keeps at least `min_keep` units.
    """
    if scope not in ("global", "layer"):
        raise ConfigError(f"pruning scope {scope!r}: use 'global' or 'layer'")
    total = sum(len(s) for s in scores)
    if isinstance(amount, float) or amount == 0:
        if not 0.0 <= amount < 1.0:
            raise ConfigError(f"pruning fraction must be in [0, 1), got {amount}")
    elif amount < 0 or amount > total:
        raise ConfigError(f"cannot prune {amount} of {total} units")
    chosen: dict[int, list[int]] = {}
    if scope == "layer":
        for layer, score in enumerate(scores):
            n = round(amount * len(score)) if isinstance(amount, float) else round(amount * len(score) / total)
            n = min(n, len(score) - min_keep)
            if n > 0:
                chosen[layer] = sorted(torch.argsort(score, stable=True)[:n].tolist())
        return chosen
    target = round(amount * total) if isinstance(amount, float) else int(amount)
    flat = torch.cat([s.float() for s in scores])
    owner = torch.cat([torch.full((len(s),), i) for i, s in enumerate(scores)])
    position = torch.cat([torch.arange(len(s)) for s in scores])
    left = [len(s) for s in scores]
    picked = 0
    for i in torch.argsort(flat, stable=True).tolist():
        if picked >= target:
            break
        layer = int(owner[i])
        if left[layer] <= min_keep:
            continue
        chosen.setdefault(layer, []).append(int(position[i]))
        left[layer] -= 1
        picked += 1
    return {k: sorted(v) for k, v in sorted(chosen.items())}


def prune_structured(model: nn.Module, heads: float | int = 0.0, neurons: float | int = 0.0, *,
                     scores: PruningScores | None = None, method: str = "importance",
                     batches: Iterable[dict] | None = None, scope: str = "global") -> dict:
    """Score (unless `scores` are given), pick the lowest heads / neurons, remove them; returns a summary.

    heads / neurons: fractions of all heads / FFN neurons to remove (or counts, as ints).
    method: "importance" (needs `batches` with labels) or "magnitude".
    """
    if scores is None:
        if method == "importance":
            if batches is None:
                raise ConfigError("importance pruning needs batches of task data; or use method='magnitude'")
            scores = importance_scores(model, batches)
        elif method == "magnitude":
            scores = magnitude_scores(model)
        else:
            raise ConfigError(f"pruning method {method!r}: use 'importance' or 'magnitude'")
    before = sum(p.numel() for p in model.parameters())
    config = model.config
    head_choice = select_lowest(scores.heads, heads, scope) if heads else {}
    # select_lowest speaks in current positions; prune_heads takes original head numbers (HF's).
    originals = {layer: [remaining_heads(config, layer)[p] for p in positions]
                 for layer, positions in head_choice.items()}
    removed_heads = prune_heads(model, originals)
    removed_neurons = prune_neurons(model, select_lowest(scores.neurons, neurons, scope) if neurons else {})
    _record_sizes(model)
    after = sum(p.numel() for p in model.parameters())
    summary = {
        "method": scores.method, "scope": scope, "importance_batches": scores.batches,
        "heads_removed": {str(k): v for k, v in removed_heads.items()},
        "neurons_removed": {str(k): len(v) for k, v in removed_neurons.items()},
        "layer_num_heads": config.layer_num_heads,
        "layer_intermediate_sizes": config.layer_intermediate_sizes,
        "parameters_before": before, "parameters_after": after,
    }
    logger.info("pruned %d heads and %d FFN neurons (%s): %d -> %d parameters",
                sum(map(len, removed_heads.values())), sum(map(len, removed_neurons.values())),
                scores.method, before, after)
    return summary


# ---------------------------------------------------------------------------------------------
# Unstructured magnitude pruning.

PRUNABLE = re.compile(r"(^|\.)encoder\.layer\.\d+\..*dense\.weight$|(^|\.)encoder\.layer\.\d+\.attention\.self\.(query|key|value)\.weight$")


def _prunable(model: nn.Module, pattern: re.Pattern | str | None) -> dict[str, nn.Parameter]:
    pattern = re.compile(pattern) if isinstance(pattern, str) else (pattern or PRUNABLE)
    return {name: p for name, p in model.named_parameters() if pattern.search(name)}


@torch.no_grad()
def magnitude_prune(model: nn.Module, sparsity: float, scope: str = "global",
                    include: re.Pattern | str | None = None) -> dict[str, torch.Tensor]:
    """Zero the smallest-magnitude weights of the encoder's dense matrices (not embeddings, biases
    or LayerNorm; `include` is a regex over parameter names to choose others).

    scope "global": one threshold over all of them, "layer": `sparsity` within each tensor.
    Returns {name: keep mask}; keep_pruned_at_zero(model, masks) holds them at zero while training.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity must be in [0, 1), got {sparsity}")
    params = _prunable(model, include)
    if not params:
        raise ConfigError("magnitude_prune: no parameter matches; check `include`")
    masks = {}
    if scope == "global":
        flat = torch.cat([p.detach().abs().flatten().float().cpu() for p in params.values()])
        k = int(sparsity * flat.numel())
        threshold = flat.kthvalue(k).values.item() if k > 0 else -1.0
        for name, p in params.items():
            masks[name] = p.abs() > threshold
    elif scope == "layer":
        for name, p in params.items():
            k = int(sparsity * p.numel())
            threshold = p.abs().flatten().kthvalue(k).values.item() if k > 0 else -1.0
            masks[name] = p.abs() > threshold
    else:
        raise ConfigError(f"magnitude_prune scope {scope!r}: use 'global' or 'layer'")
    for name, p in params.items():
        p.mul_(masks[name])
    return masks


def keep_pruned_at_zero(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> list:
    """Gradient hooks that keep pruned weights at zero while fine-tuning (AdamW moves a weight
    with zero gradient and zero moments by weight decay only, which keeps zero at zero)."""
    params = dict(model.named_parameters())
    return [params[name].register_hook(lambda grad, m=mask: grad * m) for name, mask in masks.items()]


@dataclass
class SparsityReport:
    tensors: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (zeros, numel)

    @property
    def zeros(self) -> int:
        return sum(z for z, _ in self.tensors.values())

    @property
    def numel(self) -> int:
        return sum(n for _, n in self.tensors.values())

    @property
    def sparsity(self) -> float:
        return self.zeros / max(1, self.numel)

    def to_dict(self) -> dict:
        return {"sparsity": self.sparsity, "zeros": self.zeros, "numel": self.numel,
                "tensors": {k: {"zeros": z, "numel": n, "sparsity": z / max(1, n)} for k, (z, n) in self.tensors.items()}}

    def __str__(self) -> str:
        lines = [f"{'tensor':<60} {'sparsity':>9} {'zeros':>12} {'numel':>12}"]
        for name, (z, n) in self.tensors.items():
            lines.append(f"{name:<60} {z / max(1, n):>9.2%} {z:>12,} {n:>12,}")
        lines.append(f"{'total':<60} {self.sparsity:>9.2%} {self.zeros:>12,} {self.numel:>12,}")
        return "\n".join(lines)


@torch.no_grad()
def sparsity_report(model: nn.Module, include: re.Pattern | str | None = None) -> SparsityReport:
    """Zeros per prunable tensor (default: the encoder's dense matrices) and in total."""
    return SparsityReport({name: (int((p == 0).sum()), p.numel()) for name, p in _prunable(model, include).items()})
