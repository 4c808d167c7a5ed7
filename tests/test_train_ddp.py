"""Two gloo processes (DDP) match one process accumulating the same two micro-batches."""

import os
import socket

import torch
import torch.multiprocessing as mp
from helpers import FAST_TRAIN, SMALL
from safetensors.torch import load_file

from diffseg.cache.synthetic import make_cache
from diffseg.stages.train import job as train

KW = {**FAST_TRAIN, "iters": 3, "batch_size": 1, "lr": 3e-3}


def _rank(rank: int, world: int, port: int, cache: str, out: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    train.main(cache=cache, out=out, **KW)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_equals_gradient_accumulation(tmp_path):
    cache = make_cache(tmp_path / "gtav", n=5, signal=2.0, **SMALL)
    mp.spawn(_rank, args=(2, _free_port(), str(cache), str(tmp_path / "ddp")), nprocs=2, join=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the ranks: the same kernels sum in the same order
    try:
        single = train.main(cache=cache, out=tmp_path / "accum", **{**KW, "accum": 2})
    finally:
        torch.set_num_threads(threads)
    a, b = load_file(tmp_path / "ddp" / "weights.safetensors"), load_file(single / "weights.safetensors")
    params = [k for k in a if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert a.keys() == b.keys() and len(params) > 20
    for k in params:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6, msg=k)
    record = (tmp_path / "ddp" / "config.json").read_text()
    assert '"world_size": 2' in record and '"global_batch": 2' in record
