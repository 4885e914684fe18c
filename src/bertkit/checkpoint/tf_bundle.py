"""Read TensorFlow V2 checkpoints (tensor bundles), such as Google's BERT release, without TensorFlow.

A V2 checkpoint with prefix `bert_model.ckpt` is

* `bert_model.ckpt.index`: an immutable sorted string table (TensorFlow's copy of the LevelDB
  table format, tensorflow/core/lib/io/table_format.txt) mapping each tensor name to a serialized
  `BundleEntryProto`; the entry under the empty key is the `BundleHeaderProto`
  (tensorflow/core/protobuf/tensor_bundle.proto);
* `bert_model.ckpt.data-0000k-of-0000N`: N data shards holding the raw tensor bytes that the
  entries point at (shard, offset, size), little-endian, in row-major order.

The index is decoded here by hand (varints and the protobuf wire format), so neither TensorFlow
nor protobuf is needed. Everything is checked: the table blocks' checksums, every field bertkit
relies on, and each tensor's CRC32C; anything this reader does not understand (big-endian or newer
bundles, compressed blocks, partitioned tensors, exotic dtypes) is a `CheckpointError` that names
the file and the tensor rather than a silently wrong tensor.

Reading is lazy: opening reads only the `.index` (tens of KB for BERT-base) and stats the shards;
`get_tensor` seeks to one tensor's bytes and reads just those.

CRC32C uses a C implementation when one is importable (`pip install google-crc32c`, or the
`crc32c` package) and otherwise a NumPy one (a few hundred MB/s, see `crc32c`).
"""

from __future__ import annotations

import codecs
import functools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
import torch

from bertkit.errors import CheckpointError

__all__ = [
    "CRC32C_IMPLEMENTATION",
    "TFCheckpointReader",
    "UnsupportedTensorError",
    "Variable",
    "crc32c",
    "find_tf_checkpoint",
    "mask_crc32c",
]


class UnsupportedTensorError(CheckpointError):
    """The tensor is intact but bertkit does not decode it (a string, an exotic dtype, a partitioned
    variable). `reason` says which, for a loader's "skipped: ..." line."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class Variable(NamedTuple):
    """One row of `TFCheckpointReader.list_variables()`, like `tf.train.list_variables` plus dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str


class _FormatError(Exception):
    """A malformed structure inside a file; the reader re-raises it as a CheckpointError naming the file."""


# --------------------------------------------------------------------------------------------
# CRC32C (Castagnoli), as TensorFlow's tensorflow/core/lib/hash/crc32c.h computes and masks it.

_CRC_POLY = 0x82F63B78  # the Castagnoli polynomial, bit-reflected
_MASK_DELTA = 0xA282EAD8  # crc32c::Mask: rotate right by 15 bits, then add this constant


def _byte_table() -> list[int]:
    """The classic 256-entry table: the register after shifting one byte `i` through it."""
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _byte_table()


def _crc_bytewise(register: int, data: bytes) -> int:
    """Advance the (unconditioned) CRC register over `data`, one byte at a time."""
    table = _TABLE
    for byte in data:
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


# The NumPy implementation below rests on linearity. Let Z be "feed one zero byte to the register":
# Z(r) = TABLE[r & 0xFF] ^ (r >> 8), a linear map on 32-bit registers. Feeding bytes m from
# register r gives Z^len(m)(r) ^ feed(0, m). So the data can be cut into K equal lanes that are
# fed independently and in parallel (vectorised across lanes), then folded pairwise:
# feed(0, a + b) = Z^len(b)(feed(0, a)) ^ feed(0, b). Leading zero bytes leave register 0 at 0,
# so inputs are padded at the front to a whole number of equal lanes.

_LANE_BYTES = 1024  # bytes per lane: the NumPy loop runs 256 times (4 bytes a step) per chunk
_MAX_LANES = 16384  # registers fed in parallel: 64 KB of them stays in the CPU cache
_CHUNK_BYTES = _LANE_BYTES * _MAX_LANES  # 16 MiB, transposed one at a time
_BYTEWISE_BELOW = 8192  # under this size the plain loop beats NumPy's per-call overhead


