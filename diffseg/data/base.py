"""The dataset interface shared by every adapter: a sorted list of samples, each an image
file plus candidate label files, decoded on demand.

Listing only walks folders (no decoding), so `len(ds)` is cheap on 25k-frame datasets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffseg.core.classes import CITYSCAPES, ClassTable
from diffseg.core.errors import DataError, DiffsegError
from diffseg.data.readers import file_size, read_rgb

LabelReader = Callable[[Path], np.ndarray]  # path -> train ids uint8 [H, W]


@dataclass(frozen=True)
class Sample:
    """One decoded sample: `image` uint8 [H, W, 3] RGB, `label` uint8 [H, W] train ids/255."""

    id: str
    image: np.ndarray
    label: np.ndarray


@dataclass(frozen=True)
class Entry:
    """Where one sample lives: the image and, in order of preference, its label files."""

    id: str
    image: Path
    labels: tuple[tuple[Path, LabelReader], ...]  # first existing one is used

    def label_file(self) -> tuple[Path, LabelReader]:
        for path, reader in self.labels:
            if path.is_file():
                return path, reader
        raise DataError(self.labels[0][0], "missing label")


class FileDataset:
    """A dataset on disk: `ids`, `load(i)`, `check(i)`, `label_size(i)` (see contracts)."""

    def __init__(
        self, *, name: str, split: str, root: Path, entries: list[Entry], info: dict, classes: ClassTable = CITYSCAPES
    ):
        self.name = name
        self.classes = classes  # the label space its labels' train ids index
        self.split = split
        self.root = root
        self.info = dict(info)
        self._entries = sorted(entries, key=lambda e: e.id)
        self.ids = [e.id for e in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, split={self.split!r}, n={len(self)}, root={str(self.root)!r})"

    def load(self, i: int) -> Sample:
        """Decode sample i; raises DataError(path, problem) for a missing/corrupt/mismatched file."""
        entry = self._entries[i]
        label_path, reader = entry.label_file()
        image = read_rgb(entry.image)
        label = reader(label_path)
        _check_sizes(entry.image, image.shape[:2], label_path, label.shape)
        return Sample(id=entry.id, image=image, label=label)

    def check(self, i: int) -> list[str]:
        """Every problem of sample i as "path: problem" (image and label checked separately)."""
        entry = self._entries[i]
        problems: list[str] = []
        image = label = None
        try:
            image = read_rgb(entry.image)
        except DataError as err:
            problems.append(str(err))
        try:
            label_path, reader = entry.label_file()
            label = reader(label_path)
        except DataError as err:
            problems.append(str(err))
        if image is not None and label is not None:
            try:
                _check_sizes(entry.image, image.shape[:2], label_path, label.shape)
            except DataError as err:
                problems.append(str(err))
        return problems

    def label_size(self, i: int) -> tuple[int, int]:
        """(H, W) of sample i's label, read from the file header."""
        label_path, _ = self._entries[i].label_file()
        return file_size(label_path)

    def image_path(self, i: int) -> Path:
        return self._entries[i].image


def _check_sizes(image_path: Path, image_hw: tuple, label_path: Path, label_hw: tuple) -> None:
    if tuple(image_hw) != tuple(label_hw):
        (ih, iw), (lh, lw) = image_hw, label_hw
        raise DataError(label_path, f"label size {lw}x{lh} differs from image size {iw}x{ih} ({image_path})")


def require_dir(path: Path, name: str, split: str, hint: str) -> Path:
    """A split folder that must exist, with a message saying which layout was expected."""
    if not path.is_dir():
        raise DiffsegError(f"{name} {split}: folder {path} not found (expected {hint})")
    return path


def list_files(folder: Path, suffix: str, recursive: bool = False) -> list[Path]:
    """Files under `folder` whose name ends with `suffix`, skipping `*_ref` folders (sorted)."""
    pattern = "**/*" + suffix if recursive else "*" + suffix
    files = [p for p in folder.glob(pattern) if p.is_file()]
    if recursive:
        files = [p for p in files if not any(part.endswith("_ref") for part in p.relative_to(folder).parts[:-1])]
    return sorted(files)


def strip_suffix(name: str, suffix: str) -> str:
    assert name.endswith(suffix), (name, suffix)
    return name[: len(name) - len(suffix)]


def rel_id(path: Path, folder: Path, suffix: str) -> str:
    """Id of a file: its path relative to `folder`, POSIX separators, `suffix` removed."""
    return strip_suffix(path.relative_to(folder).as_posix(), suffix)
