"""Feature extraction: Google's per-token layer outputs (extract_features.py) and sentence vectors.

Google's format is one JSON line per input line:
    {"linex_index": 0, "features": [{"token": "[CLS]", "layers": [{"index": -1, "values": [...]}, ...]}, ...]}
Sentence vectors pool the top layer over the tokens ([CLS], mean or max) into one row per text,
which is what sentence-transformers' all-MiniLM-L6-v2 does (mean, then L2 normalisation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from bertkit.errors import ConfigError, DataError
from bertkit.io_utils import atomic_save_with, atomic_write, read_text_lines
from bertkit.modeling import BertModel
from bertkit.tokenization import FullTokenizer

POOLINGS = ("cls", "mean", "max")
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
        # One call per example: a file may mix single texts and pairs.
        encoded = [self.tokenizer.encode(e.text_a, e.text_b, max_seq_length=self.max_seq_length) for e in examples]
        ids = [row["input_ids"] for row in encoded]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in tqdm(range(0, len(order), self.batch_size), disable=not self.progress,
                          desc="encoding", unit="batch"):
            rows = order[start:start + self.batch_size]
            width = max(len(ids[i]) for i in rows)
            batch = {key: torch.tensor([encoded[i][key] + [0] * (width - len(ids[i])) for i in rows],
                                       device=self.device)
                     for key in ("input_ids", "token_type_ids", "attention_mask")}
            yield rows, batch

    @torch.inference_mode()
    def sentence_vectors(self, examples: Sequence[InputExample] | Sequence[str], pooling: str = "mean",
                         normalize: bool = False) -> np.ndarray:
        """One (H,) float32 row per example, in input order."""
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r} is not one of {POOLINGS}")
        examples = [e if isinstance(e, InputExample) else InputExample(i, e) for i, e in enumerate(examples)]
        out = np.zeros((len(examples), self.model.config.hidden_size), dtype=np.float32)
        for rows, batch in self._batches(examples):
            hidden = self.model(**batch).sequence_output
            vectors = pool(hidden, batch["attention_mask"], pooling)
            if normalize:
                vectors = torch.nn.functional.normalize(vectors, dim=-1)
            out[rows] = vectors.float().cpu().numpy()
        return out

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
