"""Dataset adapters from other packages: the `diffseg.datasets` entry point group.

A package registers an adapter in its pyproject.toml:

    [project.entry-points."diffseg.datasets"]
    mydata = "mypackage.mydata"

The entry point names a module (or any object) with `list_entries(root, split, opts)` returning
`(entries, info)` (a list of `diffseg.data.base.Entry` and a JSON-able dict of facts recorded in the
cache) and, optionally, `class_table(root)` returning its `ClassTable` (Cityscapes' 19 when absent).
`diffseg extract --dataset mydata --root DIR` then reads it. A plugin cannot take a built-in name.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from diffseg.core.errors import DiffsegError
from diffseg.data.options import DatasetOptions

GROUP = "diffseg.datasets"


class Adapter(Protocol):
    def list_entries(self, root: Path, split: str, opts: DatasetOptions, /) -> tuple[list[Any], dict]: ...


def plugin_adapters() -> dict[str, Adapter]:
    """{name: adapter} of every installed entry point of the group (loaded: a broken one is one line)."""
    out: dict[str, Adapter] = {}
    for ep in metadata.entry_points(group=GROUP):
        try:
            adapter = ep.load()
        except Exception as err:  # any import failure of a third-party package: reported, never swallowed
            raise DiffsegError(f"dataset plugin {ep.name!r} ({ep.value}) failed to load: {err}") from None
        if not callable(getattr(adapter, "list_entries", None)):
            raise DiffsegError(f"dataset plugin {ep.name!r} ({ep.value}) has no list_entries(root, split, opts)")
        out[ep.name] = adapter
    return out
