"""Files in and out of `diffseg predict`: which inputs are images, how they are named in the
output folder, and the optional ground-truth labels.

Inputs: image files, or folders searched recursively (sorted). Anything Pillow can open is an
image (PNG, JPEG, BMP, WebP, TIFF...; any mode, converted to RGB) of at most 8192x8192 pixels
(diffseg.data.readers.MAX_IMAGE_PIXELS, checked from the header before decoding). A file inside a
folder that is not such an image is skipped with a warning; a file named on the command line that
is not one is a DiffsegError naming it.

Output names: `<stem>` for a file named directly, `<path relative to the folder without its
suffix>` for a file found in a folder (so two folders' `0001.png` do not collide: a collision is
an error naming both files). The output folder may not overlap the inputs or the labels, and files
already there are replaced only with `--overwrite` (core/outputs.py; checked before any model loads).

Labels (`--labels DIR`): the file `DIR/<name>.png` (or `DIR/<stem>.png`), where <name> is the
output name above. Accepted: a single-channel PNG (mode "L") or a palette PNG (mode "P", e.g. a
mask written by `diffseg predict`) whose pixel values / palette indices are train ids 0..18, 255 =
ignore; at the input image's size. Anything else is reported with a warning and the picture is
drawn without ground truth.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from diffseg.core.classes import CITYSCAPES, IGNORE, ClassTable
from diffseg.core.errors import DiffsegError
from diffseg.data.readers import open_header, size_problem


@dataclass(frozen=True, kw_only=True)
class InputImage:
    path: Path
    name: str  # output name without suffix, may contain "/" for files found in folders


def warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def image_problem(path: Path) -> str | None:
    """None when Pillow can decode the file and it is not over the pixel limit, else the reason."""
    try:
        with open_header(path) as img:
            too_large = size_problem(img.size)  # from the header: a decompression bomb is never decoded
            if too_large:
                return f"too large: {too_large}"
            img.load()
    except Image.DecompressionBombError as err:
        return f"too large ({err})"
    except (UnidentifiedImageError, OSError, ValueError) as err:
        return f"not an image ({type(err).__name__}: {err})"
    return None


def gather_inputs(inputs: list[Path]) -> list[InputImage]:
    """The images to segment, in the given order (folders: sorted, recursive)."""
    found: list[InputImage] = []
    for p in map(Path, inputs):
        if p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                problem = image_problem(f)
                if problem:
                    warn(f"skipping {f}: {problem}")
                    continue
                found.append(InputImage(path=f, name=f.relative_to(p).with_suffix("").as_posix()))
        else:
            problem = image_problem(p)
            if problem:
                raise DiffsegError(f"{p}: {problem}")
            found.append(InputImage(path=p, name=p.stem))
    seen: dict[str, Path] = {}
    for item in found:
        if item.name in seen:
            raise DiffsegError(
                f"{seen[item.name]} and {item.path} would both write {item.name}.png: rename one or pass their folder"
            )
        seen[item.name] = item.path
    if not found:
        raise DiffsegError(f"no image found in {', '.join(map(str, inputs))}")
    return found


def output_paths(out: Path, item: InputImage) -> tuple[Path, Path]:
    """(mask, picture) written for one input: `<out>/<name>.png`, `<out>/<name>_vis.png`."""
    return Path(out) / f"{item.name}.png", Path(out) / f"{item.name}_vis.png"


def read_image(path: Path) -> np.ndarray:
    """RGB [H, W, 3] uint8 of any image Pillow reads."""
    with open_header(path) as img:
        return np.array(img.convert("RGB"))  # writable (torch warns on read-only arrays)


def find_label(labels_dir: Path, item: InputImage) -> Path | None:
    for name in (item.name, item.path.stem):
        cand = Path(labels_dir) / f"{name}.png"
        if cand.is_file():
            return cand
    return None


def read_label(path: Path, size_hw: tuple[int, int], table: ClassTable = CITYSCAPES) -> np.ndarray | None:
    """Train-id map [H, W] uint8 of the run's label space `table` (its ignore value read as IGNORE), or
    None (with a warning naming the file) when unusable."""
    try:
        with open_header(path) as img:
            mode = img.mode
            too_large = size_problem(img.size)
            if too_large:
                warn(f"ignoring label {path}: too large: {too_large}")
                return None
            if mode not in ("L", "P"):
                warn(
                    f"ignoring label {path}: mode {mode}, expected a single-channel train-id PNG "
                    "(mode L) or a palette PNG (mode P) whose indices are train ids"
                )
                return None
            label = np.asarray(img)  # mode P: the palette indices, not the colours
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        warn(f"ignoring label {path}: not an image ({err})")
        return None
    if label.shape != tuple(size_hw):
        warn(f"ignoring label {path}: size {label.shape[1]}x{label.shape[0]}, the image is {size_hw[1]}x{size_hw[0]}")
        return None
    k = table.num_classes
    bad = sorted(set(np.unique(label).tolist()) - set(range(k)) - {table.ignore})
    if bad:
        warn(f"ignoring label {path}: values {bad[:8]} are not train ids (0..{k - 1}, {table.ignore})")
        return None
    return np.where(label == table.ignore, IGNORE, label).astype(np.uint8)
