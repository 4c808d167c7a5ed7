"""Feature codecs: how one sample of a feature array [S, C, h, w] (float16) is stored, and expanded.

A codec spec is chosen at extraction (`extract --codec`) or conversion (`cache convert --codec`):

    NAME[:key=value,...][;PATTERN=NAME[:key=value,...]]...

e.g. `int8`, `bitround:keepbits=7`, `pca:k=32`, `pca:k=32;*.res*=int8;cond/*=raw`. The first part is
every feature array's codec; each `PATTERN=` part overrides it for the arrays whose name
("<branch>/<layer>") or layer name matches the glob PATTERN (later parts win). The record keeps the
spec ("features") and the resolved codec of every array ("<branch>/<layer>": "int8:pct=99.9").

Stored arrays of one feature array "X" = "<branch>/<layer>" [N, S, C, h, w] (plain Zarr v3, one chunk per
sample; on disk each per-sample part is a slab of its stride's pack, packs.py):

- `raw`       X float16 [N, S, C, h, w], little-endian bytes (today's layout).
- `bitround`  X float16, every value's mantissa rounded to `keepbits` bits (numcodecs' BitRound as a
              Zarr v3 array-to-array codec), then zstd (level 1). zarr decodes it: nothing to expand.
              Relative error of every value <= 2^-(keepbits+1).
- `int8`      X uint8 codes [N, S, C, h, w]; X.offset, X.scale float32 [N, S, C]; X.outlier_index int32
              and X.outlier_value float16 [N, S, C, 2m]. Per sample, step and channel the m = ceil(n *
              (100 - pct) / 100) smallest and m largest of its n = h*w values are kept exactly (the
              clipped tails); the others lie in [lo, hi] (the (m+1)-th smallest and largest) and are
              coded as round((x - lo) / scale), scale = (hi - lo) / 255. Decode: x = offset + code * scale,
              then the outliers put back at their flat h*w index. Every value's error is at most scale/2
              (plus float32 rounding); the outliers are exact.
- `pca`       X float16 coefficients [N, S, k, h, w]; X.basis float32 [C, k] (orthonormal columns) and
              X.mean float32 [C], one per array (not per sample). Decode: x[s, :, i, j] = basis @
              coef[s, :, i, j] + mean. The basis is fitted before any sample is written, on a seeded
              calibration subset (`calib` samples, `seed`) of the split, pooled over steps and pixels:
              it never mixes timesteps, so every step subset can be served.

The dataset hands the trainer the stored parts; `decode` (torch) expands them on the training device.
Extraction encodes with `encode_torch` on its own device, before the copy to the host (`DeviceEncoder`):
the numpy `Codec.encode` on the writer's one thread was as slow as the GPU per sample. The two agree
within each codec's bound: int8's codes, offsets, scales and decoded values are equal (which of equal
values count as outliers may differ), pca's coefficients differ at most by float16 rounding.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from diffseg.core.errors import DiffsegError

DEFAULTS: dict[str, dict[str, float | int]] = {
    "raw": {},
    "bitround": {"keepbits": 7},
    "int8": {"pct": 99.9},
    "pca": {"k": 32, "calib": 16, "seed": 0},
}
CHECKSUM = "+crc32c"  # store.CHECKSUM_SUFFIX (store imports this module)
INT_PARAMS = {"keepbits", "k", "calib", "seed"}
CODES, OFFSET, SCALE, OUT_INDEX, OUT_VALUE, BASIS, MEAN = (
    "",
    ".offset",
    ".scale",
    ".outlier_index",
    ".outlier_value",
    ".basis",
    ".mean",
)


@dataclass(frozen=True)
class Codec:
    """One array's codec: a name and its parameters (defaults filled in)."""

    name: str
    params: tuple[tuple[str, float | int], ...] = ()

    @property
    def p(self) -> dict[str, float | int]:
        return dict(self.params)

    def __str__(self) -> str:
        return self.name + (":" + ",".join(f"{k}={v}" for k, v in self.params) if self.params else "")

    # -- layout -------------------------------------------------------------------------
    def stored(self, shape_SChw: tuple[int, ...]) -> dict[str, tuple[tuple[int, ...], str]]:
        """{suffix: (per-sample shape, dtype)} of the arrays one feature array becomes."""
        S, C, h, w = shape_SChw
        if self.name in ("raw", "bitround"):
            return {CODES: ((S, C, h, w), "float16")}
        if self.name == "int8":
            m2 = 2 * outliers_per_side(h * w, float(self.p["pct"]))
            return {
                CODES: ((S, C, h, w), "uint8"),
                OFFSET: ((S, C), "float32"),
                SCALE: ((S, C), "float32"),
                OUT_INDEX: ((S, C, m2), "int32"),
                OUT_VALUE: ((S, C, m2), "float16"),
            }
        return {CODES: ((S, self.k(C), h, w), "float16")}

    def shared(self, channels: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """{suffix: (shape, dtype)} of the arrays shared by every sample (pca's basis and mean)."""
        if self.name != "pca":
            return {}
        return {BASIS: ((channels, self.k(channels)), "float32"), MEAN: ((channels,), "float32")}

    def k(self, channels: int) -> int:
        return min(int(self.p["k"]), channels)

    def stored_bytes(self, shape_SChw: tuple[int, ...]) -> int:
        """Bytes one sample's parts take before any lossless compression."""
        return sum(int(np.prod(s)) * np.dtype(d).itemsize for s, d in self.stored(shape_SChw).values())

    # -- numpy ----------------------------------------------------------------------------
    def encode(self, x_SChw: np.ndarray, shared: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """{suffix: array} of one sample (float16 [S, C, h, w] in): the numpy reference that encode_torch,
        which writes every cache, is held to (tests, benchmarks)."""
        if self.name in ("raw", "bitround"):  # bitround is applied by the zarr codec pipeline
            return {CODES: x_SChw}
        if self.name == "int8":
            return int8_encode(x_SChw, float(self.p["pct"]))
        assert shared is not None, "pca needs its basis"
        return {CODES: pca_encode(x_SChw, shared[BASIS], shared[MEAN])}

    def decode_numpy(
        self, parts: Mapping[str, np.ndarray], shared: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray:
        """float32 [..., S, C, h, w] from the parts of one sample (or a batch)."""
        if self.name in ("raw", "bitround"):
            return parts[CODES].astype(np.float32)
        if self.name == "int8":
            codes = parts[CODES]
            x = parts[OFFSET][..., None, None] + codes.astype(np.float32) * parts[SCALE][..., None, None]
            flat = x.reshape(*x.shape[:-2], -1)
            np.put_along_axis(flat, parts[OUT_INDEX].astype(np.int64), parts[OUT_VALUE].astype(np.float32), -1)
            return flat.reshape(x.shape)
        assert shared is not None, "pca needs its basis"
        coef = parts[CODES].astype(np.float32)
        return np.einsum("ck,...khw->...chw", shared[BASIS], coef) + shared[MEAN][:, None, None]


def outliers_per_side(n: int, pct: float) -> int:
    """m: values kept exactly at each end of a channel's n values (never more than (n - 1) // 2)."""
    return min(math.ceil(n * (100.0 - pct) / 100.0), (n - 1) // 2) if n > 0 else 0


def int8_encode(x_SChw: np.ndarray, pct: float) -> dict[str, np.ndarray]:
    S, C, h, w = x_SChw.shape
    n = h * w
    m = outliers_per_side(n, pct)
    x = x_SChw.reshape(S, C, n).astype(np.float32)
    if m:
        order = np.argpartition(x, (m, n - m - 1), axis=-1)
        index = np.concatenate([order[..., :m], order[..., n - m :]], axis=-1)
        lo = np.take_along_axis(x, order[..., m : m + 1], -1)[..., 0]
        hi = np.take_along_axis(x, order[..., n - m - 1 : n - m], -1)[..., 0]
    else:
        index = np.zeros((S, C, 0), np.int64)
        lo, hi = x.min(-1), x.max(-1)
    scale = ((hi - lo) / np.float32(255)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1))
    codes = np.rint((np.clip(x, lo[..., None], hi[..., None]) - lo[..., None]) / safe[..., None])
    return {
        CODES: np.clip(codes, 0, 255).astype(np.uint8).reshape(S, C, h, w),
        OFFSET: lo.astype(np.float32),
        SCALE: scale,
        OUT_INDEX: index.astype(np.int32),
        OUT_VALUE: np.take_along_axis(x_SChw.reshape(S, C, n), index, -1).astype(np.float16),
    }


def pca_encode(x_SChw: np.ndarray, basis_Ck: np.ndarray, mean_C: np.ndarray) -> np.ndarray:
    coef = np.einsum("ck,schw->skhw", basis_Ck, x_SChw.astype(np.float32) - mean_C[:, None, None])
    out = coef.astype(np.float16)
    if not np.isfinite(out).all():
        raise DiffsegError("pca coefficients overflow float16: use another codec for this layer")
    return out


class PcaFit:
    """Accumulates the channel mean and covariance of [S, C, h, w] samples (float64), then a basis."""

    def __init__(self, channels: int):
        self.n = 0
        self.sum = np.zeros(channels, np.float64)
        self.outer = np.zeros((channels, channels), np.float64)

    def add(self, x_SChw: np.ndarray) -> None:
        x = np.moveaxis(x_SChw.astype(np.float64), 1, -1).reshape(-1, x_SChw.shape[1])
        self.n += x.shape[0]
        self.sum += x.sum(0)
        self.outer += x.T @ x

    def basis(self, k: int) -> dict[str, np.ndarray]:
        """{BASIS: [C, k] orthonormal top-k principal directions (sign: largest entry positive), MEAN: [C]}."""
        if self.n == 0:
            raise DiffsegError("pca: no calibration sample could be read")
        mean = self.sum / self.n
        cov = self.outer / self.n - np.outer(mean, mean)
        _, vecs = np.linalg.eigh(cov)
        top = vecs[:, ::-1][:, :k]
        sign = np.sign(top[np.abs(top).argmax(0), np.arange(top.shape[1])])
        return {BASIS: (top * np.where(sign == 0, 1, sign)).astype(np.float32), MEAN: mean.astype(np.float32)}


def calibration_indices(n: int, count: int, seed: int) -> list[int]:
    """The seeded calibration subset of n planned samples (the same for every worker and resume)."""
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n, size=min(count, n), replace=False)) if n else []


# -- specs ---------------------------------------------------------------------------------
def parse_codec(text: str) -> Codec:
    """`int8:pct=99.9` -> Codec("int8", (("pct", 99.9),)); unknown names or keys are one line."""
    name, _, rest = text.strip().partition(":")
    if name not in DEFAULTS:
        raise DiffsegError(f"unknown codec {name!r} in {text!r}: choose from {', '.join(DEFAULTS)}")
    params = dict(DEFAULTS[name])
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in params:
            raise DiffsegError(f"codec {name}: unknown parameter {item!r} (it takes {sorted(params) or 'none'})")
        try:
            params[key] = int(value) if key in INT_PARAMS else float(value)
        except ValueError as err:
            raise DiffsegError(f"codec {name}: {key}={value!r} is not a number") from err
    _check(name, params, text)
    return Codec(name, tuple(sorted(params.items())))


def _check(name: str, p: dict, text: str) -> None:
    bad = (
        (name == "bitround" and not 1 <= p["keepbits"] <= 10)
        or (name == "int8" and not 50 <= p["pct"] <= 100)
        or (name == "pca" and (p["k"] < 1 or p["calib"] < 1))
    )
    if bad:
        limits = {"bitround": "keepbits 1..10", "int8": "pct 50..100", "pca": "k >= 1, calib >= 1"}[name]
        raise DiffsegError(f"codec {text!r}: parameter out of range ({limits})")


def parse_spec(spec: str) -> tuple[Codec, list[tuple[str, Codec]]]:
    """(default codec, [(glob, codec) overrides]) of a spec."""
    head, *rest = spec.split(";")
    overrides = []
    for part in filter(None, (r.strip() for r in rest)):
        pattern, eq, codec = part.partition("=")
        if not eq or not pattern:
            raise DiffsegError(f"codec spec {spec!r}: {part!r} is not PATTERN=CODEC")
        overrides.append((pattern.strip(), parse_codec(codec)))
    return parse_codec(head), overrides


def normalize_spec(spec: str) -> str:
    """The spec with every default written out (what the record keeps)."""
    default, overrides = parse_spec(spec)
    return ";".join([str(default)] + [f"{p}={c}" for p, c in overrides])


def resolve(spec: str, names: Iterable[str]) -> dict[str, Codec]:
    """{"<branch>/<layer>": Codec} for every feature array name."""
    default, overrides = parse_spec(spec)
    out = {}
    for name in names:
        codec = default
        layer = name.partition("/")[2]
        for pattern, c in overrides:
            if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(layer, pattern):
                codec = c
        out[name] = codec
    return out


def codec_of(codecs: Mapping[str, str], name: str) -> Codec:
    """The codec of feature array `name` from a record's `codecs` (its own entry, else the spec's)."""
    if name in codecs:
        return parse_codec(str(codecs[name]).removesuffix(CHECKSUM))
    return resolve(str(codecs.get("features", "raw")).removesuffix(CHECKSUM), [name])[name]


def zarr_filters(codec: Codec) -> tuple:
    """Array-to-array Zarr v3 codecs of the main array (bitround's mantissa rounding)."""
    if codec.name != "bitround":
        return ()
    from zarr.codecs.numcodecs import BitRound

    from diffseg.cache.store import quiet_numcodecs

    with quiet_numcodecs():
        return (BitRound(keepbits=int(codec.p["keepbits"])),)


# -- torch (the training device) --------------------------------------------------------------
def decode(codec: Codec, parts: torch.Tensor | Mapping[str, torch.Tensor], shared=None) -> torch.Tensor:
    """float32 [B, S, C, h, w] from a batch of stored parts on any device (after the copy).

    `parts`: a tensor (raw, bitround: the values) or {suffix: tensor [B, ...]}; `shared`: pca's
    {".basis": [C, k], ".mean": [C]} as tensors on the same device."""
    if isinstance(parts, torch.Tensor):
        return parts.float()
    if codec.name == "int8":
        x = parts[OFFSET][..., None, None] + parts[CODES].float() * parts[SCALE][..., None, None]
        flat = x.flatten(-2)
        flat.scatter_(-1, parts[OUT_INDEX].long(), parts[OUT_VALUE].float())
        return flat.view(x.shape)
    if codec.name == "pca":
        assert shared is not None, "pca needs its basis"
        coef = parts[CODES].float()
        return torch.einsum("ck,bskhw->bschw", shared[BASIS], coef) + shared[MEAN][:, None, None]
    return parts[CODES].float()


# -- torch (the extraction device) ---------------------------------------------------------------
def encode_torch(
    codec: Codec, x: torch.Tensor, shared: Mapping[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """{suffix: tensor} of float16 [..., S, C, h, w] on any device: Codec.encode's parts, computed there."""
    if codec.name in ("raw", "bitround"):
        return {CODES: x}
    if codec.name == "int8":
        return int8_encode_torch(x, float(codec.p["pct"]))
    assert shared is not None, "pca needs its basis"
    return {CODES: pca_encode_torch(x, shared[BASIS], shared[MEAN])}


def int8_encode_torch(x: torch.Tensor, pct: float) -> dict[str, torch.Tensor]:
    """int8_encode with two top-k (m + 1) per channel instead of a partition: the m smallest and m largest
    values are the outliers, the next ones lo and hi."""
    *lead, h, w = x.shape
    n = h * w
    m = outliers_per_side(n, pct)
    flat = x.reshape(*lead, n)
    xf = flat.float()
    if m:
        small = torch.topk(xf, m + 1, dim=-1, largest=False)
        large = torch.topk(xf, m + 1, dim=-1, largest=True)
        index = torch.cat([small.indices[..., :m], large.indices[..., :m]], dim=-1)
        lo, hi = small.values[..., m], large.values[..., m]
    else:
        index = torch.zeros((*lead, 0), dtype=torch.int64, device=x.device)
        lo, hi = xf.amin(-1), xf.amax(-1)
    scale = (hi - lo) / 255.0
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.round((torch.clamp(xf, lo[..., None], hi[..., None]) - lo[..., None]) / safe[..., None])
    return {
        CODES: codes.clamp_(0, 255).to(torch.uint8).reshape(x.shape),
        OFFSET: lo,
        SCALE: scale,
        OUT_INDEX: index.to(torch.int32),
        OUT_VALUE: torch.gather(flat, -1, index).to(torch.float16),
    }


def pca_encode_torch(x: torch.Tensor, basis_Ck: torch.Tensor, mean_C: torch.Tensor) -> torch.Tensor:
    coef = torch.einsum("ck,...chw->...khw", basis_Ck, x.float() - mean_C[:, None, None]).to(torch.float16)
    if not bool(torch.isfinite(coef).all()):
        raise DiffsegError("pca coefficients overflow float16: use another codec for this layer")
    return coef


class DeviceEncoder:
    """Encodes one sample's features {"<branch>/<layer>": float16 [S, C, h, w]} where they lie (the
    extraction's device; numpy arrays on the CPU) and copies the parts to the host: {name: {suffix:
    ndarray}}, which CacheWriter.write_sample writes as they are. `shared(name)`: pca's basis and mean
    (numpy), moved to each device once."""

    def __init__(self, codecs: Mapping[str, Codec], shared: Callable[[str], Mapping[str, np.ndarray]]):
        self.codecs = dict(codecs)
        self._shared_of = shared
        self._on: dict[tuple[str, torch.device], dict[str, torch.Tensor]] = {}

    def _shared(self, name: str, device: torch.device) -> dict[str, torch.Tensor]:
        if (name, device) not in self._on:
            host = self._shared_of(name)
            self._on[name, device] = {s: torch.from_numpy(np.asarray(a)).to(device) for s, a in host.items()}
        return self._on[name, device]

    def __call__(self, arrays: Mapping[str, torch.Tensor | np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
        return {name: self.encode(name, x) for name, x in arrays.items()}

    def encode(self, name: str, x: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
        """{suffix: ndarray} of feature array `name`'s sample x (raw on the CPU: x's own memory)."""
        t = torch.as_tensor(x)
        codec = self.codecs[name]
        shared = self._shared(name, t.device) if codec.name == "pca" else None
        return {s: p.cpu().numpy() for s, p in encode_torch(codec, t, shared).items()}


def check_parts(codec: Codec, shape_SChw: tuple[int, ...], parts: Mapping[str, np.ndarray]) -> str | None:
    """Why encoded `parts` of one sample do not fit `codec` at logical shape (S, C, h, w), or None."""
    want = codec.stored(shape_SChw)
    if set(parts) != set(want):
        return f"parts {sorted(parts)} do not match the codec {codec}'s {sorted(want)}"
    for suffix, (shape, dtype) in want.items():
        a = parts[suffix]
        if a.shape != shape or a.dtype != np.dtype(dtype):
            return f"part {suffix or 'codes'} is {a.dtype}{list(a.shape)}, the cache holds {dtype}{list(shape)}"
    return None


class FeatureDecoder:
    """feats {branch: {layer: tensor or {suffix: tensor}}} (a collated CPU batch) -> float32 on `device`;
    the layers in `keep` stay pca coefficients (a model that folded their basis reads them)."""

    def __init__(
        self,
        codecs: Mapping[str, Codec],
        shared: Mapping[str, Mapping[str, np.ndarray]],
        device,
        keep: Iterable[str] = (),
    ):
        self.codecs = dict(codecs)
        self.keep = set(keep)
        self.device = torch.device(device)
        self.shared = {k: {s: torch.from_numpy(a).to(self.device) for s, a in v.items()} for k, v in shared.items()}

    def __call__(self, feats: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, torch.Tensor]]:
        out: dict[str, dict[str, torch.Tensor]] = {}
        for b, layers in feats.items():
            out[b] = {}
            for layer, x in layers.items():
                name = f"{b}/{layer}"
                if isinstance(x, torch.Tensor):
                    out[b][layer] = x.to(self.device, non_blocking=True).float()
                    continue
                parts = {s: p.to(self.device, non_blocking=True) for s, p in x.items()}
                if layer in self.keep:
                    out[b][layer] = parts[CODES].float()
                else:
                    out[b][layer] = decode(self.codecs[name], parts, self.shared.get(name))
        return out
