"""The arithmetic of running a trained run online on one image, shared by `diffseg predict` and
`diffseg eval --dataset` (one function, `image_logits`, so a prediction and an online evaluation agree).

A view is the image resized to one network size (`eval_image`, as evaluation caches resize), possibly
mirrored (--flip). `whole` feeds the view to the U-Net at once; `slide` cuts it into windows of
`crop` every `stride` (mmseg's slide inference: the last window of a row or column ends at the
image's edge; a window never exceeds the view). Windows and mirrored views of one size go through
the U-Net together, `batch` at a time. Each window's logits are stitched on the head's output
grid (windows are multiples of 64, so they fall on whole logit cells) and averaged where windows
overlap; mmseg stitches at the input resolution instead, which differs only at the windows' inner
edges (bilinear resizing is linear). A mirrored view's logits are mirrored back; every view's
logits are resized (bilinear) to the output size once. One view: its logits; several (flip,
scales): the mean of their softmax probabilities, as mmseg's test-time augmentation merges them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from diffseg.core.errors import DiffsegError
from diffseg.core.geometry import check_unet_size
from diffseg.stages.device import autocast
from diffseg.stages.extract.views import eval_image

MODES = ("whole", "slide")


@dataclass(frozen=True, kw_only=True)
class Protocol:
    """How each image is run: sizes are (W, H), multiples of 64."""

    mode: str = "whole"
    crop: tuple[int, int] | None = None  # slide: the window
    stride: tuple[int, int] | None = None  # slide: the step between windows (default: the crop: no overlap)
    flip: bool = False  # also run the mirrored image
    scales: tuple[float, ...] = (1.0,)  # each scales both sides of the resolution
    batch: int = 4  # images (windows, mirrored views) per U-Net call

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise DiffsegError(f"--mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.mode == "slide":
            if self.crop is None:
                raise DiffsegError("--mode slide needs --crop WxH")
            check_unet_size(self.crop, "--crop")
            check_unet_size(self.stride or self.crop, "--stride")
        elif self.crop is not None or self.stride is not None:
            raise DiffsegError("--crop and --stride apply to --mode slide only")
        if not self.scales or any(not (s > 0 and math.isfinite(s)) for s in self.scales):
            raise DiffsegError(f"--scales must be positive numbers, got {','.join(map(str, self.scales))}")
        if self.batch < 1:
            raise DiffsegError(f"batch must be at least 1, got {self.batch}")

    def scaled(self, resolution: tuple[int, int]) -> list[tuple[int, int]]:
        """(W, H) budgets of the scales: both sides of `resolution` times each scale."""
        return [(round(resolution[0] * s), round(resolution[1] * s)) for s in self.scales]


def windows(
    size_wh: tuple[int, int], crop_wh: tuple[int, int], stride_wh: tuple[int, int]
) -> list[tuple[int, int, int, int]]:
    """(x1, y1, x2, y2) of mmseg's sliding windows over an image of `size_wh`."""
    (W, H), (cw, ch), (sw, sh) = size_wh, crop_wh, stride_wh
    out = []
    for iy in range(max(H - ch + sh - 1, 0) // sh + 1):
        for ix in range(max(W - cw + sw - 1, 0) // sw + 1):
            y2, x2 = min(iy * sh + ch, H), min(ix * sw + cw, W)
            out.append((max(x2 - cw, 0), max(y2 - ch, 0), x2, y2))
    return out


def _segment(extractor, segmentor, crops: list[np.ndarray], ids: list[str], device, amp) -> torch.Tensor:
    """float32 logits [B, K, h, w] of same-size uint8 crops: the online uncond features, rounded to
    float16 as a cache stores them, through the run's fusion and head under eval's autocast."""
    feats = extractor.uncond_batch(np.stack(crops), ids)  # {layer: float16 [B, S, C, h', w']}
    feats_BSChw = {k: torch.from_numpy(v).to(device).float() for k, v in feats.items()}
    with autocast(torch.device(device), amp):
        logits = segmentor(feats_BSChw).float()
    if not bool(torch.isfinite(logits).all()):
        raise DiffsegError(f"{ids[0]}: non-finite logits (NaN/inf in the online features?)")
    return logits


@torch.no_grad()
def image_logits(
    extractor,
    segmentor,
    image_HW3: np.ndarray,
    sizes: list[tuple[int, int]],
    out_hw: tuple[int, int],
    sample_id: str,
    device,
    amp: torch.dtype | None = None,
    protocol: Protocol | None = None,
) -> torch.Tensor:
    """float32 [K, H, W] at `out_hw`: logits (one view) or mean softmax (several) of the image run at
    each network size of `sizes` (W, H) under `protocol` (default: whole, no flip)."""
    protocol = protocol or Protocol()
    views = []
    for size in sizes:
        net = eval_image(image_HW3, size)
        inputs = [net, np.ascontiguousarray(net[:, ::-1])] if protocol.flip else [net]
        boxes = (
            windows(size, protocol.crop, protocol.stride or protocol.crop)  # type: ignore[arg-type]
            if protocol.mode == "slide"
            else [(0, 0, size[0], size[1])]
        )
        jobs = [(v, box) for v in range(len(inputs)) for box in boxes]
        sums: list[torch.Tensor | None] = [None] * len(inputs)
        counts: list[torch.Tensor | None] = [None] * len(inputs)
        for start in range(0, len(jobs), protocol.batch):
            chunk = jobs[start : start + protocol.batch]
            crops = [inputs[v][y1:y2, x1:x2] for v, (x1, y1, x2, y2) in chunk]
            logits = _segment(extractor, segmentor, crops, [sample_id] * len(chunk), device, amp)
            for (v, box), l_Khw in zip(chunk, logits):
                sums[v], counts[v] = _stitch(sums[v], counts[v], l_Khw, box, size)
        for v, (total, count) in enumerate(zip(sums, counts)):
            assert total is not None and count is not None  # every view has at least one window
            grid = total / count
            grid = grid.flip(-1) if v == 1 else grid
            views.append(F.interpolate(grid[None], size=tuple(out_hw), mode="bilinear", align_corners=False)[0])
    if len(views) == 1:
        return views[0]
    return torch.stack([v.softmax(0) for v in views]).mean(0)


def _stitch(total, count, logits_Khw: torch.Tensor, box, size_wh):
    """Add one window's logits into the view's grid (the head's output grid of the whole view)."""
    x1, y1, x2, y2 = box
    K, h, w = logits_Khw.shape
    if (x2 - x1) % w or (y2 - y1) % h:
        raise DiffsegError(f"the head's output {w}x{h} does not divide the window {x2 - x1}x{y2 - y1}")
    rx, ry = (x2 - x1) // w, (y2 - y1) // h
    if total is None:
        total = logits_Khw.new_zeros(K, size_wh[1] // ry, size_wh[0] // rx)
        count = logits_Khw.new_zeros(1, size_wh[1] // ry, size_wh[0] // rx)
    total[:, y1 // ry : y2 // ry, x1 // rx : x2 // rx] += logits_Khw
    count[:, y1 // ry : y2 // ry, x1 // rx : x2 // rx] += 1
    return total, count
