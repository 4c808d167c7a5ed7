"""`diffseg env`: versions, devices and the attention backend, for bug reports."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

import torch

from diffseg.core import threads
from diffseg.pipeline.attention import xformers_status

_PACKAGES = ("torch", "diffusers", "transformers", "zarr", "numcodecs", "dask", "distributed", "xformers")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def lines() -> list[str]:
    """The report, one 'key: value' per line."""
    out = [f"python: {sys.version.split()[0]} ({sys.executable})"]
    out += [f"{p}: {_version(p)}" for p in _PACKAGES]
    out += [
        f"platform: {platform.platform()}",
        f"cpus: {os.cpu_count()}",
        f"cpus available: {threads.available_cores()} (affinity {threads.affinity_cores()}, "
        f"cgroup quota {threads.cgroup_quota() or 'none'})",
        f"torch threads: {torch.get_num_threads()}",
        *(f"{k}: {os.environ.get(k, 'unset')}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")),
    ]
    chosen = threads.applied()
    out.append(f"thread settings: {chosen.describe() if chosen else 'not applied (not run from the diffseg command)'}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            out.append(f"cuda:{i}: {props.name}, {props.total_memory / 2**30:.1f} GiB")
        device = "cuda"
    else:
        out.append("cuda: none")
        device = "cpu"
    mps = getattr(torch.backends, "mps", None)
    out.append(f"mps: {'available' if mps is not None and mps.is_available() else 'not available'}")
    usable, why = xformers_status(device)
    out.append(f"attention backend: {'xformers' if usable else 'sdpa'} ({why})")
    return out


def main() -> None:
    """Print the environment report."""
    for line in lines():
        print(line)
