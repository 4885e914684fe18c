"""BERT's optimizer and learning-rate schedules.

Google fine-tunes and pre-trains with Adam plus decoupled weight decay 0.01 on every weight matrix
but not on biases or LayerNorm parameters, eps 1e-6, gradients clipped to global norm 1.0 (the
Trainer clips), and a learning rate that warms up linearly over the first 10% of the steps and then
decays linearly to zero. Its `AdamWeightDecayOptimizer` has no bias correction; `bias_correction`
picks between that and torch's AdamW (which corrects, as HF does).

Schedules are LambdaLR multipliers of the peak learning rate. As with Google's global_step, the
multiplier for optimizer step i (0-based) is lambda(i), so the first update of a warmed-up run has
learning rate 0.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from bertkit.errors import ConfigError

# Google's exclude_from_weight_decay: a parameter whose name contains one of these is not decayed.
NO_DECAY = ("bias", "LayerNorm", "layer_norm")


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups by name: weights with `weight_decay`, biases and LayerNorm parameters without.

    named_parameters() yields a tied parameter once, so the MLM decoder shared with the word
    embeddings is updated once.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if any(key in name for key in NO_DECAY) else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class AdamWeightDecay(torch.optim.Optimizer):
    """Google's `AdamWeightDecayOptimizer` (optimization.py): Adam without bias correction.

        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g^2
        update = m / (sqrt(v) + eps) + weight_decay * param
        param -= lr * update

    Without bias correction the first steps are smaller than Adam's (m starts at zero and is not
    rescaled); Google's warmup hides the difference, and reproducing their numbers needs it.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0):
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid AdamWeightDecay settings lr={lr}, betas={betas}, eps={eps}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(param.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(param.grad, param.grad, value=1 - beta2)
                update = m / (v.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update.add_(param, alpha=group["weight_decay"])
                param.add_(update, alpha=-group["lr"])
        return loss


def create_optimizer(model: nn.Module, learning_rate: float, weight_decay: float = 0.01, eps: float = 1e-6,
                     betas: tuple[float, float] = (0.9, 0.999), bias_correction: bool = True) -> torch.optim.Optimizer:
    """AdamW over `parameter_groups`: torch's (bias-corrected) or Google's (`bias_correction=False`)."""
    groups = parameter_groups(model, weight_decay)
    if bias_correction:
        # fused: one kernel over all parameters. torch's default on CPU is its per-parameter Python
        # loop, which took 7.9 s of a 43 s MiniLM step on the 2-core EPYC (bench_finetune.py
        # --profile: 47 of 258 s over 6 steps), against 0.4 s per step for the fused kernel that
        # transformers' Trainer uses by default.
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point
                    for group in groups for p in group["params"])
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, eps=eps, fused=fused or None)
    return AdamWeightDecay(groups, lr=learning_rate, betas=betas, eps=eps)


# ---------------------------------------------------------------------------------------------
# Schedules: each returns the multiplier of the peak learning rate at optimizer step `step`.


def num_warmup_steps(num_training_steps: int, warmup_steps: int | None = None,
                     warmup_proportion: float = 0.1) -> int:
    """`warmup_steps` when given, else Google's int(num_training_steps * warmup_proportion)."""
    if warmup_steps is not None:
        return warmup_steps
    return int(num_training_steps * warmup_proportion)


def _warmup(step: int, warmup: int) -> float:
    return step / max(1, warmup)


def linear_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Google's: step/warmup during warmup, then 1 - step/total (polynomial decay, power 1, to 0).

    Unlike HF's linear schedule the decay is measured from step 0, not from the end of warmup, so
    the rate jumps from ~1 down to 1 - warmup/total when warmup ends, exactly as in optimization.py.
    """
    def multiplier(step: int) -> float:
        if step < warmup:
            return _warmup(step, warmup)
        return max(0.0, 1.0 - step / max(1, total))
    return multiplier


def cosine_lambda(warmup: int, total: int, num_cycles: float = 0.5) -> Callable[[int], float]:
    """Warmup, then cosine from 1 to 0 over the rest (num_cycles=0.5: half a period)."""
    def multiplier(step: int) -> float:
        if step < warmup:
            return _warmup(step, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * num_cycles * 2.0 * progress)))
    return multiplier


def cosine_with_restarts_lambda(warmup: int, total: int, num_cycles: int = 1) -> Callable[[int], float]:
    """Warmup, then `num_cycles` cosine decays from 1 to 0, each restarting at 1 (hard restarts)."""
    def multiplier(step: int) -> float:
        if step < warmup:
            return _warmup(step, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        if progress >= 1.0:
            return 0.0
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((num_cycles * progress) % 1.0))))
    return multiplier


def polynomial_lambda(warmup: int, total: int, learning_rate: float, lr_end: float = 1e-7,
                      power: float = 1.0) -> Callable[[int], float]:
    """Warmup, then (lr - lr_end) * (1 - progress)^power + lr_end, and lr_end after `total`."""
    if not learning_rate > lr_end:
        raise ConfigError(f"polynomial schedule: lr_end ({lr_end}) must be smaller than "
                          f"learning_rate ({learning_rate})")

    def multiplier(step: int) -> float:
        if step < warmup:
            return _warmup(step, warmup)
        if step >= total:
            return lr_end / learning_rate
        remaining = 1.0 - (step - warmup) / max(1, total - warmup)
        return ((learning_rate - lr_end) * remaining**power + lr_end) / learning_rate
    return multiplier


def constant_lambda(warmup: int, total: int) -> Callable[[int], float]:
    return lambda step: 1.0


def constant_with_warmup_lambda(warmup: int, total: int) -> Callable[[int], float]:
    return lambda step: _warmup(step, warmup) if step < warmup else 1.0


SCHEDULES = {
    "linear": linear_lambda,
    "cosine": cosine_lambda,
    "cosine_with_restarts": cosine_with_restarts_lambda,
    "polynomial": polynomial_lambda,
    "constant": constant_lambda,
    "constant_with_warmup": constant_with_warmup_lambda,
}


def get_scheduler(name: str, optimizer: torch.optim.Optimizer, num_training_steps: int,
                  warmup_steps: int | None = None, warmup_proportion: float = 0.1, **kwargs) -> LambdaLR:
    """A LambdaLR for schedule `name`; kwargs go to the schedule (num_cycles, power, lr_end).

    The polynomial schedule needs the peak learning rate, which it reads from the optimizer.
    """
    if name not in SCHEDULES:
        raise ConfigError(f"unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULES)}")
    warmup = num_warmup_steps(num_training_steps, warmup_steps, warmup_proportion)
    if name == "polynomial":
        kwargs["learning_rate"] = optimizer.defaults["lr"]
    return LambdaLR(optimizer, SCHEDULES[name](warmup, num_training_steps, **kwargs))
