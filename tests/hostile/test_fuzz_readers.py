"""Fuzzing every reader of user files, as tests/checkpoint/test_tf_bundle.py fuzzes the TF reader.

Property: for a damaged or garbled file (bytes flipped, inserted, deleted, repeated or cut; JSON
values replaced by arbitrary ones), a reader returns a valid result or raises a BertkitError whose
message is one line naming the file; any other exception is a bug. Seeds are small valid files.
The runs are derandomised so that CI is repeatable; BERTKIT_FUZZ_EXAMPLES=2000 fuzzes longer, on fresh
random inputs each time.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bertkit.checkpoint.inspect import inspect_checkpoint
from bertkit.checkpoint.load import read_state_dict, resolve_checkpoint
from bertkit.checkpoint.report import LoadReport
from bertkit.config import BertConfig
from bertkit.data import glue
from bertkit.data.multiple_choice import read_commonsenseqa_examples, read_swag_examples
from bertkit.data.ner import read_conll
from bertkit.data.pretraining import PretrainingDataConfig, PretrainingDataset
from bertkit.data.squad import read_squad_examples
from bertkit.errors import BertkitError
from bertkit.heads import BertModel
from bertkit.tokenization import FullTokenizer
from helpers import REPO, TINY_VOCAB, tiny_config, tiny_shards

FIXTURES = REPO / "tests" / "fixtures"
FUZZ = settings(max_examples=int(os.environ.get("BERTKIT_FUZZ_EXAMPLES", 40)), deadline=None,
                derandomize="BERTKIT_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

# ---- damage ---------------------------------------------------------------------------------

# Bytes that mean something to the formats read here are drawn as often as any other byte.
BYTES = st.one_of(st.integers(0, 255), st.sampled_from(b'\t\n\r ",;:{}[]-.0123456789eE#\\\x00'))
EDITS = st.lists(st.tuples(st.sampled_from(["set", "insert", "delete", "truncate", "repeat"]),
                           st.floats(0, 1, exclude_max=True), BYTES, st.integers(1, 8)), min_size=1, max_size=4)


def damage(content: bytes, edits) -> bytes:
    data = bytearray(content)
    for kind, where, byte, size in edits:
        position = int(where * len(data))
        if kind == "set" and data:
            data[position] = byte
        elif kind == "insert":
            data[position:position] = bytes([byte]) * size
        elif kind == "delete":
            del data[position:position + size]
        elif kind == "truncate":
            del data[position:]
        elif kind == "repeat":  # a repeated stretch: a duplicated line, record or key
            data[position:position] = data[position:position + 16 * size]
    return bytes(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 1000) | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


def _places(value, path=()):
    """Every (path) into a JSON value, the root included."""
    yield path
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from _places(child, (*path, key))


@st.composite
def mutated_json(draw, seed):
    """`seed` with 1-3 of its values replaced by arbitrary JSON, deleted or repeated."""
    value = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_places(value))))
        action = draw(st.sampled_from(["replace", "delete", "repeat"]))
        if not path:
            value = draw(JSON_VALUES) if action == "replace" else value
            continue
        parent = value
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if action == "replace":
            parent[key] = draw(JSON_VALUES)
        elif action == "delete":
            del parent[key]
        elif isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
    return value


def fuzzed_bytes(seed: bytes, as_json: bool = False):
    """Damaged bytes of `seed`; for a JSON seed, also mutated JSON values."""
    damaged = EDITS.map(lambda edits: damage(seed, edits))
    if not as_json:
        return damaged
    return st.one_of(damaged, mutated_json(json.loads(seed)).map(lambda v: json.dumps(v).encode()))


def read_or_refuse(path: Path, read, *args, **kwargs):
    """The property: the reader's result, or None after a one-line BertkitError naming `path` (a
    file, or the folder it lies in); any other exception fails the test."""
    try:
        result = read(*args, **kwargs)
    except BertkitError as err:
        event(f"refused: {type(err).__name__}")  # --hypothesis-show-statistics tells how often each outcome came
        message = str(err)
        assert "\n" not in message, message
        assert str(path) in message or str(path.parent) in message, message
        return None
    event("read")
    return result


def written(tmp_path_factory, name: str, content: bytes) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(content)
    return path


# ---- GLUE TSV ------------------------------------------------------------------------------

def glue_seed(processor: glue.DataProcessor, split: str) -> bytes:
    """A valid three-row file of the task's layout."""
    columns = processor.test_columns if split == "test" else processor.labeled_columns
    width = columns.min_columns()
    rows = [[f"header{c}" for c in range(width)]] if columns.header else []
    for i in range(3):
        row = [f"x{i}"] * width
        row[columns.text_a] = "The cat sat on the mat ."
        if columns.text_b is not None:
            row[columns.text_b] = "A dog ran \"home\" ."
        if columns.guid is not None:
            row[columns.guid] = str(i)
        if columns.label is not None:
            row[columns.label] = "2.5" if processor.is_regression else processor.labels[i % len(processor.labels)]
        rows.append(row)
    return "".join("\t".join(row) + "\n" for row in rows).encode()


