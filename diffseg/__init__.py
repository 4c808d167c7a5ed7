"""diffseg: DIFF + IPKL semantic segmentation from cached frozen Stable Diffusion features.

The Python API (docs/guides/python.md): `Segmenter`, `extract`, `train`, `set_threads` and the config
classes `ExtractConfig`, `TrainConfig`. They load on first use: `import diffseg` imports no torch,
so the command line (and `set_threads`) can choose the thread settings before torch starts.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Segmenter": "diffseg.stages.predict.segmenter",
    "extract": "diffseg.api",
    "train": "diffseg.api",
    "set_threads": "diffseg.api",
    "ExtractConfig": "diffseg.stages.extract.config",
    "TrainConfig": "diffseg.stages.train.config",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'diffseg' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
