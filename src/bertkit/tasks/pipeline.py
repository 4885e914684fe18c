"""The interface of every task's pipeline: raw text -> features -> batched model runs -> answers.

One path from raw text to answers, used by `bertkit predict`, the Python API and `bertkit serve`:

    options, keywords = p.split_options(kwargs)    # the call's options (top_k, ...) and its inputs
    single, items = p.parse(*args, **keywords)      # the call's inputs as single items, validated
    features = p.preprocess(item, **options)        # the task's own feature code (the one training uses)
    outputs  = p.forward(features)                  # ONE model batch: pad, run, unpad (numpy per feature)
    answer   = p.postprocess(item, features, outputs, **options)

`__call__` sorts all features of a call by length, so batches carry little padding, and answers
come back in input order. A server's batcher mixes features of many requests in one `forward`.
Each task module subclasses Pipeline; `bertkit.inference.pipeline()` builds the one the task
registry names for a checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from scipy.special import softmax
from tqdm.auto import tqdm

from bertkit.config import TaskMetadata
from bertkit.data.batching import length_sorted_batches, pad_rows
from bertkit.data.glue import encode_text_pair
from bertkit.devices import resolve_device
from bertkit.errors import ConfigError
from bertkit.io_utils import atomic_directory
from bertkit.tokenization import FullTokenizer, pack, unknown_words_message

logger = logging.getLogger("bertkit")


def parameter(default: Any = None, description: str = "", **bounds) -> Any:
    """A field of a pipeline's `parameters` dataclass: one call option or keyword input a request
    may send, what it means, and its bounds as JSON Schema names them (ge, le, min_length), which
    the server's schema enforces (a value out of them is a 422 naming the field)."""
    return dataclasses.field(default=default, metadata={"description": description, "bounds": bounds})


@dataclass
class Feature:
    """One model input row (multiple choice: one row per choice) and what postprocessing needs."""

    input_ids: list  # list[int], or list[list[int]] per choice
    token_type_ids: list
    meta: Any = None  # the task's bookkeeping (a window's word map, mask positions, ...)
    truncated: bool = False  # the input was cut to max_seq_length

    @property
    def num_tokens(self) -> int:
        if self.input_ids and isinstance(self.input_ids[0], list):
            return sum(map(len, self.input_ids))
        return len(self.input_ids)


