"""The task registry: the one table of what bertkit can train and predict, named as transformers'
pipeline tasks.

Each task module declares its task once (its head, its training Task, its Pipeline with the
pipeline's parse / postprocess, its input fields, what the server offers it as); this table binds
them under a name. Everything that needs to know a task reads it here:

    inference.pipeline()     the task a checkpoint's `architectures` names, its head and pipeline,
                             its default max_seq_length
    cli/predict.py           the input fields of the task (through the pipeline)
    serve/app.py             the pipeline's declared interface (warm-up input, /v1/embeddings, /rerank,
    serve/schemas.py         the request parameters it declares, made a strict schema)
    cli/convert.py           the head a converted checkpoint's weights were trained with

The layers below the tasks (export/onnx.py, compress/distill.py, checkpoint/) do not import this
module: they read what the head class itself declares (bertkit.heads: output names, per-token
outputs, distillation kind), which is what a TaskSpec's `onnx_outputs` returns too.

Adding a task is its module (a Task and a Pipeline subclass, a head if it needs a new one), its
tests, and one `register(TaskSpec(...))` line below; see docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from bertkit.errors import ConfigError
from bertkit.heads import (BertForMultipleChoice, BertForPreTraining, BertForQuestionAnswering,
                           BertForSequenceClassification, BertForTokenClassification, BertModel)
from bertkit.tasks.classifier import ClassifierTask, TextClassificationPipeline
from bertkit.tasks.feature_extraction import FeatureExtractionPipeline
from bertkit.tasks.multiple_choice import MultipleChoicePipeline, MultipleChoiceTask
from bertkit.tasks.ner import NerTask, TokenClassificationPipeline
from bertkit.tasks.pipeline import Pipeline
from bertkit.tasks.pretraining import FillMaskPipeline, PretrainingTask
from bertkit.tasks.squad import QuestionAnsweringPipeline, SquadTask


@dataclass(frozen=True)
class TaskSpec:
    """One task: its name (transformers' pipeline task), head, pipeline and training Task."""

    name: str
    head: type  # the model class; config.json's `architectures` records its name
    pipeline: type[Pipeline]
    training: type | None = None  # the Task subclass its runner trains with (None: no training here)
    aliases: tuple[str, ...] = ()  # transformers' other names for the task
    architectures: tuple[str, ...] = ()  # other `architectures` names read as this task (same weights)
    default_max_seq_length: int = 128  # the runner's default, for a checkpoint that does not record its own
    num_labels_from: str | None = None  # the parameter whose first dimension is num_labels (convert)

    @property
    def architecture(self) -> str:
        """The name a saved model records in config.json's `architectures`."""
        return self.head.__name__

    @property
    def onnx_outputs(self) -> tuple[str, ...]:
        return self.head.output_names


_TASKS: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    """Add a task; its name, aliases and architectures must be new."""
    taken = {name for s in _TASKS.values() for name in (s.name, *s.aliases)}
    clash = {spec.name, *spec.aliases} & taken
    heads = {name for s in _TASKS.values() for name in (s.architecture, *s.architectures)}
    clash |= {spec.architecture, *spec.architectures} & heads
    if clash:
        raise ValueError(f"task {spec.name!r}: {', '.join(sorted(clash))} already registered")
    if not issubclass(spec.pipeline, Pipeline) or spec.pipeline.task != spec.name:
        raise ValueError(f"task {spec.name!r}: its pipeline must be a Pipeline whose `task` is {spec.name!r}")
    _TASKS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a task (tests registering a toy task clean up with this)."""
    del _TASKS[name]


def tasks() -> tuple[TaskSpec, ...]:
    return tuple(_TASKS.values())


def task_names() -> tuple[str, ...]:
    return tuple(_TASKS)


def get(name: str) -> TaskSpec:
    """The task called `name` (or one of its aliases); a ConfigError lists the tasks otherwise."""
    for spec in _TASKS.values():
        if name == spec.name or name in spec.aliases:
            return spec
    raise ConfigError(f"unknown task {name!r}; use one of {', '.join(_TASKS)}")


def for_architecture(architecture: str) -> TaskSpec | None:
    """The task whose head a config.json's `architectures` entry names, if there is one."""
    return next((s for s in _TASKS.values() if architecture in (s.architecture, *s.architectures)), None)


def for_weights(names: Iterable[str], shapes: dict[str, tuple[int, ...]] | None = None) -> tuple[type, dict]:
    """The head a checkpoint was trained with, read off its parameter names (in registration order,
    so text classification's `classifier.*` wins over the heads that share the name), and the
    config overrides its shapes imply (num_labels). BertModel when no head's parameters are there."""
    names = set(names)
    for spec in _TASKS.values():
        prefixes = spec.head.head_prefixes
        if prefixes and any(name.startswith(prefixes) for name in names):
            overrides = {}
            if spec.num_labels_from and shapes and spec.num_labels_from in shapes:
                overrides["num_labels"] = shapes[spec.num_labels_from][0]
            return spec.head, overrides
    return BertModel, {}


register(TaskSpec("text-classification", BertForSequenceClassification, TextClassificationPipeline, ClassifierTask,
                  aliases=("sentiment-analysis",), num_labels_from="classifier.weight"))
register(TaskSpec("token-classification", BertForTokenClassification, TokenClassificationPipeline, NerTask,
                  aliases=("ner",), num_labels_from="classifier.weight"))
register(TaskSpec("question-answering", BertForQuestionAnswering, QuestionAnsweringPipeline, SquadTask,
                  aliases=("qa",), default_max_seq_length=SquadTask.max_seq_length))
register(TaskSpec("multiple-choice", BertForMultipleChoice, MultipleChoicePipeline, MultipleChoiceTask))
# transformers' MLM-only head (BertForMaskedLM) has the same cls.predictions.* weights.
register(TaskSpec("fill-mask", BertForPreTraining, FillMaskPipeline, PretrainingTask,
                  aliases=("pretraining",), architectures=("BertForMaskedLM",)))
register(TaskSpec("feature-extraction", BertModel, FeatureExtractionPipeline,
                  aliases=("embeddings", "sentence-embeddings")))
