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
from bertkit.data.multiple_choice import (MultipleChoiceExample, MultipleChoiceProcessor, convert_example,
                                          convert_examples_to_features, get_processor)
from bertkit.errors import ConfigError, DataError
from bertkit.heads import BertForMultipleChoice
from bertkit.io_utils import atomic_write
from bertkit.tokenization import FullTokenizer
from bertkit.training.metrics import accuracy
from bertkit.tasks.base import Split, Task, option
from bertkit.tasks.pipeline import Feature, Pipeline, check_text, parameter, question_records, softmax_rows

logger = logging.getLogger("bertkit")

EVAL_PREDICTIONS_FILE = "eval_predictions.jsonl"
TEST_PREDICTIONS_FILE = "test_predictions.jsonl"


@dataclass
class MultipleChoiceTask(Task):
    """SWAG / CommonsenseQA: what run_multiple_choice needs beyond the model."""

    task_name: str = option(help="swag or commonsenseqa", names=("--task", "--task_name"), required=True)
    data_dir: str = option(help="the task's folder (see above for the file names)", required=True)
    max_seq_length: int = 128
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False
    max_train_examples: int | None = option(None, "train on the first N examples only", minimum=1)
    max_eval_examples: int | None = None

    model_class = BertForMultipleChoice

    @property
    def name(self) -> str:
        return self.task_name.lower()

    def validate(self) -> None:
        super().validate()
        get_processor(self.task_name)  # an unknown task fails with the flags

    def dataset(self, split: str, tokenizer: FullTokenizer, args) -> Split:
        processor = get_processor(self.task_name)
        examples, dataset = build_dataset(processor, self, split, tokenizer, args.pad_to_max_length, args.progress)
        if split == "dev" and any(example.label is None for example in examples):
            raise DataError(f"{processor.data_file(self.data_dir, 'dev')}: has examples without an answer; "
                            "--do_eval needs a labelled dev file")
        return Split(split, dataset, examples)

    def metrics(self, data: Split, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        return {"accuracy": accuracy(logits.argmax(axis=-1), labels)}

    def write_predictions(self, output_dir: Path, data: Split, logits: np.ndarray, results: dict) -> dict:
        name = EVAL_PREDICTIONS_FILE if data.name == "dev" else TEST_PREDICTIONS_FILE
        write_choice_predictions(output_dir / name, data.examples, logits)
        return {}


def build_dataset(processor: MultipleChoiceProcessor, task: MultipleChoiceTask, split: str, tokenizer: FullTokenizer,
                  pad_to_max_length: bool, progress: bool = True
                  ) -> tuple[list[MultipleChoiceExample], FeatureDataset]:
    """A split's examples and their features as a dataset."""
    examples = processor.get_examples(task.data_dir, split)
    limit = task.max_train_examples if split == "train" else task.max_eval_examples
    if limit:
        examples = examples[:limit]
    features = convert_examples_to_features(examples, task.max_seq_length, tokenizer,
                                            pad_to_max_length=pad_to_max_length, progress=progress)
    return examples, FeatureDataset(features)  # a test file's features have no labels


def write_choice_predictions(path: str | Path, examples: list[MultipleChoiceExample],
                             logits: np.ndarray) -> None:
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


@dataclass
class MultipleChoiceParameters:
    question: str | None = None
    choices: list[str] | None = parameter(None, "at least two texts", min_length=2)


class MultipleChoicePipeline(Pipeline):
    """p("Where do you keep milk?", choices=["fridge", "oven", "garden"]) -> the chosen index and the probabilities."""

    task = "multiple-choice"
    input_fields = ("question", "choices")
    parameters = MultipleChoiceParameters
    warmup_input = {"question": "What is warmed up?", "choices": ["the model", "the server"]}

    def parse(self, question=None, choices=None, **kwargs) -> tuple[bool, list]:
        single, records = question_records(self.task, "choices", question, choices, kwargs)
        items = []
        for i, record in enumerate(records):
            choices_i = record["choices"]
            if not isinstance(choices_i, list) or len(choices_i) < 2:
                raise ConfigError(f"input {i}: choices must be a list of at least two texts")
            items.append((check_text(record["question"], f"input {i}: question"),
                          [check_text(c, f"input {i}: choice {k}") for k, c in enumerate(choices_i)]))
        return single, items

    def preprocess(self, item, **options) -> list[Feature]:
        question, choices = item
        # CommonsenseQA's layout, as run_multiple_choice reads it: the question, then each choice.
        example = MultipleChoiceExample("predict", [question] * len(choices), choices)
        features = convert_example(example, self.max_seq_length, self.tokenizer)
        lengths = [len(self.tokenizer.tokenize(question)) + len(self.tokenizer.tokenize(c)) + 3 for c in choices]
        return [Feature(features.input_ids, features.token_type_ids, truncated=max(lengths) > self.max_seq_length)]

    def _batch(self, features):
        # Items may have different numbers of choices: all choices go in as one (1, rows, T)
        # batch, since the head scores every choice on its own.
        rows = [row for f in features for row in f.input_ids]
        types = [row for f in features for row in f.token_type_ids]
        input_ids, attention_mask = self._pad(rows)
        token_type_ids, _ = self._pad(types)
        return {"input_ids": input_ids[None].to(self.device), "attention_mask": attention_mask[None].to(self.device),
                "token_type_ids": token_type_ids[None].to(self.device)}

    def _outputs(self, batch, features) -> list:
        logits = self.model(**batch).logits[0].float().cpu().numpy()
        out, row = [], 0
        for feature in features:
            out.append(logits[row:row + len(feature.input_ids)])
            row += len(feature.input_ids)
        return out

    def postprocess(self, item, features, outputs, **options):
        probabilities = softmax_rows(outputs[0])
        best = int(probabilities.argmax())
        return {"choice": best, "answer": item[1][best], "score": float(probabilities[best]),
                "scores": [float(p) for p in probabilities]}
