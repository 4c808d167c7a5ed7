"""The ablation planner as it was before the grid became a file (diffseg/stages/ablate/grids/table4.toml),
kept verbatim as the oracle of tests/test_configs.py: the cells planned from the file must equal these,
name for name and field for field.

The original docstring follows.
The cells of `diffseg ablate`: the paper's Table IV rows (docs/design/method.md §7) and the
feature-selection axis a cache makes cheap, as pure data planned from a cache's description.

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from diffseg.core.layers import parse_layer

# GTAV -> Cityscapes mIoU (%) of the paper's Table IV.
PAPER_TABLE4: dict[str, float] = {
    "baseline": 49.72,
    "diff": 56.28,
    "ipkl-nocons": 44.82,
    "ipkl-kl": 57.81,
    "ipkl-l2": 58.01,
}
TABLE4 = tuple(PAPER_TABLE4)


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

    @property
    def runs(self) -> bool:
        return self.not_applicable is None and self.same_as is None

    def train_key(self) -> tuple:
        """What decides the trained weights (cells with equal keys are the same run)."""
        return (self.layers, self.save_steps, self.branches, self.consistency, self.w_cond, self.w_uncond, self.w_cons)


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


def table4_cells(layout: CacheLayout) -> list[Cell]:
    steps, shared = layout.save_steps, layout.shared
    base = baseline_layers(layout)
    uncond_only: dict[str, Any] = dict(branches=("uncond",), consistency="none", w_cond=0.0, w_cons=0.0)
    return [
        Cell(
            name="baseline",
            group="table4",
            layers=base,
            save_steps=(min(steps),),
            **uncond_only,
            description=f"t={min(steps)} only, res last j per stride ({_layers(len(base))}), uncond CE",
            not_applicable=None if base else "the cache holds no res layer both branches share",
        ),
        Cell(
            name="diff",
            group="table4",
            layers=shared,
            save_steps=steps,
            **uncond_only,
            description=f"DIFF only: {_layers(len(shared))} x {_count(len(steps), 'step')}, uncond CE",
        ),
        Cell(
            name="ipkl-nocons",
            group="table4",
            layers=shared,
            save_steps=steps,
            branches=("cond",),
            consistency="none",
            w_uncond=0.0,
            w_cons=0.0,
            description="cond CE only (trained on cond), scored on uncond",
        ),
        Cell(
            name="ipkl-kl",
            group="table4",
            layers=shared,
            save_steps=steps,
            consistency="kl",
            description="IPKL: cond CE + uncond CE + KL consistency",
        ),
        Cell(
            name="ipkl-l2",
            group="table4",
            layers=shared,
            save_steps=steps,
            consistency="l2",
            description="IPKL: cond CE + uncond CE + L2 consistency (full method)",
        ),
    ]


def feature_cells(layout: CacheLayout) -> list[Cell]:
    """Selection subsets, each trained with the full method's loss (IPKL + L2)."""
    steps, shared = layout.save_steps, layout.shared
    cells = [
        Cell(
            name=f"steps-t{t}",
            group="steps",
            layers=shared,
            save_steps=(t,),
            description=f"saved step t={t} alone, all layers",
        )
        for t in steps
    ]
    cells.append(
        Cell(
            name="steps-all",
            group="steps",
            layers=shared,
            save_steps=steps,
            description=f"all {_count(len(steps), 'saved step')}, all layers",
        )
    )
    for s in sorted({layout.stride(n) for n in shared}, reverse=True):
        sel = tuple(n for n in shared if layout.stride(n) == s)
        blocks = sorted({parse_layer(n)[0] for n in sel})
        cells.append(
            Cell(
                name=f"layers-s{s}",
                group="layers",
                layers=sel,
                save_steps=steps,
                description=f"stride 1/{s} alone (up{','.join(map(str, blocks))}: {_layers(len(sel))})",
            )
        )
    cells += kind_cells(layout)
    return cells


def kind_cells(layout: CacheLayout) -> list[Cell]:
    have = {layout.kind(n) for n in layout.shared}
    cells = []
    for kinds in (("res",), ("res", "blk"), ("res", "blk", "xattn")):
        name = "kinds-" + "+".join(kinds)
        sel = tuple(n for n in layout.shared if layout.kind(n) in kinds)
        missing = [k for k in kinds if k not in have]
        reason = None
        if "xattn" in missing:
            reason = (
                "xattn needs both branches to hold it: extract with --uncond-prompt classes and --kinds including xattn"
            )
        elif missing:
            reason = f"the cache holds no {'/'.join(missing)} layers (extract with --kinds {','.join(kinds)})"
        cells.append(
            Cell(
                name=name,
                group="kinds",
                layers=sel if not reason else (),
                save_steps=layout.save_steps,
                description=f"kinds {' + '.join(kinds)}" + (f" ({_layers(len(sel))})" if not reason else ""),
                not_applicable=reason,
            )
        )
    return cells


def plan_cells(layout: CacheLayout, features: bool = True) -> list[Cell]:
    """Table IV rows first, then (with `features`) the selection axis; duplicates marked same_as."""
    assert "cond" in layout.branch_layers, "plan_cells needs a cache with the cond branch"
    cells = [replace(c, reference=PAPER_TABLE4[c.name]) for c in table4_cells(layout)]
    if features:
        cells += feature_cells(layout)
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
