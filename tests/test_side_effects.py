"""Importing or using diffseg as a library changes no process-wide state of its caller: the
warning filters, the OMP_* environment, glibc's allocator settings. Those are changed only by
explicit calls (core.threads.apply, cache.fastread.keep_freed_memory) that the commands make."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

from diffseg.cache import CacheReader, FeatureDataset, fastread
from diffseg.cache.convert import convert
from diffseg.cache.loader import BatchLoader
from diffseg.cache.store import NUMCODECS_WARNING
from diffseg.cache.synthetic import make_cache

_IMPORT_ALL = """
import ast, importlib, json, os, pathlib, pkgutil, warnings
import diffseg
# third-party packages change filters and the environment when imported (torch, numpy, cv2):
# import every one diffseg imports at module level first, so what is left to compare is diffseg's
names = set()
for f in pathlib.Path(diffseg.__path__[0]).rglob("*.py"):
    for node in ast.parse(f.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
for name in sorted(n for n in names if n.split(".")[0] != "diffseg"):
    importlib.import_module(name)
before = (repr(warnings.filters), dict(os.environ))
for m in pkgutil.walk_packages(diffseg.__path__, "diffseg."):
    if not m.name.endswith(".__main__"):  # running a package's __main__ starts the command line
        importlib.import_module(m.name)
from diffseg.cache import fastread
print(json.dumps({"filters": repr(warnings.filters) == before[0], "environ": dict(os.environ) == before[1],
                  "mallopt": fastread._TUNED}))
"""


def test_importing_every_module_changes_no_process_state():
    proc = subprocess.run([sys.executable, "-c", _IMPORT_ALL], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"filters": True, "environ": True, "mallopt": False}


def test_a_bitround_cache_is_written_and_read_without_the_numcodecs_warning_or_a_filter_left(tmp_path):
    src = make_cache(tmp_path / "src", n=2)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")  # (pytest's configured filter would hide the warning)
        before = list(warnings.filters)
        convert(src, "bitround:keepbits=6", tmp_path / "out", progress=False)
        r = CacheReader(tmp_path / "out")
        r.read(0, r.feature_names())
        assert warnings.filters == before
    assert not [w for w in seen if NUMCODECS_WARNING in str(w.message)]


def test_readers_leave_the_allocator_alone_until_a_command_asks(tmp_path, monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, param: int, value: int) -> int:
            calls.append((param, value))
            return 1

    monkeypatch.setattr(fastread, "_TUNED", False)
    monkeypatch.setattr(fastread.ctypes, "CDLL", lambda name: FakeLibc())
    cache = make_cache(tmp_path / "c", n=2)
    reader = CacheReader(cache)
    reader.read(0, reader.feature_names())
    data = FeatureDataset(cache, reader.branches, list(reader.layer_specs))
    batches = list(BatchLoader(data, [[0, 1]], device="cpu", readers=0))
    assert len(batches) == 1 and calls == []
    assert fastread.keep_freed_memory() is True
    assert calls == [(-3, 32 << 20), (-1, 1 << 30)]
