"""The cache record: a cache's root attributes as one frozen dataclass (cache format 3).

Every fact is held once: the saved steps and the layer names live in the trajectory config
(`extract.trajectory`), the geometry in `layers`, the size and branches at the root. The views
rule is structured fields (`ViewsRule`); its sentence for people (`describe()`) is derived and
never stored or compared. `RESUME_FIELDS` lists what must be equal for a cache to be resumed.

- `codecs`: "features" is the feature codec spec (cache/codecs.py, defaults written out, e.g.
  "int8:pct=99.9+crc32c"; "raw" for caches before it), and a coded cache also names each
  "<branch>/<layer>" array's resolved codec; labels "zstd-3+crc32c". Compared on resume.
Documented and defaulted:
- `extract.seeding`: the seeding scheme's name: "content-v1" (what extraction writes: trajectory
  draws seeded from the content of the VAE's input pixels, pipeline/seeding.py) or "name-v1" (the
  default, for caches written before it: draws seeded from the sample id; they still read);
- `sample_hash`: the name of a per-sample content hash array (None: none kept);
- `attention_backend`: the U-Net's attention kernels, "xformers" or "sdpa" (caches before it: "sdpa");
  compared on resume like the model fingerprint.
- `packs`: {pack: [layer, ...]}: which stored array holds which layers (packs.py); decided at creation
  (empty until then) and kept by a resume (a storage layout, not a value).

Pure: no zarr. `to_dict` gives JSON values; `from_dict` refuses unknown or missing keys with one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import diffseg
from diffseg.cache.schema import first_difference
from diffseg.core.classes import CITYSCAPES, ClassTable
from diffseg.core.errors import DiffsegError
from diffseg.core.layers import LayerSpec

FORMAT_VERSION = 3
LABEL_SPACE = "cityscapes19"
CUSTOM_SPACE = "custom"  # the train ids of the record's own class table (dataset.classes)
SEEDING = "name-v1"  # caches without the field: every draw seeded from (seed, sample id, branch, t, copy)
DEFAULT_CODECS = {"features": "raw", "labels": "zstd-3"}  # raw: little-endian bytes, no compressor
# Caches without the field ran PyTorch SDPA: xformers serves only on CUDA, and no cache was extracted on
# a GPU before the backend was recorded.
ATTENTION_BACKEND = "sdpa"
# What must be equal for an existing cache to be resumed: dotted keys into to_dict().
RESUME_FIELDS = (
    "format_version",
    "model.fingerprint",
    "attention_backend",  # xformers and SDPA round differently: one cache, one kernel
    "dataset.name",
    "dataset.split",
    "dataset.info",
    "dataset.classes",  # absent (Cityscapes' 19) in both, or the same class table
    "kind",
    "resolution",
    "branches",
    "codecs",
    "extract",
)


def _build(cls, d: Mapping, **convert):
    """cls(**d) with `convert` {field: function} applied; unknown or missing keys are one-line errors."""
    if not isinstance(d, Mapping):
        raise DiffsegError(f"{cls.__name__}: expected a JSON object, got {d!r}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise DiffsegError(f"unknown {cls.__name__} fields {unknown}")
    missing = sorted(n for n, f in known.items() if n not in d and f.default is f.default_factory is MISSING)
    if missing:
        raise DiffsegError(f"{cls.__name__} lacks the fields {missing}")
    return cls(**{k: convert[k](v) if k in convert and v is not None else v for k, v in d.items()})


def _pair(v) -> tuple[int, int]:
    a, b = v
    return (int(a), int(b))


def _ints(v) -> tuple[int, ...]:
    return tuple(int(x) for x in v)


@dataclass(frozen=True, kw_only=True)
class ModelRecord:
    name: str  # tiny | sd21-random | a directory | a hub id
    fingerprint: str  # sha256 of the weights (pipeline/fingerprint.py)
    prediction_type: str  # "epsilon" | "v_prediction"

    def to_dict(self) -> dict:
        return {"name": self.name, "fingerprint": self.fingerprint, "prediction_type": self.prediction_type}

    @classmethod
    def from_dict(cls, d: Mapping) -> ModelRecord:
        return _build(cls, d)


@dataclass(frozen=True, kw_only=True)
class DatasetRecord:
    name: str  # adapter name
    split: str
    label_space: str = LABEL_SPACE  # train ids of the 19 Cityscapes classes; CUSTOM_SPACE: those of `classes`
    info: dict = field(default_factory=dict)  # adapter facts (the demo's size, count and seed)
    # ClassTable.to_dict() of a label space of its own (a folder dataset's classes.json); None: Cityscapes'
    # 19, and kept out of to_dict, so the records (and hashes) of the built-in datasets stay as written
    classes: dict | None = None

    def __post_init__(self):
        if (self.classes is None) != (self.label_space == LABEL_SPACE):
            raise DiffsegError(
                f"DatasetRecord: label space {self.label_space!r} needs classes exactly when not {LABEL_SPACE}"
            )
        if self.classes is not None:
            ClassTable.from_json(self.classes, "the cache record's dataset.classes")  # one line if malformed

    @property
    def class_table(self) -> ClassTable:
        """The label space the cache's labels (and a model trained on it) index."""
        if self.classes is None:
            return CITYSCAPES
        return ClassTable.from_json(self.classes, "the cache record's dataset.classes")

    def to_dict(self) -> dict:
        d = {"name": self.name, "split": self.split, "label_space": self.label_space, "info": dict(self.info)}
        if self.classes is not None:
            d["classes"] = self.classes
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> DatasetRecord:
        return _build(cls, d)


