"""`predict`, `demo`, `pretrain` and `env`: using a run, the whole method end to end, the built-in
model's pre-training, and the environment report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from diffseg.cli.errors import user_errors
from diffseg.cli.options import DemoSize, DeviceOpt, given
from diffseg.cli.options import size as parse_size
from diffseg.stages.demo.config import COMPARE_MODEL, MODEL


@user_errors
def predict(
    run: Annotated[Path, typer.Option(exists=True, file_okay=False, help="Run directory from `diffseg train`.")],
    inputs: Annotated[list[Path], typer.Argument(exists=True, help="Images or folders of images.")],
    out: Annotated[Path, typer.Option(help="Output folder for masks and pictures.")],
    model: Annotated[str | None, typer.Option(help="Model for the online trajectory (default: the run's).")] = None,
    resolution: Annotated[
        str | None,
        typer.Option(
            help="Size fed to the U-Net, WxH. Default: each input's aspect ratio within the area of the run's "
            "first evaluation cache's resolution (1024x512 without one), multiples of 64."
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(exists=True, file_okay=False, help="Label files with matching stems (train ids or palette)."),
    ] = None,
    device: DeviceOpt = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace masks and pictures already in --out (never the inputs).")
    ] = False,
) -> None:
    """Segment images: palette PNG masks plus image | prediction (| ground truth) pictures.

    --out may not hold any input (a folder of the inputs or above them is refused), and files already
    there are refused unless --overwrite."""
    from diffseg.stages.predict import job as stage

    stage.main(
        run=run,
        inputs=list(inputs),
        out=out,
        model=model,
        resolution=parse_size(resolution),
        labels=labels,
        **given(device=device, overwrite=overwrite or None),
    )


@user_errors
def demo(
    out: Annotated[Path, typer.Option(help="Folder of the report, caches and the main run (DIR/run).")] = Path("demo"),
    size: Annotated[
        DemoSize, typer.Option(help="full (about 10 min on 2 CPU cores) or small (CI, about 1 min).")
    ] = "full",
    model: Annotated[
        str | None,
        typer.Option(
            help=f"Model of stage one (default: the trained built-in {MODEL}; e.g. {COMPARE_MODEL}, or a directory)."
        ),
    ] = None,
    full_grid: Annotated[
        bool, typer.Option(help="Also the feature-selection ablation cells (one seed each: slower).")
    ] = False,
    device: DeviceOpt = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Extractions and trainings run at once, each in its own process with cores/jobs threads "
            "(logs in OUT/logs/). Default: one per available core on a CPU, 1 on a GPU; 1 runs everything here, "
            "in order.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """The whole method end to end on the built-in trained model and demo dataset, with a report."""
    from diffseg.stages.demo import job as stage

    stage.main(out=out, model=model, full_grid=full_grid, jobs=jobs, **given(size=size, device=device))


@user_errors
def pretrain(
    out: Annotated[
        Path, typer.Option(help="Working folder (images, checkpoints, log.txt); the model is written to OUT/model.")
    ] = Path(".pretrain/mini"),
    seed: Annotated[
        int, typer.Option(min=0, max=2**32 - 1, help="Seed of the images, the initialisation, batches and noise.")
    ] = 0,
    quick: Annotated[bool, typer.Option(help="A few steps on a few images: a smoke test, not the recipe.")] = False,
) -> None:
    """Pre-train the built-in `mini` model on the demo world (about an hour on 2 CPU cores).

    Rerun with the same --out to resume after an interruption. The default recipe and seed
    reproduce the shipped weights on the same torch build (2 threads).
    """
    from diffseg.pretrain.config import PretrainConfig, quick_config
    from diffseg.stages import pretrain as stage

    model = stage.main(quick_config(seed=seed) if quick else PretrainConfig(seed=seed), out)
    typer.echo(f"model: {model} (use it with --model {model})")


@user_errors
def env() -> None:
    """Versions, devices, and whether xformers kernels actually run (for bug reports)."""
    from diffseg.stages.tools import env as stage

    stage.main()
