"""run_classifier: GLUE-style sentence (pair) classification and regression on the one Trainer.

Google's run_classifier.py, step for step: a DataProcessor reads the task's TSV files,
convert_single_example builds the features (cached on disk like train.tf_record), the model is
BertForSequenceClassification, and do_train / do_eval / do_predict run in that order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import softmax

from bertkit.compress.distill import DistillationArguments, DistillationTrainer
from bertkit.compress.transfer import with_transfer_set
from bertkit.data.batching import FeatureDataset
from bertkit.data.features import load_or_build_features
from bertkit.data.glue import DataProcessor, InputExample, convert_examples_to_features, get_processor
from bertkit.heads import BertForSequenceClassification
from bertkit.errors import ConfigError
from bertkit.io_utils import atomic_write
from bertkit.tasks.base import Task, run_task
from bertkit.tokenization import FullTokenizer
from bertkit.training.metrics import glue_compute_metrics
from bertkit.training.trainer import TrainingArguments

logger = logging.getLogger("bertkit")

# File names that the GLUE leaderboard expects in a submission zip.
GLUE_SUBMISSION_NAMES = {
    "cola": "CoLA", "sst-2": "SST-2", "mrpc": "MRPC", "sts-b": "STS-B", "qqp": "QQP", "mnli": "MNLI-m",
    "mnli-mm": "MNLI-mm", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI",
}


@dataclass
class ClassifierTask(Task):
    """GLUE-style (pair) classification and regression: what run_classifier needs beyond the model."""

    task_name: str
    data_dir: str
    max_seq_length: int = 128
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False
    cache_dir: str | None = None  # feature cache; None: tokenize every time
    max_train_examples: int | None = None  # a bounded subset, for smoke tests and quick looks
    max_eval_examples: int | None = None  # the first N dev / test examples

    model_class = BertForSequenceClassification

    @property
    def name(self) -> str:
        return self.task_name.lower()

    @property
    def processor(self) -> DataProcessor:
        return get_processor(self.task_name)

    def dataset(self, split: str, tokenizer: FullTokenizer, args) -> FeatureDataset:
        return build_dataset(self.processor, self, split, tokenizer, str(tokenizer.vocab_file), args.pad_to_max_length,
                             args.progress)[1]

    def metrics(self, split: str, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        return glue_metrics_fn(self.task_name, self.processor.is_regression)(predictions, labels)

    def write_predictions(self, output_dir: Path, split: str, predictions: np.ndarray, results: dict) -> dict:
        if split == "test":
            write_glue_predictions(output_dir, self.task_name, self.processor, predictions)
        return {}


def build_dataset(processor: DataProcessor, task: ClassifierTask, split: str, tokenizer: FullTokenizer,
                  vocab_file: str, pad_to_max_length: bool, progress: bool = True
                  ) -> tuple[list[InputExample] | None, FeatureDataset]:
    """Examples (read only when the cache misses or they are needed) and their features."""
    examples: list[InputExample] | None = None
    limit = task.max_train_examples if split == "train" else task.max_eval_examples

    def read() -> list[InputExample]:
        nonlocal examples
        if examples is None:
            examples = processor.get_examples(task.data_dir, split)
            if limit:
                examples = examples[:limit]
        return examples

    def build():
        return convert_examples_to_features(read(), processor.get_labels(), task.max_seq_length, tokenizer,
                                            pad_to_max_length=pad_to_max_length, progress=progress)

    cacheable = task.cache_dir and not limit
    features = load_or_build_features(
        build, task.cache_dir if cacheable else None, task_name=task.task_name,
        data_file=processor.data_file(task.data_dir, split), vocab_file=vocab_file,
        max_seq_length=task.max_seq_length, do_lower_case=tokenizer.do_lower_case,
        pad_to_max_length=pad_to_max_length)
    # An unlabelled test file's features carry Google's placeholder label (the first one), which no metric may see.
    return examples, FeatureDataset(features, drop=[] if task.has_labels(split) else ["labels"])


def glue_metrics_fn(task_name: str, is_regression: bool):
    def compute(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        preds = logits.squeeze(-1) if is_regression else logits.argmax(axis=-1)
        return glue_compute_metrics(task_name, preds, labels)

    return compute


def write_glue_predictions(output_dir: Path, task_name: str, processor: DataProcessor,
                           logits: np.ndarray) -> None:
    """Google's test_results.tsv (class probabilities) and the GLUE submission file (index, label)."""
    if processor.is_regression:
        scores = logits.squeeze(-1)
        with atomic_write(output_dir / "test_results.tsv") as handle:
            handle.writelines(f"{score:.6f}\n" for score in scores)
        predictions = [f"{min(max(score, 0.0), 5.0):.3f}" for score in scores]
    else:
        probabilities = softmax(logits.astype(np.float64), axis=-1)
        with atomic_write(output_dir / "test_results.tsv") as handle:
            handle.writelines("\t".join(f"{p:.6f}" for p in row) + "\n" for row in probabilities)
        labels = processor.get_labels()
        predictions = [labels[i] for i in logits.argmax(axis=-1)]
    name = GLUE_SUBMISSION_NAMES.get(task_name.lower(), task_name)
    with atomic_write(output_dir / "glue_submission" / f"{name}.tsv") as handle:
        handle.write("index\tprediction\n")
        handle.writelines(f"{i}\t{p}\n" for i, p in enumerate(predictions))
    logger.info("wrote %d test predictions to %s and glue_submission/%s.tsv", len(predictions),
                output_dir / "test_results.tsv", name)


def run_classifier(model: BertForSequenceClassification, tokenizer: FullTokenizer, task: ClassifierTask,
                   args: TrainingArguments, resume: bool = False) -> dict:
    """Train, evaluate and predict as asked (run_task); returns the results."""
    return run_task(task, model, tokenizer, args, resume=resume)


def distill_classifier(teacher: BertForSequenceClassification, student: BertForSequenceClassification, tokenizer,
                       task: ClassifierTask, args: TrainingArguments, distill_args: DistillationArguments,
                       resume: bool = False, transfer_set: list | None = None) -> dict:
    """run_classifier's data and metrics, with the student trained by distillation from `teacher`.

    Evaluation and prediction are the student's, as run_classifier's. `transfer_set`
    (compress/transfer.py's sources) adds inputs that the teacher alone labels.
    """
    processor = task.processor
    if teacher.config.num_labels != processor.num_labels:
        raise ConfigError(f"the teacher has {teacher.config.num_labels} labels but {task.task_name} has "
                          f"{processor.num_labels}: give a teacher fine-tuned on {task.task_name}")

    def make_trainer(model, args, train_dataset=None, **kwargs):
        if train_dataset is not None and transfer_set:
            examples = processor.get_examples(task.data_dir, "train")[: task.max_train_examples or None]
            train_dataset = with_transfer_set(train_dataset, transfer_set, processor, examples, tokenizer,
                                              task.max_seq_length, seed=args.seed)
        return DistillationTrainer(model, teacher, args, distill_args, train_dataset=train_dataset, **kwargs)

    return run_task(task, student, tokenizer, args, resume=resume, make_trainer=make_trainer)
