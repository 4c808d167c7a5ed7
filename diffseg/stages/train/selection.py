"""Which features and branches a run reads from its cache (docs/design/architecture.md "train defaults").

Default: every layer and saved step that all selected branches hold (the branches share
the weights, so they must feed the same inputs; `xattn` counts only when the
unconditional branch has it too). `--layers/--save-steps/--kinds/--branches` pick
subsets; a request the cache cannot satisfy is a CacheMismatch naming both the asked
value and what the cache holds. Pure functions over the cache record and the
{branch: layers} the cache holds.

An evaluation cache must also repeat the training cache's unconditional trajectory
(`match_extract`): evaluated steps, eta and its window, encode, raw_eps, the unconditional
prompt, and the class set/order when an xattn layer is read. Resolution, views, scale,
branches, limit and dataset may differ; guidance and blk_sum touch only the cond branch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from diffseg.core.errors import CacheMismatch, DiffsegError
from diffseg.core.layers import LayerSpec, layer_kind

if TYPE_CHECKING:  # the record's type only: this module stays free of zarr
    from diffseg.cache import CacheRecord


@dataclass(frozen=True, kw_only=True)
class Selection:
    branches: tuple[str, ...]  # branches read, "uncond" first
    layers: tuple[str, ...]  # cache order
    save_steps: tuple[int, ...]  # timesteps, cache order
    step_indices: tuple[int, ...]  # positions of save_steps on the cache's S axis
    layer_specs: dict  # {layer: {"kind", "stride", "channels", "size"}} (LayerSpec.to_dict(), for run records)


def _names(values: Sequence) -> str:
    return ", ".join(str(v) for v in values) if values else "(none)"


def pick_branches(
    cache: str, held: Sequence[str], asked: Sequence[str] | None, w_cond: float, w_uncond: float
) -> tuple[str, ...]:
    """Branches to read: the asked ones (default: all held), without a branch whose CE weight is 0.

    w_cond == 0 -> uncond CE only; w_uncond == 0 -> cond CE only (no consistency then)."""
    for b in asked or ():
        if b not in held:
            raise CacheMismatch(f"asked for branch {b}; {cache} holds {_names(held)}")
    chosen = [b for b in ("uncond", "cond") if b in (asked or held)]
    if w_cond == 0:
        chosen = [b for b in chosen if b != "cond"]
    if w_uncond == 0:
        chosen = [b for b in chosen if b != "uncond"]
    if not chosen:
        raise DiffsegError(
            f"no branch left to train on: branches {_names(asked or held)} with w_cond={w_cond}, w_uncond={w_uncond}"
        )
    return tuple(chosen)


def pick_layers(
    cache: str,
    cache_layers: Mapping[str, LayerSpec],
    held: Mapping[str, Sequence[str]],
    branches: Sequence[str],
    asked: Sequence[str] | None,
    kinds: Sequence[str] | None,
) -> tuple[str, ...]:
    """Layers every chosen branch holds, filtered by `asked` names and `kinds`, in cache order."""
    common = [l for l in cache_layers if all(l in held[b] for b in branches)]
    if kinds:
        have = sorted({cache_layers[l].kind for l in common})
        for k in kinds:
            if k not in have:
                raise CacheMismatch(
                    f"asked for kind {k}; {cache} holds {_names(have)} "
                    f"in branch{'es' if len(branches) > 1 else ''} {_names(branches)}"
                )
        common = [l for l in common if cache_layers[l].kind in kinds]
    if asked:
        for l in asked:
            if l not in common:
                where = [b for b in branches if l in held[b]]
                extra = f" (only in branch {_names(where)})" if where else ""
                raise CacheMismatch(
                    f"asked for layer {l}{extra}; {cache} holds {_names(common)}"
                    + (f" in branches {_names(branches)}" if len(branches) > 1 else "")
                )
        common = [l for l in common if l in asked]
    if not common:
        raise CacheMismatch(
            f"no layer selected: asked for {_names(asked or kinds or [])}; {cache} holds {_names(list(cache_layers))}"
        )
    return tuple(common)


def pick_steps(
    cache: str, cache_steps: Sequence[int], asked: Sequence[int] | None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(save_steps, indices on the S axis) in cache order."""
    for t in asked or ():
        if t not in cache_steps:
            raise CacheMismatch(f"asked for saved step {t}; {cache} holds {_names(cache_steps)}")
    steps = tuple(int(t) for t in cache_steps if asked is None or t in asked)
    return steps, tuple(list(cache_steps).index(t) for t in steps)