def _apply(columns: tuple[int, ...], value: int) -> int:
    """Apply a linear map on 32-bit registers, given as the images of the 32 unit vectors."""
    result = 0
    bit = 0
    while value:
        if value & 1:
            result ^= columns[bit]
        value >>= 1
        bit += 1
    return result


@functools.lru_cache(maxsize=None)
def _zeros_map(n: int) -> tuple[int, ...]:
    """Z^n, "feed n zero bytes", by repeated squaring. Only a handful of n are ever asked for."""
    if n == 1:
        return tuple(_TABLE[(1 << i) & 0xFF] ^ ((1 << i) >> 8) for i in range(32))
    half = _zeros_map(n // 2)
    square = tuple(_apply(half, column) for column in half)
    return square if n % 2 == 0 else tuple(_apply(_zeros_map(1), column) for column in square)


@functools.lru_cache(maxsize=None)
def _zeros_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Z^n as two 65536-entry lookup tables, one for each 16-bit half of the register."""
    columns = np.array(_zeros_map(n), dtype=np.uint32)
    halves = np.arange(65536, dtype=np.uint32)
    low = np.zeros(65536, dtype=np.uint32)
    high = np.zeros(65536, dtype=np.uint32)
    for bit in range(16):
        set_bits = ((halves >> bit) & 1).astype(bool)
        low[set_bits] ^= columns[bit]
        high[set_bits] ^= columns[16 + bit]
    return low, high


def _feed_lanes(segment: np.ndarray) -> int:
    """feed(0, segment) for a uint8 array of (power of two) x _LANE_BYTES bytes."""
    lanes = len(segment) // _LANE_BYTES
    # Row t of `words` holds the t-th little-endian 32-bit word of every lane.
    words = np.ascontiguousarray(segment.view("<u4").reshape(lanes, _LANE_BYTES // 4).T)
    registers = np.zeros(lanes, dtype=np.uint32)
    low_half = np.empty(lanes, dtype=np.uint32)
    # Feeding a 32-bit word w is Z^4(r ^ w), as Z^4 moves every register bit out through the table.
    low_table, high_table = _zeros_tables(4)
    for word in words:
        np.bitwise_xor(registers, word, out=registers)
        np.bitwise_and(registers, 0xFFFF, out=low_half)
        np.take(low_table, low_half, out=low_half)
        np.right_shift(registers, 16, out=registers)
        np.take(high_table, registers, out=registers)
        np.bitwise_xor(registers, low_half, out=registers)
    lane_bytes = _LANE_BYTES
    while len(registers) > 1:  # fold neighbouring lanes: feed(0, a + b) = Z^len(b)(feed(0, a)) ^ feed(0, b)
        low_table, high_table = _zeros_tables(lane_bytes)
        left = registers[0::2]
        registers = low_table[left & 0xFFFF] ^ high_table[left >> 16] ^ registers[1::2]
        lane_bytes *= 2
    return int(registers[0])


def _unfeed_zero_bytes(register: int, n: int) -> int:
    """Z^-n: the register that n zero bytes turn into `register`.

    Z is invertible: the top byte of TABLE[i] differs for every i, and (r >> 8) has a zero top
    byte, so the top byte of Z(r) tells which entry i = r & 0xFF was used; undoing it gives r.
    """
    entry_for_top_byte = {value >> 24: index for index, value in enumerate(_TABLE)}
    for _ in range(n):
        index = entry_for_top_byte[register >> 24]
        register = ((register ^ _TABLE[index]) << 8 | index) & 0xFFFFFFFF
    return register


# CRC32C starts with the register all ones. Feeding a 4-byte word w from register 0 leaves Z^4(w),
# so these 4 bytes, fed from 0, reach that state: the lanes, which all start from 0, can treat
# the initial value as 4 bytes of data in front of the message.
_INIT_PREFIX = _unfeed_zero_bytes(0xFFFFFFFF, 4).to_bytes(4, "little")


def _crc32c_numpy(data) -> int:
    """CRC32C of a bytes-like object in NumPy (no C extension needed): about 300 MB/s."""
    view = np.frombuffer(data, dtype=np.uint8)
    if len(view) < _BYTEWISE_BELOW:
        return _crc_bytewise(0xFFFFFFFF, view.tobytes()) ^ 0xFFFFFFFF
    prefix = np.frombuffer(_INIT_PREFIX, dtype=np.uint8)
    total = len(prefix) + len(view)
    # The stream is zeros + prefix + data; cut it into 16 MiB chunks from the end so that only the
    # first chunk is partial, and pad that one at the front to a power of two of whole lanes.
    head = total % _CHUNK_BYTES or _CHUNK_BYTES
    if head < len(prefix):  # keep the whole prefix in the first segment
        head += _CHUNK_BYTES
    lanes = 1 << (-(-head // _LANE_BYTES) - 1).bit_length()
    first = np.zeros(lanes * _LANE_BYTES, dtype=np.uint8)
    first[len(first) - head:len(first) - head + len(prefix)] = prefix
    first[len(first) - head + len(prefix):] = view[:head - len(prefix)]
    register = _feed_lanes(first)
    chunk_low, chunk_high = _zeros_tables(_CHUNK_BYTES)
    for start in range(head - len(prefix), len(view), _CHUNK_BYTES):
        shifted = chunk_low[register & 0xFFFF] ^ chunk_high[register >> 16]
        register = int(shifted) ^ _feed_lanes(view[start:start + _CHUNK_BYTES])
    return register ^ 0xFFFFFFFF


def _c_crc32c():
    """A C implementation of CRC32C from PyPI, if one is installed, and its name."""
    try:
        import crc32c as crc32c_package  # takes any buffer; uses the CPU's CRC32C instruction
    except ImportError:
        pass
    else:
        return crc32c_package.crc32c, "crc32c"
    try:
        import google_crc32c
    except ImportError:
        return None, "numpy"
    # google_crc32c falls back to pure Python (much slower than ours) when its C part is missing.
    if getattr(google_crc32c, "implementation", "c") != "c":
        return None, "numpy"
    return (lambda data: google_crc32c.value(bytes(data))), "google_crc32c"  # it accepts only bytes


_C_CRC32C, CRC32C_IMPLEMENTATION = _c_crc32c()


def crc32c(data) -> int:
    """CRC32C (Castagnoli) of a bytes-like object, as TensorFlow's crc32c::Value computes it."""
    if _C_CRC32C is not None:
        return _C_CRC32C(data)
    return _crc32c_numpy(data)


def mask_crc32c(crc: int) -> int:
    """crc32c::Mask: what TF stores, so that CRCs of data that embeds CRCs are not degenerate."""
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# --------------------------------------------------------------------------------------------
# Protobuf wire format (https://protobuf.dev/programming-guides/encoding/), decoded by hand.

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


def _read_varint(buf: bytes, pos: int, limit: int | None = None) -> tuple[int, int]:
    """Decode an unsigned LEB128 varint at buf[pos]; return (value, position after it)."""
    limit = len(buf) if limit is None else limit
    result = 0
    for shift in range(0, 70, 7):  # a 64-bit value takes at most 10 bytes
        if pos >= limit:
            raise _FormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
    raise _FormatError("varint longer than 10 bytes")


def _signed64(value: int) -> int:
    """int32/int64 fields are varints of the two's-complement 64-bit value."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >> 63 else value


def _parse_message(buf: bytes) -> dict[int, list[tuple[int, int | bytes]]]:
    """Split a serialized message into {field number: [(wire type, value), ...]} in file order."""
    fields: dict[int, list[tuple[int, int | bytes]]] = {}
    pos = 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise _FormatError("field number 0")
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            if pos + width > len(buf):
                raise _FormatError("truncated fixed-width field")
            value = int.from_bytes(buf[pos:pos + width], "little")
            pos += width
        elif wire == _LENGTH_DELIMITED:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise _FormatError("truncated length-delimited field")
            value = bytes(buf[pos:pos + length])
            pos += length
        else:  # 3 and 4 are the deprecated groups, which none of these messages use
            raise _FormatError(f"unsupported wire type {wire}")
        fields.setdefault(number, []).append((wire, value))
    return fields


def _field(fields, number: int, wire: int, default):
    """A singular field: the last occurrence wins, as in protobuf; a wrong wire type is corruption."""
    occurrences = fields.get(number)
    if not occurrences:
        return default
    found_wire, value = occurrences[-1]
    if found_wire != wire:
        raise _FormatError(f"field {number} has wire type {found_wire}, expected {wire}")
    return value


def _repeated(fields, number: int, wire: int) -> list:
    """A repeated field. Scalars may also come packed into one length-delimited run (proto3's default)."""
    values = []
    for found_wire, value in fields.get(number, []):
        if found_wire == wire:
            values.append(value)
        elif wire == _VARINT and found_wire == _LENGTH_DELIMITED:
            pos = 0
            while pos < len(value):
                item, pos = _read_varint(value, pos)
                values.append(item)
        else:
            raise _FormatError(f"field {number} has wire type {found_wire}, expected {wire}")
    return values


# --------------------------------------------------------------------------------------------
# The .index table (LevelDB table format as kept in tensorflow/core/lib/io/{format,block}.cc).

_FOOTER_BYTES = 48  # metaindex handle + index handle (varints, padded to 40 bytes) + magic
_TABLE_MAGIC = 0xDB4775248B80FB57
_BLOCK_TRAILER_BYTES = 5  # 1 byte compression type + 4 bytes masked CRC32C
_NO_COMPRESSION, _SNAPPY = 0, 1


def _read_block_handle(buf: bytes, pos: int, limit: int) -> tuple[int, int, int]:
    """BlockHandle: varint64 offset, varint64 size; returns (offset, size, position after it)."""
    offset, pos = _read_varint(buf, pos, limit)
    size, pos = _read_varint(buf, pos, limit)
    return offset, size, pos


def _read_block(table: bytes, offset: int, size: int) -> bytes:
    """A block's contents after checking its trailer (compression type and CRC, format.cc ReadBlock)."""
    end = offset + size
    if end + _BLOCK_TRAILER_BYTES > len(table) - _FOOTER_BYTES:
        raise _FormatError(f"block at offset {offset} (size {size}) runs past the end of the file; "
                           "truncated?")
    stored = int.from_bytes(table[end + 1:end + _BLOCK_TRAILER_BYTES], "little")
    # The CRC covers the contents and the compression-type byte.
    if mask_crc32c(crc32c(table[offset:end + 1])) != stored:
        raise _FormatError(f"checksum mismatch in the block at offset {offset}; the file is corrupt")
    compression = table[end]
    if compression == _SNAPPY:
        raise _FormatError("the table is snappy-compressed, which bertkit does not read "
                           "(TensorFlow writes checkpoint indexes uncompressed)")
    if compression != _NO_COMPRESSION:
        raise _FormatError(f"unknown block compression type {compression}")
    return table[offset:end]


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """The (key, value) pairs of a block (block.cc): prefix-compressed keys, then restart points.

    Each entry is varint32 shared, varint32 non_shared, varint32 value_length, the key bytes after
    the `shared` bytes it has in common with the previous key, then the value. The block ends with
    fixed32 restart offsets and their fixed32 count; they only speed up seeks, and a full scan in
    order does not need them beyond knowing where the entries stop.
    """
    if len(block) < 4:
        raise _FormatError("block too short for its restart count")
    num_restarts = int.from_bytes(block[-4:], "little")
    entries_end = len(block) - 4 * (num_restarts + 1)
    if entries_end < 0:
        raise _FormatError("block restart count larger than the block")
    entries = []
    key = b""
    pos = 0
    while pos < entries_end:
        shared, pos = _read_varint(block, pos, entries_end)
        non_shared, pos = _read_varint(block, pos, entries_end)
        value_length, pos = _read_varint(block, pos, entries_end)
        if shared > len(key) or pos + non_shared + value_length > entries_end:
            raise _FormatError("bad entry in block")
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos:pos + value_length]))
        pos += value_length
    return entries


