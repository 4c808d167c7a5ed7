"""Thread settings (core/threads.py): chosen from the cores available to the process, applied by
the CLI before torch starts, and overridden by the user's environment or --threads."""

import os
import subprocess
import sys

import pytest

from diffseg.core import threads
from diffseg.core.errors import DiffsegError

_OURS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", threads.THREADS_ENV)


def _child(*args: str, **env: str) -> dict[str, str]:
    """Run `python -m diffseg [args] env` with a clean thread environment plus `env` -> its report."""
    clean = {k: v for k, v in os.environ.items() if k not in _OURS}
    proc = subprocess.run(
        [sys.executable, "-m", "diffseg", *args, "env"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)


def test_cli_applies_the_default_before_torch_starts():
    report = _child()
    cores = threads.available_cores()
    assert report["torch threads"] == str(cores)
    assert report["OMP_WAIT_POLICY"] == "PASSIVE"
    assert report["thread settings"].startswith(f"{cores} intra-op threads (available cores)")


def test_user_environment_and_option_win():
    report = _child(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="ACTIVE")
    assert (report["torch threads"], report["OMP_WAIT_POLICY"]) == ("1", "ACTIVE")
    report = _child(MKL_NUM_THREADS="1")  # e.g. left in the environment by dask's nanny
    assert report["torch threads"] == "1" and "(MKL_NUM_THREADS)" in report["thread settings"]
    # (torch caps OMP_NUM_THREADS at the machine's cores: ask for one thread to see the winner)
    report = _child("--threads", "1", DIFFSEG_THREADS="2", OMP_NUM_THREADS="2")
    assert report["torch threads"] == "1" and "(--threads)" in report["thread settings"]
    assert report["OMP_WAIT_POLICY"] == "PASSIVE"


def test_bad_thread_count_is_one_line():
    clean = {k: v for k, v in os.environ.items() if k not in _OURS}
    proc = subprocess.run(
        [sys.executable, "-m", "diffseg", "env"],
        env={**clean, "DIFFSEG_THREADS": "many"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: DIFFSEG_THREADS='many': expected a positive number of threads"


def test_cli_module_does_not_import_torch():
    code = "import sys, diffseg.cli; assert 'torch' not in sys.modules, 'torch imported before the thread settings'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_choose_order():
    assert threads.choose({}).threads == threads.available_cores()
    assert threads.choose({}).wait_policy == "PASSIVE"
    assert threads.choose({"OMP_NUM_THREADS": "4,2"}).threads == 4  # nested list: the outer level
    assert threads.choose({"OMP_NUM_THREADS": "4", "DIFFSEG_THREADS": "2"}).threads == 2
    assert threads.choose({"MKL_NUM_THREADS": "3"}).threads == 3
    assert threads.choose({"MKL_NUM_THREADS": "3", "OMP_NUM_THREADS": "1"}).threads == 1
    assert threads.choose({"DIFFSEG_THREADS": "2"}, threads=5).threads == 5
    assert threads.choose({"OMP_WAIT_POLICY": "active"}).wait_policy == "active"
    with pytest.raises(DiffsegError, match="OMP_NUM_THREADS='0'"):
        threads.choose({"OMP_NUM_THREADS": "0"})
    env: dict[str, str] = {}
    threads.apply(2, environ=env)
    assert env == {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_cgroup_quota(tmp_path, files, quota):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert threads.cgroup_quota(tmp_path) == quota
    expected = threads.affinity_cores() if quota is None else min(threads.affinity_cores(), max(1, -(-quota // 1)))
    assert threads.available_cores(tmp_path) == expected
