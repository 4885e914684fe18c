"""Checked access to records read with json.load, for readers whose users hand-edit their files."""

from __future__ import annotations

from typing import Any

from bertkit.errors import DataError

# The names the JSON format gives the Python types that json.load returns.
_JSON_TYPE_NAMES = {dict: "object", list: "array", str: "string", int: "integer", float: "number", bool: "boolean",
                    type(None): "null"}


def json_type_name(kind: type) -> str:
    return _JSON_TYPE_NAMES.get(kind, kind.__name__)


def json_field(record: Any, key: str, kind: type | tuple[type, ...], where: str, file_kind: str) -> Any:
    """record[key], checked to be a `kind`; otherwise a DataError naming `where` (file and record)
    and asking whether the file is a `file_kind` at all."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, found {json_type_name(type(record))}")
    if key not in record:
        raise DataError(f"{where}: missing key {key!r}; is this a {file_kind}?")
    value = record[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python, but `"answer_start": true` is a broken record, not offset 1.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(json_type_name(k) for k in kinds)
        raise DataError(f"{where}: {key!r} must be a JSON {expected}, found {json_type_name(type(value))}")
    return value
