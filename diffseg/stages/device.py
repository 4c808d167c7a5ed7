"""Where stage work runs: one resolver for `--device auto|cpu|cuda`, and the mixed-precision
dtype that goes with the device. Every job (extract, train, eval, ablate, predict, demo) uses
these, so "auto" and the CUDA error mean the same everywhere."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from diffseg.core.errors import DiffsegError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(requested: str, local_rank: int = 0) -> torch.device:
    """ "auto" -> cuda when available, else cpu; "cuda" without a GPU is an error.

    Under torchrun each process takes cuda:LOCAL_RANK (modulo the visible devices); "cuda:N" (a job
    that `spread` put on GPU N) takes that one."""
    if requested.startswith("cuda:") and requested[5:].isdigit():
        index = int(requested[5:])
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise DiffsegError(f"--device {requested}: {torch.cuda.device_count()} CUDA devices are visible")
        return torch.device("cuda", index)
    if requested not in DEVICES:
        raise DiffsegError(f"--device {requested}: expected one of {', '.join(DEVICES)}")
    use_cuda = requested == "cuda" or (requested == "auto" and torch.cuda.is_available())
    if not use_cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DiffsegError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def spread(device: str, job: int) -> str:
    """The device of the `job`-th of several jobs run at once: "cuda" -> "cuda:<job mod GPUs>", round-robin
    over the visible GPUs (each job its own while there are enough); any other device as it is."""
    if device != "cuda":
        return device
    return f"cuda:{job % max(1, torch.cuda.device_count())}"


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where supported, else fp16 (with a GradScaler); None (fp32) on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """The one mixed-precision context of training, evaluation and prediction: autocast to `dtype`
    (autocast_dtype(device)), none for None; the same logits in eval and predict need the same one."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