def _read_table(table: bytes) -> list[tuple[bytes, bytes]]:
    """All (key, value) pairs of a table file's contents, in key order."""
    if len(table) < _FOOTER_BYTES:
        raise _FormatError(f"file is {len(table)} bytes, shorter than the {_FOOTER_BYTES}-byte table footer; "
                           "truncated?")
    footer = table[-_FOOTER_BYTES:]
    if int.from_bytes(footer[-8:], "little") != _TABLE_MAGIC:
        raise _FormatError("bad magic number: not a TensorFlow V2 checkpoint index, or truncated")
    # The metaindex block would list filter blocks, which TensorFlow's tables never have; skip it.
    _, _, pos = _read_block_handle(footer, 0, _FOOTER_BYTES - 8)
    index_offset, index_size, _ = _read_block_handle(footer, pos, _FOOTER_BYTES - 8)
    pairs: list[tuple[bytes, bytes]] = []
    # Each index entry's value is the handle of a data block; its key only separates blocks.
    for _, handle in _block_entries(_read_block(table, index_offset, index_size)):
        offset, size, end = _read_block_handle(handle, 0, len(handle))
        if end != len(handle):
            raise _FormatError("bad block handle in the index block")
        pairs.extend(_block_entries(_read_block(table, offset, size)))
    for (previous, _), (key, _) in zip(pairs, pairs[1:]):
        if key <= previous:
            raise _FormatError(f"keys out of order at {key!r}")
    return pairs


