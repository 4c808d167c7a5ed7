"""Reading layer specs: {layer: {"stride", "channels", ...}} dicts or objects with those attributes
(the extractor's `LayerSpec`, a cache's `layers` attribute)."""

from __future__ import annotations

from collections.abc import Mapping

from diffseg.core.errors import DiffsegError


def spec_field(layer: str, spec, key: str) -> int:
    value = spec.get(key) if isinstance(spec, Mapping) else getattr(spec, key, None)
    if value is None:
        raise DiffsegError(f"layer {layer!r}: spec has no {key!r} ({spec!r})")
    return int(value)


def channels_per_stride(layer_specs: Mapping, n_steps: int) -> dict[int, list[str]]:
    """{stride: [layer names in spec order]}, checking strides and channels."""
    if not layer_specs:
        raise DiffsegError("the fusion block needs at least one layer; none selected")
    if n_steps < 1:
        raise DiffsegError(f"n_steps must be >= 1, got {n_steps}")
    by_stride: dict[int, list[str]] = {}
    for layer, spec in layer_specs.items():
        stride = spec_field(layer, spec, "stride")
        if stride == 64:
            raise DiffsegError(
                f"layer {layer!r} has stride 64 (up block 0): the fusion block does not "
                "use up block 0; select layers of up blocks 1-3 (strides 32, 16, 8)"
            )
        if stride not in (8, 16, 32):
            raise DiffsegError(f"layer {layer!r} has stride {stride}: the fusion block takes 8, 16 or 32")
        if spec_field(layer, spec, "channels") < 1:
            raise DiffsegError(f"layer {layer!r} has no channels")
        by_stride.setdefault(stride, []).append(layer)
    return by_stride