@dataclass(frozen=True, kw_only=True)
class ViewsRule:
    """How an image became the VAE input: "crop" (training caches: fitted inside `scale`, a seeded
    crop redrawn while one class dominates, a seeded flip) or "resize" (the whole image)."""

    mode: str  # "crop" | "resize"
    scale: tuple[int, int] | None = None  # crop: (W, H) the image is fitted inside first
    interpolation: str = "bilinear-antialias"  # the image's: "cv2.INTER_LINEAR" (mmcv) since content-v1; Pillow before
    label_interpolation: str = "nearest"
    cat_max_ratio: float | None = None  # crop: redraw while one class covers >= this share of labelled pixels
    redraws: int | None = None  # crop: draws at most; the last is kept when none passes
    flip: bool = False  # crop: seeded horizontal flip
    photometric: dict | None = None  # crop: mmseg PhotoMetricDistortion parameters (None: none applied)

    def __post_init__(self):
        if self.mode not in ("crop", "resize"):
            raise DiffsegError(f"ViewsRule.mode must be crop or resize: {self.mode!r}")
        if self.scale is not None:
            object.__setattr__(self, "scale", _pair(self.scale))

    def describe(self) -> str:
        """The rule in words (for people: never stored or compared)."""
        interp = f"{self.interpolation.replace('-', ', ')}; label {self.label_interpolation}"
        if self.mode == "resize":
            return f"whole image resized to resolution ({interp})"
        w, h = self.scale or (0, 0)
        return (
            f"image fitted inside {w}x{h} ({interp}), seeded crop redrawn up to {self.redraws} times while one "
            f"class covers >= {self.cat_max_ratio} of its labelled pixels (last draw kept)"
            + (", and seeded horizontal flip" if self.flip else "")
            + (", then mmseg's seeded photometric distortion" if self.photometric else "")
        )

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["scale"] = None if self.scale is None else list(self.scale)
        d["photometric"] = None if self.photometric is None else _jsonable(self.photometric)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> ViewsRule:
        return _build(cls, d, scale=_pair)


