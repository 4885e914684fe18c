"""From per-example features to padded batches: a Dataset, a collate function and a batch sampler.

Google pads every example to max_seq_length when it writes its TFRecords. Padding each batch only
to its longest row does the same computation on fewer tokens, and grouping examples of similar
length into the same batch (LengthGroupedBatchSampler) removes most of the rest.

Every task's features are named as the model's keyword arguments from the moment they are
built: `input_ids` (T), or (choices x T) for multiple choice, `attention_mask`, `token_type_ids`
and whatever the head takes (`labels`, `start_positions`, `masked_lm_positions`, ...). Each key
becomes one tensor. A task's feature class (an `InputFeatures` subclass) may carry bookkeeping
beside them, the fields that map predictions back onto its examples; those are never batched.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from bertkit.errors import ConfigError, DataError

# Padding of label sequences must be ignored by the loss, not read as class 0.
DEFAULT_PAD_VALUES = {"labels": -100}


def _plain(value: Any) -> Any:
    """numpy arrays and scalars -> lists and Python numbers, so that batching sees one kind of data."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclasses.dataclass
class InputFeatures:
    """The model's inputs for one example (or one window of it), under the model's argument names.

    Google's features hold the same three lists as `input_ids`, `input_mask` and `segment_ids`;
    here they are `attention_mask` and `token_type_ids` from the start, so that a feature is the
    keyword arguments of the model as it is. Tasks subclass it to add their labels (named as the
    head's argument: `labels`, `start_positions`, ...) and the bookkeeping that maps predictions
    back onto their examples, listed in `bookkeeping` so that it is never batched.
    """

    input_ids: list[int]
    attention_mask: list[int]
    token_type_ids: list[int]

    bookkeeping: ClassVar[tuple[str, ...]] = ()

    def model_inputs(self) -> dict[str, Any]:
        """The fields the model takes; a label that is None (an unlabeled file) is left out."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in self.bookkeeping and getattr(self, f.name) is not None}


class FeatureDataset(Dataset):
    """Per-example features (`InputFeatures` or plain dicts of model inputs) as a Dataset.

    drop: model inputs to leave out of every row, e.g. the placeholder labels of a GLUE test file.
    """

    def __init__(self, features: Sequence[InputFeatures | Mapping[str, Any]], drop: Sequence[str] = ()):
        self.features = features
        self.drop = set(drop)
        self._lengths: list[int] | None = None

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        feature = self.features[index]
        if isinstance(feature, InputFeatures):
            feature = feature.model_inputs()
        return {k: _plain(v) for k, v in feature.items() if k not in self.drop}

    @property
    def lengths(self) -> list[int]:
        """Tokens per example (the longest choice for multiple choice), for length grouping."""
        if self._lengths is None:
            stored = getattr(self.features, "lengths", None)  # PackedFeatures knows them without reading rows
            self._lengths = ([int(n) for n in stored] if stored is not None
                             else [example_length(self[i]) for i in range(len(self))])
        return self._lengths


def example_length(example: Mapping[str, Any]) -> int:
    """Real tokens of one example: the ones of its attention mask, or the length of its input_ids."""
    key = "attention_mask" if "attention_mask" in example else "input_ids"
    value = example[key]
    if value and isinstance(value[0], list):  # (choices, T)
        return max(sum(row) if key == "attention_mask" else len(row) for row in value)
    return sum(value) if key == "attention_mask" else len(value)


def _shape(value: Any) -> tuple[int, ...]:
    """Shape of a nested list, taking the last dimension from its first leaf row."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return tuple(shape)


def _leaf_rows(value: list) -> list[list]:
    """The innermost lists of a nested list, in order."""
    if value and isinstance(value[0], list):
        return [row for item in value for row in _leaf_rows(item)]
    return [value]


