"""Output folders of predict and cache show: never an input, existing files only with overwrite."""

import pytest
from typer.testing import CliRunner

from diffseg.cache.synthetic import make_cache
from diffseg.cli import app
from diffseg.core.errors import DiffsegError
from diffseg.core.outputs import check_outputs


def test_overlaps_links_and_shared_names_are_refused(tmp_path):
    (tmp_path / "in").mkdir()
    photo = tmp_path / "in" / "a.png"
    photo.write_bytes(b"photo")
    out = tmp_path / "out"
    check_outputs(out, [out / "a.png"], [tmp_path / "in"], overwrite=False)  # separate folders: fine
    for where, said in [(tmp_path / "in", "is the input"), (tmp_path, "holds the input")]:
        with pytest.raises(DiffsegError, match=said):
            check_outputs(where, [where / "a.png"], [tmp_path / "in"], overwrite=True)
    with pytest.raises(DiffsegError, match="holds the input"):  # a file named on the command line
        check_outputs(tmp_path / "in", [tmp_path / "in" / "b.png"], [photo], overwrite=True)
    with pytest.raises(DiffsegError, match="lies inside the input folder"):
        check_outputs(tmp_path / "in" / "sub", [tmp_path / "in" / "sub" / "x.png"], [tmp_path / "in"], overwrite=True)
    out.mkdir()
    (out / "a.png").symlink_to(photo)  # writing through the link would replace the photo
    with pytest.raises(DiffsegError, match="leads to"):
        check_outputs(out, [out / "a.png"], [tmp_path / "in"], overwrite=True)
    with pytest.raises(DiffsegError, match="two outputs would share it"):  # inputs a.png and a_vis.png
        check_outputs(out, [out / "a.png", out / "a_vis.png", out / "a_vis.png"], [], overwrite=True)
    assert photo.read_bytes() == b"photo"


def test_cache_show_keeps_out_of_its_cache_and_overwrites_only_when_asked(tmp_path):
    cache = make_cache(tmp_path / "c", 1)
    before = sorted(p.relative_to(cache) for p in cache.rglob("*"))
    show = ["cache", "show", str(cache), "--out"]
    res = CliRunner().invoke(app, [*show, str(cache)])
    assert res.exit_code == 1 and "is the input" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, [*show, str(cache / "pics")])
    assert res.exit_code == 1 and "lies inside the input folder" in res.output
    assert sorted(p.relative_to(cache) for p in cache.rglob("*")) == before
    assert CliRunner().invoke(app, [*show, str(tmp_path / "pics")]).exit_code == 0
    res = CliRunner().invoke(app, [*show, str(tmp_path / "pics")])
    assert res.exit_code == 1 and "already exists" in res.output and "--overwrite" in res.output
    assert CliRunner().invoke(app, [*show, str(tmp_path / "pics"), "--overwrite"]).exit_code == 0
