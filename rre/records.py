"""The one reader of every JSON, JSONL and CSV file the project reads: users' files and its own records
(training_config.json, training_state.json, adapter_config.json, the gold stand-in's info, SuperNI task files,
score caches, gold CSVs).

Text is decoded by `data.read_text`, as `utf-8-sig` (a byte-order mark, as some editors save, is accepted); a file that is not UTF-8,
not valid JSON, lacks a key or holds the wrong type raises DataError with one line naming the file, the record
and the field. Numbers read from a user's file go through `finite_number`: NaN and infinities are refused.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from rre.data import DataError, read_text


def parse_json(text: str, label: str) -> Any:
    """Strict JSON (no bare NaN/Infinity, which are not JSON) or one line naming `label` and the line."""
    def refuse(name: str) -> Any:
        raise DataError(f"{label}: bare {name} is not valid JSON")

    try:
        return json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as err:
        raise DataError(f"{label}: not valid JSON (line {err.lineno}: {err.msg})") from None


def read_json(path: str | Path, what: str = "", expect: type | None = dict) -> Any:
    """A whole JSON file; `expect` is the type its top level must have (None: any); `what` (a flag, or what the
    file is) opens any message."""
    p = Path(path)
    label = f"{what} {p}" if what else str(p)
    text = read_text(p, what)
    if not text.strip():
        raise DataError(f"{label}: empty file")
    value = parse_json(text, label)
    if expect is not None and not isinstance(value, expect):
        raise DataError(f"{label}: expected a JSON {_type_name(expect)}, got {_type_name(type(value))}")
    return value


def require_key(record: Any, key: str, where: str, expect: type | tuple[type, ...] | None = None) -> Any:
    """`record[key]`, or one line naming `where` (file and record) and the field that is missing or mistyped."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {_type_name(type(record))}")
    if key not in record:
        raise DataError(f"{where}: field '{key}': missing")
    value = record[key]
    if expect is not None:
        types = expect if isinstance(expect, tuple) else (expect,)
        is_bool_as_number = isinstance(value, bool) and bool not in types
        if not isinstance(value, types) or is_bool_as_number:
            names = " or ".join(_type_name(t) for t in types)
            raise DataError(f"{where}: field '{key}': expected {names}, got {_type_name(type(value))}")
    return value


def finite_number(value: Any, where: str) -> float:
    """A float from a user's file (a string or a JSON number): NaN and infinities are refused."""
    if isinstance(value, bool):
        raise DataError(f"{where}: {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise DataError(f"{where}: {value!r} is not a finite number")
    return number


def read_csv_rows(path: str | Path, what: str = "") -> list[tuple[int, list[str]]]:
    """(row number from 1, cells) of every non-blank row of a CSV file."""
    text = read_text(path, what)
    return [(i, row) for i, row in enumerate(csv.reader(io.StringIO(text, newline="")), 1)
            if row and "".join(row).strip()]


def adapter_base_model(folder: str | Path, required: bool = True) -> str | None:
    """The base model a LoRA adapter folder names (adapter_config.json's `base_model_name_or_path`)."""
    path = Path(folder) / "adapter_config.json"
    config = read_json(path)
    if not required and config.get("base_model_name_or_path") is None:
        return None
    base = require_key(config, "base_model_name_or_path", str(path), str)
    if not base.strip():
        raise DataError(f"{path}: field 'base_model_name_or_path': empty")
    return base


def _type_name(t: type) -> str:
    return {dict: "object", list: "array", str: "string", int: "integer", float: "number", bool: "boolean",
            type(None): "null"}.get(t, t.__name__)
