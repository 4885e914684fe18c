"""Hostile model and data files (issue #19): each one is a single BertkitError naming the file, key,
line or tensor and the fix (one line and exit 2 from the CLI), never a traceback, NaN output or
a silent success, and nothing is written."""

from __future__ import annotations

import argparse
import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from bertkit.cli.main import main
from bertkit.config import BertConfig
from bertkit.data.multiple_choice import read_commonsenseqa_examples
from bertkit.data.pretraining import PretrainingDataConfig, PretrainingDataset
from bertkit.data.squad import read_squad_examples
from bertkit.errors import BertkitError, CheckpointError, ConfigError, DataError
from bertkit.heads import BertModel
from bertkit.tokenization import FullTokenizer
from helpers import TINY_VOCAB, google_tiny_config, tiny_config, tiny_shards

QUERY = "encoder.layer.0.attention.self.query.weight"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A tiny BertModel in HF layout with its vocab.txt."""
    directory = tmp_path_factory.mktemp("saved")
    torch.manual_seed(0)
    BertModel(tiny_config()).save_pretrained(directory)
    shutil.copy(TINY_VOCAB, directory / "vocab.txt")
    return directory


@pytest.fixture
def model_dir(saved, tmp_path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "model"))


def cli_error(capsys, *argv) -> str:
    """Run the CLI in-process: it must exit 2 with one line on stderr; that line is returned."""
    assert main(["-q", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bertkit {argv[0]}: error: "), err
    return lines[0]


# ---- 1. config.json ---------------------------------------------------------------------------

BAD_CONFIG_VALUES = [
    ("hidden_dropout_prob", 1.0), ("hidden_dropout_prob", 1.5), ("attention_probs_dropout_prob", -0.1),
    ("hidden_dropout_prob", "0.1"), ("classifier_dropout", 1.0), ("layer_norm_eps", float("nan")),
    ("layer_norm_eps", 0), ("initializer_range", float("inf")), ("initializer_range", -0.02), ("layerdrop", 1.0),
    ("num_labels", 0), ("id2label", {"a": "x", "b": "y"}), ("id2label", {"0": "x", "2": "y"}),
    ("id2label", {"0": 1}), ("label2id", {"x": "zero"}),
]


@pytest.mark.parametrize(("key", "value"), BAD_CONFIG_VALUES, ids=[f"{k}={v!r}" for k, v in BAD_CONFIG_VALUES])
def test_config_values_out_of_range(tmp_path, key, value):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**tiny_config().to_dict(), key: value}))  # NaN as JSON's NaN literal
    with pytest.raises(ConfigError, match=f"{path}: key '{key}'") as info:
        BertConfig.from_json_file(path)
    assert "\n" not in str(info.value)


def test_null_classifier_dropout_is_hfs_unset():
    assert BertConfig.from_dict({"classifier_dropout": None}).extra["classifier_dropout"] is None


def test_config_that_is_not_utf8(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b'{\n  "vocab_size": 99,\n  "note": "caf\xe9"\n}\n')
    with pytest.raises(ConfigError, match=rf"{path}:3: not valid UTF-8 \(byte 0xe9"):
        BertConfig.from_json_file(path)


def test_cli_config_errors_before_any_training(model_dir, tmp_path, capsys):
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "hidden_dropout_prob": 1.0}))
    line = cli_error(capsys, "encode", f"--model={model_dir}", "hello")
    assert f"{model_dir / 'config.json'}: key 'hidden_dropout_prob'" in line
    # Training from scratch: refused before the output directory is made.
    bad = tmp_path / "bert_config.json"
    bad.write_text(json.dumps(google_tiny_config(attention_probs_dropout_prob=1.5)))
    out = tmp_path / "out"
    line = cli_error(capsys, "run_classifier", "--task_name=MRPC", "--do_train", f"--data_dir={tmp_path}",
                     f"--bert_config_file={bad}", f"--vocab_file={TINY_VOCAB}", f"--output_dir={out}")
    assert "attention_probs_dropout_prob" in line and not out.exists()


# ---- 2. vocab.txt -----------------------------------------------------------------------------

def vocab_lines() -> list[str]:
    return TINY_VOCAB.read_text(encoding="utf-8").splitlines()


BAD_VOCABS = {
    "no [UNK]": ("\n".join(t for t in vocab_lines() if t != "[UNK]") + "\n").encode(),
    "repeated token": ("\n".join(vocab_lines()[:20] + ["the"] + vocab_lines()[20:]) + "\n").encode(),
    "binary": bytes(range(256)) * 4,
    "NUL bytes": b"[PAD]\n[UNK]\n\x00\x00\x01\x02\n",
    "empty": b"",
}
VOCAB_MESSAGES = {"no [UNK]": r"vocab.txt: has no \[UNK\]", "repeated token": r"vocab.txt:21: the token 'the' repeats line 6",
                  "binary": r"vocab.txt:2: not UTF-8 text", "NUL bytes": r"vocab.txt:3: holds a NUL byte",
                  "empty": r"vocab.txt: has no \[UNK\]"}


@pytest.mark.parametrize("case", list(BAD_VOCABS))
def test_bad_vocab(tmp_path, case):
    path = tmp_path / "vocab.txt"
    path.write_bytes(BAD_VOCABS[case])
    with pytest.raises(ConfigError, match=VOCAB_MESSAGES[case]):
        FullTokenizer.from_pretrained(tmp_path)


def test_cli_repeated_vocab_line(model_dir, capsys):
    # 98 distinct tokens on 99 lines: the size check passed, and id 98 indexed past the embeddings.
    (model_dir / "vocab.txt").write_bytes(BAD_VOCABS["repeated token"])
    line = cli_error(capsys, "encode", f"--model={model_dir}", "the cat")
    assert f"{model_dir / 'vocab.txt'}:21" in line and "repeats line 6" in line


@pytest.mark.parametrize(("content", "message"), [
    ("[]", "expected a JSON object of tokenizer settings, got list"),
    ('{"do_lower_case": "no"}', "do_lower_case must be true or false, got 'no'"),
    ("[" * 100_000, "is not valid JSON"),
])
def test_bad_tokenizer_config(model_dir, content, message):
    (model_dir / "tokenizer_config.json").write_text(content)
    with pytest.raises(ConfigError, match=f"{model_dir / 'tokenizer_config.json'}:? {re.escape(message)}"):
        FullTokenizer.from_pretrained(model_dir)


# ---- 3. weights -------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_non_finite_weights(model_dir, value, fmt):
    state = load_file(model_dir / "model.safetensors")
    state[QUERY][1, 2] = value
    (model_dir / "model.safetensors").unlink()
    if fmt == "safetensors":
        save_file(state, model_dir / "model.safetensors")
    else:
        torch.save(state, model_dir / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=f"tensor {QUERY} holds 1 NaN or infinite value"):
        BertModel.from_pretrained(model_dir)


def test_cli_nan_weights_are_not_encoded_or_converted(model_dir, tmp_path, capsys):
    state = load_file(model_dir / "model.safetensors")
    state[QUERY][0] = float("nan")
    save_file(state, model_dir / "model.safetensors")
    assert QUERY in cli_error(capsys, "encode", f"--model={model_dir}", "hello")
    assert QUERY in cli_error(capsys, "convert", str(model_dir), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


class Payload:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def write_random_bytes(path):
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def write_pickle_with_code(path):
    with open(path, "wb") as handle:
        pickle.dump({"weight": Payload()}, handle)


def write_torch_file_with_objects(path):
    torch.save({"weight": torch.zeros(2), "args": argparse.Namespace(lr=0.1)}, path)  # as fairseq saves its flags


BAD_BINS = {
    "random bytes": (write_random_bytes, "not a PyTorch checkpoint"),
    "pickled code": (write_pickle_with_code, "refused to unpickle it: it holds objects other than tensors"),
    "torch.save of other objects": (write_torch_file_with_objects, "refused to unpickle it: it holds "
                                                                   "argparse.Namespace, an object other than tensors"),
    "truncated": (lambda path: torch.save({"w": torch.zeros(100)}, path) or path.write_bytes(path.read_bytes()[:300]),
                  "cannot read PyTorch checkpoint"),
}


@pytest.mark.parametrize("case", list(BAD_BINS))
def test_bad_pytorch_bin(model_dir, case, capsys):
    (model_dir / "model.safetensors").unlink()
    write, message = BAD_BINS[case]
    write(model_dir / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=f"{model_dir / 'pytorch_model.bin'}: {message}") as info:
        BertModel.from_pretrained(model_dir)
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)
    line = cli_error(capsys, "inspect", str(model_dir))
    assert "weights_only" not in line and message in line


def test_float8_weights_are_checked_too(model_dir):
    state = load_file(model_dir / "model.safetensors")
    state[QUERY] = state[QUERY].to(torch.float8_e4m3fn)  # torch has no isfinite for this type
    state[QUERY][0, 0] = float("nan")
    save_file(state, model_dir / "model.safetensors")
    with pytest.raises(CheckpointError, match=f"tensor {QUERY} holds 1 NaN"):
        BertModel.from_pretrained(model_dir)


@pytest.mark.parametrize(("weight_map", "message"), [
    ({}, "its 'weight_map' is '{}'"), ({"a": "../model.safetensors"}, "its 'weight_map'"),
    ([1], "its 'weight_map' is '[1]'"), (None, "its 'weight_map' is 'None'")])
def test_bad_sharded_index(model_dir, weight_map, message):
    (model_dir / "model.safetensors").rename(model_dir / "model-00001-of-00001.safetensors")
    index = model_dir / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(CheckpointError, match=f"{index}: {re.escape(message)}"):
        BertModel.from_pretrained(model_dir)


# ---- 4. convert / inspect on a truncated safetensors file -------------------------------------

@pytest.mark.parametrize("keep", [4, 50, 0.5])
def test_truncated_safetensors_in_inspect_and_convert(model_dir, tmp_path, capsys, keep):
    weights = model_dir / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    for argv in (["inspect", str(model_dir)], ["inspect", "--json", str(weights)],
                 ["convert", str(model_dir), str(tmp_path / "out")]):
        line = cli_error(capsys, *argv)
        assert f"{weights}: cannot read safetensors file" in line
    assert not (tmp_path / "out").exists()


# ---- 5. pre-training shards -------------------------------------------------------------------

@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return tiny_shards(tmp_path_factory.mktemp("shards"), documents=6, sentences=8, words_per_sentence=9,
                       config=PretrainingDataConfig(max_seq_length=32, max_predictions_per_seq=5, dupe_factor=1))


@pytest.fixture
def data_dir(shards, tmp_path) -> Path:
    return Path(shutil.copytree(shards, tmp_path / "data"))


def edit_array(data_dir: Path, name: str, position: int, value: int) -> Path:
    path = data_dir / "shard-00000" / f"{name}.npy"
    values = np.load(path)
    values[position] = value
    np.save(path, values)
    return path


SHARD_EDITS = [
    # (array, element, value, the row it lands in is found from the offsets)
    ("masked_lm_positions", -1, 999, r"row {row} holds 999, outside \[0, {length}\)"),
    ("masked_lm_positions", 0, -3, r"row {row} holds -3, outside \[0, {length}\)"),
    ("input_ids", -1, 99, r"row {row} holds 99, outside \[0, 99\) \(the vocabulary's 99 ids\)"),
    ("masked_lm_ids", 2, -1, r"row {row} holds -1, outside \[0, 99\)"),
    ("segment_ids", 3, 2, r"row {row} holds 2, outside \[0, 2\)"),
    ("next_sentence_labels", 1, 5, r"row {row} holds 5, outside \[0, 2\)"),
    ("offsets", 1, 0, r"row 0 has 0 input_ids, not 1 to 32"),
    ("masked_lm_offsets", 1, 40, r"row 0 has 40 masked_lm_positions, not 0 to 5"),
]


@pytest.mark.parametrize(("name", "position", "value", "message"), SHARD_EDITS,
                         ids=[f"{name}[{position}]={value}" for name, position, value, _ in SHARD_EDITS])
def test_damaged_shard_is_refused_when_opened(data_dir, name, position, value, message):
    shard = data_dir / "shard-00000"
    offsets = np.load(shard / ("masked_lm_offsets.npy" if name.startswith("masked_lm_") else "offsets.npy"))
    element = position % (offsets[-1] if name != "next_sentence_labels" else len(offsets) - 1)
    row = element if name == "next_sentence_labels" else int(np.searchsorted(offsets, element, side="right")) - 1
    lengths = np.diff(np.load(shard / "offsets.npy"))
    path = edit_array(data_dir, name, position, value)
    data = PretrainingDataset(data_dir)  # the index alone is read here
    with pytest.raises(DataError, match=f"{path}: " + message.format(row=row, length=lengths[row])):
        data.max_token_id()  # what run_pretraining calls before training: it opens every shard


def test_damaged_index_fields(data_dir):
    index = json.loads((data_dir / "index.json").read_text())
    for edit, message in [(lambda i: i["vocab"].update(size="99"), r"vocab.size must be an integer"),
                          (lambda i: i["shards"][0].update(num_instances=-1), r"shards\[0\].num_instances"),
                          (lambda i: i["shards"][0].update(name="../elsewhere"), r"shards\[0\].name is '../elsewhere'"),
                          (lambda i: i["settings"].pop("max_predictions_per_seq"), r"missing a field")]:
        changed = json.loads(json.dumps(index))
        edit(changed)
        (data_dir / "index.json").write_text(json.dumps(changed))
        with pytest.raises(DataError, match=message):
            PretrainingDataset(data_dir)


def test_cli_run_pretraining_on_a_damaged_shard(data_dir, tmp_path, capsys):
    path = edit_array(data_dir, "masked_lm_positions", -1, 999)
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(google_tiny_config()))
    out = tmp_path / "out"
    line = cli_error(capsys, "run_pretraining", f"--input_file={data_dir}", f"--output_dir={out}", "--do_train",
                     f"--bert_config_file={config}", "--max_seq_length=32", "--max_predictions_per_seq=5",
                     "--train_batch_size=2", "--num_train_steps=1", "--no_progress")
    assert f"{path}: row" in line and "holds 999" in line
    assert not out.exists() or not any(out.iterdir())


# ---- 6. tokenizer input -----------------------------------------------------------------------

@pytest.mark.parametrize("text", [None, b"bytes", 3])
def test_tokenize_wants_a_str(text):
    tokenizer = FullTokenizer(TINY_VOCAB)
    for method in (tokenizer.tokenize, tokenizer.text_to_ids, tokenizer.encode):
        with pytest.raises(TypeError, match=f"expects a str, got {type(text).__name__}"):
            method(text)


# ---- every JSON reader: nesting deep enough to overflow Python's parser ------------------------

def deep_json(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[" * 100_000 + "]" * 100_000)
    return path


@pytest.mark.parametrize("reader", ["config.json", "SQuAD", "CommonsenseQA", "shards' index.json", "sharded index"])
def test_deeply_nested_json(tmp_path, reader):
    read = {
        "config.json": lambda: BertConfig.from_json_file(deep_json(tmp_path / "config.json")),
        "SQuAD": lambda: read_squad_examples(deep_json(tmp_path / "train.json"), is_training=True),
        "CommonsenseQA": lambda: read_commonsenseqa_examples(deep_json(tmp_path / "train_rand_split.jsonl")),
        "shards' index.json": lambda: PretrainingDataset(deep_json(tmp_path / "data" / "index.json").parent),
        "sharded index": lambda: BertModel.from_pretrained(deep_json(tmp_path / "model.safetensors.index.json")),
    }[reader]
    with pytest.raises(BertkitError, match=str(tmp_path)) as info:
        read()
    assert "\n" not in str(info.value)
