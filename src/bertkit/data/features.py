"""An on-disk feature cache: bertkit's analogue of Google's `train.tf_record`.

Tokenizing MNLI's 393k pairs takes minutes; a second run with the same inputs should not. The
features of one data file are stored as one `.npz` of flat numpy arrays plus a small JSON
sidecar, under a name that hashes everything the features depend on (see `feature_cache_key`),
so a changed input simply misses the cache instead of silently reusing stale features.

Storage format (FEATURE_FORMAT_VERSION 2), `<task>-<file stem>-<key[:16]>.npz`:

* `input_ids` int32 and `token_type_ids` int8: every row's real tokens (no padding), concatenated;
* `offsets` int64, length N+1: row i is `input_ids[offsets[i]:offsets[i + 1]]`;
* `labels` int64, or float64 for regression (N) and multi-label 0/1 targets (N, num_labels);
  `is_real_example` bool, length N.

(Version 1 stored the same arrays under Google's names `segment_ids` and `label_ids`.) The
attention mask is not stored: it is 1 over a row's real tokens and 0 over the padding, which
`PackedFeatures` adds back on reading when the features were built padded. The `.json` beside
it holds the key, its parts in clear and the row count; it is written last, so a cache whose
JSON is missing was interrupted and is rebuilt. Both files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from bertkit.data.glue import ClassifierFeatures
from bertkit.io_utils import atomic_write

logger = logging.getLogger(__name__)

# Bump when convert_single_example's output or the storage layout changes: old caches then miss.
FEATURE_FORMAT_VERSION = 2

_ARRAY_DTYPES = {
    "input_ids": (np.int32,),
    "token_type_ids": (np.int8,),
    "offsets": (np.int64,),
    "labels": (np.int64, np.float64),
    "is_real_example": (np.bool_,),
}


@dataclass(eq=False)  # numpy arrays have no single truth value, so no field-wise ==
class PackedFeatures(Sequence[ClassifierFeatures]):
    """Features of a whole data set as flat arrays; indexing gives `ClassifierFeatures` (Google's `InputFeatures`).

    Rows are unpadded in memory; `pad_to` (the max_seq_length, or None for dynamic padding)
    restores Google's zero padding when a row is read.
    """

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    is_real_example: np.ndarray
    pad_to: int | None = None

    @classmethod
    def from_features(cls, features: Sequence[ClassifierFeatures], pad_to: int | None) -> PackedFeatures:
        """Packs features from `convert_examples_to_features`, dropping their padding."""
        lengths = [sum(f.attention_mask) for f in features]
        for index, (feature, length) in enumerate(zip(features, lengths)):
            expected_width = pad_to if pad_to is not None else length
            # The mask must be 1s then 0s, with zeros under it; else dropping the padding loses data.
            if (
                {len(feature.input_ids), len(feature.attention_mask), len(feature.token_type_ids)} != {expected_width}
                or feature.attention_mask[:length] != [1] * length
                or any(feature.input_ids[length:])
                or any(feature.token_type_ids[length:])
            ):
                raise ValueError(f"feature {index} is not a {'padded' if pad_to else 'unpadded'} BERT input row")
        # Float labels: regression scores, or multi-label 0/1 rows (a 2-D array).
        is_regression = any(isinstance(f.labels, (float, list)) for f in features)
        return cls(
            input_ids=np.fromiter(
                (i for f, n in zip(features, lengths) for i in f.input_ids[:n]), dtype=np.int32, count=sum(lengths)
            ),
            token_type_ids=np.fromiter(
                (s for f, n in zip(features, lengths) for s in f.token_type_ids[:n]), dtype=np.int8, count=sum(lengths)
            ),
            offsets=np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64),
            labels=np.array([f.labels for f in features], dtype=np.float64 if is_regression else np.int64),
            is_real_example=np.array([f.is_real_example for f in features], dtype=np.bool_),
            pad_to=pad_to,
        )

    @property
    def lengths(self) -> np.ndarray:
        """Number of real tokens of every row (for length bucketing or dynamic padding)."""
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self))[index]  # normalizes negative indices, raises IndexError
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        length = end - start
        padding = [0] * ((self.pad_to or length) - length)
        label = self.labels[index]
        return ClassifierFeatures(
            input_ids=self.input_ids[start:end].tolist() + padding,
            attention_mask=[1] * length + padding,
            token_type_ids=self.token_type_ids[start:end].tolist() + padding,
            labels=label.tolist() if self.labels.ndim == 2 else float(label) if self.labels.dtype == np.float64
            else int(label),
            is_real_example=bool(self.is_real_example[index]),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """The stored arrays by name, as written to the cache."""
        return {name: getattr(self, name) for name in _ARRAY_DTYPES}


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def feature_cache_key_parts(
    *,
    task_name: str,
    data_file: str | os.PathLike,
    vocab_file: str | os.PathLike,
    max_seq_length: int,
    do_lower_case: bool,
    pad_to_max_length: bool,
) -> dict:
    """Everything the features of `data_file` depend on.

    The data file is identified by path, size and modification time (cheap, and any edit
    changes them); the vocab by its content, since the same vocab often sits at several paths.
    """
    data_path = Path(data_file).resolve()
    stat = data_path.stat()
    return {
        "format_version": FEATURE_FORMAT_VERSION,
        "task_name": task_name.lower(),
        "data_file": str(data_path),
        "data_file_size": stat.st_size,
        "data_file_mtime_ns": stat.st_mtime_ns,
        "vocab_sha256": _sha256_of_file(Path(vocab_file)),
        "max_seq_length": max_seq_length,
        "do_lower_case": bool(do_lower_case),
        "pad_to_max_length": bool(pad_to_max_length),
    }


def feature_cache_key(parts: dict) -> str:
    """The sha256 hex digest of `feature_cache_key_parts(...)`, which names the cache files."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def load_or_build_features(
    build_fn: Callable[[], Sequence[ClassifierFeatures]],
    cache_dir: str | os.PathLike | None,
    *,
    task_name: str,
    data_file: str | os.PathLike,
    vocab_file: str | os.PathLike,
    max_seq_length: int,
    do_lower_case: bool,
    pad_to_max_length: bool = True,
) -> PackedFeatures:
    """The cached features for these inputs, or `build_fn()`'s, which are then cached.

    `build_fn` reads the examples and tokenizes them; it is only called on a cache miss, so
    build the tokenizer inside it. With `cache_dir=None` nothing is cached. A cache that cannot
    be read is rebuilt with a warning.
    """
    pad_to = max_seq_length if pad_to_max_length else None
    # A missing data file has no key to cache under: build_fn's reader says which file is missing.
    if cache_dir is None or not Path(data_file).is_file():
        return PackedFeatures.from_features(build_fn(), pad_to)

    parts = feature_cache_key_parts(
        task_name=task_name,
        data_file=data_file,
        vocab_file=vocab_file,
        max_seq_length=max_seq_length,
        do_lower_case=do_lower_case,
        pad_to_max_length=pad_to_max_length,
    )
    key = feature_cache_key(parts)
    stem = f"{task_name.lower()}-{Path(data_file).stem}-{key[:16]}"
    npz_path = Path(cache_dir) / f"{stem}.npz"
    meta_path = Path(cache_dir) / f"{stem}.json"

    if npz_path.exists() or meta_path.exists():
        try:
            features = _load(npz_path, meta_path, key, pad_to)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            logger.warning("%s: unusable feature cache (%s); rebuilding it", npz_path, err)
        else:
            logger.info("Loaded %d features from %s", len(features), npz_path)
            return features

    features = PackedFeatures.from_features(build_fn(), pad_to)
    with atomic_write(npz_path, "wb") as f:
        np.savez(f, **features.arrays())
    meta = {"key": key, "num_examples": len(features), **parts}
    with atomic_write(meta_path, "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
    logger.info("Wrote %d features to %s", len(features), npz_path)
    return features


def _load(npz_path: Path, meta_path: Path, key: str, pad_to: int | None) -> PackedFeatures:
    """Reads and checks one cache; any inconsistency raises ValueError (or an I/O error)."""
    if not meta_path.exists():
        raise ValueError(f"{meta_path.name} is missing, the previous write was interrupted")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))  # JSONDecodeError is a ValueError
    if meta.get("key") != key:
        raise ValueError(f"{meta_path.name} belongs to another key")
    with np.load(npz_path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in _ARRAY_DTYPES}
    for name, dtypes in _ARRAY_DTYPES.items():
        if arrays[name].dtype not in dtypes or arrays[name].ndim not in ((1, 2) if name == "labels" else (1,)):
            raise ValueError(f"array {name} has dtype {arrays[name].dtype} and {arrays[name].ndim} dims")
    n, offsets = meta["num_examples"], arrays["offsets"]
    if len(offsets) != n + 1 or len(arrays["labels"]) != n or len(arrays["is_real_example"]) != n:
        raise ValueError(f"array lengths do not match the {n} rows in {meta_path.name}")
    lengths = np.diff(offsets)
    if (
        offsets[0] != 0
        or (lengths < 0).any()
        or (pad_to is not None and (lengths > pad_to).any())
        or offsets[-1] != len(arrays["input_ids"])
        or len(arrays["token_type_ids"]) != len(arrays["input_ids"])
    ):
        raise ValueError("row offsets are inconsistent with the token arrays")
    return PackedFeatures(**arrays, pad_to=pad_to)
