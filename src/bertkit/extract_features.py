"""Feature extraction: Google's per-token layer outputs (extract_features.py) and sentence vectors.

Google's format is one JSON line per input line:
    {"linex_index": 0, "features": [{"token": "[CLS]", "layers": [{"index": -1, "values": [...]}, ...]}, ...]}
Sentence vectors pool the top layer over the tokens ([CLS], mean or max) into one row per text,
which is what sentence-transformers' all-MiniLM-L6-v2 does (mean, then L2 normalisation). They are
the feature-extraction pipeline's (bertkit.tasks.feature_extraction): the same encoding, batching
and pooling, so the same model gives the same vector through every command.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from bertkit.data.batching import length_sorted_batches, pad_rows
from bertkit.data.glue import encode_text_pair
from bertkit.errors import ConfigError, DataError
from bertkit.io_utils import atomic_save_with, atomic_write, read_text_lines
from bertkit.modeling import BertModel
from bertkit.tasks.feature_extraction import POOLINGS, FeatureExtractionPipeline, pool  # noqa: F401 (pool: moved, kept importable)
from bertkit.tokenization import FullTokenizer

GOOGLE_LAYERS = (-1, -2, -3, -4)  # Google's default: the top four layers


@dataclass
class InputExample:
    unique_id: int
    text_a: str
    text_b: str | None = None


def read_examples(input_file: str | Path) -> list[InputExample]:
    """One text per line; `text a ||| text b` is a pair, as in Google's extract_features.py."""
    path = Path(input_file)
    examples = []
    for _, line in read_text_lines(path, "a text file, one text per line ('a ||| b' for a pair)"):
        text_a, sep, text_b = line.rstrip("\n").partition(" ||| ")
        examples.append(InputExample(len(examples), text_a, text_b if sep else None))
    if not examples:
        raise DataError(f"{path} is empty: write one text per line")
    return examples


class FeatureExtractor:
    """Runs a BertModel over texts in length-sorted batches, so that padding stays minimal."""

    def __init__(self, model: BertModel, tokenizer: FullTokenizer, max_seq_length: int = 128,
                 batch_size: int = 64, progress: bool = False):
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.progress = progress
        self.device = next(model.parameters()).device

    def _batches(self, examples: Sequence[InputExample]) -> Iterator[tuple[list[int], dict]]:
        """Yield (positions in the input, padded batch), shortest texts first."""
        encoded = [encode_text_pair(self.tokenizer, e.text_a, e.text_b, self.max_seq_length)[:2] for e in examples]
        batches = length_sorted_batches([len(ids) for ids, _ in encoded], self.batch_size)
        for rows in tqdm(batches, disable=not self.progress, desc="encoding", unit="batch"):
            input_ids, attention_mask = pad_rows([encoded[i][0] for i in rows])
            token_type_ids, _ = pad_rows([encoded[i][1] for i in rows])
            yield rows, {"input_ids": input_ids.to(self.device), "token_type_ids": token_type_ids.to(self.device),
                         "attention_mask": attention_mask.to(self.device)}

    def sentence_vectors(self, examples: Sequence[InputExample] | Sequence[str], pooling: str = "mean",
                         normalize: bool = False) -> np.ndarray:
        """One (H,) float32 row per example, in input order: the feature-extraction pipeline's vectors."""
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r} is not one of {POOLINGS}")
        examples = [e if isinstance(e, InputExample) else InputExample(i, e) for i, e in enumerate(examples)]
        pipeline = FeatureExtractionPipeline(self.model, self.tokenizer, max_seq_length=self.max_seq_length,
                                             device=self.device, batch_size=self.batch_size, progress=self.progress)
        vectors = pipeline.run([(e.text_a, e.text_b) for e in examples], {"pooling": pooling, "normalize": normalize})
        return np.asarray(vectors, dtype=np.float32).reshape(len(examples), self.model.config.hidden_size)

    def check_layers(self, layers: Sequence[int] | None = None) -> list[int]:
        """`layers` checked against the model; None: Google's top four, or every layer of a smaller model."""
        num_layers = self.model.config.num_hidden_layers
        if layers is None:
            return list(GOOGLE_LAYERS[:num_layers])
        for index in layers:
            if not -num_layers <= index < num_layers:
                raise ConfigError(f"--layers: layer {index} does not exist, the model has {num_layers} layers; "
                                  f"use -1 (the top one) down to {-num_layers}, or 0 to {num_layers - 1}")
        return list(layers)

    def token_features(self, examples: Sequence[InputExample], layers: Sequence[int] | None = None,
                       decimals: int = 6) -> Iterator[dict]:
        """Google's JSON records, one per example, in input order; `layers` as `check_layers` takes
        them, checked here, before the first batch runs."""
        return self._token_features(examples, self.check_layers(layers), decimals)

    @torch.inference_mode()
    def _token_features(self, examples: Sequence[InputExample], layers: list[int], decimals: int) -> Iterator[dict]:
        pending: dict[int, dict] = {}
        next_out = 0
        for rows, batch in self._batches(examples):
            out = self.model(**batch, output_hidden_states=True)
            for b, row in enumerate(rows):
                length = int(batch["attention_mask"][b].sum())
                tokens = self.tokenizer.convert_ids_to_tokens(batch["input_ids"][b, :length].tolist())
                per_layer = {i: out.all_encoder_layers[i][b, :length].double().cpu().numpy().round(decimals)
                             for i in layers}
                pending[row] = {
                    "linex_index": examples[row].unique_id,
                    "features": [{"token": token,
                                  "layers": [{"index": i, "values": per_layer[i][t].tolist()} for i in layers]}
                                 for t, token in enumerate(tokens)],
                }
            while next_out in pending:  # restore input order across length-sorted batches
                yield pending.pop(next_out)
                next_out += 1


def write_jsonl(records, path: str | Path) -> int:
    count = 0
    with atomic_write(path) as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
            count += 1
    return count


def write_npy(array: np.ndarray, path: str | Path) -> None:
    def save(tmp: str) -> None:
        with open(tmp, "wb") as handle:  # np.save(name) would append ".npy" to the temp name
            np.save(handle, array)

    atomic_save_with(path, save)
