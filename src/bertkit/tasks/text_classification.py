"""Text classification on your own CSV / TSV / JSONL files: single-label, multi-label or regression.

run_classifier's sequence (ClassifierTask: the GLUE conversion, feature cache, Trainer) with
data/tabular.py's reader in place of a GLUE processor, and the results a user of their own data
looks for:

    eval_results.txt            accuracy, macro F1 (multi-label: micro / macro F1, exact match;
                                regression: Pearson, Spearman, MSE), and per class `eval_precision_<label>`,
                                `eval_recall_<label>`, `eval_f1_<label>`, `eval_support_<label>`
    confusion_matrix.png        rows the true class, columns the predicted one (up to 30 classes)
    eval_predictions.jsonl      one line per example: its file line, text, the predicted label (names,
    test_predictions.jsonl      not ids) with its probability, and the gold label when the file has one

Multi-label examples are scored with a sigmoid per label (a label is predicted above 0.5), as
transformers' BertForSequenceClassification with problem_type="multi_label_classification".
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from scipy.special import expit, softmax
from sklearn import metrics as skm

from bertkit.data.glue import DataProcessor
from bertkit.data.tabular import TabularData, TabularProcessor
from bertkit.errors import ConfigError
from bertkit.io_utils import atomic_save_with, atomic_write
from bertkit.tasks.base import Split
from bertkit.tasks.classifier import ClassifierTask
from bertkit.training.logging import write_eval_results
from bertkit.tokenization import unknown_words_message
from bertkit.training.metrics import pearson_and_spearman

logger = logging.getLogger("bertkit")

TASK_NAME = "text-classification"
# A confusion matrix of more classes is unreadable at any size; the per-class lines still list them all.
MAX_CONFUSION_CLASSES = 30
MULTI_LABEL = "multi_label_classification"


@dataclass
class FileClassifierTask(ClassifierTask):
    """ClassifierTask over TabularData (`data`); task_name and data_dir are not used for reading."""

    task_name: str = TASK_NAME
    data_dir: str = ""
    data: TabularData | None = field(default=None, repr=False)

    def __post_init__(self):
        # The feature cache is keyed by the task name: it must change with everything that changes
        # the features of the same file (columns, labels and their order, the carved split).
        data = self.data
        spec = json.dumps([data.text_column, data.text_pair_column, data.label_column, data.spec.problem_type,
                           data.spec.names, data.label_separator, data.override, data.validation_split_percentage,
                           data.seed if data.validation_split_percentage else None])
        self.task_name = f"{TASK_NAME}-{hashlib.sha256(spec.encode()).hexdigest()[:12]}"
        super().__post_init__()

    @property
    def name(self) -> str:
        return TASK_NAME

    def validate(self) -> None:
        super().validate()
        files = self.data.files
        for step, split, flag in ((self.do_train, "train", "--do_train needs --train_file"),
                                  (self.do_eval, "dev", "--do_eval needs --validation_file (or "
                                                        "--validation_split_percentage with --train_file)"),
                                  (self.do_predict, "test", "--do_predict needs --test_file")):
            if step and split not in files and not (split == "dev" and self.data.validation_split_percentage):
                raise ConfigError(flag)

    @cached_property
    def processor(self) -> DataProcessor:
        return TabularProcessor(self.data)

    @property
    def problem_type(self) -> str:
        return self.data.spec.problem_type

    @property
    def label_list(self) -> list[str]:
        return list(self.data.spec.names)

    def metadata(self) -> dict:
        return {"problem_type": self.problem_type}

    def has_labels(self, split: str) -> bool:
        return self.data.has_labels(split)

    def dataset(self, split: str, tokenizer, args) -> Split:
        if split == "train":
            log_unknown_share(self.processor.get_examples(self.data_dir, split), tokenizer, self.data.files["train"])
        return super().dataset(split, tokenizer, args)

    def metrics(self, data: Split, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        return classification_metrics(self.problem_type, predictions, labels)

    def write_predictions(self, output_dir: Path, data: Split, predictions: np.ndarray, results: dict) -> dict:
        split = data.name
        examples = self.processor.get_examples(self.data_dir, split)[: self.max_eval_examples or None]
        labelled = self.has_labels(split)
        names = self.label_list
        write_prediction_file(output_dir / f"{'eval' if split == 'dev' else split}_predictions.jsonl", examples,
                              predictions, self.problem_type, names, labelled)
        if split == "test":  # Google's test_results.tsv: the class probabilities (the score), one row each
            with atomic_write(output_dir / "test_results.tsv") as handle:
                handle.writelines("\t".join(f"{p:.6f}" for p in np.atleast_1d(row)) + "\n"
                                  for row in scores(self.problem_type, predictions))
        if not labelled or self.problem_type == "regression":
            return {}
        prefix = "eval" if split == "dev" else split
        gold = np.array([_label_ids(e.label, names, self.problem_type) for e in examples])
        per_class = per_class_scores(self.problem_type, predictions, gold, names, prefix)
        # The per-class lines join the split's results file (Google's `key = value` lines).
        write_eval_results(output_dir / f"{prefix}_results.txt", {**results, **per_class})
        if self.problem_type != MULTI_LABEL:
            plot_confusion_matrix(predictions.argmax(axis=-1), gold, names,
                                  output_dir / ("confusion_matrix.png" if split == "dev" else
                                                f"{split}_confusion_matrix.png"))
        return {}


def log_unknown_share(examples, tokenizer, path: Path, limit: int = 10_000) -> None:
    """The share of the training texts' words that the vocabulary maps to [UNK] (of the first `limit`
    examples, enough for the share), logged at the start; a warning with the fix above 5%."""
    unknown = words = 0
    for example in examples[:limit]:
        for text in (example.text_a, example.text_b):
            if text is not None:
                u, w = tokenizer.count_unknown(text)
                unknown, words = unknown + u, words + w
    message = unknown_words_message(unknown, words, tokenizer.vocab_file, f"the training data {path}")
    if message:
        logger.warning(message)
    else:
        logger.info("training data: %.1f%% of %d words map to [UNK] in %s", 100 * unknown / max(words, 1), words,
                    tokenizer.vocab_file)


def scores(problem_type: str, logits: np.ndarray) -> np.ndarray:
    """What the model says per example: softmax probabilities, sigmoid per label, or the regression score."""
    logits = np.asarray(logits, dtype=np.float64)
    if problem_type == "regression":
        return logits.reshape(len(logits), -1)[:, 0]
    if problem_type == MULTI_LABEL:
        return expit(logits)
    return softmax(logits, axis=-1)


def classification_metrics(problem_type: str, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """accuracy and macro F1; multi-label: micro and macro F1 and exact match; regression: correlations, MSE."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    if problem_type == "regression":
        preds = logits.reshape(len(logits), -1)[:, 0]
        return {**pearson_and_spearman(preds, labels), "mse": float(np.mean((preds - labels) ** 2))}
    if problem_type == MULTI_LABEL:
        preds, gold = (logits > 0).astype(int), labels.astype(int)  # sigmoid(x) > 0.5 exactly when x > 0
        return {"micro_f1": float(skm.f1_score(gold, preds, average="micro", zero_division=0.0)),
                "macro_f1": float(skm.f1_score(gold, preds, average="macro", zero_division=0.0)),
                "exact_match": float(skm.accuracy_score(gold, preds))}
    preds = logits.argmax(axis=-1)
    classes = list(range(logits.shape[-1]))
    return {"accuracy": float(skm.accuracy_score(labels, preds)),
            "macro_f1": float(skm.f1_score(labels, preds, labels=classes, average="macro", zero_division=0.0))}


