"""The `diffseg` command line: parse options, call a stage; nothing else.

Heavy imports (torch, diffusers, zarr, dask) happen inside the commands so that
`diffseg --help` answers instantly. Every stage entry point is `diffseg.stages.<job>.main`.
A `DiffsegError` raised anywhere becomes one line on stderr and exit code 1; typer's parser
errors exit 2. The commands live in extract.py (stage one), train.py (train), evaluate.py (eval), ablate.py,
run.py (predict, demo, pretrain, env) and tools.py (data, cache); options.py holds the
option types they share.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from diffseg.cli import ablate, evaluate, extract, run, tools, train
from diffseg.cli.errors import report
from diffseg.core.errors import DiffsegError
from diffseg.stages.demo.config import MODEL

app = typer.Typer(
    help=(
        "Domain-generalised semantic segmentation from frozen Stable Diffusion features.\n\n"
        "Stage one (`extract`) runs the frozen U-Net trajectory once per image and writes a "
        "Zarr feature cache; stage two (`train`) fits the fusion block and head from that "
        f"cache. Start with `diffseg demo` (the built-in trained `{MODEL}` model and the demo dataset)."
    ),
    pretty_exceptions_show_locals=False,
    no_args_is_help=True,
    add_completion=False,
)
app.command()(extract.extract)
app.command()(train.train)
app.command("eval")(evaluate.evaluate)
app.command()(ablate.ablate)
app.command()(run.predict)
app.command()(run.demo)
app.command()(run.pretrain)
app.command()(run.env)
app.add_typer(tools.data_app, name="data")
app.add_typer(tools.cache_app, name="cache")


@app.callback()
def root(
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=(
                "CPU threads for torch's intra-op pool (or DIFFSEG_THREADS). Default: OMP_NUM_THREADS "
                "if set, else the cores available to this process (affinity mask, cgroup quota); idle threads sleep "
                "(OMP_WAIT_POLICY=PASSIVE unless set), so a busy shared machine does not stall runs."
            ),
        ),
    ] = None,
) -> None:
    """Thread settings first: before any command imports torch (core/threads.py)."""
    from diffseg.core import threads as thread_settings

    if "torch" in sys.modules and threads is None:
        return  # called in-process (tests, a Python session): leave the host's settings alone
    try:
        thread_settings.apply(threads)
    except DiffsegError as err:
        raise report(err) from None


def main() -> None:
    """Console entry point: user errors become one line and exit 1, never a traceback."""
    try:
        app(standalone_mode=True)
    except DiffsegError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


__all__ = ["app", "main"]