@dataclass(frozen=True, kw_only=True)
class ExtractRecord:
    """The extraction config that decides every feature array (compared whole on resume)."""

    preset: str
    trajectory: dict  # TrajectoryConfig.to_dict(): steps, save_steps, layers, eta, ..., seed
    views: int  # crops per training image
    views_rule: ViewsRule
    uncond_prompt: str  # "empty" | "classes"
    uncond_prompt_text: str
    prompt_template: str
    classes: tuple[int, ...]  # active train ids (xattn channels)
    class_prompts: dict  # {class name: prompt}
    compute_dtype: str  # "float32" | "float16"
    limit: int | None  # --limit: first N images
    images: int  # images planned
    ids_sha256: str  # of the image ids, one per line
    seeding: str = SEEDING
    recipe: str = "diffseg"  # extract --recipe the options not given came from (caches before it: diffseg)
    # extract --unet-batch: batched U-Net calls round differently (float), so it decides the bytes
    # and a resume must use the same (caches before it: 1)
    batch_size: int = 1
    # --blk-sum's sum of the n + 2 copies: "float32" where the U-Net runs in float16 (a resume summed
    # the other way is refused); None: in compute_dtype, as caches before the field summed (kept out
    # of to_dict, so their records and hashes stay as written)
    blk_sum_dtype: str | None = None
    # extract --joint-branches: each step's uncond and cond rows in one U-Net call (rounds as the larger
    # call rounds, so it decides the bytes; a resume must use the same); False is kept out of to_dict,
    # so the records and hashes of caches without it stay as written
    joint_branches: bool = False

    def __post_init__(self):
        object.__setattr__(self, "classes", _ints(self.classes))
        for key in ("steps", "save_steps", "layers"):
            if key not in self.trajectory:
                raise DiffsegError(f"ExtractRecord.trajectory lacks {key!r}")

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.blk_sum_dtype is None:
            del d["blk_sum_dtype"]
        if not self.joint_branches:
            del d["joint_branches"]
        d.update(
            trajectory=_jsonable(self.trajectory),
            views_rule=self.views_rule.to_dict(),
            classes=list(self.classes),
            class_prompts=dict(self.class_prompts),
        )
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> ExtractRecord:
        return _build(cls, d, views_rule=ViewsRule.from_dict)


@dataclass(frozen=True, kw_only=True)
class SkippedSample:
    id: str
    reason: str

    def to_dict(self) -> dict:
        return {"id": self.id, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: Mapping) -> SkippedSample:
        return _build(cls, d)