def per_class_scores(problem_type: str, logits: np.ndarray, gold: np.ndarray, names: list[str],
                     prefix: str) -> dict[str, float]:
    """`<prefix>_precision_<label>` ... `<prefix>_support_<label>` for every class."""
    if problem_type == MULTI_LABEL:
        preds, gold = (np.asarray(logits) > 0).astype(int), gold.astype(int)
        classes = None
    else:
        preds, classes = np.asarray(logits).argmax(axis=-1), list(range(len(names)))
    precision, recall, f1, support = skm.precision_recall_fscore_support(gold, preds, labels=classes,
                                                                         zero_division=0.0)
    table = {}
    for i, name in enumerate(names):
        table.update({f"{prefix}_precision_{name}": float(precision[i]), f"{prefix}_recall_{name}": float(recall[i]),
                      f"{prefix}_f1_{name}": float(f1[i]), f"{prefix}_support_{name}": int(support[i])})
    logger.info("%s per class:\n%s", prefix, skm.classification_report(
        gold, preds, labels=classes, target_names=names, zero_division=0.0, digits=4))
    return table


def _label_ids(label, names: list[str], problem_type: str):
    if problem_type == MULTI_LABEL:
        return [float(name in label) for name in names]
    return names.index(label)


def write_prediction_file(path: Path, examples, logits: np.ndarray, problem_type: str, names: list[str],
                          labelled: bool) -> None:
    """One JSON line per example: `line` (in its file), `text` (`text_pair`), the prediction by name."""
    probabilities = scores(problem_type, logits)
    with atomic_write(path) as handle:
        for example, row in zip(examples, probabilities):
            record = {"line": int(example.guid.rsplit("-", 1)[1]), "text": example.text_a}
            if example.text_b is not None:
                record["text_pair"] = example.text_b
            if problem_type == "regression":
                record["prediction"] = float(row)
            elif problem_type == MULTI_LABEL:
                record["prediction"] = [n for n, p in zip(names, row) if p > 0.5]
                record["scores"] = {n: round(float(p), 6) for n, p in zip(names, row)}
            else:
                best = int(row.argmax())
                record.update(prediction=names[best], score=round(float(row[best]), 6))
            if labelled:
                record["label"] = list(example.label) if problem_type == MULTI_LABEL else example.label
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    logger.info("wrote %d predictions to %s", len(probabilities), path)


def plot_confusion_matrix(preds: np.ndarray, gold: np.ndarray, names: list[str], path: Path) -> None:
    """Counts, rows the true class and columns the predicted one, each cell shaded by its row's share."""
    if len(names) > MAX_CONFUSION_CLASSES:
        logger.info("%d classes: no confusion matrix (at most %d stay readable); the per-class scores are in the "
                    "results file", len(names), MAX_CONFUSION_CLASSES)
        return
    import matplotlib

    matplotlib.use("Agg")  # no display needed: this runs on servers and in CI
    import matplotlib.pyplot as plt

    counts = skm.confusion_matrix(gold, preds, labels=list(range(len(names))))
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 2.5 + 0.45 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size), layout="constrained")
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 4 else 0, ha="right" if len(names) > 4 else
                  "center")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{path.stem.replace('_', ' ')}: accuracy {np.trace(counts) / max(counts.sum(), 1):.3f}")
    if len(names) <= 15:  # the counts fit in the cells
        for (i, j), n in np.ndenumerate(counts):
            ax.text(j, i, str(n), ha="center", va="center", fontsize=8,
                    color="white" if shares[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, label="share of the true class")
    atomic_save_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
