"""Distillation: the loss formula, masking, the teacher's isolation, the trainer and its teacher cache."""

import math

import pytest
import torch
import torch.nn.functional as F

from bertkit.compress.distill import (DistillationArguments, DistillationTrainer, TeacherCache, attention_loss,
                                      default_layer_map, distillation_loss, hidden_state_loss, soft_kl)
from bertkit.compress.student import student_from_teacher
from bertkit.data.batching import FeatureDataset, PaddingCollator
from bertkit.errors import ConfigError
from bertkit.heads import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification
from bertkit.training.trainer import TrainingArguments
from helpers import random_batch, tiny_config


def _logits(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_loss_matches_its_formula():
    s, t = _logits(5, 3, seed=1), _logits(5, 3, seed=2)
    labels = torch.tensor([0, 1, 2, 1, 0])
    hard = F.cross_entropy(s, labels)
    T, alpha = 3.0, 0.3
    out = distillation_loss(s, t, hard, temperature=T, alpha=alpha)
    p_t = (t / T).softmax(-1)
    kl = (p_t * (p_t.log() - (s / T).log_softmax(-1))).sum(-1).mean()
    assert torch.allclose(out.loss, alpha * T * T * kl + (1 - alpha) * hard, atol=1e-6)
    assert torch.allclose(out.soft, kl, atol=1e-6)


def test_at_t1_alpha1_it_is_plain_kl():
    s, t = _logits(4, 6, seed=3), _logits(4, 6, seed=4)
    expected = F.kl_div(s.log_softmax(-1), t.softmax(-1), reduction="batchmean")
    out = distillation_loss(s, t, torch.tensor(123.0), temperature=1.0, alpha=1.0)
    assert torch.allclose(out.loss, expected, atol=1e-6)
    assert soft_kl(t, t).abs() < 1e-6  # identical distributions


def test_regression_uses_mse_on_logits():
    s, t, y = _logits(6, 1, seed=5), _logits(6, 1, seed=6), _logits(6, seed=7)
    hard = F.mse_loss(s.squeeze(-1), y)
    out = distillation_loss(s, t, hard, temperature=4.0, alpha=0.25, task="regression")
    assert torch.allclose(out.loss, 0.25 * F.mse_loss(s, t) + 0.75 * hard, atol=1e-6)


def test_token_and_qa_padding_do_not_contribute():
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    s, t = _logits(2, 5, 4, seed=8), _logits(2, 5, 4, seed=9)
    s2, t2 = s.clone(), t.clone()
    s2[~mask] += 50 * _logits(int((~mask).sum()), 4, seed=10)
    t2[~mask] -= 30
    a = distillation_loss(s, t, task="token", mask=mask, temperature=2.0)
    b = distillation_loss(s2, t2, task="token", mask=mask, temperature=2.0)
    assert torch.allclose(a.loss, b.loss) and torch.isfinite(a.loss)
    # equal to the mean KL over the real tokens only
    per_token = [soft_kl(s[i, j][None], t[i, j][None], 2.0) for i in range(2) for j in range(5) if mask[i, j]]
    assert torch.allclose(a.soft, torch.stack(per_token).mean(), atol=1e-6)

    qs, qt = (_logits(2, 5, seed=11), _logits(2, 5, seed=12)), (_logits(2, 5, seed=13), _logits(2, 5, seed=14))
    qs2 = tuple(x.masked_fill(~mask, 99.0) for x in qs)
    qt2 = tuple(x.masked_fill(~mask, -7.0) for x in qt)
    a = distillation_loss(qs, qt, task="qa", mask=mask)
    b = distillation_loss(qs2, qt2, task="qa", mask=mask)
    assert torch.allclose(a.loss, b.loss) and torch.isfinite(a.loss)
    # the softmax runs over the real positions only: row 0 equals a 3-position KL
    row0 = soft_kl(qs[0][:1, :3], qt[0][:1, :3], 2.0)
    assert torch.allclose(soft_kl(qs[0][:1], qt[0][:1], 2.0, class_mask=mask[:1]), row0, atol=1e-6)
    # gradients stay finite and zero at padding
    x = qs[0].clone().requires_grad_(True)
    distillation_loss((x, qs[1]), qt, task="qa", mask=mask).loss.backward()
    assert torch.isfinite(x.grad).all() and (x.grad[~mask] == 0).all()


def test_hidden_and_attention_losses_mask_padding():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    hs = [_logits(2, 4, 8, seed=i) for i in range(3)]
    ht = [_logits(2, 4, 8, seed=10 + i) for i in range(3)]
    a = hidden_state_loss(hs, ht, {0: 0, 1: 2}, mask)
    hs2 = [h.clone() for h in hs]
    hs2[1][0, 3] += 100
    assert torch.allclose(a, hidden_state_loss(hs2, ht, {0: 0, 1: 2}, mask))
    expected = sum(((hs[s] - ht[t]) ** 2).mean(-1)[mask].mean() for s, t in ((0, 0), (1, 2))) / 2
    assert torch.allclose(a, expected)
    proj = torch.nn.Linear(8, 8)
    assert hidden_state_loss(hs, ht, {1: 1}, mask, proj).requires_grad

    att_s = [_logits(2, 2, 4, 4, seed=20).softmax(-1), None]
    att_t = [_logits(2, 2, 4, 4, seed=21).softmax(-1), _logits(2, 2, 4, 4, seed=22).softmax(-1)]
    a = attention_loss(att_s, att_t, {0: 0, 1: 1, 2: 2}, mask)  # layer 2 skipped by LayerDrop: left out
    changed = att_s[0].clone()
    changed[0, :, 3, :] = 5.0  # padded query row
    changed[0, :, :, 3] = 5.0  # padded key column
    assert torch.allclose(a, attention_loss([changed, None], att_t, {1: 1}, mask))


def _models(student_layers=(0, 2), model_class=BertForSequenceClassification, **config):
    torch.manual_seed(0)
    teacher = model_class(tiny_config(num_hidden_layers=3, hidden_dropout_prob=0.0,
                                      attention_probs_dropout_prob=0.0, **config))
    return teacher, student_from_teacher(teacher, list(student_layers))


def _dataset(config, n=12, with_labels="labels", seed=0):
    batch = random_batch(config, batch=n, length=9, seed=seed)
    # random_batch pads row r by 2r tokens: keep the padding short enough for 12 rows
    batch["attention_mask"] = (torch.arange(9)[None] < torch.randint(3, 10, (n, 1))).long()
    batch["input_ids"] = batch["input_ids"].clamp(min=1) * batch["attention_mask"]
    features = []
    for i in range(n):
        length = int(batch["attention_mask"][i].sum())
        feature = {k: v[i, :length].tolist() for k, v in batch.items()}
        if with_labels == "labels":
            feature["labels"] = i % 2
        elif with_labels == "token":
            feature["labels"] = [(i + j) % 2 if j % 3 else -100 for j in range(length)]
        elif with_labels == "qa":
            feature["start_positions"], feature["end_positions"] = 1, 2
        features.append(feature)
    return FeatureDataset(features)


def _args(tmp_path, **kw):
    return TrainingArguments(output_dir=str(tmp_path), train_batch_size=4, eval_batch_size=4, max_steps=2,
                             progress=False, tensorboard=False, plot=False, save_checkpoints_steps=None,
                             logging_steps=1, **kw)


def test_teacher_gets_no_gradient_and_stays_in_eval(tmp_path):
    teacher, student = _models()
    teacher.train()  # the trainer must put it in eval mode itself
    trainer = DistillationTrainer(student, teacher, _args(tmp_path),
                                  DistillationArguments(hidden_weight=1.0, attention_weight=1.0))
    batch = PaddingCollator()([_dataset(student.config)[i] for i in range(4)])
    student.train()
    loss = trainer.compute_loss(student, batch)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.requires_grad for p in teacher.parameters())  # the caller's flags are left alone
    assert not teacher.training
    assert student.bert.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    parts = trainer.last_losses
    assert parts.hidden is not None and parts.attention is not None and parts.hard is not None
    expected = parts.loss + parts.hidden + parts.attention
    assert torch.allclose(loss, expected)


