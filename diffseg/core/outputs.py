"""Output folders of the commands that write files named after their inputs (`predict`, `cache show`):
checked before anything is written, so an output never replaces an input, and replaces an
earlier output only when the user asks (`--overwrite`).

Refused: an output folder that is an input folder, holds an input, or lies inside an input
folder (a rerun would read the outputs as inputs); a planned file that is an input (through a
symbolic link, say); two planned files that are one; existing planned files without `overwrite`.
Commands that own their folder (extract, train, eval, demo) do not come here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from diffseg.core.errors import DiffsegError


def _overlap(out: Path, source: Path) -> str | None:
    if out == source:
        return "is the input"
    if source.is_relative_to(out):
        return "holds the input"
    if out.is_relative_to(source):
        return "lies inside the input folder"
    return None


def check_outputs(out: Path, files: Sequence[Path], inputs: Sequence[Path], *, overwrite: bool) -> None:
    """DiffsegError naming the file unless writing `files` (paths under `out`) is safe for `inputs`
    (files and folders read by the command); see the module docstring for the rules."""
    where = Path(out).resolve()
    sources = [Path(p).resolve() for p in inputs]
    for given, source in zip(inputs, sources):
        overlap = _overlap(where, source)
        if overlap:
            raise DiffsegError(f"--out {out} {overlap} {given}: outputs could replace inputs; choose another --out")
    planned: dict[Path, Path] = {}
    for f in files:
        real = Path(f).resolve()
        hit = next((given for given, s in zip(inputs, sources) if real.is_relative_to(s)), None)
        if hit is not None:  # through a symbolic link: out itself overlaps no input
            raise DiffsegError(
                f"{f} leads to {real}, an input ({hit}): writing it would replace it; choose another --out"
            )
        if real in planned:
            raise DiffsegError(f"{planned[real]} and {f} are one file: two outputs would share it")
        planned[real] = Path(f)
    existing = [f for f in files if Path(f).exists() or Path(f).is_symlink()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise DiffsegError(
            f"{existing[0]} already exists{more}: pass --overwrite to replace it, or choose another --out"
        )
