"""bertkit.checkpoint.tf_bundle against real checkpoints written by TensorFlow (tests/fixtures/tf).

The fixtures come from tools/make_tf_fixtures.py; each directory's variables.json and expected/*.npy
are what TensorFlow itself lists and reads back. Crafted damage (a big-endian header, a sliced
entry, a snappy block...) is made by rewriting the index table with the small table writer below,
which computes its block checksums with its own bytewise CRC32C.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bertkit.checkpoint import tf_bundle
from bertkit.checkpoint.tf_bundle import (
    TFCheckpointReader,
    UnsupportedTensorError,
    crc32c,
    find_tf_checkpoint,
    mask_crc32c,
)
from bertkit.errors import CheckpointError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tf"
CHECKPOINTS = ["bert_tiny_pretraining", "bert_tiny_classifier", "bert_tiny_adam", "bert_tiny_sharded",
               "bert_tiny_fp16", "misc"]
UNREADABLE = {"misc/string": "string tensor", "misc/string_scalar": "string tensor",
              "misc/partitioned": "partitioned tensor"}
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
                "bfloat16": torch.bfloat16, "int8": torch.int8, "int16": torch.int16, "int32": torch.int32,
                "int64": torch.int64, "uint8": torch.uint8, "bool": torch.bool}
MAGIC = 0xDB4775248B80FB57


def listing(directory: Path) -> list:
    """TensorFlow's own list_variables and dtypes for a fixture."""
    return json.loads((directory / "variables.json").read_text())["variables"]


def expected(directory: Path, name: str) -> np.ndarray:
    return np.load(directory / "expected" / (name.replace("/", "__") + ".npy"))


def assert_bit_exact(tensor: torch.Tensor, want: np.ndarray, dtype: str) -> None:
    assert tensor.dtype == TORCH_DTYPES[dtype]
    got = tensor.float().numpy() if dtype == "bfloat16" else tensor.numpy()  # the .npy holds bfloat16 widened
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()  # bitwise, so NaN payloads and -0.0 count too


def copy_checkpoint(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target, ignore=shutil.ignore_patterns("expected"))
    return target


# ---- an independent CRC32C and a minimal table writer, for crafting indexes -----------------

def reference_crc32c(data: bytes) -> int:
    """Bit-at-a-time CRC32C, straight from the definition (reflected polynomial 0x82F63B78)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def reference_mask(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def block(entries: list[tuple[bytes, bytes]]) -> bytes:
    """A block without prefix compression: every key whole, one restart point at offset 0."""
    body = b"".join(varint(0) + varint(len(k)) + varint(len(v)) + k + v for k, v in entries)
    return body + (0).to_bytes(4, "little") + (1).to_bytes(4, "little")


def with_trailer(contents: bytes, compression: int = 0) -> bytes:
    covered = contents + bytes([compression])
    return covered + reference_mask(reference_crc32c(covered)).to_bytes(4, "little")


def write_table(entries: list[tuple[bytes, bytes]], compression: int = 0) -> bytes:
    """data block, empty metaindex block, index block, footer (LevelDB table format)."""
    data = block(entries)
    out = with_trailer(data, compression)
    meta = block([])
    meta_handle = varint(len(out)) + varint(len(meta))
    out += with_trailer(meta)
    index = block([(entries[-1][0], varint(0) + varint(len(data)))])
    index_handle = varint(len(out)) + varint(len(index))
    out += with_trailer(index)
    footer = meta_handle + index_handle
    return out + footer + bytes(40 - len(footer)) + MAGIC.to_bytes(8, "little")


def index_pairs(index_path: Path) -> list[tuple[bytes, bytes]]:
    return tf_bundle._read_table(index_path.read_bytes())


def rewrite_index(index_path: Path, edit, compression: int = 0) -> None:
    """Replace the index with one whose entries went through edit(key, value) -> value."""
    index_path.write_bytes(write_table([(k, edit(k, v)) for k, v in index_pairs(index_path)], compression))


# ---- reading real checkpoints -----------------------------------------------------------------

@pytest.mark.parametrize("name", CHECKPOINTS)
def test_list_variables_matches_tensorflow(name):
    with TFCheckpointReader(FIXTURES / name) as reader:
        got = [[v.name, list(v.shape), v.dtype] for v in reader.list_variables()]
        assert got == listing(FIXTURES / name)
        assert len(reader) == len(got)
        assert all(isinstance(v.shape, tuple) for v in reader.list_variables())


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_every_tensor_is_bit_exact(name):
    directory = FIXTURES / name
    with TFCheckpointReader(directory) as reader:
        for var_name, shape, dtype in listing(directory):
            assert var_name in reader
            if var_name in UNREADABLE:
                continue
            assert_bit_exact(reader.get_tensor(var_name), expected(directory, var_name), dtype)


def test_google_layout_and_heads():
    """Kernels are [in, out]; run_classifier's output_weights is [num_labels, hidden]."""
    with TFCheckpointReader(FIXTURES / "bert_tiny_classifier") as reader:
        shapes = {v.name: v.shape for v in reader.list_variables()}
    assert shapes["bert/encoder/layer_0/intermediate/dense/kernel"] == (32, 64)
    assert shapes["output_weights"] == (2, 32) and "cls/predictions/output_bias" not in shapes
    with TFCheckpointReader(FIXTURES / "bert_tiny_adam") as reader:
        assert reader.get_tensor("global_step").item() == 20
        assert "bert/pooler/dense/kernel/adam_v" in reader


