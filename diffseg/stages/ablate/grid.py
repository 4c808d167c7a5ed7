"""An ablation grid file (`ablate --grid FILE.toml`; the default: grids/table4.toml, whose header
describes the format): its `[[cell]]` rules, read and checked, for cells.py to plan against a cache.

Unknown keys, values of the wrong type and unknown selection words are one-line errors naming the
file, the cell and the key. Light: tomllib and dataclasses only.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from diffseg.core import tomlfile
from diffseg.core.errors import DiffsegError
from diffseg.core.tomlfile import checked

DEFAULT_GRID = Path(__file__).parent / "grids" / "table4.toml"
# The words of a rule's selection keys (cells.py resolves them against a cache's layout).
LAYERS = ("shared", "baseline", "stride")
SAVE_STEPS = ("all", "smallest", "each")
FOR_EACH = {"save_step": "each", "stride": "stride"}  # for_each -> the selection word it goes with
# The Cell fields a rule may give (the loss and the row), their types read from Cell itself.
LOSS = ("branches", "consistency", "w_cond", "w_uncond", "w_cons", "reference")


@dataclass(frozen=True)
class Rule:
    """One `[[cell]]` of a grid file: a cell, or one per saved step / stride (`for_each`)."""

    name: str
    group: str
    description: str
    layers: str = "shared"
    save_steps: str = "all"
    kinds: tuple[str, ...] | None = None
    for_each: str | None = None
    if_empty: str | None = None
    loss: dict[str, Any] = field(default_factory=dict)  # Cell fields given (the rest: Cell's defaults)
    options: dict[str, Any] = field(default_factory=dict)  # further TrainConfig fields of the cell's run
    where: str = ""  # "<file>: cell <name>", for errors


def read_grid(path: str | Path, cell: type, options: Mapping[str, Any]) -> tuple[Rule, ...]:
    """The rules of a grid file; `cell`: the cells' dataclass (cells.Cell), whose types the loss keys take;
    `options`: {TrainConfig field: type} a cell may override besides (iters, lr, fusion...)."""
    doc = tomlfile.load(path, "grid file")
    extra = sorted(set(doc) - {"cell"})
    if extra or not isinstance(doc.get("cell"), list) or not doc["cell"]:
        raise DiffsegError(f"{path}: a grid file holds [[cell]] tables only (got {', '.join(extra) or 'no cell'})")
    hints = typing.get_type_hints(Rule) | {k: typing.get_type_hints(cell)[k] for k in LOSS} | dict(options)
    own = [f.name for f in fields(Rule) if f.name not in ("loss", "options", "where")]
    rules = []
    for i, table in enumerate(doc["cell"]):
        where = f"{path}: cell {table.get('name', i + 1)!r}"
        values: dict[str, Any] = {"loss": {}, "options": {}}
        for key, value in table.items():
            if key not in own and key not in LOSS and key not in options:
                known = ", ".join(own + list(LOSS) + list(options))
                raise DiffsegError(f"{where}: unknown key {key!r} (known: {known})")
            value = checked(value, hints[key], f"{where}: {key}")
            part = values["loss"] if key in LOSS else values["options"] if key in options else values
            part[key] = value
        missing = [k for k in ("name", "group", "description") if k not in values]
        if missing:
            raise DiffsegError(f"{where}: lacks {', '.join(missing)}")
        rules.append(_valid(Rule(**values, where=where)))
    return tuple(rules)


def _valid(rule: Rule) -> Rule:
    for key, allowed in (("layers", LAYERS), ("save_steps", SAVE_STEPS), ("for_each", (None, *FOR_EACH))):
        if getattr(rule, key) not in allowed:
            shown = " or ".join(str(a) for a in allowed if a is not None)
            raise DiffsegError(f"{rule.where}: {key} {getattr(rule, key)!r}: expected {shown}")
    for key, word in (("layers", "stride"), ("save_steps", "each")):
        if (getattr(rule, key) == word) != (rule.for_each is not None and FOR_EACH[rule.for_each] == word):
            each = next(k for k, v in FOR_EACH.items() if v == word)
            raise DiffsegError(f"{rule.where}: {key} = {word!r} goes with for_each = {each!r}")
    return rule