def select(
    cache: str,
    record: CacheRecord,
    held: Mapping[str, Sequence[str]],
    *,
    branches=None,
    layers=None,
    save_steps=None,
    kinds=None,
    w_cond: float = 1.0,
    w_uncond: float = 1.0,
) -> Selection:
    """Resolve the CLI's subset options against a cache."""
    chosen = pick_branches(cache, list(held), branches, w_cond, w_uncond)
    names = pick_layers(cache, record.layers, held, chosen, layers, kinds)
    steps, idx = pick_steps(cache, list(record.save_steps), save_steps)
    specs = {l: record.layers[l].to_dict() for l in names}
    return Selection(branches=chosen, layers=names, save_steps=steps, step_indices=idx, layer_specs=specs)


TRAJECTORY_KEYS = ("steps", "eta", "eta_window", "encode", "raw_eps")  # extract["trajectory"]
PROMPT_KEYS = ("uncond_prompt", "uncond_prompt_text")  # extract


def _extract_fields(cache: str, extract: Mapping, layers: Sequence[str]) -> dict[str, object]:
    """{"extract.<path>": value} of the fields that decide the uncond features."""

    def need(d: Mapping, key: str, where: str):
        if key not in d:
            raise DiffsegError(f"{cache} records no {where}{key}: it was not written by `diffseg extract`")
        return d[key]

    traj = need(extract, "trajectory", "extract.")
    fields = {f"extract.trajectory.{k}": need(traj, k, "extract.trajectory.") for k in TRAJECTORY_KEYS}
    fields.update({f"extract.{k}": need(extract, k, "extract.") for k in PROMPT_KEYS})
    if any(layer_kind(l) == "xattn" for l in layers):
        fields["extract.classes"] = list(need(extract, "classes", "extract."))
    return fields


def match_extract(
    cache: str, extract: Mapping, *, train_cache: str, train_extract: Mapping, layers: Sequence[str]
) -> None:
    """CacheMismatch naming the first trajectory-defining field (and both values) in which an
    evaluation cache's extract config differs from the training cache's (`extract` dicts: a
    record's `extract.to_dict()`, or the one a run recorded)."""
    ours, theirs = _extract_fields(train_cache, train_extract, layers), _extract_fields(cache, extract, layers)
    for key, want in ours.items():
        got = theirs[key]
        if got != want:
            raise CacheMismatch(
                f"{cache} was extracted with {key}={json.dumps(got)}; the training cache {train_cache} "
                f"with {json.dumps(want)}"
            )


def match_eval_cache(
    cache: str,
    record: CacheRecord,
    held_uncond: Sequence[str],
    *,
    fingerprint: str,
    train_cache: str,
    train_extract: Mapping,
    layers: Sequence[str],
    layer_specs: Mapping,
    save_steps: Sequence[int],
) -> tuple[int, ...]:
    """Check an evaluation cache against a run (`train_extract`: the training cache's
    extract config); returns the step indices to read from it."""
    theirs = record.model.fingerprint
    if theirs != fingerprint:
        raise CacheMismatch(
            f"{cache} was extracted with model fingerprint {theirs}; the run was trained "
            f"on {train_cache} with model fingerprint {fingerprint}"
        )
    match_extract(cache, record.extract.to_dict(), train_cache=train_cache, train_extract=train_extract, layers=layers)
    for l in layers:
        if l not in held_uncond:
            raise CacheMismatch(f"the run uses layer {l}; {cache} holds {_names(held_uncond)} in branch uncond")
        want, got = int(layer_specs[l]["channels"]), record.layers[l].channels
        if want != got:
            raise CacheMismatch(f"the run uses layer {l} with {want} channels; {cache} has {got}")
    cache_steps = list(record.save_steps)
    for t in save_steps:
        if t not in cache_steps:
            raise CacheMismatch(f"the run uses saved step {t}; {cache} holds {_names(cache_steps)}")
    return tuple(cache_steps.index(int(t)) for t in save_steps)
