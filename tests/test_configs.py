"""Experiments as files: `--config FILE.toml` (defaults < file < flags), a run's config.toml that reruns
it, and the one-line errors of a bad file."""

import json
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest
from helpers import FAST_TRAIN, SMALL
from typer.testing import CliRunner

from diffseg.cache.synthetic import make_cache
from diffseg.cli import app
from diffseg.core import tomlfile
from diffseg.core.errors import DiffsegError
from diffseg.stages.extract.config import ExtractConfig
from diffseg.stages.train.checkpoint import FINAL
from diffseg.stages.train.config import CONFIG_TOML, TrainConfig, read_file


def test_dataclasses_round_trip_through_toml(tmp_path):
    train = TrainConfig(
        cache="s3://b/c",
        layers=("up1.res2", "up2.res2"),
        save_steps=(60, 1),
        branches=("uncond",),
        lr=1e-6,
        warmup_ratio=1e-6,
        w_cond=0.0,
        rcs_min_pixels=None,
        eval_caches=('odd "name"\\é',),
        detach_teacher=True,
    )
    extract = ExtractConfig(dataset="gtav", resolution=(512, 256), shard=(0, 2), limit=3, steps=(100, 1))
    path = tmp_path / "c.toml"
    tomlfile.write(path, {"extract": extract.to_dict(), "train": train.to_dict()})
    assert TrainConfig(**read_file(path)) == train
    assert ExtractConfig(**tomlfile.read_table(path, "extract", ExtractConfig)) == extract


def test_every_train_field_is_reachable_from_a_file(tmp_path):
    values = {"accum": 3, "head_lr_mult": 2.5, "weight_decay": 0.5, "clip_norm": 1.0, "log_every": 7, "stop_at": 4}
    (tmp_path / "c.toml").write_text("[train]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    assert read_file(tmp_path / "c.toml") == values
    names = {f.name for f in fields(TrainConfig)}
    assert set(_all_fields_file(tmp_path)) == names


def _all_fields_file(tmp_path):
    required = dict(cache="c", layers=("a",), save_steps=(1,), branches=("uncond",))
    cfg = TrainConfig(**required, rcs_min_pixels=5, stop_at=2, save_best="cs", log="tensorboard")  # None by default
    path = tmp_path / "all.toml"
    tomlfile.write(path, {"train": cfg.to_dict()})
    return read_file(path)


@pytest.mark.parametrize(
    "text, says",
    [
        ("[train]\nlrr = 0.1\n", "unknown key 'lrr' in [train]"),
        ("[train]\niters = 'ten'\n", "[train] iters: expected an integer"),
        ("[train]\nin_memory = 1\n", "[train] in_memory: expected true or false"),
        ("[train]\nlayers = 'up1.res2'\n", "[train] layers: expected an array"),
        ("[trian]\niters = 2\n", "unknown key 'trian'"),
        ("[train\n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_one_line_naming_key_and_file(tmp_path, text, says):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["train", "--config", str(path)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert str(path) in result.output and says in result.output


def test_cache_from_the_file_or_a_clear_error(tmp_path):
    (tmp_path / "c.toml").write_text("[train]\niters = 2\n")
    result = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "c.toml")])
    assert result.exit_code == 1 and "no training cache: give --cache" in result.output, result.output


def test_flags_replace_the_file_which_replaces_the_defaults(tmp_path, monkeypatch):
    from diffseg.stages.train import job

    seen = {}
    monkeypatch.setattr(job, "main", lambda **kw: seen.update(kw))
    (tmp_path / "c.toml").write_text(f"[train]\ncache = '{tmp_path}'\niters = 5\nlr = 0.5\naccum = 2\n")
    result = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "c.toml"), "--lr", "0.25"])
    assert result.exit_code == 0, result.output
    assert seen == {"cache": str(tmp_path), "out": None, "resume": False, "iters": 5, "lr": 0.25, "accum": 2}