GLUE_CASES = [(name, split) for name in ("cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst-2", "sts-b", "wnli")
              for split in glue.SPLITS]


@FUZZ
@given(data=st.data(), case=st.sampled_from(GLUE_CASES))
def test_glue_tsv(tmp_path_factory, data, case):
    processor = glue.get_processor(case[0])
    content = data.draw(fuzzed_bytes(glue_seed(processor, case[1])))
    path = written(tmp_path_factory, processor.file_names[case[1]], content)
    examples = read_or_refuse(path, processor.get_examples, path.parent, case[1])
    for example in examples or ():
        assert isinstance(example.text_a, str) and isinstance(example.text_b, (str, type(None)))
        if processor.is_regression:
            assert math.isfinite(example.label)
        else:
            assert example.label in processor.labels


# ---- SQuAD JSON ----------------------------------------------------------------------------

@FUZZ
@given(data=st.data(), version=st.sampled_from(["v1.1", "v2.0"]), is_training=st.booleans())
def test_squad_json(tmp_path_factory, data, version, is_training):
    content = data.draw(fuzzed_bytes((FIXTURES / "squad" / f"tiny-{version}.json").read_bytes(), as_json=True))
    path = written(tmp_path_factory, "train.json", content)
    examples = read_or_refuse(path, read_squad_examples, path, is_training=is_training,
                              version_2_with_negative=version == "v2.0")
    for example in examples or ():
        assert all(isinstance(token, str) and token for token in example.doc_tokens)
        if is_training and not example.is_impossible:
            assert 0 <= example.start_position <= example.end_position < len(example.doc_tokens)


# ---- CoNLL ---------------------------------------------------------------------------------

@FUZZ
@given(data=st.data(), seed=st.sampled_from(["eng.train", "two_column.txt"]), label_column=st.sampled_from([-1, 1, None]))
def test_conll(tmp_path_factory, data, seed, label_column):
    content = data.draw(fuzzed_bytes((FIXTURES / "ner" / seed).read_bytes()))
    path = written(tmp_path_factory, seed, content)
    examples = read_or_refuse(path, read_conll, path, label_column=label_column)
    for example in examples or ():
        assert example.words and all(word and not word.isspace() for word in example.words)
        if label_column is not None:
            assert len(example.labels) == len(example.words)
            assert all(tag == "O" or tag[:2] in ("B-", "I-") for tag in example.labels)


# ---- multiple choice -----------------------------------------------------------------------

@FUZZ
@given(data=st.data(), seed=st.sampled_from(["train.csv", "test.csv", "startphrase_only.csv"]))
def test_swag_csv(tmp_path_factory, data, seed):
    content = data.draw(fuzzed_bytes((FIXTURES / "multiple_choice" / "swag" / seed).read_bytes()))
    path = written(tmp_path_factory, seed, content)
    for example in read_or_refuse(path, read_swag_examples, path) or ():
        assert example.num_choices == 4 and example.label in (None, 0, 1, 2, 3)


@FUZZ
@given(data=st.data(), seed=st.sampled_from(["train_rand_split.jsonl", "test_rand_split_no_answers.jsonl"]))
def test_commonsenseqa_jsonl(tmp_path_factory, data, seed):
    lines = (FIXTURES / "multiple_choice" / "commonsenseqa" / seed).read_bytes().splitlines(keepends=True)
    line = data.draw(st.integers(0, len(lines) - 1))
    lines[line] = data.draw(fuzzed_bytes(lines[line].rstrip(b"\n"), as_json=True)) + b"\n"
    path = written(tmp_path_factory, seed, b"".join(lines))
    examples = read_or_refuse(path, read_commonsenseqa_examples, path)
    for example in examples or ():
        assert example.num_choices == examples[0].num_choices
        assert example.label is None or 0 <= example.label < example.num_choices


# ---- pre-training shards -------------------------------------------------------------------

@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return tiny_shards(tmp_path_factory.mktemp("shards"), documents=4, sentences=6, words_per_sentence=8,
                       config=PretrainingDataConfig(max_seq_length=24, max_predictions_per_seq=4, dupe_factor=1,
                                                    instances_per_shard=8))


SHARD_ARRAY_NAMES = ["input_ids", "segment_ids", "offsets", "masked_lm_positions", "masked_lm_ids",
                     "masked_lm_offsets", "next_sentence_labels"]