# --------------------------------------------------------------------------------------------
# The bundle: header and entries (tensor_bundle.proto, tensor_bundle.cc).

_BUNDLE_VERSION = 1  # kTensorBundleVersion: the format version this reader implements
_DT_STRING = 7

# tensorflow/core/framework/types.proto DataType -> (TensorFlow's name, little-endian NumPy dtype
# or None when bertkit does not decode it). Names match tf.DType.name.
_DTYPES: dict[int, tuple[str, str | None]] = {
    1: ("float32", "<f4"), 2: ("float64", "<f8"), 3: ("int32", "<i4"), 4: ("uint8", "|u1"),
    5: ("int16", "<i2"), 6: ("int8", "|i1"), 7: ("string", None), 8: ("complex64", None),
    9: ("int64", "<i8"), 10: ("bool", "|u1"), 11: ("qint8", None), 12: ("quint8", None),
    13: ("qint32", None), 14: ("bfloat16", "<u2"), 15: ("qint16", None), 16: ("quint16", None),
    17: ("uint16", None), 18: ("complex128", None), 19: ("float16", "<f2"), 20: ("resource", None),
    21: ("variant", None), 22: ("uint32", None), 23: ("uint64", None),
}


def _dtype_name(enum: int) -> str:
    return _DTYPES[enum][0] if enum in _DTYPES else f"unknown_dtype_{enum}"


