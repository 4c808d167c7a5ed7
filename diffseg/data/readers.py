"""Decoding image and label files into arrays; every failure becomes a `DataError`.

Three label kinds exist on disk (docs/guides/datasets.md):
- id-space labels (palette or grey PNGs whose pixel *index* is a dataset id) go through
  a 256-entry table, unknown ids -> 255;
- train-id labels (`*labelTrainIds.png`, BDD masks) must hold only 0..18 and 255;
- Synthia labels are 16-bit 3-channel PNGs (class in R), which only a 16-bit reader sees.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from diffseg.core.classes import IGNORE, NUM_CLASSES, ClassTable
from diffseg.core.errors import DataError

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError)
_VALID_TRAIN_IDS = np.zeros(256, bool)
_VALID_TRAIN_IDS[:NUM_CLASSES] = True
_VALID_TRAIN_IDS[IGNORE] = True

# The most pixels an input image or label may have: 8192x8192. The largest real inputs are
# Mapillary Vistas' photos (up to ~5000x4000, 20 MP), over 3x below it; Cityscapes, GTA, ACDC,
# BDD and Synthia are 1-2 MP. A 1 MB PNG can claim 20000x20000 (a decompression bomb: 1.2 GB
# decoded, several GB at peak), so the size is read from the file header and a larger file is
# refused before any decoding, as an unreadable one is. 8192x8192 RGB decodes to 192 MiB.
MAX_IMAGE_PIXELS = 8192 * 8192


def open_header(path: Path) -> Image.Image:
    """Image.open (the header only, nothing decoded) without Pillow's DecompressionBombWarning: Pillow
    warns from 89.5 MP and refuses from 179 MP by itself, and every size it would warn about is over
    MAX_IMAGE_PIXELS and refused by the caller with one line, so its warning would only repeat it.
    Scoped to this call: the process's warning filters stay as they were."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(path)


def size_problem(size_wh: tuple[int, int]) -> str | None:
    """Why an image of `size_wh` (W, H) pixels is not decoded, or None when it may be."""
    w, h = size_wh
    if w * h <= MAX_IMAGE_PIXELS:
        return None
    return f"{w}x{h} pixels, over the 8192x8192 ({MAX_IMAGE_PIXELS}) diffseg decodes (a decompression bomb?)"


def _header(path: Path, what: str) -> Image.Image:
    """The file opened, its header read and its size checked; nothing decoded yet."""
    if not path.is_file():
        raise DataError(path, f"missing {what}")
    try:
        img = open_header(path)
    except Image.DecompressionBombError as err:  # so far over that Pillow refuses before we look
        raise DataError(path, f"{what} too large ({err})") from None
    except _DECODE_ERRORS as err:
        raise DataError(path, f"unreadable {what} ({err})") from None
    problem = size_problem(img.size)
    if problem:
        img.close()
        raise DataError(path, f"{what} too large: {problem}")
    return img


def _open(path: Path, what: str) -> Image.Image:
    img = _header(path, what)
    try:
        img.load()
    except _DECODE_ERRORS as err:
        img.close()
        raise DataError(path, f"unreadable {what} ({err})") from None
    return img


def read_rgb(path: Path) -> np.ndarray:
    """Image file -> uint8 [H, W, 3] RGB."""
    img = _open(path, "image")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


def _read_index(path: Path) -> np.ndarray:
    """Single-channel 8-bit PNG -> its pixel indices uint8 [H, W] (palette indices, not luminance)."""
    img = _open(path, "label")
    if img.mode not in ("P", "L"):
        raise DataError(path, f"expected an 8-bit palette or grey label, got PIL mode {img.mode}")
    return np.asarray(img)


def read_id_label(path: Path, table: np.ndarray) -> np.ndarray:
    """Id-space label -> train ids uint8 [H, W] through `table` (unknown ids -> 255)."""
    return table[_read_index(path)]


def _check_values(path: Path, label: np.ndarray, valid_256: np.ndarray, allowed: str) -> None:
    """A DataError naming the values of `label` that `valid_256` does not allow."""
    present = np.flatnonzero(np.bincount(label.ravel(), minlength=256))
    bad = present[~valid_256[present]]
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:12]) + (", ..." if bad.size > 12 else "")
        raise DataError(path, f"corrupt train-id label: values {{{shown}}} outside {allowed}")


def read_train_id_label(path: Path) -> np.ndarray:
    """Train-id label -> uint8 [H, W]; any value outside 0..18/255 marks the file corrupt."""
    label = _read_index(path)
    _check_values(path, label, _VALID_TRAIN_IDS, "0..18/255")
    return label


def read_table_label(path: Path, table: ClassTable) -> np.ndarray:
    """Label of class ids 0..K-1 and the table's ignore value -> uint8 [H, W] with ignore as IGNORE (255);
    any other value (an id the table lacks) marks the file corrupt."""
    label = _read_index(path)
    valid = np.zeros(256, bool)
    valid[: table.num_classes] = True
    valid[table.ignore] = True
    _check_values(path, label, valid, f"the class ids 0..{table.num_classes - 1} and ignore {table.ignore}")
    if table.ignore != IGNORE:
        label = np.where(label == table.ignore, np.uint8(IGNORE), label)
    return label


def read_synthia_label(path: Path, table: np.ndarray) -> np.ndarray:
    """16-bit 3-channel Synthia label -> train ids uint8 [H, W] (class id = R channel)."""
    import cv2  # Pillow keeps only the high byte of 16-bit RGB: the class would read as 0

    _header(path, "label").close()  # missing or too large: refused before OpenCV decodes anything
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DataError(path, "unreadable label (OpenCV could not decode it)")
    if raw.ndim != 3 or raw.shape[2] < 3:
        raise DataError(path, f"expected a 3-channel Synthia label, got shape {raw.shape}")
    cls_HW = raw[:, :, 2]  # OpenCV returns BGR(A): index 2 is R, the class id
    out = table[np.minimum(cls_HW, 255).astype(np.uint8)]
    out[cls_HW > 255] = IGNORE
    return out


def file_size(path: Path, what: str = "label") -> tuple[int, int]:
    """(H, W) from the file header only (no pixel decoding); a file over MAX_IMAGE_PIXELS is a DataError."""
    with _header(path, what) as img:
        w, h = img.size
    return h, w
