"""`python -m diffseg.pipeline.pretrain OUT [--quick]`: the same as `diffseg pretrain --out OUT`."""

from __future__ import annotations

import sys

from diffseg.pipeline.pretrain.config import PretrainConfig, quick_config
from diffseg.pipeline.pretrain.run import pretrain

if __name__ == "__main__":
    args = sys.argv[1:]
    cfg = quick_config() if "--quick" in args else PretrainConfig()
    pretrain(cfg, next(a for a in args if not a.startswith("--")))