class PaddingCollator:
    """Stacks examples into a dict of tensors, padding the last dimension of list-valued keys.

    Keys aligned with `input_ids` (same length in every row, e.g. attention_mask, token_type_ids,
    token labels) are padded to the longest input_ids of the batch, or to `max_length` with
    `pad_to_max_length` (Google's static shapes, needed e.g. for compiled graphs). Other lists
    (masked_lm_positions, ...) are padded to their own longest row. Padding is 0, except for keys in
    `pad_values` (default: labels with -100, which the losses ignore).
    """

    def __init__(self, max_length: int | None = None, pad_to_max_length: bool = False,
                 pad_values: Mapping[str, Any] | None = None):
        if pad_to_max_length and max_length is None:
            raise ConfigError("pad_to_max_length needs max_length (the max_seq_length the features were built with)")
        self.max_length = max_length
        self.pad_to_max_length = pad_to_max_length
        self.pad_values = {**DEFAULT_PAD_VALUES, **(pad_values or {})}

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise DataError("cannot collate an empty batch")
        keys = examples[0].keys()
        token_lengths = None
        if "input_ids" in examples[0]:
            token_lengths = [[len(r) for r in _leaf_rows(e["input_ids"])] for e in examples]
            token_target = max(max(rows) for rows in token_lengths)
            if self.pad_to_max_length:
                if token_target > self.max_length:
                    raise DataError(f"an example has {token_target} tokens, more than max_length={self.max_length}; "
                                    "build the features with the same max_seq_length")
                token_target = self.max_length
        batch = {}
        for key in keys:
            try:
                values = [_plain(e[key]) for e in examples]
            except KeyError:
                raise DataError(f"key {key!r} is in the first example of the batch but not in all of them; "
                                "give every example the same keys") from None
            if not isinstance(values[0], list):
                batch[key] = torch.tensor(values)
                continue
            lengths = [[len(r) for r in _leaf_rows(v)] for v in values]
            target = token_target if lengths == token_lengths else max(max(rows, default=0) for rows in lengths)
            batch[key] = self._pad(key, values, target)
        return batch

    def _pad(self, key: str, values: list[list], target: int) -> torch.Tensor:
        outer = {_shape(v)[:-1] for v in values}
        if len(outer) != 1:
            raise DataError(f"key {key!r}: examples have different shapes {sorted(outer)} before the last "
                             "dimension (e.g. different numbers of choices); give every example the same")
        rows = [row for v in values for row in _leaf_rows(v)]
        dtype = torch.float32 if any(isinstance(x, float) for row in rows for x in row) else torch.long
        padded = torch.full((len(values), *outer.pop(), target), self.pad_values.get(key, 0), dtype=dtype)
        flat = padded.view(-1, target)
        for i, row in enumerate(rows):
            flat[i, :len(row)] = torch.tensor(row, dtype=dtype)
        return padded


