"""run_multiple_choice: SWAG and CommonsenseQA on the one Trainer.

run_classifier's shape with multiple-choice data: a processor reads the task's files
(data/multiple_choice.py), every example becomes (choices, seq) features, the model is
BertForMultipleChoice (one score per choice, softmax over the choices), and do_train / do_eval /
do_predict run in that order. The metric is accuracy; the dev and test predictions are written
as JSON lines.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import softmax

from bertkit.data.batching import FeatureDataset
from bertkit.data.multiple_choice import (MultipleChoiceExample, MultipleChoiceProcessor,
                                          convert_examples_to_features, feature_dataset, get_processor)
from bertkit.errors import DataError
from bertkit.heads import BertForMultipleChoice
from bertkit.io_utils import atomic_write
from bertkit.tokenization import FullTokenizer
from bertkit.training.metrics import accuracy
from bertkit.tasks.base import record_task
from bertkit.training.trainer import Trainer, TrainingArguments

logger = logging.getLogger("bertkit")

EVAL_PREDICTIONS_FILE = "eval_predictions.jsonl"
TEST_PREDICTIONS_FILE = "test_predictions.jsonl"


@dataclass
class MultipleChoiceTask:
    """What run_multiple_choice needs beyond the model and the training arguments."""

    task_name: str  # "swag" or "commonsenseqa"
    data_dir: str
    max_seq_length: int = 128
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False
    max_train_examples: int | None = None  # a bounded subset, for smoke tests and quick looks


def build_dataset(processor: MultipleChoiceProcessor, task: MultipleChoiceTask, split: str, tokenizer: FullTokenizer,
                  pad_to_max_length: bool, progress: bool = True
                  ) -> tuple[list[MultipleChoiceExample], FeatureDataset]:
    """A split's examples and their features as a dataset."""
    examples = processor.get_examples(task.data_dir, split)
    if split == "train" and task.max_train_examples:
        examples = examples[: task.max_train_examples]
    features = convert_examples_to_features(examples, task.max_seq_length, tokenizer,
                                            pad_to_max_length=pad_to_max_length, progress=progress)
    return examples, feature_dataset(features)


class AccuracyMetric:
    """compute_metrics for the Trainer: accuracy of the argmax over the choices.

    It keeps the logits it last scored, so that the final evaluation's predictions can be written
    without a second pass over the dev set.
    """

    def __init__(self):
        self.last_logits: np.ndarray | None = None

    def __call__(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        self.last_logits = logits
        return {"accuracy": accuracy(logits.argmax(axis=-1), labels)}


def write_predictions(path: str | Path, examples: list[MultipleChoiceExample], logits: np.ndarray) -> None:
    """One JSON object per example: id, the predicted choice label ("A".."E", "0".."3"), the choice
    probabilities and, when the file has answers, the gold label."""
    if len(logits) != len(examples):
        raise ValueError(f"{len(logits)} rows of logits for {len(examples)} examples")
    probabilities = softmax(np.asarray(logits, dtype=np.float64), axis=-1)
    with atomic_write(path) as handle:
        for example, row in zip(examples, probabilities):
            record = {"id": example.example_id, "prediction": example.choice_labels[int(row.argmax())],
                      "probabilities": [round(float(p), 6) for p in row]}
            if example.label is not None:
                record["label"] = example.choice_labels[example.label]
            handle.write(json.dumps(record) + "\n")
    logger.info("wrote %d predictions to %s", len(examples), path)


def run_multiple_choice(model: BertForMultipleChoice, tokenizer: FullTokenizer, task: MultipleChoiceTask,
                        args: TrainingArguments, resume: bool = False) -> dict:
    """Train, evaluate and predict as asked; returns the last evaluation's metrics (if any)."""
    processor = get_processor(task.task_name)
    record_task(model.config, task.task_name.lower(), task.max_seq_length, tokenizer)

    def dataset(split: str) -> tuple[list[MultipleChoiceExample], FeatureDataset]:
        return build_dataset(processor, task, split, tokenizer, args.pad_to_max_length, args.progress)

    output_dir = Path(args.output_dir)
    train_data = eval_data = None
    eval_examples: list[MultipleChoiceExample] = []
    if task.do_train:
        _, train_data = dataset("train")
        logger.info("***** Running training *****  %d examples, batch size %d, %s epochs", len(train_data),
                    args.train_batch_size, args.num_train_epochs)
    if task.do_eval:
        eval_examples, eval_data = dataset("dev")
        if any(example.label is None for example in eval_examples):
            raise DataError(f"{processor.data_file(task.data_dir, 'dev')}: has examples without an answer; "
                            "--do_eval needs a labelled dev file")
    metric = AccuracyMetric()
    trainer = Trainer(model, args, train_dataset=train_data, eval_dataset=eval_data, compute_metrics=metric,
                      tokenizer=tokenizer)
    results: dict = {}
    if task.do_train:
        results = trainer.train(resume=resume).metrics
    if task.do_eval:
        if not results:
            results = trainer.evaluate()
        logits = metric.last_logits
        if logits is None:  # a resumed run that had evaluated already
            logits = trainer.predict(eval_data).predictions
        if trainer.is_main:
            write_predictions(output_dir / EVAL_PREDICTIONS_FILE, eval_examples, logits)
    if task.do_predict:
        test_examples, test_data = dataset("test")
        predictions = trainer.predict(test_data).predictions  # every process takes part in the gather
        if trainer.is_main:
            write_predictions(output_dir / TEST_PREDICTIONS_FILE, test_examples, predictions)
    return results
