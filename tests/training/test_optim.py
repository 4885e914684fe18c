"""The optimizer against a hand transcription of Google's update, and every schedule against its formula."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from bertkit.errors import ConfigError
from bertkit.heads import BertForPreTraining, BertForSequenceClassification
from bertkit.training.optim import (AdamWeightDecay, create_optimizer, get_scheduler, num_warmup_steps,
                                    parameter_groups)
from helpers import tiny_config


def test_weight_decay_spares_biases_and_layer_norms():
    model = BertForSequenceClassification(tiny_config(num_labels=2))
    decay, no_decay = parameter_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(not names[id(p)].endswith("bias") and "LayerNorm" not in names[id(p)] for p in decay["params"])
    assert all(names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert "classifier.weight" in {names[id(p)] for p in decay["params"]}
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_tied_decoder_is_one_parameter():
    model = BertForPreTraining(tiny_config())
    groups = parameter_groups(model, 0.01)
    params = [p for g in groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params})
    assert any(p is model.bert.embeddings.word_embeddings.weight for p in params)


def test_create_optimizer_defaults():
    model = nn.Linear(3, 2)
    adamw = create_optimizer(model, 2e-5)
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.defaults["eps"] == 1e-6 and adamw.defaults["betas"] == (0.9, 0.999)
    assert isinstance(create_optimizer(model, 2e-5, bias_correction=False), AdamWeightDecay)


def google_adam_weight_decay(params, grads_per_step, lr, wd, decay_mask, b1=0.9, b2=0.999, eps=1e-6):
    """Google's AdamWeightDecayOptimizer.apply_gradients (optimization.py), transcribed in numpy."""
    params = [p.astype(np.float64).copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for grads in grads_per_step:
        for i, (param, grad) in enumerate(zip(params, grads)):
            next_m = b1 * m[i] + (1.0 - b1) * grad
            next_v = b2 * v[i] + (1.0 - b2) * np.square(grad)
            update = next_m / (np.sqrt(next_v) + eps)
            if decay_mask[i]:  # _do_use_weight_decay
                update += wd * param
            params[i] = param - lr * update
            m[i], v[i] = next_m, next_v
    return params


def test_adam_weight_decay_matches_google_update():
    rng = np.random.default_rng(0)
    weight = nn.Parameter(torch.tensor(rng.normal(size=(4, 3)), dtype=torch.float64))
    bias = nn.Parameter(torch.tensor(rng.normal(size=3), dtype=torch.float64))
    start = [weight.detach().numpy().copy(), bias.detach().numpy().copy()]
    optimizer = AdamWeightDecay([{"params": [weight], "weight_decay": 0.01}, {"params": [bias], "weight_decay": 0.0}],
                                lr=0.1, eps=1e-6)
    grads_per_step = [[rng.normal(size=(4, 3)), rng.normal(size=3)] for _ in range(5)]
    for grads in grads_per_step:
        weight.grad, bias.grad = (torch.tensor(g) for g in grads)
        optimizer.step()
    expected = google_adam_weight_decay(start, grads_per_step, lr=0.1, wd=0.01, decay_mask=[True, False])
    np.testing.assert_allclose(weight.detach().numpy(), expected[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bias.detach().numpy(), expected[1], rtol=1e-12, atol=1e-12)


def test_first_step_differs_from_bias_corrected_adam():
    # Without bias correction the first update is (1-b1)/sqrt(1-b2) ~ 3.16 times Adam's unit step.
    def first_step(bias_correction):
        layer = nn.Linear(1, 1, bias=False)
        nn.init.zeros_(layer.weight)
        optimizer = create_optimizer(layer, 1.0, weight_decay=0.0, bias_correction=bias_correction)
        layer.weight.grad = torch.ones(1, 1)
        optimizer.step()
        return -layer.weight.detach().item()

    assert first_step(True) == pytest.approx(1.0, rel=1e-5)
    assert first_step(False) == pytest.approx(0.1 / math.sqrt(0.001), rel=1e-4)


# ---------------------------------------------------------------------------------------------
# Schedules, each against its closed form: multiplier(step) for optimizer step `step` (0-based).

LR, TOTAL = 0.5, 100


def google_linear(step, warmup):
    # optimization.py: polynomial_decay(lr, step, TOTAL, 0.0, power=1.0), warmup replaces it while step < warmup.
    if warmup and step < warmup:
        return LR * step / warmup
    return LR * (1 - min(step, TOTAL) / TOTAL)


def cosine(step, warmup, cycles=0.5):
    if step < warmup:
        return LR * step / warmup
    progress = (step - warmup) / (TOTAL - warmup)
    return LR * max(0.0, 0.5 * (1 + math.cos(2 * math.pi * cycles * progress)))


def cosine_restarts(step, warmup, cycles):
    if step < warmup:
        return LR * step / warmup
    progress = (step - warmup) / (TOTAL - warmup)
    return 0.0 if progress >= 1 else LR * 0.5 * (1 + math.cos(math.pi * ((cycles * progress) % 1)))


def polynomial(step, warmup, lr_end, power):
    if step < warmup:
        return LR * step / warmup
    if step >= TOTAL:
        return lr_end
    return (LR - lr_end) * (1 - (step - warmup) / (TOTAL - warmup)) ** power + lr_end


CASES = [
    ("linear", {}, lambda s, w: google_linear(s, w)),
    ("cosine", {}, lambda s, w: cosine(s, w)),
    ("cosine", {"num_cycles": 2.0}, lambda s, w: cosine(s, w, 2.0)),
    ("cosine_with_restarts", {"num_cycles": 3}, lambda s, w: cosine_restarts(s, w, 3)),
    ("polynomial", {"lr_end": 0.01, "power": 2.0}, lambda s, w: polynomial(s, w, 0.01, 2.0)),
    ("constant", {}, lambda s, w: LR),
    ("constant_with_warmup", {}, lambda s, w: LR * s / w if s < w else LR),
]


@pytest.mark.parametrize("warmup_kwargs, warmup", [({}, 10), ({"warmup_proportion": 0.25}, 25),
                                                   ({"warmup_steps": 7, "warmup_proportion": 0.5}, 7)])
@pytest.mark.parametrize("name, kwargs, formula", CASES, ids=[f"{c[0]}{c[1] or ''}" for c in CASES])
def test_schedule_matches_formula(name, kwargs, formula, warmup_kwargs, warmup):
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=LR)
    scheduler = get_scheduler(name, optimizer, TOTAL, **warmup_kwargs, **kwargs)
    for step in range(TOTAL + 5):  # a few steps past the end too
        assert optimizer.param_groups[0]["lr"] == pytest.approx(formula(step, warmup), abs=1e-12), step
        optimizer.step()
        scheduler.step()


def test_google_linear_without_warmup_and_at_warmup_end():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = get_scheduler("linear", optimizer, 10, warmup_steps=0)
    assert _lrs(optimizer, scheduler, 11) == pytest.approx([1 - s / 10 for s in range(11)])
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    lrs = _lrs(optimizer, get_scheduler("linear", optimizer, 10, warmup_proportion=0.2), 4)
    assert lrs == pytest.approx([0.0, 0.5, 0.8, 0.7])  # Google's jump from warmup to 1 - step/total


def _lrs(optimizer, scheduler, n):
    lrs = []
    for _ in range(n):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_num_warmup_steps():
    assert num_warmup_steps(1000) == 100
    assert num_warmup_steps(1000, warmup_proportion=0.06) == 60
    assert num_warmup_steps(1000, warmup_steps=5, warmup_proportion=0.5) == 5


def test_schedule_errors_name_the_fix():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1e-5)
    with pytest.raises(ConfigError, match="unknown scheduler 'triangle'.*linear"):
        get_scheduler("triangle", optimizer, 10)
    with pytest.raises(ConfigError, match="lr_end"):
        get_scheduler("polynomial", optimizer, 10, lr_end=1e-3)


def test_states_load_with_weights_only():
    model = BertForSequenceClassification(tiny_config(num_labels=2))
    for bias_correction in (True, False):
        optimizer = create_optimizer(model, 1e-3, bias_correction=bias_correction)
        scheduler = get_scheduler("cosine", optimizer, 10)
        model(torch.tensor([[1, 2, 3]]), labels=torch.tensor([1])).loss.backward()
        optimizer.step()
        scheduler.step()
        for state in (optimizer.state_dict(), scheduler.state_dict()):
            buffer = io.BytesIO()
            torch.save(state, buffer)
            buffer.seek(0)
            torch.load(buffer, weights_only=True)