class LengthGroupedBatchSampler:
    """Yields the batches (lists of indices) of one epoch for one process: shuffled, optionally
    grouped by length, sharded across processes and resumable by position.

    The order is a pure function of (seed, epoch), so a resumed run regenerates it and skips the
    batches it already trained on (`set_epoch(epoch, start=position)`), and every process computes
    the same global batches. A global batch holds batch_size * num_replicas examples; process
    `rank` takes every num_replicas-th of them, so one process with the global batch size sees
    exactly the batches that N processes see together.

    With `lengths`, examples are grouped by length: the shuffled order is cut into mega-batches of
    `mega_batch_size` global batches, each sorted by length, so a batch holds examples of similar
    length (little padding) while which examples meet stays random. The batches are then shuffled,
    with the one holding the longest example first, so that running out of memory happens at step 1.
    Without `lengths` the batches are plain shuffled (or, with shuffle=False, sequential) slices.

    The last global batch may be short (unless drop_last); with `even_shards` it is topped up so
    that it splits evenly across the processes.
    """

    def __init__(self, num_examples: int, batch_size: int, *, lengths: Sequence[int] | None = None,
                 shuffle: bool = True, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 drop_last: bool = False, even_shards: bool = True, mega_batch_size: int = 50):
        if lengths is not None and len(lengths) != num_examples:
            raise ValueError(f"{len(lengths)} lengths for {num_examples} examples")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        if num_examples == 0:
            raise DataError("the dataset is empty: there is nothing to batch")
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.lengths = None if lengths is None else torch.as_tensor(lengths)
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.even_shards = even_shards
        self.mega_batch_size = mega_batch_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch `epoch` from its batch number `start` on (resuming mid-epoch)."""
        self.epoch = epoch
        self.start = start

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.num_replicas

    def global_batches(self, epoch: int) -> list[list[int]]:
        """The epoch's batches over all processes, identical on every process."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        n = self.num_examples
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        size = self.global_batch_size
        if self.lengths is not None:
            mega = size * self.mega_batch_size
            # Stable sort, longest first: ties keep their shuffled order, so it stays seed-determined.
            order = torch.cat([chunk[torch.sort(self.lengths[chunk], descending=True, stable=True).indices]
                               for chunk in order.split(mega)])
        batches = [batch.tolist() for batch in order.split(size)]
        if self.drop_last and batches and len(batches[-1]) < size:
            batches.pop()
        num_full = sum(len(batch) == size for batch in batches)  # before a short last batch is topped up
        if self.even_shards and batches and len(batches[-1]) % self.num_replicas:
            # In training every process must get a batch, or the others wait forever in the gradient
            # all-reduce: top the last batch up by repeating its own examples (so its lengths stay
            # its own). Evaluation turns this off to count every example once.
            missing = self.num_replicas - len(batches[-1]) % self.num_replicas
            batches[-1] += list(itertools.islice(itertools.cycle(batches[-1]), missing))
        if self.lengths is not None and self.shuffle and len(batches) > 1:
            # Shuffle the full batches; a short last batch stays last (unless it is the longest).
            permutation = torch.randperm(num_full, generator=generator).tolist()
            batches = [batches[i] for i in permutation] + batches[num_full:]
            longest = max(range(len(batches)), key=lambda i: int(self.lengths[batches[i]].max()))
            batches.insert(0, batches.pop(longest))
        return batches

    def batches(self, epoch: int) -> list[list[int]]:
        """This process's batches of `epoch`, from the first one (without even_shards, a process
        may get one batch fewer than the others)."""
        shards = [batch[self.rank::self.num_replicas] for batch in self.global_batches(epoch)]
        return [shard for shard in shards if shard]

    @property
    def num_batches(self) -> int:
        """Batches per epoch (the same for every epoch and every process)."""
        full, rest = divmod(self.num_examples, self.global_batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self):
        yield from self.batches(self.epoch)[self.start:]

    def __len__(self) -> int:
        return max(0, self.num_batches - self.start)


def dataset_lengths(dataset: Dataset) -> list[int]:
    """The dataset's own `lengths` when it has them (FeatureDataset, PackedFeatures), else measured."""
    lengths = getattr(dataset, "lengths", None)
    if lengths is not None:
        return [int(n) for n in lengths]
    return [example_length(dataset[i]) for i in range(len(dataset))]


def pad_rows(rows: Sequence[Sequence[int]], pad_value: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ids of any lengths -> (B, longest) long tensors: the rows padded with `pad_value`, and
    the attention mask (1 on real tokens). The one padding helper of inference (pipelines and
    FeatureExtractor); training batches are padded by PaddingCollator, which also pads labels."""
    width = max(map(len, rows), default=0)
    ids = torch.full((len(rows), width), pad_value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, :len(row)] = torch.as_tensor(list(row), dtype=torch.long)
        mask[r, :len(row)] = 1
    return ids, mask


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (shortest first), so that padding stays
    small; inference's batching (pipelines and FeatureExtractor)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]

