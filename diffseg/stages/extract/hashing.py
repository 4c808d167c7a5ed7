"""The content hash of a source sample, kept per sample in the cache (`sample_sha256`) so that
`diffseg cache verify --data` can tell which samples changed after extraction.

The hash is over the decoded sample (image and label pixels with their shapes), not the file
bytes: every adapter, the generated demo included, yields the same `Sample`, and a file that
is re-encoded without changing a pixel (PNG recompressed) is not stale, while an image
replaced under the same id is.
"""

from __future__ import annotations

import hashlib

import numpy as np


def sample_digest(image: np.ndarray, label: np.ndarray) -> np.ndarray:
    """sha256 of (image [H, W, 3] uint8, label [H, W] uint8) -> uint8[32]."""
    h = hashlib.sha256()
    for a in (image, label):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{list(a.shape)}".encode())
        h.update(a.data)
    return np.frombuffer(h.digest(), np.uint8).copy()
