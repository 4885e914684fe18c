"""The Task interface and run_task(): the one train / evaluate / predict sequence of every runner.

A task says what is particular to it, as Lightning's LightningModule does; run_task owns the rest
(the order of the steps, the log banners, the results, writing on the main process only):

    check(model, tokenizer)             the flags against the model, before any work (changes nothing)
    configure(model)                    what the task sets on the model for its run (default: nothing)
    dataset(split, tokenizer, args)     "train" / "dev" / "test" read and converted: a Split, whose
                                        `dataset` holds features named as the model's arguments
    eval_step(output, batch)            what evaluation and prediction collect per row
    metrics(data, predictions, labels)  the split's scores (`data`: the Split, examples included)
    write_predictions(output_dir, data, predictions, results)
                                        prediction files (and any scores made from them)
    metadata()                          what a saved model records for prediction (TaskMetadata)

A task is checked when it is made (`validate()` from `__post_init__`, as TrainingArguments is), so
a bad flag fails before any model loads, and once. A task keeps no per-split state: what metrics
and prediction files need of a split travels in its Split. Its own flags are its dataclass fields
declared with `option()`: cli/common.add_task_arguments turns them into the runner's arguments.
Adding a task is one module (a Task subclass with its data, head (`model_class`), metric and
postprocessing; its Pipeline), one line in tasks/registry.py and a thin CLI command.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import functools
import logging
from pathlib import Path
from typing import Any, Callable

from torch.utils.data import Dataset

from bertkit.config import BertConfig
from bertkit.errors import ConfigError
from bertkit.training.trainer import EvalResults, Trainer, TrainingArguments

logger = logging.getLogger("bertkit")


def record_task(config: BertConfig, task: str, max_seq_length: int, tokenizer, **metadata) -> None:
    """Put into `config` what `pipeline(saved_dir)` needs to predict with the model it describes.

    HF's keys where HF has them: `finetuning_task`, `problem_type`, and `id2label`/`label2id` (HF's
    default `LABEL_i` names for a head without named classes, as transformers writes them, so that
    transformers' own pipeline reads the labels too). Beside them, bertkit's: `max_seq_length` and
    `do_lower_case` (the inputs the model was trained on), and the task's own (`metadata`: NER's
    `label_scheme` and `doc_stride`, SQuAD's `doc_stride` and `max_query_length`), all in the
    config's typed TaskMetadata.
    """
    if config.id2label is None:
        config.id2label = {i: f"LABEL_{i}" for i in range(config.num_labels)}
        config.label2id = {label: i for i, label in config.id2label.items()}
    if tokenizer is not None:
        metadata["do_lower_case"] = bool(tokenizer.do_lower_case)
    config.task_metadata = dataclasses.replace(config.task_metadata, finetuning_task=task,
                                               max_seq_length=int(max_seq_length), **metadata)
    config.task_metadata.validate()


@dataclass(frozen=True)
class Flag:
    """How a Task field is offered on its runner's command line (the field's metadata["flag"])."""

    help: str
    names: tuple[str, ...] = ()  # the flag's names; default --<field name>
    group: str | None = None  # the --help section it is listed under (None: the command's own)
    minimum: float | None = None  # the least value a number may take, checked when the flags are parsed
    choices: tuple | None = None
    metavar: str | None = None
    required: bool = False


def option(default: Any = dataclasses.MISSING, help: str = "", **flag) -> Any:
    """A Task field that its runner offers as a command-line flag, declared once here (the field's
    default is the flag's): `flag` holds Flag's other fields (names, group, minimum, ...)."""
    return dataclasses.field(default=default, metadata={"flag": Flag(help, **flag)})


@dataclass
class Split:
    """One split of a task's data, read and converted: the Dataset the Trainer runs, and what the
    task's metrics and prediction files need of it (its examples, features, file, ...)."""

    name: str  # "train", "dev" or "test"
    dataset: Dataset
    examples: Any = None
    features: Any = None
    source: Path | None = None  # the file it was read from
    extra: dict = dataclasses.field(default_factory=dict)  # anything else the task's outputs need

    def __len__(self) -> int:
        return len(self.dataset)


class Task:
    """What one task is; subclasses are dataclasses holding the task's flags (data, lengths, do_*)."""

    model_class: type  # the head, e.g. BertForSequenceClassification
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False
    max_seq_length: int = 128
    label_names: tuple[str, ...] = ("labels",)  # batch keys that are the labels metrics compare with
    eval_split = "dev"  # the split --do_eval evaluates (and evaluates during training)
    predict_split = "test"  # the split --do_predict predicts

    def __post_init__(self) -> None:
        # A task is valid once made; subclasses with their own __post_init__ call this last.
        self.validate()

    @property
    def name(self) -> str:
        """The task's name, saved as config.json's finetuning_task."""
        raise NotImplementedError

    def validate(self) -> None:
        """Check the flags before any work; the default asks for at least one step."""
        if not (self.do_train or self.do_eval or self.do_predict):
            raise ConfigError("at least one of --do_train, --do_eval or --do_predict must be true")

    def check(self, model, tokenizer) -> None:
        """Check the flags against the model before any work; changes neither."""
        positions = model.config.max_position_embeddings
        if self.max_seq_length > positions:
            raise ConfigError(f"--max_seq_length={self.max_seq_length} is more than the model's "
                              f"max_position_embeddings={positions}; lower it, or extend the position table "
                              f"with --max_position_embeddings={self.max_seq_length}")

    def configure(self, model) -> None:
        """Set what the task's flags change on the model for this run (a training choice, not a check)."""

    def metadata(self) -> dict:
        """The task's own TaskMetadata fields (config.json) beyond finetuning_task, max_seq_length
        and do_lower_case, which run_task records for every task."""
        return {}

    def dataset(self, split: str, tokenizer, args: TrainingArguments) -> Split:
        raise NotImplementedError

    def has_labels(self, split: str) -> bool:
        """Whether the split's features carry labels (the test split may be unlabelled)."""
        return split != "test"

    def eval_step(self, output, batch: dict) -> Any:
        return output.logits

    def metrics(self, data: Split, predictions, labels) -> dict[str, float]:
        return {}

    def write_predictions(self, output_dir: Path, data: Split, predictions, results: dict) -> dict:
        """Write the split's prediction files; return any scores computed from them."""
        return {}


def run_task(task: Task, model, tokenizer, args: TrainingArguments, resume: bool | str = False,
             make_trainer: Callable[..., Trainer] | None = None) -> dict:
    """Train, evaluate and predict as the task's do_* flags ask; returns the results (the last
    evaluation's metrics, the test split's `test_*` metrics, scores made from prediction files).

    `resume` is Trainer.train's: True, "strict" or a checkpoint's path.
    `make_trainer(model, args, **kwargs)` builds the trainer (default: the Trainer); distillation
    passes one that wraps the student with its teacher.
    """
    task.check(model, tokenizer)
    task.configure(model)
    record_task(model.config, task.name, task.max_seq_length, tokenizer, **task.metadata())
    args = dataclasses.replace(args, label_names=task.label_names)
    output_dir = Path(args.output_dir)
    train = task.dataset("train", tokenizer, args) if task.do_train else None
    evaluate = task.dataset(task.eval_split, tokenizer, args) if task.do_eval else None
    # Read now, not after training: a bad line in the prediction file must stop the run before the hours of work.
    predict = task.dataset(task.predict_split, tokenizer, args) if task.do_predict else None
    if train is not None:
        logger.info("***** Running training *****  %d examples, batch size %d, %s", len(train), args.train_batch_size,
                    f"{args.max_steps} steps" if args.max_steps else f"{args.num_train_epochs} epochs")
    make_trainer = make_trainer or Trainer
    trainer = make_trainer(model, args, train_dataset=train.dataset if train else None,
                           eval_dataset=evaluate.dataset if evaluate else None, tokenizer=tokenizer,
                           eval_step=task.eval_step,
                           compute_metrics=functools.partial(task.metrics, evaluate) if evaluate else None)
    results: dict = {}
    last = None
    if task.do_train:
        output = trainer.train(resume=resume)
        results = dict(output.metrics)
        results.setdefault("global_step", output.global_step)
        results["train_loss"] = output.training_loss
        last = output.metrics
    if evaluate is not None:
        if not task.do_train or not isinstance(last, EvalResults):  # no evaluation yet (or resumed past it)
            last = trainer.evaluate()
            results.update(last)
        if trainer.is_main:
            results.update(task.write_predictions(output_dir, evaluate, last.predictions, dict(last)))
    if predict is not None:
        split, data = task.predict_split, predict
        logger.info("***** Running predictions *****  %d examples (%s), batch size %d", len(data), split,
                    args.eval_batch_size)
        if task.has_labels(split):  # scored like the dev set; writes <split>_results.txt
            scores = trainer.evaluate(data.dataset, prefix=split, compute_metrics=functools.partial(task.metrics, data))
            predictions = scores.predictions
            results.update({k: v for k, v in scores.items() if k.startswith(f"{split}_")})
        else:  # every process takes part in the gather
            predictions, scores = trainer.predict(data.dataset).predictions, {}
        if trainer.is_main:
            results.update(task.write_predictions(output_dir, data, predictions,
                                                  {**scores, "global_step": trainer.state.global_step}))
    return results