@dataclass(frozen=True, kw_only=True)
class CacheRecord:
    """The root attributes of a cache (docs/design/architecture.md "The feature cache")."""

    kind: str  # "train" (crops, labels at the resolution) | "eval" (whole images, original labels kept)
    model: ModelRecord
    dataset: DatasetRecord
    extract: ExtractRecord
    layers: dict  # {layer: LayerSpec}, in extract.trajectory["layers"] order
    branches: tuple[str, ...]  # "uncond" | "cond"
    resolution: tuple[int, int]  # (W, H) of the VAE input and of `labels`
    samples: int  # N
    codecs: dict = field(default_factory=lambda: dict(DEFAULT_CODECS))  # {array or "features": codec}
    sample_hash: str | None = None  # name of a per-sample content hash array (none kept yet)
    attention_backend: str = ATTENTION_BACKEND  # the U-Net's attention kernels: "xformers" | "sdpa"
    packs: dict = field(default_factory=dict)  # {"<branch>/s<stride>": [layer, ...]} (packs.py); {}: not decided
    skipped: tuple[SkippedSample, ...] = ()
    timings: dict = field(default_factory=dict)  # free-form: start-up and extraction seconds
    host: dict = field(default_factory=dict)  # free-form: where it ran
    diffseg_version: str = diffseg.__version__
    format_version: int = FORMAT_VERSION

    def __post_init__(self):
        object.__setattr__(self, "branches", tuple(self.branches))
        object.__setattr__(self, "resolution", _pair(self.resolution))
        object.__setattr__(self, "skipped", tuple(self.skipped))
        if self.format_version != FORMAT_VERSION:
            raise DiffsegError(f"CacheRecord.format_version must be {FORMAT_VERSION}: {self.format_version}")
        if self.kind not in ("train", "eval"):
            raise DiffsegError(f"CacheRecord.kind must be train or eval: {self.kind!r}")
        for b in self.branches:
            if b not in ("uncond", "cond"):
                raise DiffsegError(f"CacheRecord.branches: unknown branch {b!r}")
        names = list(self.extract.trajectory["layers"])
        if list(self.layers) != names:
            raise DiffsegError(f"CacheRecord.layers {list(self.layers)} are not the trajectory's layers {names}")

    @property
    def class_names(self) -> list[str]:
        """Names of the active classes (the xattn channels), in their order."""
        names = self.dataset.class_table.names
        return [names[c] for c in self.extract.classes]

    @property
    def save_steps(self) -> tuple[int, ...]:
        """Timesteps on the S axis of every feature array, in cache order."""
        return _ints(self.extract.trajectory["save_steps"])

    def to_dict(self) -> dict:
        return {
            "format_version": self.format_version,
            "diffseg_version": self.diffseg_version,
            "kind": self.kind,
            "model": self.model.to_dict(),
            "attention_backend": self.attention_backend,
            "dataset": self.dataset.to_dict(),
            "extract": self.extract.to_dict(),
            "layers": {name: spec.to_dict() for name, spec in self.layers.items()},
            "branches": list(self.branches),
            "resolution": list(self.resolution),
            "samples": self.samples,
            "codecs": dict(self.codecs),
            "sample_hash": self.sample_hash,
            "packs": {k: list(v) for k, v in self.packs.items()},
            "skipped": [s.to_dict() for s in self.skipped],
            "timings": _jsonable(self.timings),
            "host": _jsonable(self.host),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> CacheRecord:
        return _build(
            cls,
            d,
            model=ModelRecord.from_dict,
            dataset=DatasetRecord.from_dict,
            extract=ExtractRecord.from_dict,
            layers=lambda v: {name: LayerSpec.from_dict(s) for name, s in v.items()},
            skipped=lambda v: tuple(SkippedSample.from_dict(s) for s in v),
        )


def _jsonable(value: Any) -> Any:
    """Tuples as lists, recursively (what JSON gives back)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _lookup(d: Mapping, dotted: str) -> Any:
    """The value at a dotted key; None where a key kept out of to_dict when default is absent."""
    node: Any = d
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def resume_difference(old: CacheRecord, new: CacheRecord) -> tuple[str, Any, Any] | None:
    """The first (dotted key, old value, new value) among RESUME_FIELDS where two records differ."""
    a, b = old.to_dict(), new.to_dict()
    for key in RESUME_FIELDS:
        diff = first_difference(_lookup(a, key), _lookup(b, key), key)
        if diff:
            return diff
    return None


def read_record(path, attrs: Mapping) -> CacheRecord:
    """The record of the cache at `path` from its root attributes; a format-1 or -2 cache is told to migrate."""
    version = attrs.get("format_version")
    if version in (1, 2):
        raise DiffsegError(f"{path} is a format-{version} cache: run `diffseg cache migrate {path}`")
    if version is None:
        raise DiffsegError(
            f"{path} is a Zarr group without diffseg attributes (not a cache, or its creation was interrupted)"
        )
    if version != FORMAT_VERSION:
        raise DiffsegError(f"{path} has cache format version {version}; this diffseg reads version {FORMAT_VERSION}")
    try:
        record = CacheRecord.from_dict(attrs)
    except DiffsegError as err:
        raise DiffsegError(f"{path}: damaged cache attributes: {err}") from err
    if not record.packs:  # written at creation: a record without it would read as a cache of no features
        raise DiffsegError(f"{path}: damaged cache attributes: its packs (which arrays hold the features) are missing")
    return record