@dataclass(frozen=True)
class _Entry:
    """A decoded BundleEntryProto."""

    dtype: int  # field 1, DataType
    shape: tuple[int, ...]  # field 2, TensorShapeProto
    shard_id: int  # field 3
    offset: int  # field 4
    size: int  # field 5
    crc32c: int  # field 6, masked CRC32C of the bytes [offset, offset + size)
    sliced: bool  # field 7 present: a partitioned tensor whose slices are separate entries


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    """TensorShapeProto: repeated Dim dim = 2 (Dim: int64 size = 1), bool unknown_rank = 3."""
    fields = _parse_message(buf)
    if _field(fields, 3, _VARINT, 0):
        raise _FormatError("shape of unknown rank")
    dims = []
    for dim in _repeated(fields, 2, _LENGTH_DELIMITED):
        size = _signed64(_field(_parse_message(dim), 1, _VARINT, 0))
        if size < 0:
            raise _FormatError(f"dimension of unknown size ({size})")
        dims.append(size)
    return tuple(dims)


def _parse_entry(buf: bytes) -> _Entry:
    fields = _parse_message(buf)
    return _Entry(
        dtype=_field(fields, 1, _VARINT, 0),
        shape=_parse_shape(_field(fields, 2, _LENGTH_DELIMITED, b"")),
        shard_id=_signed64(_field(fields, 3, _VARINT, 0)),
        offset=_signed64(_field(fields, 4, _VARINT, 0)),
        size=_signed64(_field(fields, 5, _VARINT, 0)),
        crc32c=_field(fields, 6, _FIXED32, 0),
        sliced=bool(fields.get(7)),
    )