@FUZZ
@given(data=st.data(), target=st.sampled_from(["value", "npy bytes", "index.json"]))
def test_pretraining_shards(tmp_path_factory, shards, data, target):
    directory = Path(shutil.copytree(shards, tmp_path_factory.mktemp("fuzz") / "data"))
    if target == "index.json":
        path = directory / "index.json"
        path.write_bytes(data.draw(fuzzed_bytes(path.read_bytes(), as_json=True)))
    else:
        path = directory / data.draw(st.sampled_from(["shard-00000", "shard-00001"])) / (
            data.draw(st.sampled_from(SHARD_ARRAY_NAMES)) + ".npy")
        if target == "npy bytes":
            path.write_bytes(data.draw(fuzzed_bytes(path.read_bytes())))
        else:
            values = np.load(path)
            limits = np.iinfo(values.dtype)
            values[data.draw(st.integers(0, len(values) - 1))] = data.draw(
                st.integers(-3, 120) | st.integers(int(limits.min), int(limits.max)))
            np.save(path, values)

    def read_all():
        dataset = PretrainingDataset(directory)
        dataset.max_token_id()  # opens every shard, as run_pretraining does before training
        return dataset.lengths, [dataset[i] for i in range(len(dataset))]

    result = read_or_refuse(path, read_all)
    for item in result[1] if result else ():
        length = len(item["input_ids"])
        assert 1 <= length <= 24 and all(0 <= i < 99 for i in item["input_ids"] + item["labels"])
        assert all(0 <= p < length for p in item["masked_lm_positions"])
        assert set(item["token_type_ids"]) <= {0, 1} and item["next_sentence_label"] in (0, 1)


# ---- vocab.txt and config.json -------------------------------------------------------------

@FUZZ
@given(content=fuzzed_bytes(TINY_VOCAB.read_bytes()))
def test_vocab_txt(tmp_path_factory, content):
    path = written(tmp_path_factory, "vocab.txt", content)

    def read_and_encode():  # a missing [CLS] or [SEP] is reported when encoding needs it
        tokenizer = FullTokenizer(path)
        return tokenizer, tokenizer.encode("The cat sat on the mat, unaffable!", "a dog ran")["input_ids"]

    tokenizer, ids = read_or_refuse(path, read_and_encode) or (None, ())
    if tokenizer is not None:
        assert sorted(tokenizer.vocab.values()) == list(range(len(tokenizer)))  # no id beyond the size
        assert all(0 <= i < len(tokenizer) for i in ids)


CONFIG_SEED = json.dumps({**tiny_config().to_hf_dict(), "id2label": {"0": "NO", "1": "YES"},
                          "label2id": {"NO": 0, "YES": 1}, "classifier_dropout": None,
                          "pruned_heads": {"1": [0]}}).encode()


@FUZZ
@given(content=fuzzed_bytes(CONFIG_SEED, as_json=True))
def test_config_json(tmp_path_factory, content):
    path = written(tmp_path_factory, "config.json", content)
    config = read_or_refuse(path, BertConfig.from_json_file, path)
    if config is not None:
        for key, value in config.to_dict().items():
            if "dropout" in key and value is not None:
                assert 0 <= value < 1
        assert config.layer_norm_eps > 0 and math.isfinite(config.initializer_range)
        assert BertConfig.from_dict(json.loads(config.to_json_string())) == config  # what it writes reads back


# ---- checkpoints: safetensors headers and .bin files ---------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("checkpoint")
    torch.manual_seed(0)
    BertModel(tiny_config(vocab_size=20, hidden_size=8, num_attention_heads=2, intermediate_size=8,
                          num_hidden_layers=1, max_position_embeddings=16)).save_pretrained(directory)
    torch.save(BertModel.from_pretrained(directory).state_dict(), directory / "pytorch_model.bin")
    return directory


@st.composite
def damaged_checkpoint(draw, checkpoint: Path):
    """(file name, bytes): a safetensors file with a mutated JSON header (its length prefix fixed)
    or damaged header bytes, or a damaged pytorch_model.bin."""
    kind = draw(st.sampled_from(["header json", "header bytes", "bin"]))
    if kind == "bin":
        return "pytorch_model.bin", draw(fuzzed_bytes((checkpoint / "pytorch_model.bin").read_bytes()))
    content = (checkpoint / "model.safetensors").read_bytes()
    size = struct.unpack("<Q", content[:8])[0]
    header, body = content[8:8 + size], content[8 + size:]
    if kind == "header json":
        header = json.dumps(draw(mutated_json(json.loads(header)))).encode()
        return "model.safetensors", struct.pack("<Q", len(header)) + header + body
    return "model.safetensors", draw(fuzzed_bytes(content[:8 + size])) + body


@FUZZ
@given(data=st.data())
def test_checkpoint_files(tmp_path_factory, checkpoint, data):
    name, content = data.draw(damaged_checkpoint(checkpoint))
    directory = tmp_path_factory.mktemp("fuzz")
    shutil.copy(checkpoint / "config.json", directory)
    path = directory / name
    path.write_bytes(content)
    files = resolve_checkpoint(directory)
    read_or_refuse(path, inspect_checkpoint, directory)
    read_or_refuse(path, read_state_dict, files, LoadReport(source=str(directory)))
    model = read_or_refuse(path, BertModel.from_pretrained, directory)
    if model is not None:
        assert all(torch.isfinite(p).all() for p in model.parameters())
