"""Metrics on hand-made cases whose values are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bertkit.errors import ConfigError
from bertkit.training.metrics import (accuracy, acc_and_f1, f1, glue_compute_metrics, matthews_corrcoef,
                                      pearson_and_spearman)

PREDS = [1, 1, 0, 1, 0, 0, 1, 1]
LABELS = [1, 0, 0, 1, 1, 0, 1, 0]
# tp = 3, fp = 2, fn = 1, tn = 2


def test_accuracy():
    assert accuracy(PREDS, LABELS) == 5 / 8
    assert accuracy(np.array([2, 0, 1]), np.array([2, 1, 1])) == pytest.approx(2 / 3)


def test_binary_f1():
    precision, recall = 3 / 5, 3 / 4
    assert f1(PREDS, LABELS) == pytest.approx(2 * precision * recall / (precision + recall))
    assert f1([0, 0], [1, 0]) == 0.0  # no positive prediction: 0, not a warning and NaN


def test_matthews_correlation():
    tp, tn, fp, fn = 3, 2, 2, 1
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert matthews_corrcoef(PREDS, LABELS) == pytest.approx(expected)
    assert matthews_corrcoef([1, 1, 1], [1, 0, 1]) == 0.0


def test_pearson_and_spearman():
    preds, labels = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 9.0]
    x, y = np.array(preds) - 2.5, np.array(labels) - 5.25
    pearson = (x * y).sum() / math.sqrt((x * x).sum() * (y * y).sum())
    result = pearson_and_spearman(preds, labels)
    assert result["pearson"] == pytest.approx(pearson)
    assert result["spearmanr"] == pytest.approx(1.0)  # monotonic
    assert result["corr"] == pytest.approx((pearson + 1.0) / 2)
    assert pearson_and_spearman([1, 2, 3], [3, 2, 1])["spearmanr"] == pytest.approx(-1.0)


def test_glue_dispatch():
    assert glue_compute_metrics("MRPC", PREDS, LABELS) == acc_and_f1(PREDS, LABELS)
    assert set(glue_compute_metrics("qqp", PREDS, LABELS)) == {"accuracy", "f1", "acc_and_f1"}
    assert acc_and_f1(PREDS, LABELS)["acc_and_f1"] == pytest.approx((5 / 8 + f1(PREDS, LABELS)) / 2)
    assert set(glue_compute_metrics("cola", PREDS, LABELS)) == {"mcc"}
    assert set(glue_compute_metrics("sts-b", [1.0, 2.0, 3.5], [1.0, 2.5, 3.0])) == {"pearson", "spearmanr", "corr"}
    for task in ("sst-2", "mnli", "mnli-mm", "qnli", "rte", "wnli"):
        assert glue_compute_metrics(task, PREDS, LABELS) == {"accuracy": 5 / 8}


def test_glue_takes_logits():
    logits = np.array([[0.1, 0.9], [2.0, -1.0], [0.3, 0.2]])
    assert glue_compute_metrics("sst-2", logits, [1, 0, 1]) == {"accuracy": pytest.approx(2 / 3)}
    scores = np.array([[1.0], [2.0], [3.0]])  # STS-B's (N, 1) regression output
    assert glue_compute_metrics("stsb", scores, [1.0, 2.0, 3.0])["pearson"] == pytest.approx(1.0)


def test_glue_errors():
    with pytest.raises(ConfigError, match="unknown GLUE task 'squad'.*mrpc"):
        glue_compute_metrics("squad", PREDS, LABELS)
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        glue_compute_metrics("rte", [1, 0, 1], [1, 0])