def test_a_run_reruns_from_its_config_toml_byte_for_byte(tmp_path):
    """`train --config runs/X/config.toml --out runs/Y` gives X's weights again, byte for byte; the
    written file holds every field (the runtime ones as comments)."""
    cache = make_cache(tmp_path / "gtav", n=3, **SMALL)
    opts = {**FAST_TRAIN, "iters": 3, "accum": 2, "weight_decay": 0.5, "clip_norm": 0.5, "head_lr_mult": 3.0}
    first = tmp_path / "x.toml"
    tomlfile.write(first, {"train": {"cache": str(cache), **opts}})
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--config", str(first), "--out", str(tmp_path / "X")])
    assert result.exit_code == 0, result.output
    written = (tmp_path / "X" / CONFIG_TOML).read_text()
    assert "# device = " in written and tomllib.loads(written)["train"]["accum"] == 2
    again = ["train", "--config", str(tmp_path / "X" / CONFIG_TOML), "--out", str(tmp_path / "Y")]
    result = runner.invoke(app, [*again, "--device", "cpu", "--read-threads", "0"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "Y" / FINAL).read_bytes() == (tmp_path / "X" / FINAL).read_bytes()
    assert (tmp_path / "Y" / CONFIG_TOML).read_text() == written


def test_extract_writes_a_config_beside_the_cache_that_extracts_it_again(tmp_path):
    """`extract --config` (the dataset from the file, --limit from the command line), then
    `extract --config <cache>.config.toml --out other`: the same arrays, byte for byte."""
    from test_extract_run import arrays, assert_same_bytes

    from diffseg.stages.extract.config import CONFIG_SUFFIX

    path = tmp_path / "x.toml"
    path.write_text("[extract]\ndataset = 'demo'\nmodel = 'tiny'\nresolution = [64, 64]\nlimit = 3\n")
    first = CliRunner().invoke(app, ["extract", "--config", str(path), "--limit", "2", "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    written = tmp_path / f"a{CONFIG_SUFFIX}"
    assert tomllib.loads(written.read_text())["extract"]["limit"] == 2
    again = CliRunner().invoke(app, ["extract", "--config", str(written), "--out", str(tmp_path / "b")])
    assert again.exit_code == 0, again.output
    assert_same_bytes(arrays(tmp_path / "a"), arrays(tmp_path / "b"))
    missing = CliRunner().invoke(app, ["extract", "--config", str(tmp_path / "c.toml")])
    assert missing.exit_code == 2  # no such file: a usage error
    (tmp_path / "c.toml").write_text("[extract]\nlimit = 2\n")
    nodataset = CliRunner().invoke(app, ["extract", "--config", str(tmp_path / "c.toml")])
    assert nodataset.exit_code == 1 and "no dataset: give --dataset" in nodataset.output


def _layouts():
    from test_ablate_cells import _layout

    from diffseg.stages.ablate.cells import CacheLayout

    yield _layout()
    yield _layout(kinds=("res", "blk"))
    yield _layout(kinds=("res", "blk"), xattn_both=True)
    yield _layout(steps=(0,))
    yield _layout(steps=(500, 60, 20, 1))
    no_res = {"up1.blk0": {"kind": "blk", "stride": 32}, "up2.blk1": {"kind": "blk", "stride": 16}}
    yield CacheLayout(layers=no_res, branch_layers={"uncond": list(no_res), "cond": list(no_res)}, save_steps=(1,))


@pytest.mark.parametrize("features", [True, False])
def test_the_table4_grid_file_plans_the_cells_the_code_planned(features):
    """grids/table4.toml replaces the planner's code: the same cells, name for name, field for field.
    fixtures/table4_cells.json holds the cells the code planned for these layouts before the grid became a
    file (written once by that planner, as JSON: tuples as lists)."""
    from dataclasses import asdict

    from diffseg.stages.ablate.cells import plan_cells

    golden = json.loads((Path(__file__).parent / "fixtures" / "table4_cells.json").read_text())
    wants = golden[f"features={features}"]
    layouts = list(_layouts())
    assert len(wants) == len(layouts)
    for layout, want in zip(layouts, wants):
        got = json.loads(json.dumps([asdict(c) for c in plan_cells(layout, features=features)]))
        assert got == [{**c, "options": []} for c in want]


def test_ablate_takes_its_cell_options_from_a_config_and_its_cells_from_a_grid(tmp_path, monkeypatch):
    from diffseg.stages.ablate import job as ablate

    cache = make_cache(tmp_path / "gtav", n=2, **SMALL)
    grid = tmp_path / "grid.toml"
    grid.write_text(
        "[[cell]]\nname = 'full'\ngroup = 'table4'\ndescription = 'IPKL + L2, {layers}'\n\n"
        "[[cell]]\nname = 'step-{t}'\ngroup = 'mine'\ndescription = 't={t}'\nfor_each = 'save_step'\n"
        "save_steps = 'each'\nconsistency = 'kl'\nw_cons = 0.5\n\n"
        "[[cell]]\nname = 'full-lr'\ngroup = 'mine'\ndescription = 'lr 1e-3'\nlr = 1e-3\naccum = 3\n"
    )
    config = tmp_path / "c.toml"
    tomlfile.write(config, {"train": {"cache": str(cache), "eval_caches": [str(cache)], "iters": 7, "accum": 2}})
    seen = {}
    monkeypatch.setattr(ablate, "main", lambda **kw: seen.update(kw))
    args = ["ablate", "--config", str(config), "--grid", str(grid), "--out", str(tmp_path / "a"), "--iters", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen == {
        "cache": str(cache),
        "eval_caches": [str(cache)],
        "out": tmp_path / "a",
        "features": True,
        "grid": grid,
        "iters": 3,
        "accum": 2,
    }
    monkeypatch.undo()
    plan = ablate.plan(**seen)
    assert [c.name for c in plan.cells] == ["full", "step-60", "step-20", "step-1", "full-lr"]
    (run,) = [opts for cell, _, opts in plan.runs() if cell.name == "full-lr"]
    assert (run["lr"], run["accum"], run["iters"]) == (1e-3, 3, 3)  # a cell's own options win
    assert {(c.save_steps, c.consistency, c.w_cons) for c in plan.cells[1:4]} == {
        ((t,), "kl", 0.5) for t in (60, 20, 1)
    }
    assert plan.options["accum"] == 2 and [c.name for c in ablate.plan(**{**seen, "features": False}).cells] == ["full"]
    with pytest.raises(DiffsegError, match="the cells decide layers; give them in a --grid file"):
        ablate.plan(**seen, layers=("up1.res2",))


@pytest.mark.parametrize(
    "text, says",
    [
        ("[[cell]]\nname = 'a'\ngroup = 'g'\ndescription = 'd'\nseed = 1\n", "cell 'a': unknown key 'seed'"),
        ("[[cell]]\nname = 'a'\ngroup = 'g'\ndescription = 'd'\nlr = 'x'\n", "cell 'a': lr: expected a number"),
        ("[[cell]]\nname = 'a'\ngroup = 'g'\ndescription = 'd'\nlayers = 'all'\n", "layers 'all': expected shared"),
        ("[[cell]]\nname = 'a'\ngroup = 'g'\ndescription = 'd'\nw_cons = 'x'\n", "cell 'a': w_cons: expected a num"),
        ("[[cell]]\nname = 'a'\ngroup = 'g'\ndescription = 'd'\nfor_each = 'stride'\n", "layers = 'stride' goes"),
        ("[[cell]]\nname = 'a'\ngroup = 'g'\n", "cell 'a': lacks description"),
        ("[cells]\n", "holds [[cell]] tables only"),
    ],
)
def test_a_bad_grid_is_one_line_naming_file_cell_and_key(tmp_path, text, says):
    from diffseg.stages.ablate.cells import CELL_OPTIONS, Cell
    from diffseg.stages.ablate.grid import read_grid

    (tmp_path / "g.toml").write_text(text)
    with pytest.raises(DiffsegError) as err:
        read_grid(tmp_path / "g.toml", Cell, CELL_OPTIONS)
    assert str(tmp_path / "g.toml") in str(err.value) and says in str(err.value)
    assert "\n" not in str(err.value)


def test_a_file_beside_a_cache_goes_through_the_store_code(tmp_path):
    """Local: atomically into `<cache><suffix>`; an object store (fsspec's memory://): one put at that key."""
    import fsspec

    from diffseg.cache import store

    store.write_beside(tmp_path / "gtav", ".config.toml", b"[extract]\n")
    assert (tmp_path / "gtav.config.toml").read_bytes() == b"[extract]\n"
    store.write_beside("memory://bucket/caches/gtav", ".config.toml", b"x = 1\n")
    assert fsspec.filesystem("memory").cat_file("/bucket/caches/gtav.config.toml") == b"x = 1\n"