def _parse_header(buf: bytes) -> int:
    """Check a BundleHeaderProto and return its num_shards."""
    fields = _parse_message(buf)
    num_shards = _signed64(_field(fields, 1, _VARINT, 0))
    endianness = _field(fields, 2, _VARINT, 0)  # enum Endianness { LITTLE = 0; BIG = 1; }
    if endianness == 1:
        raise _FormatError("the checkpoint was written on a big-endian machine, which bertkit does not "
                           "read; re-save it with TensorFlow on a little-endian (x86/ARM) machine")
    if endianness != 0:
        raise _FormatError(f"unknown endianness {endianness} in the bundle header")
    # VersionDef (versions.proto): int32 producer = 1, int32 min_consumer = 2, repeated int32 bad_consumers = 3.
    version = _parse_message(_field(fields, 3, _LENGTH_DELIMITED, b""))
    min_consumer = _signed64(_field(version, 2, _VARINT, 0))
    bad_consumers = [_signed64(v) for v in _repeated(version, 3, _VARINT)]
    if min_consumer > _BUNDLE_VERSION or _BUNDLE_VERSION in bad_consumers:
        raise _FormatError(f"the checkpoint needs a reader of bundle format version >= {min_consumer}, "
                           f"this one is version {_BUNDLE_VERSION}; it was written by a newer TensorFlow")
    if not 1 <= num_shards <= 99999:  # data file names have five digits
        raise _FormatError(f"bad number of data shards {num_shards} in the bundle header")
    return num_shards


# --------------------------------------------------------------------------------------------
# Finding the checkpoint.

