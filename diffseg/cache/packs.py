"""Packs: which stored array holds each feature array's bytes (cache format 3).

A feature array "<branch>/<layer>" [N, S, C, h, w] is what readers and writers name; a **pack** is
what the store holds: one Zarr array per branch, stride and codec, the layers of that stride
side by side on the channel axis, one chunk (one file, one object) per sample:

    cond/s8   [N, S, C1 + C2 + ..., h, w]   up3.res0 at channels [0, C1), up3.res1 at [C1, C1 + C2), ...

Every layer of one stride shares S, h and w, so a layer is a slab of channels: at each saved step
its values are one contiguous run of bytes of the chunk (the step is the outer axis). A read of a
layer subset (and a step subset) reads those runs only (fastread.py). A codec with parts (int8's
offset, scale and outliers) stores each part as a pack of its own ("cond/s8.offset" [N, S, sum C]);
pca packs its coefficients (k per layer on the channel axis); pca's basis and mean stay one small
array per layer ("cond/up3.res0.basis"), shared by every sample.

The record keeps the packing (`CacheRecord.packs`: {pack: [layer, ...]} in channel order), so a
reader never derives it: the offsets are the running sum of the layers' stored channels (C, or k
for pca). `pack_layers` is the one rule that makes a packing, at creation: "stride" (the default:
at most one pack per stride and codec, so at most four per branch for Stable Diffusion's four
strides whatever the number of layers) or "layer" (one pack per layer, named like the layer: the
layout of format 2, kept for comparison and as the first step of migrating a format-2 cache).

Pure: no zarr.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from diffseg.cache import codecs, schema
from diffseg.cache.record import CacheRecord
from diffseg.core.errors import DiffsegError
from diffseg.core.layers import LayerSpec

PACKINGS = ("stride", "layer")


def pack_layers(
    branches: tuple[str, ...] | list[str],
    layers: Mapping[str, LayerSpec],
    codec_of: Mapping[str, codecs.Codec],
    packing: str = "stride",
) -> dict[str, list[str]]:
    """{pack name: [layer, ...]} for every branch: "stride" groups a branch's layers by (stride, codec)
    in record order ("<branch>/s<stride>", then "-2", "-3" for a stride's further codecs); "layer"
    makes one pack per layer, named "<branch>/<layer>"."""
    if packing not in PACKINGS:
        raise DiffsegError(f"unknown packing {packing!r}: choose from {', '.join(PACKINGS)}")
    out: dict[str, list[str]] = {}
    for b in branches:
        if packing == "layer":
            out.update({schema.feature_name(b, layer): [layer] for layer in layers})
            continue
        groups: dict[tuple[int, str], list[str]] = {}
        for layer, spec in layers.items():
            groups.setdefault((spec.stride, str(codec_of[schema.feature_name(b, layer)])), []).append(layer)
        seen: dict[int, int] = {}
        for (stride, _), members in groups.items():
            seen[stride] = seen.get(stride, 0) + 1
            suffix = "" if seen[stride] == 1 else f"-{seen[stride]}"
            out[f"{b}/s{stride}{suffix}"] = members
    return out


@dataclass(frozen=True)
class Slot:
    """Where feature array `name` lies: channels [offset, offset + width) of pack `pack` (in the
    codec's stored channels: C, or pca's k), its per-sample parts on the same slab."""

    name: str
    pack: str
    offset: int
    width: int


@dataclass(frozen=True)
class Pack:
    name: str
    branch: str
    layers: tuple[str, ...]
    codec: codecs.Codec
    parts: dict[str, tuple[tuple[int, ...], str]]  # {suffix: (per-sample shape, dtype)} of the pack's arrays


class Packing:
    """The packs of a cache and the slot of every feature array, from its record's `packs`."""

    def __init__(
        self,
        packs: Mapping[str, list[str]],
        layers: Mapping[str, LayerSpec],
        steps: int,
        codec_of,
    ):
        self.packs: dict[str, Pack] = {}
        self.slots: dict[str, Slot] = {}
        # every stored array of the packs ("cond/s8", "cond/s8.offset"): (pack, per-sample shape, dtype)
        self.arrays: dict[str, tuple[str, tuple[int, ...], str]] = {}
        for pname, members in packs.items():
            branch = pname.partition("/")[0]
            names = [schema.feature_name(branch, layer) for layer in members]
            coded = [codec_of(n) for n in names]
            if len({str(c) for c in coded}) != 1:
                raise DiffsegError(f"pack {pname} mixes codecs {sorted({str(c) for c in coded})}")
            strides = {layers[layer].stride for layer in members}
            if len(strides) != 1 or len({tuple(layers[layer].size) for layer in members}) != 1:
                raise DiffsegError(f"pack {pname} mixes strides or sizes: {members}")
            codec, offset, parts = coded[0], 0, None
            for name, layer in zip(names, members):
                spec = layers[layer]
                stored = codec.stored((steps, spec.channels, *spec.size))
                width = stored[codecs.CODES][0][1]
                self.slots[name] = Slot(name, pname, offset, width)
                offset += width
                parts = stored if parts is None else parts
            assert parts is not None, f"pack {pname} holds no layer"
            self.packs[pname] = Pack(
                pname,
                branch,
                tuple(members),
                codec,
                {s: ((shape[0], offset, *shape[2:]), dtype) for s, (shape, dtype) in parts.items()},
            )
            self.arrays.update({pname + s: (pname, *part) for s, part in self.packs[pname].parts.items()})

    def names(self) -> list[str]:
        """Every feature array "<branch>/<layer>", in pack order."""
        return list(self.slots)

    def part_of(self, name: str) -> tuple[Slot, str] | None:
        """(slot, suffix) of a feature array or one of its codec's per-sample parts, e.g.
        "cond/up1.res0.offset" -> (slot of cond/up1.res0, ".offset"); None otherwise."""
        if name in self.slots:
            return self.slots[name], codecs.CODES
        base, dot, rest = name.rpartition(".")
        if dot and base in self.slots and "." + rest in self.packs[self.slots[base].pack].parts:
            return self.slots[base], "." + rest
        return None

    def stored_array(self, name: str) -> tuple[str, tuple[int, ...], str] | None:
        """(pack, per-sample shape, dtype) when `name` is a pack's stored array ("cond/s8",
        "cond/s8.offset"), else None."""
        return self.arrays.get(name)


def packing_of(record: CacheRecord) -> Packing:
    """The packs of a cache from its record."""
    return Packing(
        record.packs, record.layers, len(record.save_steps), lambda name: codecs.codec_of(record.codecs, name)
    )


def feature_shape(record: CacheRecord, name: str) -> tuple[int, ...]:
    """(S, C, h, w) of feature array `name` as written and decoded (pca stores k channels)."""
    spec = record.layers[schema.split_name(name)[1]]
    return (len(record.save_steps), spec.channels, *spec.size)


def packs_for(record: CacheRecord, names, packing: str = "stride") -> dict[str, list[str]]:
    """The record's `packs` for the feature arrays `names` ("<branch>/<layer>") under `packing`."""
    held = set(names)
    out: dict[str, list[str]] = {}
    for b in record.branches:
        specs = {k: s for k, s in record.layers.items() if schema.feature_name(b, k) in held}
        resolved = {n: codecs.codec_of(record.codecs, n) for n in (schema.feature_name(b, k) for k in specs)}
        out.update(pack_layers((b,), specs, resolved, packing))
    return out