def test_sharded_checkpoint_reads_both_shards():
    with TFCheckpointReader(FIXTURES / "bert_tiny_sharded") as reader:
        assert reader.num_shards == 2
        shards = {entry.shard_id for entry in reader._entries.values()}
        assert shards == {0, 1}


def test_strings_and_partitioned_are_listed_but_skipped():
    with TFCheckpointReader(FIXTURES / "misc") as reader:
        dtypes = {v.name: v.dtype for v in reader.list_variables()}
        assert dtypes["misc/string"] == "string" and dtypes["misc/partitioned"] == "float32"
        # Slices of the partitioned variable are entries of their own, never listed as variables.
        assert all(not name.startswith("\x00") for name in dtypes)
        for name, reason in UNREADABLE.items():
            with pytest.raises(UnsupportedTensorError) as info:
                reader.get_tensor(name)
            assert info.value.reason == reason and name in str(info.value)
            assert isinstance(info.value, CheckpointError)


def test_unknown_tensor_name():
    with TFCheckpointReader(FIXTURES / "misc") as reader, pytest.raises(CheckpointError, match="no tensor named"):
        reader.get_tensor("bert/nope")


# ---- finding the checkpoint -------------------------------------------------------------------

def test_all_path_forms_give_the_same_prefix():
    directory = FIXTURES / "bert_tiny_sharded"
    prefix = str(directory / "bert_model.ckpt")
    forms = [prefix, Path(prefix), prefix + ".index", prefix + ".data-00000-of-00002",
             prefix + ".data-00001-of-00002", directory, str(directory)]
    for form in forms:
        assert find_tf_checkpoint(form) == prefix
        with TFCheckpointReader(form) as reader:
            assert reader.prefix == prefix


def test_directory_uses_the_checkpoint_state_file():
    # misc holds model.ckpt-1 and model.ckpt-2; its `checkpoint` file names model.ckpt-2.
    assert find_tf_checkpoint(FIXTURES / "misc") == str(FIXTURES / "misc" / "model.ckpt-2")
    assert find_tf_checkpoint(FIXTURES / "bert_tiny_adam") == str(FIXTURES / "bert_tiny_adam" / "model.ckpt-20")


def test_state_file_with_a_foreign_absolute_path(tmp_path):
    directory = copy_checkpoint("misc", tmp_path)
    (directory / "checkpoint").write_text('model_checkpoint_path: "/gone/job/model.ckpt-1"\n')
    assert find_tf_checkpoint(directory) == str(directory / "model.ckpt-1")


def test_directory_with_several_checkpoints_and_no_state_file(tmp_path):
    directory = copy_checkpoint("misc", tmp_path)
    (directory / "checkpoint").unlink()
    with pytest.raises(CheckpointError, match="model.ckpt-1.index, model.ckpt-2.index"):
        find_tf_checkpoint(directory)


def test_not_a_checkpoint(tmp_path):
    assert find_tf_checkpoint(tmp_path) is None
    assert find_tf_checkpoint(tmp_path / "bert_model.ckpt") is None
    assert find_tf_checkpoint(FIXTURES / "bert_tiny_pretraining" / "vocab.txt") is None
    with pytest.raises(CheckpointError, match="does not exist"):
        TFCheckpointReader(tmp_path / "bert_model.ckpt")
    with pytest.raises(CheckpointError, match="no TensorFlow V2 checkpoint"):
        TFCheckpointReader(tmp_path)


# ---- laziness ---------------------------------------------------------------------------------

