"""Evaluation metrics as thin wrappers over scikit-learn and scipy, plus GLUE's per-task choice.

Every function takes (predictions, labels) in that order, as the Trainer's compute_metrics does,
and returns plain Python floats so that results serialize to JSON and eval_results.txt.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from bertkit.errors import ConfigError


def accuracy(preds, labels) -> float:
    return float(skm.accuracy_score(labels, preds))


def f1(preds, labels) -> float:
    """Binary F1 of the positive class 1 (MRPC's and QQP's "paraphrase"/"duplicate")."""
    return float(skm.f1_score(labels, preds, average="binary", zero_division=0.0))


def matthews_corrcoef(preds, labels) -> float:
    """Matthews correlation (CoLA): 0 for a constant prediction rather than undefined."""
    return float(skm.matthews_corrcoef(labels, preds))


def acc_and_f1(preds, labels) -> dict[str, float]:
    acc, f = accuracy(preds, labels), f1(preds, labels)
    return {"accuracy": acc, "f1": f, "acc_and_f1": (acc + f) / 2}


def pearson_and_spearman(preds, labels) -> dict[str, float]:
    """STS-B: both correlations and their mean (`corr`). A constant input makes them NaN."""
    pearson = float(stats.pearsonr(preds, labels)[0])
    spearman = float(stats.spearmanr(preds, labels)[0])
    return {"pearson": pearson, "spearmanr": spearman, "corr": (pearson + spearman) / 2}


GLUE_TASKS = ("cola", "mnli", "mnli-mm", "mrpc", "qnli", "qqp", "rte", "sst-2", "sst2", "sts-b", "stsb", "wnli")


def glue_compute_metrics(task_name: str, preds, labels) -> dict[str, float]:
    """The metrics GLUE reports for `task_name`.

    `preds` may be class ids, scores, or the model's logits: (N, num_labels) logits become their
    argmax, and (N, 1) regression outputs are squeezed, so that
    `compute_metrics=functools.partial(glue_compute_metrics, task)` plugs into the Trainer.
    Every task reports `accuracy` (Google's eval_accuracy) except CoLA (mcc) and STS-B.
    """
    task = task_name.strip().lower()
    if task not in GLUE_TASKS:
        raise ConfigError(f"unknown GLUE task {task_name!r}; the task name must be one of: {', '.join(GLUE_TASKS)}")
    preds, labels = np.asarray(preds), np.asarray(labels)
    if preds.ndim == 2:
        preds = preds[:, 0] if preds.shape[1] == 1 else preds.argmax(axis=1)
    if preds.shape != labels.shape:
        raise ValueError(f"{task}: {preds.shape[0]} predictions for {labels.shape[0]} labels")
    if task == "cola":
        return {"mcc": matthews_corrcoef(preds, labels)}
    if task in ("sts-b", "stsb"):
        return pearson_and_spearman(preds, labels)
    if task in ("mrpc", "qqp"):
        return acc_and_f1(preds, labels)
    return {"accuracy": accuracy(preds, labels)}
