"""Two gloo processes (DDP) match one process accumulating the same two micro-batches; evaluation
is shared between the ranks and equals one process scoring every sample."""

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import FAST_TRAIN, SMALL
from safetensors.torch import load_file

from diffseg.cache import FeatureDataset
from diffseg.cache.synthetic import make_cache
from diffseg.core.errors import DiffsegError
from diffseg.stages.runs.record import load_segmentor, read_run, run_targets, score, score_run
from diffseg.stages.train import distributed
from diffseg.stages.train import job as train

KW = {**FAST_TRAIN, "iters": 3, "batch_size": 1, "lr": 3e-3}


def _environ(rank: int, world: int, port: int) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)


def _rank(rank: int, world: int, port: int, cache: str, out: str) -> None:
    _environ(rank, world, port)
    train.main(cache=cache, out=out, eval_caches=[cache], **KW)


def _score_rank(rank: int, world: int, port: int, run: str, cache: str, out: str) -> None:
    """Score a finished run as one rank of `world`: BN statistics first made rank-specific, then synced."""
    _environ(rank, world, port)
    env = distributed.from_env()
    distributed.init(env, torch.device("cpu"))
    try:
        record = read_run(run)
        model, _ = load_segmentor(record, "cpu")
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf += rank  # as after a DDP step: each rank's own batch statistics
        distributed.sync_buffers(env, model)
        scored = []
        model.register_forward_hook(lambda *_: scored.append(1))
        report, table = score(record, model, run_targets(record, [cache]), torch.device("cpu"), rank=rank, world=world)
        with open(f"{out}/rank{rank}.json", "w") as f:
            json.dump({"report": report, "table": table, "scored": len(scored)}, f)
    finally:
        distributed.shutdown(env)


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
    # the evaluation both ranks shared is the one a single process gives the saved weights
    report, _, which = score_run(read_run(tmp_path / "ddp"), [cache], "cpu")
    assert which == "final" and json.loads((tmp_path / "ddp" / "eval.json").read_text()) == {"iteration": 3, **report}


def test_evaluation_is_split_between_ranks_and_summed(tmp_path):
    """2 gloo ranks each score their share (3 and 2 of 5 samples) and both end with the confusion
    matrix, report and table one process gives; rank 1's own BN statistics are replaced by rank 0's."""
    cache = make_cache(tmp_path / "gtav", n=5, signal=2.0, **SMALL)
    run = train.main(cache=cache, out=tmp_path / "run", **FAST_TRAIN)
    record = read_run(run)
    model, _ = load_segmentor(record, "cpu")
    single = score(record, model, run_targets(record, [cache]), torch.device("cpu"))
    mp.spawn(_score_rank, args=(2, _free_port(), str(run), str(cache), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["scored"] for r in ranks] == [3, 2]
    for r in ranks:
        assert r["report"] == single[0] and r["table"] == single[1] and r["report"]["samples"] == 5


def test_process_group_has_a_timeout(monkeypatch):
    """A collective that waits longer than TIMEOUT (a stuck rank) fails the run rather than hanging it."""
    asked = {}
    monkeypatch.setattr(dist, "init_process_group", lambda *args, **kwargs: asked.update(kwargs, backend=args[0]))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    distributed.init(distributed.DistEnv(rank=1, world=2, local_rank=1), torch.device("cpu"))
    assert asked == {"backend": "gloo", "rank": 1, "world_size": 2, "timeout": distributed.TIMEOUT}
    assert distributed.TIMEOUT.total_seconds() == 30 * 60


def test_sync_bn_converts_only_under_ddp_on_cuda(tmp_path):
    """What a CPU can check of --sync-bn: the conversion (every BatchNorm becomes a SyncBatchNorm on the
    same parameters and buffers, so the state dict and the eval-mode output are unchanged), the no-op in
    a single process, the refusal on CPU ranks, and the option reaching the run record. The synchronised
    forward itself needs nccl on GPUs and is not run here."""
    cache = make_cache(tmp_path / "gtav", n=2, **SMALL)
    run = train.main(cache=cache, out=tmp_path / "run", sync_bn=True, **FAST_TRAIN)  # one process: plain BN
    assert json.loads((run / "config.json").read_text())["config"]["sync_bn"] is True
    record = read_run(run)
    model, _ = load_segmentor(record, "cpu")
    (target,) = run_targets(record, [cache])
    item = FeatureDataset(target.path, ("uncond",), target.layers, target.step_indices)[0]
    feats = {k: v[None].float() for k, v in item["feats"]["uncond"].items()}
    before, state = model(feats), {k: v.clone() for k, v in model.state_dict().items()}
    assert distributed.sync_batchnorm(distributed.DistEnv(), model, torch.device("cuda")) is model
    with pytest.raises(DiffsegError, match="--sync-bn needs CUDA"):
        distributed.sync_batchnorm(distributed.DistEnv(rank=0, world=2), model, torch.device("cpu"))
    bns = [n for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    params = {n: p for n, p in model.named_parameters()}
    synced = distributed.sync_batchnorm(distributed.DistEnv(rank=0, world=2), model, torch.device("cuda"))
    modules = dict(synced.named_modules())
    assert bns and all(type(modules[n]) is torch.nn.SyncBatchNorm for n in bns)
    assert not [m for m in modules.values() if type(m) is torch.nn.BatchNorm2d]
    assert all(p is params[n] for n, p in synced.named_parameters())
    assert synced.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in synced.state_dict().items())
    torch.testing.assert_close(synced.eval()(feats), before, rtol=0, atol=0)
