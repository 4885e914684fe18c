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
from scipy.special import expit, softmax

from bertkit.compress.distill import DistillationArguments, DistillationTrainer
from bertkit.data.transfer import with_transfer_set
from bertkit.data.batching import FeatureDataset
from bertkit.data.features import load_or_build_features
from bertkit.data.glue import DataProcessor, InputExample, convert_examples_to_features, get_processor
from bertkit.heads import BertForSequenceClassification
from bertkit.errors import ConfigError
from bertkit.io_utils import atomic_write
from bertkit.tasks.base import Split, Task, option, run_task
from bertkit.tasks.pipeline import Feature, Pipeline, check_text, parameter, softmax_rows

# transformers' text-classification `function_to_apply` values.
FUNCTIONS_TO_APPLY = {"softmax": softmax_rows, "sigmoid": lambda x: expit(np.asarray(x, dtype=np.float64)),
                      "none": lambda x: np.asarray(x, dtype=np.float64)}
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

    task_name: str = option(help="MRPC, CoLA, SST-2, STS-B, RTE, WNLI, QQP, MNLI, MNLI-MM, QNLI")
    data_dir: str = option(help="the task's GLUE folder (train.tsv, dev.tsv, test.tsv)")
    max_seq_length: int = 128
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False
    cache_dir: str | None = None  # feature cache; None: tokenize every time
    max_train_examples: int | None = option(None, "train on the first N examples only", minimum=1)
    max_eval_examples: int | None = None  # the first N dev / test examples

    model_class = BertForSequenceClassification

    @property
    def name(self) -> str:
        return self.task_name.lower()

    def validate(self) -> None:
        super().validate()
        self.processor  # noqa: B018 - an unknown task fails with the flags

    @property
    def processor(self) -> DataProcessor:
        return get_processor(self.task_name)

    def dataset(self, split: str, tokenizer: FullTokenizer, args) -> Split:
        examples, data = build_dataset(self.processor, self, split, tokenizer, str(tokenizer.vocab_file),
                                       args.pad_to_max_length, args.progress)
        return Split(split, data, examples)

    def metadata(self) -> dict:
        return {"problem_type": "regression" if self.processor.is_regression else "single_label_classification"}

    def metrics(self, data: Split, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        return glue_metrics_fn(self.task_name, self.processor.is_regression)(predictions, labels)

    def write_predictions(self, output_dir: Path, data: Split, predictions: np.ndarray, results: dict) -> dict:
        if data.name == "test":
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


def distill_classifier(teacher: BertForSequenceClassification, student: BertForSequenceClassification, tokenizer,
                       task: ClassifierTask, args: TrainingArguments, distill_args: DistillationArguments,
                       resume: bool = False, transfer_set: list | None = None) -> dict:
    """run_classifier's data and metrics, with the student trained by distillation from `teacher`.

    Evaluation and prediction are the student's, as run_classifier's. `transfer_set`
    (data/transfer.py's sources) adds inputs that the teacher alone labels.
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


@dataclass
class TextClassificationParameters:
    top_k: int | None = parameter(1, "how many labels, best first; null for every label", ge=1)
    text_pair: str | list[str] | None = parameter(
        None, "the second text of the pair: a text for one input, a list as long as the inputs for a list")


class TextClassificationPipeline(Pipeline):
    """p("a"), p("a", "b"), p(["a", "b"]), p([("a", "b"), ...]), p({"text": "a", "text_pair": "b"})."""

    task = "text-classification"
    input_fields = ("text", "text_pair")
    parameters = TextClassificationParameters

    @property
    def cross_encoder(self) -> bool:
        """One score per pair (a regression head, as sentence-transformers' CrossEncoder): /rerank's model."""
        return self.config.num_labels == 1

    def default_options(self) -> dict:
        # transformers' function_to_apply: a multi-label model scores every label on its own (sigmoid),
        # so all of them are returned, each with its own probability.
        if self.problem_type == "multi_label_classification":
            return {"top_k": None, "function_to_apply": "sigmoid", "stride": None}
        return {"top_k": 1, "function_to_apply": "softmax", "stride": None}

    def check_option_values(self, options: dict) -> dict:
        if options.get("function_to_apply", "softmax") not in FUNCTIONS_TO_APPLY:
            raise ConfigError(f"function_to_apply={options['function_to_apply']!r}: use one of "
                              f"{', '.join(FUNCTIONS_TO_APPLY)}")
        return super().check_option_values(options)

    def parse(self, texts=None, text_pair=None, **kwargs) -> tuple[bool, list]:
        if texts is None and "text" in kwargs:
            texts = kwargs.pop("text")
        if kwargs:
            raise ConfigError(f"text-classification takes texts (and text_pair), not {', '.join(sorted(kwargs))}")
        single = isinstance(texts, (str, dict))
        if single:
            texts = [texts if text_pair is None else (texts, text_pair)]
        elif not isinstance(texts, (list, tuple)) or not texts:
            raise ConfigError("give a text, a pair of texts, or a non-empty list of texts or (a, b) pairs")
        elif text_pair is not None:
            if not isinstance(text_pair, (list, tuple)) or len(text_pair) != len(texts):
                raise ConfigError("text_pair must be a list as long as the list of texts")
            texts = list(zip(texts, text_pair))
        items = []
        for i, item in enumerate(texts):
            if isinstance(item, dict):
                unknown = set(item) - {"text", "text_pair"}
                if unknown or "text" not in item:
                    raise ConfigError(f"input {i}: expected keys 'text' (and 'text_pair'), got {sorted(item)}")
                pair = item.get("text_pair")
                items.append((check_text(item["text"], f"input {i}: text"),
                              None if pair is None else check_text(pair, f"input {i}: text_pair")))
            elif isinstance(item, (tuple, list)):
                if len(item) != 2:
                    raise ConfigError(f"input {i}: a pair is two texts, got {len(item)}")
                items.append((check_text(item[0], f"input {i}"), check_text(item[1], f"input {i}")))
            else:
                items.append((check_text(item, f"input {i}"), None))
        return single, items

    def preprocess(self, item, stride=None, **options) -> list[Feature]:
        return self._encode_windows(*item, stride)

    def _outputs(self, batch, features) -> list:
        return list(self.model(**batch).logits.float().cpu().numpy())

    @property
    def problem_type(self) -> str:
        """transformers' problem_type: the checkpoint's, else regression for one output (STS-B)."""
        if self.metadata.problem_type:
            return self.metadata.problem_type
        return "regression" if self.config.num_labels == 1 else "single_label_classification"

    def postprocess(self, item, features, outputs, top_k=1, function_to_apply="softmax", **options):
        logits = np.mean(outputs, axis=0)  # a long text's windows (stride): their logits averaged
        if self.problem_type == "regression":
            return {"score": float(logits[0])}
        probabilities = FUNCTIONS_TO_APPLY[function_to_apply](logits)
        labels = self.labels or [f"LABEL_{i}" for i in range(len(probabilities))]
        ranked = sorted(range(len(probabilities)), key=lambda k: -probabilities[k])
        answers = [{"label": labels[k], "score": float(probabilities[k])} for k in ranked]
        if top_k == 1:
            return answers[0]
        return answers if top_k is None else answers[:top_k]

    def shape_output(self, single: bool, answers: list):
        # As transformers: one input gives a list (of its one dict, or of its top k).
        if single:
            return answers[0] if isinstance(answers[0], list) else [answers[0]]
        return answers
