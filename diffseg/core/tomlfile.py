"""Config files in TOML: a table of a config dataclass's fields, read back checked, written back plainly.

A config file holds one table per stage, named as the records are: `[extract]` (ExtractConfig's
fields) and `[train]` (TrainConfig's). A command reads its own table and accepts the other, so one
file may describe both stages of an experiment; any other top-level key is refused. A field absent
from the table is not given: the flags, then the defaults, decide it (defaults < file < flags).

Unknown keys and values of the wrong type are one-line errors naming the key and the file.
`tomllib` only reads, so `dumps` is the writer: strings, booleans, numbers and arrays of them are
all a config record holds. TOML has no null: a None field is written as a comment (absent: not
given, so its default, which is what None stands for in a record).
"""

from __future__ import annotations

import json
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from diffseg.core.atomic import atomic_write
from diffseg.core.errors import DiffsegError

TABLES = ("extract", "train")


def load(path: str | Path, what: str) -> dict[str, Any]:
    """The parsed TOML document at `path` (`what`: "config file", "grid file"): a missing file or invalid
    TOML is one line naming the file."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise DiffsegError(f"{path}: {what} not found") from None
    except tomllib.TOMLDecodeError as err:
        raise DiffsegError(f"{path}: not valid TOML ({err})") from None


def read_table(path: str | Path, table: str, cls: type, *, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `[table]` of a config file as {field: value}, each checked against `cls`'s annotation
    (lists become tuples, integers given for floats become floats); `extra`: further keys the command
    takes beside the fields, {name: type}."""
    assert table in TABLES, table
    doc = load(path, "config file")
    for key, value in doc.items():
        if key not in TABLES or not isinstance(value, dict):
            raise DiffsegError(f"{path}: unknown key {key!r} (a config file holds the tables [extract] and [train])")
    hints = {**typing.get_type_hints(cls), **(extra or {})}
    known = [f.name for f in fields(cls)] + list(extra or {})
    out = {}
    for key, value in doc.get(table, {}).items():
        if key not in known:
            raise DiffsegError(f"{path}: unknown key {key!r} in [{table}] (known: {', '.join(known)})")
        out[key] = checked(value, hints[key], f"{path}: [{table}] {key}")
    return out


def checked(value: Any, hint: Any, where: str) -> Any:
    """`value` as the annotation `hint` wants it, else DiffsegError naming `where`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        (hint,) = [a for a in args if a is not type(None)]  # TOML has no null: the other arm
        return checked(value, hint, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise DiffsegError(f"{where}: expected an array, got {value!r}")
        each = args[:1] * len(value) if args[-1] is Ellipsis else args
        if len(each) != len(value):
            raise DiffsegError(f"{where}: expected {len(each)} values, got {value!r}")
        return tuple(checked(v, h, where) for v, h in zip(value, each))
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }
    if hint not in ok:
        raise AssertionError(f"{where}: no TOML form for {hint}")
    if not ok[hint]:
        raise DiffsegError(f"{where}: expected {_NAMES[hint]}, got {value!r}")
    return float(value) if hint is float else value


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def dumps(tables: Mapping[str, Mapping[str, Any]], *, header: str = "", commented: tuple[str, ...] = ()) -> str:
    """TOML text of {table: {key: value}}; `commented`: keys written as comments (shown, not read back),
    as is every None value. `header`: comment lines put first."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for table, values in tables.items():
        lines += ["", f"[{table}]"] if lines else [f"[{table}]"]
        for key, value in values.items():
            if value is None:
                lines.append(f"# {key}: not set (its default)")
            else:
                lines.append(("# " if key in commented else "") + f"{key} = {_value(value)}")
    return "\n".join(lines) + "\n"


def write(path: str | Path, tables: Mapping[str, Mapping[str, Any]], **kwargs: Any) -> None:
    """`dumps` into a file, atomically."""
    atomic_write(Path(path), dumps(tables, **kwargs))


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string (same escapes)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise AssertionError(f"no TOML form for {value!r}")
