"""feature-extraction: sentence vectors from the encoder (BertModel), pooled over the tokens.

The one sentence-embedding path: the pipeline (`pipeline(dir)`, `bertkit predict`, `bertkit serve`'s
/v1/embeddings) and bertkit.extract_features' FeatureExtractor (`bertkit extract_features`,
`bertkit similarity`) encode texts with the text classification task's encode_text_pair, batch them
by length and pool them with `pool`, so the same model gives the same vector through every command.
There is no training task: a sentence encoder is trained elsewhere (sentence-transformers) and
loaded as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from bertkit.errors import ConfigError
from bertkit.tasks.pipeline import Feature, Pipeline, check_texts, parameter

POOLINGS = ("cls", "mean", "max")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, H) -> (B, H) over the real tokens ([CLS] and [SEP] included, as sentence-transformers does)."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    if pooling == "mean":
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    if pooling == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    raise ValueError(f"pooling {pooling!r} is not one of {POOLINGS}")


@dataclass
class FeatureExtractionParameters:
    """How the token vectors become one sentence vector. No defaults here: the pipeline's come from
    the checkpoint's files (a request that sends nothing gets those)."""

    pooling: Literal[POOLINGS] = parameter(None, "default: the checkpoint's (1_Pooling/config.json)")
    normalize: bool = parameter(None, "L2-normalise (default: the checkpoint's modules.json)")
    text_pair: str | None = parameter(None, "a second text, packed after the input (one input only)")


def check_text_pair(texts, text_pair) -> None:
    """A second text goes with one text: packed after each of a list, it would silently mean
    another thing than the list's vectors."""
    if text_pair is not None and isinstance(texts, list):
        raise ConfigError("text_pair: a second text goes with one input (a text), not with a list of inputs; "
                          "send one call per pair")


class FeatureExtractionPipeline(Pipeline):
    """p("text") -> the sentence vector, pooled (and normalised) as the checkpoint says.

    sentence-transformers' `1_Pooling/config.json` chooses the pooling (default mean over the
    tokens) and a `Normalize` module in `modules.json` the L2 normalisation.
    """

    task = "feature-extraction"
    input_fields = ("text", "text_pair")
    embeddings = True
    parameters = FeatureExtractionParameters

    def check_parameters(self, parameters: dict, inputs) -> None:
        check_text_pair(inputs, parameters.get("text_pair"))

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

    def call_inputs(self, records: list[dict]) -> list:
        if any(record.get("text_pair") for record in records):
            raise ConfigError("embeddings take one text per input")
        return [record.get("text") for record in records]

    def parse(self, texts=None, text_pair=None, **kwargs) -> tuple[bool, list]:
        if texts is None and "text" in kwargs:
            texts = kwargs.pop("text")
        if kwargs:
            raise ConfigError(f"feature-extraction takes texts, not {', '.join(sorted(kwargs))}")
        check_text_pair(texts, text_pair)
        single, items = check_texts(texts)
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
