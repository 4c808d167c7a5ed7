"""Input gathering and label reading of `diffseg predict` (no model)."""

import numpy as np
import pytest
from PIL import Image

from diffseg.core.errors import DiffsegError
from diffseg.stages import viz
from diffseg.stages.predict.inputs import InputImage, find_label, gather_inputs, read_label


def _img(path, size=(8, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(path)
    return path


def test_folders_are_recursive_sorted_and_named_by_relative_path(tmp_path, capsys):
    _img(tmp_path / "d" / "z.png")
    _img(tmp_path / "d" / "city" / "a.jpg")
    (tmp_path / "d" / "README").write_text("x")
    _img(tmp_path / "single.png")
    items = gather_inputs([tmp_path / "d", tmp_path / "single.png"])
    assert [i.name for i in items] == ["city/a", "z", "single"]
    err = capsys.readouterr().err
    assert "skipping" in err and "README" in err


def test_same_output_name_twice_is_an_error(tmp_path):
    a = _img(tmp_path / "x" / "f.png")
    b = _img(tmp_path / "y" / "f.jpg")
    with pytest.raises(DiffsegError, match="f.png"):
        gather_inputs([a, b])


def test_named_non_image_and_empty_folder_are_errors(tmp_path):
    (tmp_path / "t.png").write_text("not really a png")
    with pytest.raises(DiffsegError, match="t.png: not an image"):
        gather_inputs([tmp_path / "t.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DiffsegError, match="no image found"):
        gather_inputs([tmp_path / "empty"])


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path, capsys, monkeypatch):
    from datagen import save_bomb
    from PIL import ImageFile

    save_bomb(tmp_path / "d" / "bomb.png", (13000, 13000))  # under Pillow's own refusal, 2.1 GB decoded
    save_bomb(tmp_path / "d" / "huge.png", (20000, 20000))  # over it
    _img(tmp_path / "d" / "ok.png")
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda img: decoded.append(img.size) or real_load(img))
    assert [i.name for i in gather_inputs([tmp_path / "d"])] == ["ok"]
    err = capsys.readouterr().err
    assert "skipping" in err and "bomb.png: too large: 13000x13000" in err and "huge.png: too large" in err
    with pytest.raises(DiffsegError, match="bomb.png: too large"):
        gather_inputs([tmp_path / "d" / "bomb.png"])
    assert decoded == [(8, 6)]
    labels = tmp_path / "labels"
    save_bomb(labels / "ok.png", (13000, 13000), colour_type=0)
    assert read_label(labels / "ok.png", (6, 8)) is None
    assert "ignoring label" in capsys.readouterr().err and decoded == [(8, 6)]


def test_label_formats(tmp_path, capsys):
    lab = np.array([[0, 18], [255, 3]], np.uint8)
    Image.fromarray(lab).save(tmp_path / "l.png")
    viz.save_mask(tmp_path / "p.png", lab)
    np.testing.assert_array_equal(read_label(tmp_path / "l.png", (2, 2)), lab)
    np.testing.assert_array_equal(read_label(tmp_path / "p.png", (2, 2)), lab)  # indices, not colours
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    Image.fromarray(np.full((2, 2), 40, np.uint8)).save(tmp_path / "ids.png")
    assert read_label(tmp_path / "rgb.png", (2, 2)) is None
    assert read_label(tmp_path / "ids.png", (2, 2)) is None
    assert read_label(tmp_path / "l.png", (3, 2)) is None
    err = capsys.readouterr().err
    assert "mode RGB" in err and "[40]" in err and "size 2x2" in err


def test_find_label_by_relative_name_then_stem(tmp_path):
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "city").mkdir()
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "city" / "b.png")
    assert find_label(tmp_path, InputImage(path=tmp_path / "x" / "a.jpg", name="x/a")) == tmp_path / "a.png"
    assert find_label(tmp_path, InputImage(path=tmp_path / "b.jpg", name="city/b")) == tmp_path / "city" / "b.png"
    assert find_label(tmp_path, InputImage(path=tmp_path / "c.jpg", name="c")) is None