class CountingFile:
    """A file wrapper that counts the bytes read through it."""

    def __init__(self, path, log):
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed through close()
        self._path = os.fspath(path)
        self._log = log

    def read(self, *args):
        data = self._file.read(*args)
        self._log[self._path] = self._log.get(self._path, 0) + len(data)
        return data

    def readinto(self, buffer):
        count = self._file.readinto(buffer)
        self._log[self._path] = self._log.get(self._path, 0) + count
        return count

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._file.close()


def test_reads_only_the_index_then_only_one_tensors_bytes(monkeypatch):
    log: dict[str, int] = {}
    monkeypatch.setattr(tf_bundle, "open", lambda path, *a, **k: CountingFile(path, log), raising=False)
    prefix = FIXTURES / "bert_tiny_pretraining" / "bert_model.ckpt"
    data_path = f"{prefix}.data-00000-of-00001"
    with TFCheckpointReader(prefix) as reader:
        reader.list_variables()
        assert set(log) == {f"{prefix}.index"}  # opening and listing touch no data file
        bias = reader.get_tensor("cls/seq_relationship/output_bias")
        assert log[data_path] == bias.numel() * 4  # 8 bytes of a ~100 KB shard
        files = list(reader._files.values())
    assert all(f.closed for f in files)  # closed by the with block


# ---- damage: every failure is a CheckpointError naming the file (and the tensor) ---------------

def test_flipped_tensor_byte_fails_the_crc_unless_verify_is_off(tmp_path):
    directory = copy_checkpoint("bert_tiny_pretraining", tmp_path)
    data_path = directory / "bert_model.ckpt.data-00000-of-00001"
    with TFCheckpointReader(directory) as reader:
        entry = reader._entries["bert/pooler/dense/bias"]
    data = bytearray(data_path.read_bytes())
    data[entry.offset + 5] ^= 0x10
    data_path.write_bytes(bytes(data))
    with TFCheckpointReader(directory) as reader:
        with pytest.raises(CheckpointError, match="checksum mismatch for tensor 'bert/pooler/dense/bias'") as info:
            reader.get_tensor("bert/pooler/dense/bias")
        assert str(data_path) in str(info.value)
        reader.get_tensor("bert/pooler/dense/kernel")  # its neighbours are intact
    with TFCheckpointReader(directory, verify=False) as reader:
        damaged = reader.get_tensor("bert/pooler/dense/bias").numpy()
        assert damaged.tobytes() != expected(FIXTURES / "bert_tiny_pretraining", "bert/pooler/dense/bias").tobytes()


def test_corrupt_index_block(tmp_path):
    directory = copy_checkpoint("bert_tiny_pretraining", tmp_path)
    index_path = directory / "bert_model.ckpt.index"
    index = bytearray(index_path.read_bytes())
    index[100] ^= 0x01
    index_path.write_bytes(bytes(index))
    with pytest.raises(CheckpointError, match="checksum mismatch in the block") as info:
        TFCheckpointReader(directory)
    assert str(index_path) in str(info.value)


@pytest.mark.parametrize("keep", [0, 10, 47, 200])
def test_truncated_index(tmp_path, keep):
    directory = copy_checkpoint("bert_tiny_pretraining", tmp_path)
    index_path = directory / "bert_model.ckpt.index"
    index_path.write_bytes(index_path.read_bytes()[:keep])
    with pytest.raises(CheckpointError, match="corrupt or unsupported checkpoint index") as info:
        TFCheckpointReader(directory)
    assert str(index_path) in str(info.value)


def test_truncated_data_file(tmp_path):
    directory = copy_checkpoint("bert_tiny_pretraining", tmp_path)
    data_path = directory / "bert_model.ckpt.data-00000-of-00001"
    data_path.write_bytes(data_path.read_bytes()[:1000])
    with TFCheckpointReader(directory) as reader:
        entries = sorted(reader._entries.items(), key=lambda item: item[1].offset)
        first, last = entries[0][0], entries[-1][0]
        reader.get_tensor(first)  # wholly inside the first 1000 bytes
        with pytest.raises(CheckpointError, match=f"tensor '{last}'.*beyond the end.*truncated"):
            reader.get_tensor(last)


def test_missing_shard(tmp_path):
    directory = copy_checkpoint("bert_tiny_sharded", tmp_path)
    (directory / "bert_model.ckpt.data-00001-of-00002").unlink()
    with pytest.raises(CheckpointError, match=r"data-00001-of-00002: data shard 2 of 2 is missing"):
        TFCheckpointReader(directory)


