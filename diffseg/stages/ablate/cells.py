"""The cells of `diffseg ablate`, as pure data planned from a grid file (grid.py) and a cache's
description. The default grid, grids/table4.toml, holds the paper's Table IV rows
(docs/design/method.md §7) and the feature-selection axis a cache makes cheap; `ablate --grid` another.

Table IV (always; reference = the paper's GTAV -> Cityscapes mIoU):
  baseline     one saved step (the least noisy: the smallest t), one layer per stride (`res`,
               last j), unconditional CE only
  diff         DIFF only: every layer both branches hold, all saved steps, unconditional CE only
  ipkl-nocons  conditional CE only (trained on the cond branch), scored on the uncond branch
  ipkl-kl      IPKL: both CEs + KL consistency
  ipkl-l2      IPKL: both CEs + L2 consistency (the full method)
Feature selection (with `features`; each with the full method's loss, IPKL + L2):
  steps-t<t>   one saved step alone, for each saved step; steps-all
  layers-s<s>  the layers of one stride (one up block) alone, for each stride
  kinds-res, kinds-res+blk, kinds-res+blk+xattn
A cell whose training config equals an earlier cell's is not trained twice: it is listed with
`same_as` naming that cell (e.g. steps-all = ipkl-l2). A cell the cache cannot express is
listed with its reason in `not_applicable`, never dropped.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from diffseg.core.errors import DiffsegError
from diffseg.core.layers import parse_layer
from diffseg.stages.ablate.grid import DEFAULT_GRID, Rule, read_grid
from diffseg.stages.train.config import RUNTIME_FIELDS, TrainConfig


@dataclass(frozen=True, kw_only=True)
class Cell:
    name: str  # folder name under <out>/cells/ and the table's row name
    group: str  # "table4" | "steps" | "layers" | "kinds"
    description: str
    layers: tuple[str, ...] = ()  # selected layers, cache order
    save_steps: tuple[int, ...] = ()  # selected saved steps, cache order
    branches: tuple[str, ...] = ("uncond", "cond")  # branches read in training
    consistency: str = "l2"  # l2 | kl | none
    w_cond: float = 1.0
    w_uncond: float = 1.0
    w_cons: float = 1.0
    reference: float | None = None  # paper's GTAV -> Cityscapes mIoU (%)
    not_applicable: str | None = None  # why this cache cannot run the cell
    same_as: str | None = None  # an earlier cell with the identical training config
    options: tuple[tuple[str, Any], ...] = ()  # further TrainConfig fields of this cell's run (a grid's overrides)

    @property
    def runs(self) -> bool:
        return self.not_applicable is None and self.same_as is None

    def train_key(self) -> tuple:
        """What decides the trained weights (cells with equal keys are the same run)."""
        return (
            self.layers,
            self.save_steps,
            self.branches,
            self.consistency,
            self.w_cond,
            self.w_uncond,
            self.w_cons,
            self.options,
        )


@dataclass(frozen=True, kw_only=True)
class CacheLayout:
    """What a training cache offers, as the planner needs it."""

    layers: Mapping[str, Mapping]  # {layer: {"kind", "stride", ...}}, cache order
    branch_layers: Mapping[str, Sequence[str]]  # {branch: layers it holds}
    save_steps: tuple[int, ...]  # cache order

    @property
    def shared(self) -> tuple[str, ...]:
        """Layers every branch holds, cache order (the branches share the trainable weights)."""
        held = [set(v) for v in self.branch_layers.values()]
        return tuple(n for n in self.layers if all(n in h for h in held))

    def kind(self, layer: str) -> str:
        return self.layers[layer].get("kind") or parse_layer(layer)[1]

    def stride(self, layer: str) -> int:
        return int(self.layers[layer]["stride"])


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _layers(n: int) -> str:
    return _count(n, "layer")


def baseline_layers(layout: CacheLayout) -> tuple[str, ...]:
    """One `res` layer per stride: the one with the largest j, cache order."""
    best: dict[int, tuple[int, str]] = {}
    for name in layout.shared:
        if layout.kind(name) == "res":
            j = parse_layer(name)[2]
            s = layout.stride(name)
            if s not in best or j > best[s][0]:
                best[s] = (j, name)
    chosen = {name for _, name in best.values()}
    return tuple(n for n in layout.shared if n in chosen)


def cells_of(rule: Rule, layout: CacheLayout) -> list[Cell]:
    """The cells of one grid rule on this cache: one, or one per saved step / stride (`for_each`)."""
    shared, steps = layout.shared, layout.save_steps
    if rule.for_each == "save_step":
        items: list[dict[str, Any]] = [{"t": t} for t in steps]
    elif rule.for_each == "stride":
        items = [{"s": s} for s in sorted({layout.stride(n) for n in shared}, reverse=True)]
    else:
        items = [{}]
    return [_cell(rule, layout, item) for item in items]


def _cell(rule: Rule, layout: CacheLayout, item: dict[str, Any]) -> Cell:
    shared, steps = layout.shared, layout.save_steps
    if rule.layers == "baseline":
        layers = baseline_layers(layout)
    else:
        layers = tuple(n for n in shared if rule.layers == "shared" or layout.stride(n) == item["s"])
    save_steps: tuple[int, ...] = (item["t"],) if rule.save_steps == "each" else steps
    if rule.save_steps == "smallest":
        save_steps = (min(steps),)
    reason = None
    if rule.kinds is not None:
        layers = tuple(n for n in layers if layout.kind(n) in rule.kinds)
        reason = missing_kinds(layout, rule.kinds)
    if reason is None and not layers:
        reason = rule.if_empty or "the cache holds no layer this cell selects"
    kinds = rule.kinds or ()
    context = {
        "t": item.get("t", save_steps[0] if len(save_steps) == 1 else ""),
        "s": item.get("s", ""),
        "blocks": ",".join(map(str, sorted({parse_layer(n)[0] for n in layers}))),
        "layers": _layers(len(layers)),
        "steps": _count(len(save_steps), "step"),
        "saved_steps": _count(len(save_steps), "saved step"),
        "kinds": "+".join(kinds),
        "kinds_listed": " + ".join(kinds),
        "layers_note": "" if reason else f" ({_layers(len(layers))})",
    }
    try:
        name, description = rule.name.format(**context), rule.description.format(**context)
    except (KeyError, IndexError, ValueError) as err:
        raise DiffsegError(f"{rule.where}: a placeholder in name or description: {err!r} (grids/table4.toml)") from None
    return Cell(
        name=name,
        group=rule.group,
        description=description,
        layers=() if reason and rule.kinds is not None else layers,
        save_steps=save_steps,
        not_applicable=reason,
        options=tuple(sorted(rule.options.items())),
        **rule.loss,
    )


def missing_kinds(layout: CacheLayout, kinds: tuple[str, ...]) -> str | None:
    """Why a cell of these kinds cannot run on this cache (None: it can)."""
    have = {layout.kind(n) for n in layout.shared}
    missing = [k for k in kinds if k not in have]
    if "xattn" in missing:
        return "xattn needs both branches to hold it: extract with --uncond-prompt classes and --kinds including xattn"
    if missing:
        return f"the cache holds no {'/'.join(missing)} layers (extract with --kinds {','.join(kinds)})"
    return None


def feature_cells(layout: CacheLayout, grid: str | Path | None = None) -> list[Cell]:
    """The cells of the grid outside Table IV (the default grid: the feature-selection axis), not deduplicated."""
    return [c for rule in _rules(grid) if rule.group != "table4" for c in cells_of(rule, layout)]


def plan_cells(layout: CacheLayout, features: bool = True, grid: str | Path | None = None) -> list[Cell]:
    """The grid's cells (None: grids/table4.toml), in its order; without `features` only its Table IV rows
    (group "table4"). Duplicates marked same_as; two cells of one name are refused."""
    assert "cond" in layout.branch_layers, "plan_cells needs a cache with the cond branch"
    cells = [c for rule in _rules(grid) if features or rule.group == "table4" for c in cells_of(rule, layout)]
    names = [c.name for c in cells]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DiffsegError(f"{grid or DEFAULT_GRID}: more than one cell named {', '.join(twice)}")
    seen: dict[tuple, str] = {}
    out = []
    for c in cells:
        if c.not_applicable is None:
            key = c.train_key()
            if key in seen:
                c = replace(c, same_as=seen[key])
            else:
                seen[key] = c.name
        out.append(c)
    return out


# What a cell decides (its selection and loss): not an option of the whole ablation.
CELL_DECIDED = frozenset({"layers", "save_steps", "kinds", "branches", "consistency", "w_cond", "w_uncond", "w_cons"})
# The TrainConfig fields a grid cell may override besides: not the caches, the seed (--seed/--seeds) or
# what only changes speed.
CELL_OPTIONS = {
    name: hint
    for name, hint in typing.get_type_hints(TrainConfig).items()
    if name not in CELL_DECIDED and name not in ("cache", "eval_caches", "seed", *RUNTIME_FIELDS)
}


def _rules(grid: str | Path | None) -> tuple[Rule, ...]:
    return DEFAULT_RULES if grid is None else read_grid(grid, Cell, CELL_OPTIONS)


DEFAULT_RULES = read_grid(DEFAULT_GRID, Cell, CELL_OPTIONS)
# GTAV -> Cityscapes mIoU (%) of the paper's Table IV: the default grid's references.
PAPER_TABLE4: dict[str, float] = {r.name: r.loss["reference"] for r in DEFAULT_RULES if r.group == "table4"}
TABLE4 = tuple(PAPER_TABLE4)