_DATA_SUFFIX = re.compile(r"\.data-(\d{5})-of-(\d{5})$")
_STATE_PATH = re.compile(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"\s*$', re.MULTILINE)


def _data_path(prefix: str, shard: int, num_shards: int) -> str:
    """tensor_bundle/naming.cc DataFilename."""
    return f"{prefix}.data-{shard:05d}-of-{num_shards:05d}"


def _has_index(prefix: str | Path) -> bool:
    return os.path.isfile(f"{prefix}.index")


def _prefix_in_directory(directory: Path) -> str | None:
    """The checkpoint a directory holds: the `checkpoint` state file's choice, else the only `*.index`."""
    state = directory / "checkpoint"
    if state.is_file():
        match = _STATE_PATH.search(state.read_text(encoding="utf-8", errors="replace"))
        if match:
            try:  # a text-format proto string: C escapes, and non-ASCII bytes as octal escapes
                named = codecs.escape_decode(match.group(1).encode("utf-8"))[0].decode("utf-8", "replace")
            except ValueError:  # a bad escape: ignore the state file, as if it were absent
                named = ""
            # Training jobs often record absolute paths from another machine (or gs://); a copied
            # directory still holds the files under the same base name.
            for candidate in (directory / named, directory / Path(named).name) if named else ():
                if _has_index(candidate):
                    return str(candidate)
    indexes = sorted(directory.glob("*.index"))
    if len(indexes) > 1:
        raise CheckpointError(
            f"{directory} holds {len(indexes)} TensorFlow checkpoints ({', '.join(i.name for i in indexes)}) "
            "and no `checkpoint` file naming one of them; pass the prefix of the one you want, "
            f"e.g. {str(indexes[-1])[:-len('.index')]}")
    return str(indexes[0])[:-len(".index")] if indexes else None


def find_tf_checkpoint(path: str | os.PathLike) -> str | None:
    """The prefix of the TensorFlow V2 checkpoint at `path`, or None if there is none.

    `path` may be the prefix (`.../bert_model.ckpt`), its `.index` file, one of its `.data-*`
    files, or a directory holding one checkpoint (as named by its `checkpoint` state file, else the
    only `*.index` in it). Raises CheckpointError for a directory with several checkpoints and no
    state file to choose, since guessing could load the wrong one.
    """
    path = Path(path)
    if path.is_dir():
        return _prefix_in_directory(path)
    text = str(path)
    if text.endswith(".index"):
        prefix = text[:-len(".index")]
    else:
        data = _DATA_SUFFIX.search(path.name)
        prefix = text[:len(text) - len(data.group(0))] if data else text
    return prefix if _has_index(prefix) else None


# --------------------------------------------------------------------------------------------
# The reader.


class TFCheckpointReader:
    """Lazy, verified reader of a TensorFlow V2 checkpoint.

        with TFCheckpointReader("uncased_L-12_H-768_A-12/bert_model.ckpt") as reader:
            for name, shape, dtype in reader.list_variables():
                ...
            kernel = reader.get_tensor("bert/pooler/dense/kernel")  # torch.float32, [in, out]

    `get_tensor` returns a torch.Tensor of the stored dtype (float32, float64, float16, bfloat16,
    int8, int16, int32, int64, uint8, bool), bit for bit. Other dtypes and partitioned variables
    are listed but raise UnsupportedTensorError (a CheckpointError) when read. With verify=False
    the tensors' CRC32C is not checked (the index's always is). Not thread-safe: it keeps one open
    file per data shard, closed by `close()` or the `with` block.
    """

    def __init__(self, path: str | os.PathLike, *, verify: bool = True):
        prefix = find_tf_checkpoint(path)
        if prefix is None:
            if not Path(path).exists():
                raise CheckpointError(f"{path} does not exist; pass a TensorFlow checkpoint prefix "
                                      "(.../bert_model.ckpt), its .index file, or its directory")
            raise CheckpointError(f"{path}: no TensorFlow V2 checkpoint there (expected PREFIX.index beside "
                                  "PREFIX.data-*-of-*); pass the prefix, its .index file, or its directory")
        self.prefix: str = prefix
        self.verify = verify
        self.index_path = f"{prefix}.index"
        self._files: dict[int, BinaryIO] = {}
        self.num_shards, self._entries = self._read_index()
        self._shard_sizes = self._stat_shards()

    def _read_index(self) -> tuple[int, dict[str, _Entry]]:
        """(num_shards, {name: entry}) from the .index file, which is read whole: it is small."""
        with open(self.index_path, "rb") as index_file:
            table = index_file.read()
        entries: dict[str, _Entry] = {}
        key = b""
        try:
            pairs = _read_table(table)
            if not pairs or pairs[0][0] != b"":
                raise _FormatError("no bundle header entry (the empty key)")
            num_shards = _parse_header(pairs[0][1])
            for key, value in pairs[1:]:
                # Keys that start with a zero byte are the slices of partitioned tensors
                # (checkpoint::EncodeTensorNameSlice, an OrderedCode starting with 0); the full
                # tensor has its own entry, whose field 7 lists them.
                if key.startswith(b"\x00"):
                    continue
                entries[key.decode("utf-8")] = _parse_entry(value)
        except (_FormatError, UnicodeDecodeError) as err:
            where = f" (entry {key.decode('utf-8', 'replace')!r})" if key else ""
            raise CheckpointError(f"{self.index_path}: corrupt or unsupported checkpoint index{where}: {err}. "
                                  "Re-download or re-save the checkpoint.") from None
        return num_shards, entries

    def _stat_shards(self) -> list[int]:
        sizes = []
        for shard in range(self.num_shards):
            data_path = _data_path(self.prefix, shard, self.num_shards)
            try:
                sizes.append(os.path.getsize(data_path))
            except OSError:
                raise CheckpointError(
                    f"{data_path}: data shard {shard + 1} of {self.num_shards} is missing; "
                    f"copy all {self.num_shards} {Path(self.prefix).name}.data-*-of-{self.num_shards:05d} "
                    f"files beside {self.index_path}") from None
        return sizes

    def list_variables(self) -> list[Variable]:
        """(name, shape, dtype name) of every tensor, sorted by name, as tf.train.list_variables."""
        return [Variable(name, entry.shape, _dtype_name(entry.dtype)) for name, entry in self._entries.items()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get_tensor(self, name: str) -> torch.Tensor:
        """Read one tensor: seek to its bytes in its shard, read exactly those, check their CRC32C."""
        entry = self._entries.get(name)
        if entry is None:
            raise CheckpointError(f"{self.index_path}: no tensor named {name!r} in the checkpoint; "
                                  "list_variables() shows the names it has")
        dtype_name = _dtype_name(entry.dtype)
        numpy_dtype = _DTYPES.get(entry.dtype, ("", None))[1]
        if entry.sliced:
            raise UnsupportedTensorError(
                f"{self.index_path}: tensor {name!r} is partitioned into slices, which bertkit does not "
                "reassemble; re-save it unpartitioned with TensorFlow", reason="partitioned tensor")
        if numpy_dtype is None:
            reason = "string tensor" if entry.dtype == _DT_STRING else f"{dtype_name} tensor"
            raise UnsupportedTensorError(
                f"{self.index_path}: skipped: {reason} {name!r}; bertkit reads numeric tensors only", reason=reason)
        data_path = _data_path(self.prefix, entry.shard_id, self.num_shards)
        expected_size = math.prod(entry.shape) * np.dtype(numpy_dtype).itemsize
        problem = None
        if not 0 <= entry.shard_id < self.num_shards:
            problem = f"shard {entry.shard_id} of a {self.num_shards}-shard checkpoint"
        elif entry.size != expected_size:
            problem = f"{entry.size} bytes for a {dtype_name} tensor of shape {list(entry.shape)}"
        elif entry.offset < 0 or entry.offset + entry.size > self._shard_sizes[entry.shard_id]:
            problem = (f"bytes [{entry.offset}, {entry.offset + entry.size}) beyond the end of "
                       f"the {self._shard_sizes[entry.shard_id]}-byte data file {data_path}; truncated?")
        if problem:
            raise CheckpointError(f"{self.index_path}: bad entry for tensor {name!r}: {problem}. "
                                  "Re-download or re-save the checkpoint.")
        raw = self._read_bytes(entry, data_path, name)
        if self.verify and mask_crc32c(crc32c(raw)) != entry.crc32c:
            raise CheckpointError(f"{data_path}: checksum mismatch for tensor {name!r}: the data file is corrupt "
                                  "or does not belong to this index. Re-download the checkpoint.")
        array = np.frombuffer(raw, dtype=numpy_dtype).reshape(entry.shape)
        array = array.astype(array.dtype.newbyteorder("="), copy=False)
        if dtype_name == "bool":
            if array.size and array.max() > 1:
                raise CheckpointError(f"{data_path}: tensor {name!r} holds bool values other than 0 and 1; "
                                      "the data file is corrupt. Re-download the checkpoint.")
            return torch.from_numpy(array.view(np.bool_))
        if dtype_name == "bfloat16":
            return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(array)

    def _read_bytes(self, entry: _Entry, data_path: str, name: str) -> bytearray:
        """Exactly the entry's bytes, read with one seek; never the whole shard."""
        data_file = self._files.get(entry.shard_id)
        if data_file is None:
            data_file = self._files[entry.shard_id] = open(data_path, "rb", buffering=0)
        data_file.seek(entry.offset)
        raw = bytearray(entry.size)  # writable, so torch.from_numpy shares it without a copy
        view = memoryview(raw)
        filled = 0
        while filled < entry.size:
            count = data_file.readinto(view[filled:])
            if not count:
                raise CheckpointError(f"{data_path}: file ended while reading tensor {name!r} "
                                      f"(bytes [{entry.offset}, {entry.offset + entry.size})); truncated? "
                                      "Re-download the checkpoint.")
            filled += count
        return raw

    def close(self) -> None:
        """Close the data shards' files (reopened if a tensor is read again)."""
        for data_file in self._files.values():
            data_file.close()
        self._files.clear()

    def __enter__(self) -> TFCheckpointReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TFCheckpointReader({self.prefix!r}, {len(self._entries)} tensors, {self.num_shards} shard(s))"