def test_data_file_of_another_checkpoint(tmp_path):
    """The fp16 model's shard beside the fp32 index: every read fails or is still right, none is wrong."""
    directory = copy_checkpoint("bert_tiny_pretraining", tmp_path)
    shutil.copy(FIXTURES / "bert_tiny_fp16" / "bert_model.ckpt.data-00000-of-00001",
                directory / "bert_model.ckpt.data-00000-of-00001")
    failures = 0
    with TFCheckpointReader(directory) as reader:
        for name, _, dtype in reader.list_variables():
            try:
                tensor = reader.get_tensor(name)
            except CheckpointError as err:
                assert name in str(err)
                failures += 1
            else:
                assert_bit_exact(tensor, expected(FIXTURES / "bert_tiny_pretraining", name), dtype)
    assert failures == len(reader)


def test_table_writer_round_trip(tmp_path):
    """Our test writer (no prefix compression, one restart) produces tables the reader agrees with."""
    directory = copy_checkpoint("bert_tiny_pretraining", tmp_path)
    rewrite_index(directory / "bert_model.ckpt.index", lambda key, value: value)
    with TFCheckpointReader(directory) as reader:
        assert [[v.name, list(v.shape), v.dtype] for v in reader.list_variables()] == listing(directory)
        assert_bit_exact(reader.get_tensor("bert/embeddings/word_embeddings"),
                         expected(FIXTURES / "bert_tiny_pretraining", "bert/embeddings/word_embeddings"), "float32")


# A serialized field appended to a message overrides a singular field (protobuf: last one wins).
ENTRY_EDITS = {
    "unknown dtype": (varint(1 << 3) + varint(99), UnsupportedTensorError, "unknown_dtype_99 tensor"),
    "complex dtype": (varint(1 << 3) + varint(8), UnsupportedTensorError, "complex64 tensor"),
    "sliced": (varint(7 << 3 | 2) + varint(0), UnsupportedTensorError, "partitioned"),
    "size": (varint(5 << 3) + varint(12), CheckpointError, "12 bytes for a float32 tensor of shape"),
    "shard": (varint(3 << 3) + varint(3), CheckpointError, "shard 3 of a 1-shard checkpoint"),
    "offset": (varint(4 << 3) + varint(10**9), CheckpointError, "beyond the end"),
    "negative offset": (varint(4 << 3) + varint((1 << 64) - 8), CheckpointError, "beyond the end"),
    "crc": (varint(6 << 3 | 5) + (1234).to_bytes(4, "little"), CheckpointError, "checksum mismatch"),
}


@pytest.mark.parametrize("edit", list(ENTRY_EDITS))
def test_crafted_entry(tmp_path, edit):
    extra, error, message = ENTRY_EDITS[edit]
    name = "bert/pooler/dense/bias"
    directory = copy_checkpoint("bert_tiny_pretraining", tmp_path)
    rewrite_index(directory / "bert_model.ckpt.index",
                  lambda key, value: value + extra if key == name.encode() else value)
    with TFCheckpointReader(directory) as reader:
        with pytest.raises(error, match=message) as info:
            reader.get_tensor(name)
        assert name in str(info.value) and str(directory) in str(info.value)
        reader.get_tensor("bert/pooler/dense/kernel")


HEADER_EDITS = {
    "big-endian": (varint(2 << 3) + varint(1), "big-endian"),
    "newer format": (varint(3 << 3 | 2) + varint(2) + varint(2 << 3) + varint(2), "newer TensorFlow"),
    "bad consumer": (varint(3 << 3 | 2) + varint(2) + varint(3 << 3) + varint(1), "newer TensorFlow"),
    "no shards": (varint(1 << 3) + varint(0), "bad number of data shards"),
    "wire type": (varint(1 << 3 | 2) + varint(0), "wire type"),
}


@pytest.mark.parametrize("edit", list(HEADER_EDITS))
def test_crafted_header(tmp_path, edit):
    extra, message = HEADER_EDITS[edit]
    directory = copy_checkpoint("bert_tiny_pretraining", tmp_path)
    rewrite_index(directory / "bert_model.ckpt.index", lambda key, value: value + extra if key == b"" else value)
    with pytest.raises(CheckpointError, match=message) as info:
        TFCheckpointReader(directory)
    assert str(directory / "bert_model.ckpt.index") in str(info.value)


