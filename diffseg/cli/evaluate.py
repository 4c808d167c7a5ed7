"""`eval`: score a run on evaluation caches (as extracted) or online on a dataset's images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from diffseg.cli.errors import user_errors
from diffseg.cli.options import (
    SPLIT_HELP,
    DatasetName,
    DeviceOpt,
    JsonOpt,
    PartialOpt,
    RootOpt,
    cache_location,
    given,
)
from diffseg.cli.options import size as parse_size
from diffseg.core.errors import DiffsegError


def scales(value: str | None) -> tuple[float, ...] | None:
    """--scales 0.75,1.0,1.25 -> (0.75, 1.0, 1.25)."""
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected numbers separated by commas such as 0.75,1.0,1.25, got {value!r}") from None


@user_errors
def evaluate(
    run: Annotated[Path, typer.Option(exists=True, file_okay=False, help="Run directory from `diffseg train`.")],
    cache: Annotated[
        list[str] | None,
        typer.Option(callback=cache_location, help="Evaluation cache, folder or URL (repeatable: one row each)."),
    ] = None,
    dataset: Annotated[
        DatasetName | None,
        typer.Option(
            "--dataset", "-d", help="Evaluate online instead: run the frozen model on this dataset's images now."
        ),
    ] = None,
    split: Annotated[str | None, typer.Option(help="Online: the split (default val). " + SPLIT_HELP)] = None,
    root: RootOpt = None,
    mode: Annotated[
        str, typer.Option(help="Online: whole (the image at once) or slide (windows of --crop every --stride).")
    ] = "whole",
    crop: Annotated[str | None, typer.Option(help="Online, slide: window size WxH, multiples of 64.")] = None,
    stride: Annotated[
        str | None,
        typer.Option(help="Online, slide: step between windows WxH, multiples of 64 (default: --crop, no overlap)."),
    ] = None,
    flip: Annotated[
        bool, typer.Option("--flip", help="Online: also run the mirrored image; average the probabilities.")
    ] = False,
    scales_: Annotated[
        str | None,
        typer.Option(
            "--scales", help="Online: scales of the resolution, e.g. 0.75,1.0,1.25; average the probabilities."
        ),
    ] = None,
    resolution: Annotated[
        str | None,
        typer.Option(
            help="Online: each image keeps its aspect ratio within this area, WxH (sides multiples of 64). "
            "Default: the dataset's evaluation resolution, the size `extract` gives its evaluation caches."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Online: the first N images only.")] = None,
    as_json: JsonOpt = False,
    device: DeviceOpt = None,
    allow_partial: PartialOpt = False,
) -> None:
    """Score a run: mIoU, aAcc, mAcc, per-class IoU (mIoU16/13 for Synthia runs), confusion matrices.

    With --cache: on evaluation caches (each image at the cache's fixed size). With --dataset: online, the frozen
    model on the images now, each keeping its aspect ratio; --mode slide, --flip and --scales as papers report.
    """
    from diffseg.stages import evaluate as stage

    if (cache is None) == (dataset is None):
        raise DiffsegError("pass either --cache (evaluation caches) or --dataset (online evaluation), not both")
    if cache is not None:
        online = dict(
            split=split, root=root, mode=mode != "whole", crop=crop, stride=stride, flip=flip, scales=scales_
        ) | dict(resolution=resolution, limit=limit)
        given_online = [k for k, v in online.items() if v not in (None, False)]
        if given_online:
            raise DiffsegError(f"--{', --'.join(given_online)}: online evaluation only (with --dataset)")
        stage.main(
            run=run, caches=list(cache), as_json=as_json, **given(device=device, allow_partial=allow_partial or None)
        )
        return
    from diffseg.stages.predict import evaluate as online_stage
    from diffseg.stages.predict.online import Protocol

    if allow_partial:
        raise DiffsegError("--allow-partial applies to caches (--cache) only")
    protocol = Protocol(
        mode=mode,
        crop=parse_size(crop),
        stride=parse_size(stride),
        flip=flip,
        **given(scales=scales(scales_)),
    )
    online_stage.main(
        run,
        **given(dataset=dataset),
        split=split or "val",
        root=root,
        protocol=protocol,
        resolution=parse_size(resolution),
        limit=limit,
        as_json=as_json,
        **given(device=device),
    )
