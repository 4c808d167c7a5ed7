"""The security claims of README "Security": each backed by a check over the source or a run."""

import json
import os
import re
from pathlib import Path

from helpers import FAST_TRAIN, SMALL

from diffseg.cache.synthetic import make_cache
from diffseg.stages.train import job as train

SOURCE = Path(__file__).resolve().parent.parent / "diffseg"


def _calls(pattern: str) -> list[tuple[str, str]]:
    """(file, line) of every source line matching `pattern` (comments and docstrings included)."""
    found = []
    for f in SOURCE.rglob("*.py"):
        for line in f.read_text().splitlines():
            if re.search(pattern, line):
                found.append((f.relative_to(SOURCE).as_posix(), line.strip()))
    return found


def test_nothing_is_unpickled():
    assert not _calls(r"\bpickle\.loads?\(|allow_pickle\s*=\s*True|\bdill\b|joblib\.load")
    loads = [(f, l) for f, l in _calls(r"torch\.load\(") if not l.startswith(('"""', "#"))]
    assert loads and all("weights_only=True" in l for _, l in loads), loads
    # diffusers/transformers weights: safetensors only; a .bin-only folder is refused (test_models_loading.py)
    pretrained = [l for f, l in _calls(r"Model\.from_pretrained\(|KL\.from_pretrained\(") if f == "pipeline/models.py"]
    text = (SOURCE / "pipeline" / "models.py").read_text()
    assert len(pretrained) == 3 and text.count("use_safetensors=True") == 3


def test_no_download_and_no_public_listener():
    hub = _calls(r"snapshot_download\(|hf_hub_download\(")
    calls = [l for _, l in hub if "import" not in l]
    assert calls and all("local_files_only=True" in l for l in calls), calls
    assert not _calls(r"\brequests\.|urllib\.request|http\.client")
    # the local dask cluster (scheduler, workers, dashboard) listens on 127.0.0.1 only
    cluster = (SOURCE / "stages" / "extract" / "cluster.py").read_text()
    assert "LocalCluster(" in cluster and "host=" not in cluster and "ip=" not in cluster


def test_a_run_records_the_cache_path_as_given_and_absolute_only_in_caches_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_cache(Path("cache/gtav"), n=2, **SMALL)
    run = train.main(cache="cache/gtav", out=Path("run"), **FAST_TRAIN)
    assert json.loads((run / "config.json").read_text())["config"]["cache"] == "cache/gtav"
    assert json.loads((run / "caches.json").read_text())["train"]["path"] == str((tmp_path / "cache/gtav").resolve())
    other = [p for p in run.rglob("*.json*") if p.name != "caches.json" and str(tmp_path) in p.read_text()]
    assert other == []


def test_migrate_keeps_the_cache_files_mode(tmp_path):
    import shutil

    from diffseg.cache.migrate import migrate

    fixture = Path(__file__).parent / "fixtures" / "format1_cache" / "cache"
    old = tmp_path / "old"
    shutil.copytree(fixture, old)
    os.chmod(old / "zarr.json", 0o644)
    migrate(old)
    assert (old / "zarr.json").stat().st_mode & 0o777 == 0o644
