"""run_classifier: GLUE-style sentence (pair) classification and regression on the one Trainer.

Google's run_classifier.py, step for step: a DataProcessor reads the task's TSV files,
convert_single_example builds the features (cached on disk like train.tf_record), the model is
BertForSequenceClassification, and do_train / do_eval / do_predict run in that order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.special import softmax

from bertkit.data.batching import GOOGLE_FEATURE_NAMES, FeatureDataset
from bertkit.data.features import load_or_build_features
from bertkit.data.glue import DataProcessor, InputExample, convert_examples_to_features, get_processor
from bertkit.heads import BertForSequenceClassification
from bertkit.io_utils import atomic_write
from bertkit.tasks.base import record_task
from bertkit.tokenization import FullTokenizer
from bertkit.training.metrics import glue_compute_metrics
from bertkit.training.trainer import Trainer, TrainingArguments

logger = logging.getLogger("bertkit")

# File names that the GLUE leaderboard expects in a submission zip.
GLUE_SUBMISSION_NAMES = {
    "cola": "CoLA", "sst-2": "SST-2", "mrpc": "MRPC", "sts-b": "STS-B", "qqp": "QQP", "mnli": "MNLI-m",
    "mnli-mm": "MNLI-mm", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI",
}


@dataclass
class ClassifierTask:
    """What run_classifier needs beyond the model and the training arguments."""

    task_name: str
    data_dir: str
    max_seq_length: int = 128
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False
    cache_dir: str | None = None  # feature cache; None: tokenize every time
    max_train_examples: int | None = None  # a bounded subset, for smoke tests and quick looks


def build_dataset(processor: DataProcessor, task: ClassifierTask, split: str, tokenizer: FullTokenizer,
                  vocab_file: str, pad_to_max_length: bool, progress: bool = True
                  ) -> tuple[list[InputExample] | None, FeatureDataset]:
    """Examples (read only when the cache misses or they are needed) and their features."""
    examples: list[InputExample] | None = None

    def read() -> list[InputExample]:
        nonlocal examples
        if examples is None:
            examples = processor.get_examples(task.data_dir, split)
            if split == "train" and task.max_train_examples:
                examples = examples[: task.max_train_examples]
        return examples

    def build():
        return convert_examples_to_features(read(), processor.get_labels(), task.max_seq_length, tokenizer,
                                            pad_to_max_length=pad_to_max_length, progress=progress)

    cacheable = task.cache_dir and not (split == "train" and task.max_train_examples)
    features = load_or_build_features(
        build, task.cache_dir if cacheable else None, task_name=task.task_name,
        data_file=processor.data_file(task.data_dir, split), vocab_file=vocab_file,
        max_seq_length=task.max_seq_length, do_lower_case=tokenizer.do_lower_case,
        pad_to_max_length=pad_to_max_length)
    drop = ["is_real_example"] + (["label_id"] if split == "test" else [])
    return examples, FeatureDataset(features, rename=GOOGLE_FEATURE_NAMES, drop=drop)


def glue_metrics_fn(task_name: str, is_regression: bool):
    def compute(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        preds = logits.squeeze(-1) if is_regression else logits.argmax(axis=-1)
        return glue_compute_metrics(task_name, preds, labels)

    return compute


def write_predictions(output_dir: Path, task_name: str, processor: DataProcessor, logits: np.ndarray) -> None:
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


def run_classifier(model: BertForSequenceClassification, tokenizer: FullTokenizer, vocab_file: str,
                   task: ClassifierTask, args: TrainingArguments, resume: bool = False,
                   make_trainer: Callable[..., Trainer] | None = None) -> dict:
    """Train, evaluate and predict as asked; returns the last evaluation's metrics (if any).

    `make_trainer(**trainer_kwargs)` builds the trainer (default: the Trainer on `model`); the
    distillation runner passes one that builds a DistillationTrainer around a teacher.
    """
    processor = get_processor(task.task_name)
    record_task(model.config, task.task_name.lower(), task.max_seq_length, tokenizer)

    def dataset(split: str) -> FeatureDataset:
        return build_dataset(processor, task, split, tokenizer, vocab_file, args.pad_to_max_length, args.progress)[1]

    output_dir = Path(args.output_dir)
    train_data = eval_data = None
    if task.do_train:
        train_data = dataset("train")
        logger.info("***** Running training *****  %d examples, batch size %d, %s epochs", len(train_data),
                    args.train_batch_size, args.num_train_epochs)
    if task.do_eval:
        eval_data = dataset("dev")
    make_trainer = make_trainer or (lambda **kwargs: Trainer(model, args, **kwargs))
    trainer = make_trainer(train_dataset=train_data, eval_dataset=eval_data, tokenizer=tokenizer,
                           compute_metrics=glue_metrics_fn(task.task_name, processor.is_regression))
    results: dict = {}
    if task.do_train:
        results = trainer.train(resume=resume).metrics
    if task.do_eval and not results:
        results = trainer.evaluate()
    if task.do_predict:
        test_data = dataset("test")
        predictions = trainer.predict(test_data).predictions  # every process takes part in the gather
        if trainer.is_main:
            write_predictions(output_dir, task.task_name, processor, predictions)
    return results