def test_default_layer_map_follows_the_copied_layers():
    teacher, student = _models((0, 2))
    assert default_layer_map(student.config, teacher.config) == {0: 0, 1: 1, 2: 3}
    fresh = BertForSequenceClassification(tiny_config(num_hidden_layers=2))
    assert default_layer_map(fresh.config, tiny_config(num_hidden_layers=4)) == {0: 0, 1: 2, 2: 4}


@pytest.mark.parametrize("model_class, labels", [(BertForTokenClassification, "token"),
                                                  (BertForQuestionAnswering, "qa")])
def test_sequence_tasks_train_and_cache_matches_the_teacher(tmp_path, model_class, labels):
    teacher, student = _models(model_class=model_class)
    data = _dataset(student.config, with_labels=labels)
    task = "token" if labels == "token" else "qa"
    cache = TeacherCache.compute(teacher, data, PaddingCollator(), task, 5, torch.device("cpu"),
                                 lambda: torch.autocast("cpu", enabled=False))
    batch = PaddingCollator()([data[i] for i in (3, 7, 1)])
    cached = cache.batch(torch.tensor([3, 7, 1]), batch["input_ids"].size(1), "cpu")
    with torch.no_grad():
        out = teacher.eval()(**{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask",
                                                                         "token_type_ids")})
    real = batch["attention_mask"].bool()
    reference = (out.logits,) if task == "token" else (out.start_logits, out.end_logits)
    for a, b in zip(cached, reference):
        assert (a - b)[real].abs().max() < 1e-5
    trainer = DistillationTrainer(student, teacher, _args(tmp_path / "run"),
                                  DistillationArguments(teacher_cache_dir=str(tmp_path / "cache")),
                                  train_dataset=data)
    result = trainer.train()
    assert result.global_step == 2 and math.isfinite(result.training_loss)


