"""The on-disk feature cache: packing, keys, reuse without tokenizing, and recovery from damage."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from bertkit import tokenization
from bertkit.data.features import FEATURE_FORMAT_VERSION, PackedFeatures, load_or_build_features
from bertkit.data.glue import ClassifierFeatures, MrpcProcessor, convert_examples_to_features

WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "away", "home", "."]
MRPC_ROWS = [
    ("1", "The cat sat on the mat.", "A cat sat on a mat."),
    ("0", "The dog ran away.", "The dog ran home."),
    ("1", "A dog ran home.", "The dog ran home."),
]


@pytest.fixture
def task_files(tmp_path):
    """A tiny vocab and an MRPC-format train.tsv."""
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS]) + "\n", encoding="utf-8")
    data_dir = tmp_path / "MRPC"
    data_dir.mkdir()
    lines = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
    lines += [f"{label}\t{i}\t{i + 100}\t{a}\t{b}" for i, (label, a, b) in enumerate(MRPC_ROWS)]
    (data_dir / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return vocab, data_dir


def cached_features(task_files, cache_dir, max_seq_length=16, do_lower_case=True, pad_to_max_length=True):
    """What a training script does: the build function reads and tokenizes only on a miss."""
    vocab, data_dir = task_files
    processor = MrpcProcessor()

    def build():
        tokenizer = tokenization.FullTokenizer(str(vocab), do_lower_case=do_lower_case)
        examples = processor.get_train_examples(data_dir)
        return convert_examples_to_features(examples, processor.get_labels(), max_seq_length, tokenizer,
                                            pad_to_max_length=pad_to_max_length, progress=False)

    return build, load_or_build_features(
        build, cache_dir, task_name="mrpc", data_file=processor.data_file(data_dir, "train"), vocab_file=vocab,
        max_seq_length=max_seq_length, do_lower_case=do_lower_case, pad_to_max_length=pad_to_max_length)


def forbid_tokenizing(monkeypatch):
    def refuse(self, text):
        raise AssertionError("the cache should have been used instead of tokenizing")

    monkeypatch.setattr(tokenization.FullTokenizer, "tokenize", refuse)


def test_packing_round_trips_padded_unpadded_regression_and_padding_rows():
    padded = [ClassifierFeatures([101, 7, 102, 0], [1, 1, 1, 0], [0, 0, 1, 0], 1),
              ClassifierFeatures([0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], 0, is_real_example=False)]
    packed = PackedFeatures.from_features(padded, pad_to=4)
    assert list(packed) == padded and packed.lengths.tolist() == [3, 0]
    assert packed.input_ids.dtype == np.int32 and packed.input_ids.tolist() == [101, 7, 102]
    unpadded = [ClassifierFeatures([101, 5, 6, 102], [1] * 4, [0, 0, 0, 0], 2.5), ClassifierFeatures([101, 102], [1, 1], [0, 0], 0.0)]
    packed = PackedFeatures.from_features(unpadded, pad_to=None)
    assert packed[-1] == unpadded[-1] and packed[0:2] == unpadded
    assert isinstance(packed[1].labels, float)


def test_multi_label_rows_round_trip_through_the_cache(task_files, tmp_path, caplog):
    """Multi-label targets are a (N, num_labels) float array: packed, cached and read back as lists."""
    vocab, data_dir = task_files
    features = [ClassifierFeatures([2, 4, 3], [1, 1, 1], [0, 0, 0], [1.0, 0.0, 1.0]),
                ClassifierFeatures([2, 3], [1, 1], [0, 0], [0.0, 0.0, 0.0])]
    packed = PackedFeatures.from_features(features, pad_to=None)
    assert packed.labels.shape == (2, 3) and list(packed) == features
    kwargs = dict(task_name="tags", data_file=data_dir / "train.tsv", vocab_file=vocab, max_seq_length=8,
                  do_lower_case=True, pad_to_max_length=False)
    load_or_build_features(lambda: features, tmp_path / "cache", **kwargs)
    with caplog.at_level(logging.WARNING):
        again = load_or_build_features(lambda: pytest.fail("rebuilt instead of read from the cache"),
                                       tmp_path / "cache", **kwargs)
    assert list(again) == features and not caplog.records


def test_packing_refuses_rows_that_are_not_bert_inputs():
    with pytest.raises(ValueError, match="feature 0"):
        PackedFeatures.from_features([ClassifierFeatures([101, 102, 5], [1, 1, 0], [0, 0, 0], 0)], pad_to=3)
    with pytest.raises(ValueError, match="feature 0"):
        PackedFeatures.from_features([ClassifierFeatures([101, 102], [1, 1], [0, 0], 0)], pad_to=3)


def test_second_run_loads_without_tokenizing(task_files, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    build, first = cached_features(task_files, cache_dir)
    assert list(first) == build()  # the cached features are exactly the converted ones
    files = sorted(p.name for p in cache_dir.iterdir())
    assert len(files) == 2 and files[0].startswith("mrpc-train-") and files[0].endswith(".json")
    assert files[1].endswith(".npz")  # and no temp files are left behind
    meta = json.loads((cache_dir / files[0]).read_text())
    assert meta["num_examples"] == 3 and meta["format_version"] == FEATURE_FORMAT_VERSION

    forbid_tokenizing(monkeypatch)
    _, second = cached_features(task_files, cache_dir)
    assert list(second) == list(first)


@pytest.mark.parametrize(
    "change",
    [
        {"max_seq_length": 12},
        {"do_lower_case": False},
        {"pad_to_max_length": False},
        "vocab",
        "data",
    ],
)
def test_any_changed_input_misses_the_cache(task_files, tmp_path, change):
    cache_dir = tmp_path / "cache"
    cached_features(task_files, cache_dir)
    vocab, data_dir = task_files
    kwargs = change if isinstance(change, dict) else {}
    if change == "vocab":
        vocab.write_text(vocab.read_text() + "mouse\n")
    elif change == "data":
        with open(data_dir / "train.tsv", "a", encoding="utf-8") as f:
            f.write("0\t7\t8\tThe cat ran.\tThe dog sat.\n")
    _, features = cached_features(task_files, cache_dir, **kwargs)
    assert len(list(cache_dir.glob("*.npz"))) == 2
    assert len(features) == (4 if change == "data" else 3)


@pytest.mark.parametrize("damage", ["truncate_npz", "garbage_npz", "garbage_json", "missing_json", "wrong_lengths"])
def test_damaged_cache_is_rebuilt_with_a_warning(task_files, tmp_path, caplog, damage):
    cache_dir = tmp_path / "cache"
    _, original = cached_features(task_files, cache_dir)
    npz, meta = next(cache_dir.glob("*.npz")), next(cache_dir.glob("*.json"))
    if damage == "truncate_npz":
        npz.write_bytes(npz.read_bytes()[:100])
    elif damage == "garbage_npz":
        npz.write_bytes(b"not a zip file at all")
    elif damage == "garbage_json":
        meta.write_text("{ half")
    elif damage == "missing_json":  # an interrupted write: the npz landed, its JSON did not
        meta.unlink()
    else:
        content = json.loads(meta.read_text())
        meta.write_text(json.dumps({**content, "num_examples": 5}))

    with caplog.at_level(logging.WARNING, logger="bertkit.data.features"):
        _, rebuilt = cached_features(task_files, cache_dir)
    assert "unusable feature cache" in caplog.text and "rebuilding" in caplog.text
    assert list(rebuilt) == list(original)
    caplog.clear()
    _, again = cached_features(task_files, cache_dir)  # the rebuilt cache is healthy
    assert caplog.text == "" and list(again) == list(original)


def test_no_cache_dir_builds_every_time(task_files, tmp_path):
    build, features = cached_features(task_files, None)
    assert list(features) == build() and not any(tmp_path.glob("**/*.npz"))
