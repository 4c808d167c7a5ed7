"""The lr schedule and the seeded sample stream, by hand."""

import pytest

from diffseg.stages.train.config import TrainConfig
from diffseg.stages.train.sampling import MicroBatchSampler, StreamOrder, dropout_seeds, micro_positions
from diffseg.stages.train.schedule import lr_factor


def test_poly_with_linear_warmup():
    assert lr_factor(0, iters=10, warmup=0) == 1.0
    assert lr_factor(5, iters=10, warmup=0) == 0.5
    assert lr_factor(10, iters=10, warmup=0) == 0.0
    # warm-up 4 of 10: k=2 -> poly 0.8 * (1 - 0.5 * (1 - 1e-6))
    assert lr_factor(2, iters=10, warmup=4) == pytest.approx(0.8 * (0.5 + 0.5e-6))
    assert lr_factor(0, iters=10, warmup=4) == pytest.approx(1e-6)
    assert lr_factor(4, iters=10, warmup=4) == pytest.approx(0.6)


def test_stream_is_a_permutation_per_epoch_and_seeded():
    order = StreamOrder(5, seed=3)
    first, second = [order[p] for p in range(5)], [order[p] for p in range(5, 10)]
    assert sorted(first) == sorted(second) == list(range(5)) and first != second
    assert [StreamOrder(5, seed=3)[p] for p in range(10)] == first + second


def test_two_ranks_split_what_one_process_accumulates():
    one = list(MicroBatchSampler(7, seed=0, batch=2, accum=2, rank=0, world=1, start=0, stop=3))
    r0 = list(MicroBatchSampler(7, seed=0, batch=2, accum=1, rank=0, world=2, start=0, stop=3))
    r1 = list(MicroBatchSampler(7, seed=0, batch=2, accum=1, rank=1, world=2, start=0, stop=3))
    assert one[0::2] == r0 and one[1::2] == r1
    resumed = list(MicroBatchSampler(7, seed=0, batch=2, accum=2, rank=0, world=1, start=1, stop=3))
    assert resumed == one[2:]
    assert micro_positions(2, 1, batch=2, accum=2, rank=0, world=1) == range(10, 12)
    assert micro_positions(2, 0, batch=2, accum=1, rank=1, world=2) == range(10, 12)


def test_dropout_seeds_depend_on_position_and_branch_only():
    a = dropout_seeds(range(4, 6), seed=1, branch=0)
    assert a.tolist() == dropout_seeds(range(4, 6), seed=1, branch=0).tolist()
    assert len(set(a.tolist()) | set(dropout_seeds(range(4, 6), seed=1, branch=1).tolist())) == 4


def test_config_round_trip():
    cfg = TrainConfig(
        cache="cache/gtav",
        layers=("up1.res2",),
        save_steps=(60, 1),
        branches=("uncond",),
        eval_caches=("cache/cs",),
        stop_at=3,
    )
    import json

    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