class Pipeline:
    """Raw text -> features -> batched model runs -> answers: the one interface every task's pipeline
    declares, and all that `bertkit predict` and `bertkit serve` use of it.

    A task's subclass declares `task` (its registry name), `input_fields` (one input's fields in
    order, as `bertkit predict` reads them), `warmup_input` (one input a server runs at start-up),
    `embeddings` / `cross_encoder` (whether the server offers it as /v1/embeddings and /embed, or
    as /rerank), `parameters` (what a request may send besides its inputs: a dataclass of
    `parameter()` fields, the server's schema), and implements parse, preprocess, _outputs and
    postprocess (and default_options when the call takes options).
    """

    task: str = ""
    input_fields: tuple[str, ...] = ("text",)
    warmup_input: Any = "Warm up the model."
    embeddings = False  # served as OpenAI's /v1/embeddings and TEI's /embed
    cross_encoder = False  # served as TEI's /rerank: one score per (query, text) pair
    parameters: type | None = None  # a dataclass of parameter() fields; None: the server checks nothing
    keep_special_tokens = False  # read "[MASK]" in raw text as the token (fill-mask only)

    def __init__(self, model, tokenizer: FullTokenizer, *, max_seq_length: int = 128, device: str | None = None,
                 batch_size: int = 32, progress: bool | None = None, directory: Path | None = None,
                 metadata: TaskMetadata | None = None, **options):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        if max_seq_length < 3:
            raise ConfigError(f"max_seq_length must leave room for [CLS], [SEP] and a token, got {max_seq_length}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.config = model.config
        self.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.progress = progress
        self.directory = directory
        # What the checkpoint recorded for prediction (config.json); the tasks' options default to it.
        self.metadata = metadata if metadata is not None else self.config.task_metadata
        self.options = self.default_options()
        self.options.update(self._check_options(options))
        self._vocabulary_warned = False

    @property
    def labels(self) -> list[str] | None:
        id2label = self.config.id2label
        return [id2label[i] for i in range(len(id2label))] if id2label else None

    def default_options(self) -> dict:
        """The options a call may give (and their defaults), e.g. top_k."""
        return {}

    def _check_options(self, options: dict) -> dict:
        # self.options holds every option's default (set once in __init__: a feature-extraction
        # pipeline reads them from files), so its keys are the options there are.
        unknown = set(options) - set(self.options)
        if unknown:
            allowed = ", ".join(sorted(self.options)) or "none"
            raise ConfigError(f"{self.task} does not take {', '.join(sorted(unknown))} (its options: {allowed})")
        return self.check_option_values(options)

    def check_parameters(self, parameters: dict, inputs) -> None:
        """What the `parameters` types cannot say: whether the parameters go with these inputs (a
        ConfigError if not). The server calls it before any work; parse checks the same."""

    def check_option_values(self, options: dict) -> dict:
        """Refuse option values that mean nothing. top_k has one meaning everywhere (Python, the CLI,
        HTTP), transformers': a number of answers of at least 1, or None for all of them."""
        if "top_k" in options:
            top_k = options["top_k"]
            if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
                raise ConfigError(f"top_k={top_k!r}: give a whole number of answers (at least 1), or None for all")
        return options

    def save_pretrained(self, directory) -> Path:
        """Write what `pipeline(directory)` needs to answer as this pipeline does: the model (torch
        weights, or the ONNX graph of an ONNX pipeline), its config with this pipeline's
        max_seq_length and lower-casing, the vocabulary, and the tokenizer and pooling files of
        the directory it was loaded from. The directory is written whole or not at all."""
        from bertkit.export.files import copy_companions

        config = self.config.copy()
        config.task_metadata = dataclasses.replace(self.metadata, max_seq_length=self.max_seq_length,
                                                   do_lower_case=bool(self.tokenizer.do_lower_case))
        onnx_path = getattr(self.model, "path", None)  # an OnnxModel: its graph is the model
        with atomic_directory(directory) as tmp:
            if self.directory is not None:
                copy_companions(self.directory, tmp)
            if onnx_path is not None:
                shutil.copyfile(onnx_path, tmp / "model.onnx")
                architecture = self.model.model_class
            else:
                self.model.save_pretrained(tmp)
                architecture = type(self.model).__name__
            self.tokenizer.save_pretrained(tmp)
            config.to_json_file(tmp / "config.json", architecture=architecture)
        return Path(directory)

    def info(self) -> dict:
        """What the pipeline is, for `bertkit serve`'s /info and the CLI's log."""
        return {"task": self.task, "model_class": type(self.model).__name__, "labels": self.labels,
                "max_seq_length": self.max_seq_length, "directory": str(self.directory) if self.directory else None,
                "finetuning_task": self.metadata.finetuning_task}

    # -- the user's call ------------------------------------------------------------------

    def split_options(self, kwargs: dict) -> tuple[dict, dict]:
        """A call's keywords -> (the options, checked and over their defaults: they go to pre- and
        postprocessing; the other keywords, e.g. text_pair, context, choices: they go to parse).
        What __call__ and a server's request both do."""
        given = {k: v for k, v in kwargs.items() if k in self.options}
        return ({**self.options, **self.check_option_values(given)},
                {k: v for k, v in kwargs.items() if k not in self.options})

    def call_inputs(self, records: list[dict]) -> list:
        """`bertkit predict`'s records ({field: value}, fields from input_fields) -> what a call takes."""
        return records

    def __call__(self, *args, **kwargs):
        options, kwargs = self.split_options(kwargs)
        single, items = self.parse(*args, **kwargs)
        return self.shape_output(single, self.run(items, options))

    def run(self, items: list, options: dict) -> list:
        """The answers to parsed items, in their order: every item's features batched by length."""
        features = [self.preprocess(item, **options) for item in items]
        flat = [(i, j) for i, feats in enumerate(features) for j in range(len(feats))]
        outputs: list[list] = [[None] * len(feats) for feats in features]
        batches = length_sorted_batches([features[i][j].num_tokens for i, j in flat], self.batch_size)
        show = self.progress if self.progress is not None else len(batches) > 3
        for batch in tqdm(batches, disable=not show, desc=self.task, unit="batch"):
            results = self.forward([features[flat[k][0]][flat[k][1]] for k in batch])
            for k, result in zip(batch, results):
                i, j = flat[k]
                outputs[i][j] = result
        truncated = sum(any(f.truncated for f in feats) for feats in features)
        if truncated:
            logger.warning("%d of %d inputs were longer than max_seq_length=%d and were truncated%s",
                           truncated, len(items), self.max_seq_length,
                           "; pass stride=N to read them whole in overlapping windows" if "stride" in self.options
                           else "")
        self.check_vocabulary(items)
        return [self.postprocess(item, feats, outs, **options) for item, feats, outs in zip(items, features, outputs)]

    def check_vocabulary(self, items: list) -> None:
        """Warn once (per pipeline) when the vocabulary does not cover the inputs' words (see
        tokenization.unknown_words_message); a server calls it with each request's items."""
        if self._vocabulary_warned:
            return
        unknown = words = 0
        for text in _strings(items):
            u, w = self.tokenizer.count_unknown(text)
            unknown, words = unknown + u, words + w
        message = unknown_words_message(unknown, words, self.tokenizer.vocab_file, "this input")
        if message:
            self._vocabulary_warned = True
            logger.warning(message)

    def unknown_tokens(self, feature: Feature) -> int:
        """How many of the feature's tokens are [UNK] (`bertkit serve`'s /tokenize shows it)."""
        unk = self.tokenizer.vocab["[UNK]"]
        rows = feature.input_ids if feature.input_ids and isinstance(feature.input_ids[0], list) else [feature.input_ids]
        return sum(row.count(unk) for row in rows)

    def inputs(self, *args, **kwargs) -> list:
        """The inputs of one call as a list of items (what preprocess takes), validated."""
        return self.parse(*args, **kwargs)[1]

    def parse(self, *args, **kwargs) -> tuple[bool, list]:
        """(whether the call gave a single input, the items)."""
        raise NotImplementedError

    def shape_output(self, single: bool, answers: list):
        return answers[0] if single else answers

    def preprocess(self, item, **options) -> list[Feature]:
        raise NotImplementedError

    def postprocess(self, item, features: list[Feature], outputs: list, **options):
        raise NotImplementedError

    def num_tokens(self, feature: Feature) -> int:
        return feature.num_tokens

    # -- running the model ----------------------------------------------------------------

    _pad = staticmethod(pad_rows)

    def _batch(self, features: Sequence[Feature]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = self._pad([f.input_ids for f in features])
        token_type_ids, _ = self._pad([f.token_type_ids for f in features])
        return {"input_ids": input_ids.to(self.device), "attention_mask": attention_mask.to(self.device),
                "token_type_ids": token_type_ids.to(self.device)}

    @torch.inference_mode()
    def forward(self, features: Sequence[Feature]) -> list:
        """Run one batch of features (of any items); one numpy result per feature, unpadded."""
        if not features:
            return []
        return self._outputs(self._batch(features), features)

    def _outputs(self, batch: dict, features: Sequence[Feature]) -> list:
        raise NotImplementedError

    # -- helpers --------------------------------------------------------------------------

    def _encode(self, text_a: str, text_b: str | None = None) -> Feature:
        """[CLS] a [SEP] (b [SEP]) cut to max_seq_length: the text classification task's own
        encode_text_pair, which its training features (convert_single_example) are made by."""
        ids, types, removed = encode_text_pair(self.tokenizer, text_a, text_b, self.max_seq_length)
        return Feature(ids, types, truncated=removed > 0)

    def _encode_windows(self, text_a: str, text_b: str | None, stride: int | None) -> list[Feature]:
        """One feature (truncated, as _encode), or with `stride` the whole text in windows of
        max_seq_length, consecutive windows sharing `stride` tokens (transformers' tokenizer `stride`)."""
        if stride is None:
            return [self._encode(text_a, text_b)]
        width = self.max_seq_length - 2
        if not isinstance(stride, int) or isinstance(stride, bool) or not 0 <= stride < width:
            raise ConfigError(f"stride={stride!r}: give the number of tokens consecutive windows share, from 0 to "
                              f"{width - 1} (max_seq_length - 3)")
        if text_b is not None:
            raise ConfigError("stride windows a single text; a pair of texts is truncated (leave stride out)")
        ids = self.tokenizer.text_to_ids(text_a)
        starts = range(0, max(len(ids) - stride, 1), width - stride)
        return [Feature(*pack(ids[start:start + width], None, self.tokenizer.cls_token_id,
                              self.tokenizer.sep_token_id)) for start in starts]


def softmax_rows(x) -> np.ndarray:
    return softmax(np.asarray(x, dtype=np.float64), axis=-1)  # float64, as run_classifier's test_results.tsv


def _strings(value):
    """Every string inside a call's items (texts, pairs, question/context records, choices)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def check_text(value, what: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string, got {type(value).__name__}")
    return value


def check_texts(texts, what: str = "input") -> tuple[bool, list[str]]:
    """A string or a list of strings -> (single, list)."""
    if isinstance(texts, str):
        return True, [texts]
    if not isinstance(texts, (list, tuple)) or not texts:
        raise ConfigError(f"{what}: give a string or a non-empty list of strings")
    return False, [check_text(t, f"{what} {i}") for i, t in enumerate(texts)]


class TextPipeline(Pipeline):
    """A task whose one input is a text: p("a text") or p(["a text", ...]) (also text=...)."""

    def call_inputs(self, records: list[dict]) -> list:
        return [record.get("text") for record in records]

    def parse(self, texts=None, **kwargs) -> tuple[bool, list]:
        if texts is None and "text" in kwargs:
            texts = kwargs.pop("text")
        if kwargs:
            raise ConfigError(f"{self.task} takes texts, not {', '.join(sorted(kwargs))}")
        return check_texts(texts)


def question_records(task: str, second: str, question, other, extra: dict) -> tuple[bool, list[dict]]:
    """p(question, other), p({"question", second}) or p([{...}, ...]) -> (single, records), checked."""
    if extra:
        raise ConfigError(f"{task} takes question and {second}, not {', '.join(sorted(extra))}")
    if isinstance(question, (dict, list)) and other is None:
        single = isinstance(question, dict)
        records = [question] if single else question
    else:
        single, records = True, [{"question": question, second: other}]
    if not records:
        raise ConfigError(f"give a question and {second}, or a list of {{'question', '{second}'}} records")
    for i, record in enumerate(records):
        if not isinstance(record, dict) or set(record) != {"question", second}:
            raise ConfigError(f"input {i}: expected {{'question': ..., '{second}': ...}}")
    return single, records