def test_crafted_tables(tmp_path):
    directory = copy_checkpoint("bert_tiny_pretraining", tmp_path)
    index_path = directory / "bert_model.ckpt.index"
    pairs = index_pairs(index_path)
    cases = {
        "snappy-compressed": write_table(pairs, compression=1),
        "compression type 7": write_table(pairs, compression=7),
        "no bundle header": write_table(pairs[1:]),
        "entry 'bert/x'.*truncated varint": write_table([(b"", pairs[0][1]), (b"bert/x", b"\x0a\xff")]),
        "unsupported wire type 3": write_table([(b"", pairs[0][1]), (b"bert/x", b"\x0b")]),
        "shape of unknown rank": write_table([(b"", pairs[0][1]), (b"bert/x", b"\x12\x02\x18\x01")]),
        "dimension of unknown size": write_table(
            [(b"", pairs[0][1]), (b"bert/x", b"\x12\x0d\x12\x0b\x08" + varint((1 << 64) - 1))]),
        "keys out of order": write_table([pairs[0], pairs[2], pairs[1]]),
        "bad magic": write_table(pairs)[:-1] + b"\x00",
    }
    for message, table in cases.items():
        index_path.write_bytes(table)
        with pytest.raises(CheckpointError, match=message):
            TFCheckpointReader(directory)


# ---- CRC32C -----------------------------------------------------------------------------------

def test_crc32c_known_values():
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720, B.4
    assert crc32c(b"") == 0
    assert mask_crc32c(0) == reference_mask(0) == 0xA282EAD8


def test_numpy_crc32c_on_real_sizes():
    data = np.random.default_rng(0).integers(0, 256, 40_000, dtype=np.uint8).tobytes()
    assert tf_bundle._crc32c_numpy(data) == reference_crc32c(data)
    assert tf_bundle._crc32c_numpy(bytearray(data)) == crc32c(memoryview(data)) == reference_crc32c(data)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_numpy_crc32c_lanes_and_chunks(data):
    """The lane/chunk arithmetic with tiny lanes (16 bytes, at most 4 per 64-byte chunk), so that
    random short inputs cross every boundary the 16 MiB chunks of real tensors do."""
    with mock.patch.multiple(tf_bundle, _LANE_BYTES=16, _MAX_LANES=4, _CHUNK_BYTES=64, _BYTEWISE_BELOW=0):
        assert tf_bundle._crc32c_numpy(data) == reference_crc32c(data)


# ---- fuzzing ----------------------------------------------------------------------------------

def fuzz_case(name: str):
    directory = FIXTURES / name
    prefix = find_tf_checkpoint(directory)
    files = {path.name: path.read_bytes() for path in directory.iterdir()
             if path.name.startswith(Path(prefix).name + ".")}
    values = {var: expected(directory, var) for var, _, _ in listing(directory) if var not in UNREADABLE}
    return Path(prefix).name, files, values, listing(directory)


FUZZ_CASES = {name: fuzz_case(name) for name in ("bert_tiny_sharded", "misc")}

damage = st.lists(st.tuples(st.sampled_from(["flip", "truncate"]), st.floats(0, 1, exclude_max=True),
                            st.integers(1, 255)), min_size=1, max_size=3)


@pytest.mark.parametrize("case", list(FUZZ_CASES))
@settings(max_examples=100, deadline=None, derandomize=True)
@given(edits=damage, file_choice=st.integers(0, 2))
def test_fuzz_damaged_files(tmp_path_factory, case, edits, file_choice):
    """Random byte flips and truncations: the reader either raises CheckpointError or returns
    exactly the right data; a flipped tensor byte is always caught."""
    prefix_name, files, values, tf_listing = FUZZ_CASES[case]
    names = sorted(files)
    target = names[file_choice % len(names)]
    content = bytearray(files[target])
    for kind, where, mask in edits:
        if not content:
            break
        position = int(where * len(content))
        if kind == "flip":
            content[position] ^= mask
        else:
            del content[position:]
    directory = tmp_path_factory.mktemp("fuzz")
    for file_name, data in files.items():
        (directory / file_name).write_bytes(bytes(content) if file_name == target else data)
    try:
        reader = TFCheckpointReader(directory / prefix_name)
    except CheckpointError:
        return
    with reader:
        assert [[v.name, list(v.shape), v.dtype] for v in reader.list_variables()] == tf_listing
        for var_name, _, dtype in tf_listing:
            try:
                tensor = reader.get_tensor(var_name)
            except CheckpointError:
                continue
            assert_bit_exact(tensor, values[var_name], dtype)
