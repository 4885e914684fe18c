"""BertConfig: the model hyper-parameters, read from Google's bert_config.json or HF's config.json."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertkit.errors import ConfigError
from bertkit.io_utils import atomic_write

# Keys a source checkpoint's config.json carries that would be wrong in a model bertkit saves.
STALE_KEYS = ("_name_or_path", "transformers_version")
SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish", "tanh")


@dataclass
class BertConfig:
    """Google's BertConfig fields, plus what HF configs and the task heads add.

    Keys the dataclass does not know (for example HF's `architectures` or `use_cache`) are kept in
    `extra`, so that a config read and written again loses nothing.
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
        if self.id2label is not None:
            self.id2label = {int(k): v for k, v in self.id2label.items()}
        if self.label2id is not None:
            self.label2id = {k: int(v) for k, v in self.label2id.items()}

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

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
        known = {k: v for k, v in merged.items() if k in cls.field_names()}
        extra = {k: v for k, v in merged.items() if k not in cls.field_names() and k != "extra"}
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
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a JSON object of config keys, got {type(values).__name__}")
        if values.get("model_type", "bert") not in ("bert",):
            raise ConfigError(
                f"{path}: model_type is {values['model_type']!r}; bertkit loads BERT checkpoints (model_type 'bert')"
            )
        return cls.from_dict(values, source=str(path), **overrides)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        if values["id2label"] is not None:
            values["id2label"] = {str(k): v for k, v in values["id2label"].items()}
        else:
            del values["id2label"], values["label2id"]
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
        return dataclasses.replace(self, extra=dict(self.extra), **changes)