def test_unlabelled_transfer_examples_learn_from_the_teacher_alone(tmp_path):
    teacher, student = _models()
    trainer = DistillationTrainer(student, teacher, _args(tmp_path), DistillationArguments(alpha=0.5))
    rows = [_dataset(student.config)[i] for i in range(4)]
    labelled = PaddingCollator()(rows)
    unlabelled = PaddingCollator()([{**row, "labels": -100} for row in rows])
    mixed = PaddingCollator()([{**row, "labels": -100} if i % 2 else row for i, row in enumerate(rows)])
    student.eval()  # no dropout: the three batches see the same logits
    trainer.compute_loss(student, labelled)
    soft = trainer.last_losses.soft
    loss = trainer.compute_loss(student, unlabelled)
    # A batch of transfer examples only: the soft loss alone, not NaN from a cross-entropy over no labels.
    assert trainer.last_losses.hard is None and torch.isfinite(loss)
    assert torch.allclose(loss, 0.5 * 2.0 ** 2 * soft)
    trainer.compute_loss(student, mixed)
    logits = student(**{k: v for k, v in labelled.items() if k != "labels"}).logits
    expected_hard = F.cross_entropy(logits[0::2], labelled["labels"][0::2])
    assert torch.allclose(trainer.last_losses.hard, expected_hard, atol=1e-6)


def test_trainer_with_cache_and_projection(tmp_path):
    teacher, _ = _models()
    data = _dataset(teacher.config)
    cache_dir = tmp_path / "cache"
    _, student = _models()
    first = DistillationTrainer(student, teacher, _args(tmp_path / "a"),
                                DistillationArguments(teacher_cache_dir=str(cache_dir)), train_dataset=data)
    loss_a = first.train().training_loss
    files = list(cache_dir.glob("teacher-logits-*.safetensors"))
    assert len(files) == 1
    # The same data and teacher reuse the file; the cached run equals running the teacher.
    _, student = _models()
    loss_b = DistillationTrainer(student, teacher, _args(tmp_path / "b"),
                                 DistillationArguments(teacher_cache_dir=str(cache_dir)),
                                 train_dataset=data).train().training_loss
    _, student = _models()
    loss_c = DistillationTrainer(student, teacher, _args(tmp_path / "c"), DistillationArguments(),
                                 train_dataset=data).train().training_loss
    assert len(list(cache_dir.glob("*.safetensors"))) == 1
    assert abs(loss_a - loss_b) < 1e-6 and abs(loss_a - loss_c) < 1e-5
    # Another teacher gets another file.
    other = BertForSequenceClassification(teacher.config)
    _, student = _models()
    DistillationTrainer(student, other, _args(tmp_path / "d"), DistillationArguments(teacher_cache_dir=str(cache_dir)),
                        train_dataset=data).train()
    assert len(list(cache_dir.glob("*.safetensors"))) == 2

    # A narrower student learns a projection for the hidden-state loss; the saved model has none.
    narrow = BertForSequenceClassification(tiny_config(hidden_size=16, num_attention_heads=2, num_hidden_layers=1))
    trainer = DistillationTrainer(narrow, teacher, _args(tmp_path / "e"), DistillationArguments(hidden_weight=1.0),
                                  train_dataset=data)
    before = trainer.projection.weight.detach().clone()
    trainer.train()
    assert not torch.equal(before, trainer.projection.weight)
    assert not hasattr(narrow, "distill_projection")
    loaded = BertForSequenceClassification.from_pretrained(tmp_path / "e")
    assert loaded.load_report.unexpected == [] and loaded.load_report.missing == []


def test_arguments_are_checked():
    with pytest.raises(ConfigError, match="teacher cache holds logits only"):
        DistillationArguments(teacher_cache_dir="x", hidden_weight=1.0)
    with pytest.raises(ConfigError, match="alpha"):
        DistillationArguments(alpha=1.5)
    with pytest.raises(ConfigError, match="temperature"):
        distillation_loss(torch.zeros(1, 2), torch.zeros(1, 2), temperature=0)
