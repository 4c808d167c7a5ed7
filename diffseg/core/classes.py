"""The 19 Cityscapes evaluation classes (train-id order), their palette, and subsets.

Every dataset is converted to these train ids; 255 (`IGNORE`) marks unlabelled pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from diffseg.core.errors import DiffsegError

NUM_CLASSES = 19
IGNORE = 255
MAX_CLASSES = 255  # ids 0..254: 255 stays free for IGNORE

CLASS_NAMES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

# The usual Cityscapes colours, one row per train id: [19, 3] uint8.
PALETTE = np.array(
    [
        (128, 64, 128),
        (244, 35, 232),
        (70, 70, 70),
        (102, 102, 156),
        (190, 153, 153),
        (153, 153, 153),
        (250, 170, 30),
        (220, 220, 0),
        (107, 142, 35),
        (152, 251, 152),
        (70, 130, 180),
        (220, 20, 60),
        (255, 0, 0),
        (0, 0, 142),
        (0, 0, 70),
        (0, 60, 100),
        (0, 80, 100),
        (0, 0, 230),
        (119, 11, 32),
    ],
    dtype=np.uint8,
)
PALETTE.setflags(write=False)

# Synthia has no terrain, truck or train: it is scored on 16 (and 13) classes.
SYNTHIA16: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
SYNTHIA13: tuple[int, ...] = (0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)

assert len(CLASS_NAMES) == NUM_CLASSES == len(PALETTE)


def colorize(label_HW: np.ndarray) -> np.ndarray:
    """Train-id map -> RGB picture [H, W, 3] uint8 (ignore is black)."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:NUM_CLASSES] = PALETTE
    return lut[label_HW]


def present_classes(label_HW: np.ndarray, min_fraction: float = 0.0) -> tuple[int, ...]:
    """Train ids present in a label map (ignore excluded), in train-id order: those covering at
    least `min_fraction` of its pixels (0: any pixel).

    The thresholds differ where presence means different things: any pixel where a class gets
    drawn or its own mask (viz legends, MultiDiffusion's per-class prompts); 0.3 % where a caption
    names it (pretrain/captions.py MIN_FRACTION: ~50 px of a 128 x 128 image); 1 % where a
    cross-attention ratio is measured over it (the attention metric's MIN_FRACTION: a handful of
    pixels gives a noisy ratio)."""
    counts = np.bincount(np.asarray(label_HW).ravel(), minlength=256)[:IGNORE]  # any label space's ids
    return tuple(int(c) for c in np.flatnonzero((counts > 0) & (counts >= min_fraction * label_HW.size)))


@dataclass(frozen=True)
class ClassTable:
    """A label space: class names in train-id order, their colours and prompt words, and the ignore
    value labels carry on disk. Inside diffseg a label always marks ignored pixels with `IGNORE`
    (255): a reader maps a table's own ignore value to it.

    `CITYSCAPES` (the 19 classes above) is every built-in dataset's; a `folder` dataset reads its
    own from classes.json (data/folder.py)."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    prompts: tuple[str, ...]  # the words a masked prompt names each class by
    ignore: int = IGNORE

    def __post_init__(self):
        k = len(self.names)
        if not 2 <= k <= MAX_CLASSES:
            raise DiffsegError(f"a class table holds 2 to {MAX_CLASSES} classes, not {k}")
        if len(self.colors) != k or len(self.prompts) != k:
            raise DiffsegError(f"a class table needs one colour and one prompt per class ({k} classes)")
        if len(set(self.names)) != k:
            raise DiffsegError(f"class names repeat: {sorted(n for n in set(self.names) if self.names.count(n) > 1)}")
        if not k <= self.ignore <= 255:
            raise DiffsegError(
                f"the ignore value must lie in {k}..255, outside the class ids 0..{k - 1}: {self.ignore}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def palette(self) -> np.ndarray:
        """[K, 3] uint8."""
        return np.array(self.colors, np.uint8).reshape(-1, 3)

    def colorize(self, label_HW: np.ndarray) -> np.ndarray:
        """Train-id map -> RGB picture [H, W, 3] uint8 (ignore is black)."""
        lut = np.zeros((256, 3), np.uint8)
        lut[: self.num_classes] = self.palette
        return lut[label_HW]

    def to_dict(self) -> dict:
        """JSON: what a cache record carries (the classes.json object form)."""
        classes = [
            {"id": i, "name": n, "color": list(c), "prompt": p}
            for i, (n, c, p) in enumerate(zip(self.names, self.colors, self.prompts, strict=True))
        ]
        return {"classes": classes, "ignore": self.ignore}

    @classmethod
    def from_json(cls, value: Any, where: str) -> ClassTable:
        """A classes.json value (a list of classes, or {"classes": [...], "ignore": N}) -> the table;
        anything malformed is one DiffsegError line starting with `where`."""
        try:
            return cls._parse(value)
        except DiffsegError as err:
            raise DiffsegError(f"{where}: {err}") from None

    @classmethod
    def _parse(cls, value: Any) -> ClassTable:
        ignore: Any = IGNORE
        if isinstance(value, dict):
            unknown = sorted(set(value) - {"classes", "ignore"})
            if unknown or "classes" not in value:
                raise DiffsegError(f'expected {{"classes": [...], "ignore": N}}, got the keys {sorted(value)}')
            ignore, value = value.get("ignore", IGNORE), value["classes"]
        if not isinstance(value, list):
            raise DiffsegError('expected a list of {"id", "name", "color"} objects')
        if not isinstance(ignore, int) or isinstance(ignore, bool):
            raise DiffsegError(f"ignore must be an integer: {ignore!r}")
        rows = [_class_row(i, row) for i, row in enumerate(value)]
        ids = sorted(r[0] for r in rows)
        if ids != list(range(len(rows))):
            raise DiffsegError(f"class ids must be 0..{len(rows) - 1}, each once: got {ids}")
        rows.sort()
        return cls(
            names=tuple(r[1] for r in rows),
            colors=tuple(r[2] for r in rows),
            prompts=tuple(r[3] for r in rows),
            ignore=ignore,
        )


def _class_row(i: int, row: Any) -> tuple[int, str, tuple[int, int, int], str]:
    """(id, name, colour, prompt) of one classes.json entry."""
    if not isinstance(row, dict):
        raise DiffsegError(f"class #{i} is not an object: {row!r}")
    unknown = sorted(set(row) - {"id", "name", "color", "prompt"})
    missing = sorted({"id", "name", "color"} - set(row))
    if unknown or missing:
        raise DiffsegError(f"class #{i}: unknown keys {unknown}, missing keys {missing}")
    cid, name, color, prompt = row["id"], row["name"], row["color"], row.get("prompt", row["name"])
    if not isinstance(cid, int) or isinstance(cid, bool):
        raise DiffsegError(f"class #{i}: id must be an integer, got {cid!r}")
    if not isinstance(name, str) or not name.strip():
        raise DiffsegError(f"class #{i}: name must be a non-empty string, got {name!r}")
    if not isinstance(prompt, str) or not prompt.strip():
        raise DiffsegError(f"class {name!r}: prompt must be a non-empty string, got {prompt!r}")
    ok = isinstance(color, list) and len(color) == 3
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in color):
        raise DiffsegError(f"class {name!r}: color must be [r, g, b] with integers 0..255, got {color!r}")
    return cid, name, (color[0], color[1], color[2]), prompt


CITYSCAPES = ClassTable(
    names=CLASS_NAMES, colors=tuple((int(r), int(g), int(b)) for r, g, b in PALETTE), prompts=CLASS_NAMES
)
