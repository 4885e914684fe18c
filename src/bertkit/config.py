"""BertConfig: the model hyper-parameters, read from Google's bert_config.json or HF's config.json."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertkit.errors import ConfigError
from bertkit.io_utils import atomic_write

# Keys a source checkpoint's config.json carries that would be wrong in a model bertkit saves.
STALE_KEYS = ("_name_or_path", "transformers_version")
SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish", "tanh")
# The per-layer structure fields, written to config.json only when set, so that the config of a model
# that was never pruned, cut or trained with LayerDrop stays as Google and HF write it.
LAYER_FIELDS = ("layer_num_heads", "layer_intermediate_sizes", "pruned_heads", "layerdrop", "kept_layers")
# transformers' problem_type values (PretrainedConfig.problem_type): what a sequence-classification
# head's logits mean, and so which loss trains it and which postprocessing reads it.
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")
QUANTIZATION_METHOD = "dynamic-int8"


@dataclass
class TaskMetadata:
    """What a fine-tuned model records for prediction, so that `pipeline(dir)` needs nothing else.

    Written at the top level of config.json, with transformers' keys where transformers has them
    (`finetuning_task`, `problem_type`); the others are bertkit's. None: not recorded.
    """

    finetuning_task: str | None = None  # the runner's task name (mrpc, ner, squad, ...)
    problem_type: str | None = None  # one of PROBLEM_TYPES (sequence classification)
    max_seq_length: int | None = None  # the input length the model was trained with
    do_lower_case: bool | None = None  # the tokenizer's casing at training time
    label_scheme: str | None = None  # token classification's tag scheme (IOB2 or BIOES)
    source_label_scheme: str | None = None  # the training file's scheme when it was another (IOB1)
    word_unit: str | None = None  # token classification: "char" for a model of one character per word
    doc_stride: int | None = None  # windows over long inputs (token classification, question answering)
    max_query_length: int | None = None  # question answering: questions are cut to this many pieces

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "TaskMetadata":
        metadata = cls(**{k: values[k] for k in cls.keys() if k in values})
        metadata.validate(source)
        return metadata

    def validate(self, source: str = "config") -> None:
        for key in ("max_seq_length", "doc_stride", "max_query_length"):
            value = getattr(self, key)
            if value is not None and (not _is_int(value) or value < 1):
                raise ConfigError(f"{source}: key '{key}' must be a positive integer, got {value!r}")
        for key in ("finetuning_task", "label_scheme", "source_label_scheme", "word_unit"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{source}: key '{key}' must be a string, got {value!r}")
        if self.do_lower_case is not None and not isinstance(self.do_lower_case, bool):
            raise ConfigError(f"{source}: key 'do_lower_case' must be true or false, got {self.do_lower_case!r}")
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise ConfigError(f"{source}: key 'problem_type' is {self.problem_type!r}; transformers' values are "
                              f"{', '.join(PROBLEM_TYPES)}")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class QuantizationConfig:
    """config.json's `quantization_config` of an int8 model (bertkit.quantize): enough to rebuild the
    int8 structure before the int8 tensors load into it by name."""

    method: str = QUANTIZATION_METHOD
    per_channel: bool = True  # one weight scale per output channel (else one per matrix)
    keep_fp32: list[str] = field(default_factory=list)  # projections of every layer left in fp32
    weight_bits: int = 7  # 7 (any x86 CPU) or 8 (CPUs with avx512_vnni); see bertkit.int8

    @classmethod
    def from_dict(cls, values: Any, source: str = "config") -> "QuantizationConfig":
        if not isinstance(values, dict) or values.get("method") != QUANTIZATION_METHOD:
            raise ConfigError(f"{source}: quantization_config {values!r}: bertkit reads method "
                              f"'{QUANTIZATION_METHOD}' only")
        keep = values.get("keep_fp32", [])
        if not isinstance(keep, (list, tuple)) or not all(isinstance(k, str) for k in keep):
            raise ConfigError(f"{source}: quantization_config's keep_fp32 must be a list of projection names, "
                              f"got {keep!r}")
        per_channel = values.get("per_channel", True)
        if not isinstance(per_channel, bool):
            raise ConfigError(f"{source}: quantization_config's per_channel must be true or false, got {per_channel!r}")
        weight_bits = values.get("weight_bits", 7)
        if weight_bits not in (7, 8) or isinstance(weight_bits, bool):
            raise ConfigError(f"{source}: quantization_config's weight_bits must be 7 or 8, got {weight_bits!r}")
        return cls(QUANTIZATION_METHOD, per_channel, list(keep), weight_bits)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "per_channel": self.per_channel, "keep_fp32": list(self.keep_fp32),
                "weight_bits": self.weight_bits}


@dataclass
class BertConfig:
    """Google's BertConfig fields, plus what HF configs and the task heads add.

    Keys the dataclass does not know (for example HF's `architectures` or `use_cache`) are kept in
    `extra`, so that a config read and written again loses nothing. The task metadata
    (finetuning_task, max_seq_length, ...) and quantization_config are typed fields, never `extra`.
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    num_labels: int = 2
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None
    # Per-layer structure, set by bertkit.compress and read by the encoder when it builds its layers.
    layer_num_heads: list[int] | None = None  # attention heads of each layer after head pruning
    layer_intermediate_sizes: list[int] | None = None  # FFN size of each layer after neuron pruning
    pruned_heads: dict[int, list[int]] = field(default_factory=dict)  # HF's key: {layer: original heads removed}
    layerdrop: float = 0.0  # P(skip a layer) in training (Fan et al., 2019)
    kept_layers: list[int] | None = None  # which layers of the model this one was cut from these are
    # What prediction needs (written as top-level keys) and the int8 record; see TaskMetadata.
    task_metadata: TaskMetadata = field(default_factory=TaskMetadata)
    quantization_config: QuantizationConfig | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self, source: str = "config") -> None:
        """Check the values, naming `source` (the file they came from) in any error."""
        for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "num_hidden_layers" else 1):
                raise ConfigError(f"{source}: key '{key}' must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ConfigError(
                f"{source}: hidden_size ({self.hidden_size}) must be a multiple of "
                f"num_attention_heads ({self.num_attention_heads}); fix one of the two keys"
            )
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise ConfigError(
                f"{source}: hidden_act {self.hidden_act!r} is not supported; "
                f"use one of {', '.join(SUPPORTED_ACTIVATIONS)}"
            )
        position_type = self.extra.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise ConfigError(
                f"{source}: position_embedding_type {position_type!r} is not supported; "
                "bertkit implements BERT's absolute position embeddings only"
            )
        if not _is_int(self.num_labels) or self.num_labels < 1:
            raise ConfigError(f"{source}: key 'num_labels' must be a positive integer, got {self.num_labels!r}")
        self._validate_floats(source)
        self.task_metadata.validate(source)
        self._validate_labels(source)
        self._validate_layers(source)

    def _validate_floats(self, source: str) -> None:
        """Every probability in [0, 1) and every scale finite and positive: a dropout of 1.0 divides by
        zero in training, 1.5 trains a dead network, and a NaN layer_norm_eps gives NaN outputs."""
        dropouts = {key: getattr(self, key) for key in ("hidden_dropout_prob", "attention_probs_dropout_prob")}
        # HF's optional dropouts (classifier_dropout, ...) are null when unset.
        dropouts.update({key: value for key, value in self.extra.items() if "dropout" in key and value is not None})
        for key, value in dropouts.items():
            if not _is_number(value) or not 0.0 <= value < 1.0:
                raise ConfigError(f"{source}: key '{key}' must be a dropout probability in [0, 1) (BERT's is 0.1), "
                                  f"got {value!r}; fix the key")
        for key in ("initializer_range", "layer_norm_eps"):
            value = getattr(self, key)
            if not _is_number(value) or not 0.0 < value < math.inf:
                raise ConfigError(f"{source}: key '{key}' must be a finite number above 0 (BERT's is "
                                  f"{getattr(BertConfig, key)}), got {value!r}; fix the key")

    def _validate_labels(self, source: str) -> None:
        """id2label's keys are class ids (strings in JSON): they become ints here, once."""
        if self.id2label is not None:
            if not isinstance(self.id2label, dict) or not all(isinstance(v, str) for v in self.id2label.values()):
                raise ConfigError(f"{source}: key 'id2label' must be an object {{class id: label name}}, "
                                  f"got {self.id2label!r}")
            ids = [_as_int(k) for k in self.id2label]
            if None in ids or sorted(ids) != list(range(len(ids))):
                raise ConfigError(f"{source}: key 'id2label' must have the class ids 0..{len(ids) - 1} as its keys, "
                                  f"got {list(self.id2label)}; fix the keys")
            self.id2label = dict(zip(ids, self.id2label.values()))
        if self.label2id is not None:
            ids = [_as_int(v) for v in self.label2id.values()] if isinstance(self.label2id, dict) else [None]
            if None in ids:
                raise ConfigError(f"{source}: key 'label2id' must be an object {{label name: class id}} with integer "
                                  f"ids, got {self.label2id!r}")
            self.label2id = dict(zip(self.label2id, ids))

    def _validate_layers(self, source: str) -> None:
        """Check the per-layer fields against num_hidden_layers and normalise them (pruned_heads' keys
        are strings in JSON: they become ints here, once)."""
        n, heads = self.num_hidden_layers, self.num_attention_heads
        for key, low, high in (("layer_num_heads", 1, heads), ("layer_intermediate_sizes", 1, None),
                               ("kept_layers", 0, None)):
            values = getattr(self, key)
            if values is None:
                continue
            if not isinstance(values, (list, tuple)) or len(values) != n:
                raise ConfigError(f"{source}: key '{key}' must be a list with one entry per layer "
                                  f"(num_hidden_layers={n}), got {values!r}")
            bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
            for value in values:
                if not _is_int(value) or value < low or (high is not None and value > high):
                    raise ConfigError(f"{source}: key '{key}' must hold integers {bound}, got {values!r}")
            setattr(self, key, [int(v) for v in values])
        if self.kept_layers is not None and any(b <= a for a, b in zip(self.kept_layers, self.kept_layers[1:])):
            raise ConfigError(f"{source}: key 'kept_layers' must be increasing, got {self.kept_layers!r}")

        if self.pruned_heads is None:  # JSON null: nothing pruned
            self.pruned_heads = {}
        if not isinstance(self.pruned_heads, dict):
            raise ConfigError(f"{source}: key 'pruned_heads' must be an object {{layer: [head, ...]}}, "
                              f"got {self.pruned_heads!r}")
        pruned: dict[int, list[int]] = {}
        for layer, removed in self.pruned_heads.items():
            index = _as_int(layer)
            if index is None or not 0 <= index < n:
                raise ConfigError(f"{source}: key 'pruned_heads' names layer {layer!r}; layers are 0..{n - 1}")
            if not isinstance(removed, (list, tuple)) or not all(_is_int(h) and 0 <= h < heads for h in removed):
                raise ConfigError(f"{source}: key 'pruned_heads' layer {index}: expected a list of head numbers "
                                  f"0..{heads - 1}, got {removed!r}")
            if len(set(removed)) == heads:
                raise ConfigError(f"{source}: key 'pruned_heads' removes every head of layer {index}")
            if removed:
                pruned[index] = sorted({int(h) for h in removed})
        self.pruned_heads = dict(sorted(pruned.items()))
        if self.layer_num_heads is not None:
            expected = [heads - len(self.pruned_heads.get(i, ())) for i in range(n)]
            if self.pruned_heads and self.layer_num_heads != expected:
                raise ConfigError(f"{source}: keys 'layer_num_heads' {self.layer_num_heads} and 'pruned_heads' "
                                  f"(which leaves {expected}) disagree; remove one of them")

        if not (_is_number(self.layerdrop) and 0.0 <= self.layerdrop < 1.0):
            raise ConfigError(f"{source}: key 'layerdrop' must be a number in [0, 1), got {self.layerdrop!r}")
        self.layerdrop = float(self.layerdrop)

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def layer_sizes(self) -> tuple[list[int], list[int]]:
        """(attention heads, FFN size) of every layer: the uniform sizes unless pruning recorded its own.

        HF's `pruned_heads` alone is enough for heads pruned as transformers v4 did; bertkit's
        pruning also writes `layer_num_heads` and `layer_intermediate_sizes`.
        """
        n = self.num_hidden_layers
        heads = self.layer_num_heads or [self.num_attention_heads - len(self.pruned_heads.get(i, ())) for i in range(n)]
        sizes = self.layer_intermediate_sizes or [self.intermediate_size] * n
        return list(heads), list(sizes)

    # ------------------------------------------------------------------ construction
    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)} - {"extra"}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config", **overrides: Any) -> "BertConfig":
        """Build a config; `overrides` must name real fields, so that a typo is not silently kept."""
        unknown = sorted(set(overrides) - cls.field_names())
        if unknown:
            raise ConfigError(
                f"unknown config override(s) {', '.join(unknown)}; valid keys are: "
                f"{', '.join(sorted(cls.field_names()))}"
            )
        merged = {**values, **overrides}
        typed = set(TaskMetadata.keys()) | {"task_metadata", "quantization_config"}
        known = {k: v for k, v in merged.items() if k in cls.field_names() and k not in typed}
        extra = {k: v for k, v in merged.items()
                 if k not in cls.field_names() and k not in typed and k != "extra"}
        metadata = merged.get("task_metadata")
        known["task_metadata"] = (metadata if isinstance(metadata, TaskMetadata)
                                  else TaskMetadata.from_dict(merged, source))
        quantization = merged.get("quantization_config")
        if quantization is not None and not isinstance(quantization, QuantizationConfig):
            quantization = QuantizationConfig.from_dict(quantization, source)
        known["quantization_config"] = quantization
        if "id2label" in known and known["id2label"] and "num_labels" not in overrides and "num_labels" not in values:
            known["num_labels"] = len(known["id2label"])
        # Build without __post_init__'s check first, so that a bad value is reported with its file.
        config = cls.__new__(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            setattr(config, f.name, known.get(f.name, default))
        config.extra = extra
        config.validate(source)
        return config

    @classmethod
    def from_json_file(cls, path: str | Path, **overrides: Any) -> "BertConfig":
        """Read Google's `bert_config.json` or HF's `config.json`."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (expected Google's bert_config.json or HF's config.json)")
        data = path.read_bytes()
        try:
            values = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as err:
            line = data[: err.start].count(b"\n") + 1
            raise ConfigError(f"{path}:{line}: not valid UTF-8 (byte {data[err.start]:#04x} at offset {err.start}); "
                              "re-save the config as UTF-8 JSON") from None
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
        except RecursionError:
            raise ConfigError(f"{path}: its JSON is nested too deeply to be a config; is it a config.json?") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a JSON object of config keys, got {type(values).__name__}")
        if values.get("model_type", "bert") not in ("bert",):
            raise ConfigError(
                f"{path}: model_type is {values['model_type']!r}; bertkit loads BERT checkpoints (model_type 'bert')"
            )
        return cls.from_dict(values, source=str(path), **overrides)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name not in ("extra", "task_metadata", "quantization_config")}
        values.update(self.task_metadata.to_dict())
        if self.quantization_config is not None:
            values["quantization_config"] = self.quantization_config.to_dict()
        if values["id2label"] is not None:
            values["id2label"] = {str(k): v for k, v in values["id2label"].items()}
        for key in ("id2label", "label2id"):
            if values[key] is None:
                del values[key]
        for key in LAYER_FIELDS:
            if not values[key]:
                del values[key]
        if "pruned_heads" in values:
            # JSON object keys are strings; HF writes and reads pruned_heads this way too.
            values["pruned_heads"] = {str(k): list(v) for k, v in values["pruned_heads"].items()}
        return {**self.extra, **values}

    def to_hf_dict(self, architecture: str | None = None) -> dict[str, Any]:
        """The dict written as config.json: transformers needs model_type and reads the rest by name."""
        values = {k: v for k, v in self.to_dict().items() if k not in STALE_KEYS}
        values["model_type"] = "bert"
        if architecture:
            values["architectures"] = [architecture]
        return dict(sorted(values.items()))

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | Path, architecture: str | None = None) -> None:
        values = self.to_hf_dict(architecture) if architecture else self.to_dict()
        with atomic_write(path) as handle:
            handle.write(json.dumps(values, indent=2, sort_keys=True) + "\n")

    def copy(self, **changes: Any) -> "BertConfig":
        return dataclasses.replace(copy.deepcopy(self), **changes)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_int(key: Any) -> int | None:
    """A class or layer number, as an int or as JSON writes it in an object key ("3"); None otherwise."""
    if _is_int(key):
        return key
    return int(key) if isinstance(key, str) and key.isascii() and key.isdigit() else None
