"""Stage two never imports the U-Net side: no diffusers, no diffseg.pipeline.models."""

import subprocess
import sys
from pathlib import Path

CODE = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from helpers import FAST_TRAIN, SMALL

from diffseg.cache.synthetic import make_cache
from diffseg.stages.train import job as train
from diffseg.stages import evaluate
tmp = Path({tmp!r})
cache = make_cache(tmp / "gtav", n=2, **SMALL)
ev = make_cache(tmp / "cs", n=1, kind="eval", branches=("uncond",), **SMALL)
run = train.main(cache=cache, out=tmp / "run", eval_caches=[ev], **{{**FAST_TRAIN, "iters": 1}})
evaluate.main(run=run, caches=[ev], as_json=True, device="cpu")
bad = sorted(m for m in sys.modules if m.startswith("diffusers") or m in ("diffseg.pipeline.models", "transformers"))
print("imported:", bad)
assert not bad, bad
"""


def test_train_and_eval_never_import_the_unet(tmp_path):
    code = CODE.format(tests=str(Path(__file__).parent), tmp=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "imported: []" in out.stdout
