"""Image sizes the U-Net accepts: the one "multiple of 64" rule.

The VAE encodes at 1/8 and the U-Net downsamples that latent 3 times (factor 2 each), so the image
fed to the VAE must be a multiple of 8 * 2**3 = 64 in width and height.
"""

from __future__ import annotations

from diffseg.core.errors import DiffsegError

SIZE_MULTIPLE = 64


def check_unet_size(size_wh: tuple[int, int], what: str = "image size") -> tuple[int, int]:
    """(W, H) as ints, or DiffsegError naming `what` (e.g. "--resolution") when either is not a
    multiple of SIZE_MULTIPLE."""
    w, h = size_wh
    if w % SIZE_MULTIPLE or h % SIZE_MULTIPLE:
        raise DiffsegError(
            f"{what} {w}x{h}: width and height must be multiples of {SIZE_MULTIPLE} "
            "(the U-Net downsamples the 1/8 latent 3 times)"
        )
    return int(w), int(h)
