"""Bad input: every problem is a DataError/DiffsegError naming the file and the problem."""

import pickle

import numpy as np
import pytest
from datagen import make_bdd100k, make_cityscapes, make_gtav, make_mapillary, make_synthia, save_grey
from PIL import Image

from diffseg.core.errors import DataError, DiffsegError
from diffseg.data import default_root, open_dataset


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_image(tmp_path):
    make_gtav(tmp_path, n=2)
    bad = tmp_path / "images" / "00002.png"
    _truncate(bad)
    ds = open_dataset("gtav", root=tmp_path)
    ds.load(0)
    with pytest.raises(DataError) as err:
        ds.load(1)
    assert err.value.path == str(bad) and "unreadable image" in str(err.value)
    assert ds.check(0) == [] and ds.check(1) == [f"{bad}: {err.value.problem}"]


def test_truncated_synthia_label(tmp_path):
    make_synthia(tmp_path, n=1)
    bad = tmp_path / "GT" / "LABELS" / "0000000.png"
    _truncate(bad)
    with pytest.raises(DataError, match="unreadable label") as err:
        open_dataset("synthia", root=tmp_path).load(0)
    assert err.value.path == str(bad)


def test_interpolated_train_id_label_is_corrupt(tmp_path):
    make_bdd100k(tmp_path, "val", n=1)
    path = next((tmp_path / "labels").rglob("*.png"))
    label = np.zeros((16, 32), np.uint8)
    label[:, 16:] = 13
    label[:, 15] = 7  # interpolation between road (0) and car (13): valid by accident, so not reported
    label[:, 16] = 100  # and values no train id has
    label[0, 0] = 255
    save_grey(path, label)
    ds = open_dataset("bdd100k", root=tmp_path, split="val")
    with pytest.raises(DataError) as err:
        ds.load(0)
    assert err.value.path == str(path)
    assert err.value.problem == "corrupt train-id label: values {100} outside 0..18/255"


def test_cityscapes_train_ids_checked_only_when_used(tmp_path):
    make_cityscapes(tmp_path, "val", n=1, label_ids=False, train_ids=True)
    path = next((tmp_path / "gtFine").rglob("*_labelTrainIds.png"))
    save_grey(path, np.full((16, 32), 19, np.uint8))
    problems = open_dataset("cityscapes", root=tmp_path, split="val").check(0)
    assert problems == [f"{path}: corrupt train-id label: values {{19}} outside 0..18/255"]


def test_missing_label(tmp_path):
    make_gtav(tmp_path, n=2)
    missing = tmp_path / "labels" / "00001.png"
    missing.unlink()
    ds = open_dataset("gtav", root=tmp_path)
    assert len(ds) == 2
    with pytest.raises(DataError, match="missing label") as err:
        ds.load(0)
    assert err.value.path == str(missing)
    assert ds.check(0) == [f"{missing}: missing label"]
    with pytest.raises(DataError, match="missing label"):
        ds.label_size(0)


def test_missing_cityscapes_label_names_label_ids(tmp_path):
    make_cityscapes(tmp_path, "val", n=1)
    label = next((tmp_path / "gtFine").rglob("*_labelIds.png"))
    label.unlink()
    assert open_dataset("cityscapes", root=tmp_path, split="val").check(0) == [f"{label}: missing label"]


def test_size_mismatch(tmp_path):
    make_gtav(tmp_path, n=1, size=(32, 24))
    img = tmp_path / "images" / "00001.png"
    Image.fromarray(np.zeros((20, 32, 3), np.uint8)).save(img)
    ds = open_dataset("gtav", root=tmp_path)
    with pytest.raises(DataError, match=r"label size 32x24 differs from image size 32x20") as err:
        ds.load(0)
    assert err.value.path == str(tmp_path / "labels" / "00001.png") and str(img) in err.value.problem
    assert len(ds.check(0)) == 1


def test_rgb_label_is_refused(tmp_path):
    make_mapillary(tmp_path, "val", n=1)
    label = next((tmp_path / "validation" / "labels").glob("*.png"))
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(label)
    with pytest.raises(DataError, match="mode RGB"):
        open_dataset("mapillary", root=tmp_path, split="val").load(0)


def test_both_image_and_label_problems_listed(tmp_path):
    make_gtav(tmp_path, n=1)
    _truncate(tmp_path / "images" / "00001.png")
    (tmp_path / "labels" / "00001.png").unlink()
    problems = open_dataset("gtav", root=tmp_path).check(0)
    assert len(problems) == 2 and "unreadable image" in problems[0] and "missing label" in problems[1]


def test_missing_default_root_message(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSEG_DATA", str(tmp_path / "nowhere"))
    assert default_root("gtav") == tmp_path / "nowhere" / "gta"
    assert default_root("darkzurich") == tmp_path / "nowhere" / "dark_zurich"
    with pytest.raises(DiffsegError) as err:
        open_dataset("gtav")
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "gta") in msg and "--root" in msg and "DIFFSEG_DATA" in msg


def test_default_root_without_env(tmp_path, monkeypatch):
    monkeypatch.delenv("DIFFSEG_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    make_gtav(tmp_path / "data" / "gta", n=1)
    assert default_root("cityscapes").as_posix() == "data/cityscapes"
    assert len(open_dataset("gtav")) == 1
    with pytest.raises(DiffsegError, match="DIFFSEG_DATA is not set"):
        open_dataset("synthia")


def test_explicit_missing_root(tmp_path):
    with pytest.raises(DiffsegError, match="does not exist"):
        open_dataset("cityscapes", root=tmp_path / "nope")


def test_wrong_and_missing_split(tmp_path):
    make_cityscapes(tmp_path, "val", n=1)
    with pytest.raises(DiffsegError, match="unknown split 'test'"):
        open_dataset("cityscapes", root=tmp_path, split="test")
    with pytest.raises(DiffsegError, match=r"leftImg8bit/train"):
        open_dataset("cityscapes", root=tmp_path, split="train")
    make_mapillary(tmp_path / "m", "val", n=1)
    with pytest.raises(DiffsegError, match="training"):
        open_dataset("mapillary", root=tmp_path / "m", split="train")
    with pytest.raises(DiffsegError, match="unknown dataset"):
        open_dataset("kitti", root=tmp_path)


def test_unknown_id_in_split_file(tmp_path):
    make_gtav(tmp_path, n=2)
    split_file = tmp_path / "ids.txt"
    split_file.write_text("00001\n00042\n")
    with pytest.raises(DiffsegError) as err:
        open_dataset("gtav", root=tmp_path, split_file=split_file)
    assert str(split_file) in str(err.value) and "'00042'" in str(err.value)


def test_split_file_restricts_any_split(tmp_path):
    make_cityscapes(tmp_path, "val", n=3)
    split_file = tmp_path / "ids.txt"
    split_file.write_text("# two of them\naachen/aachen_000002_000019\naachen/aachen_000000_000019\n")
    ds = open_dataset("cityscapes", root=tmp_path, split="val", split_file=split_file)
    assert ds.ids == ["aachen/aachen_000000_000019", "aachen/aachen_000002_000019"]


def test_gtav_rejects_unknown_split(tmp_path):
    make_gtav(tmp_path, 2, (64, 32))
    with pytest.raises(DiffsegError, match="unknown split 'test'"):
        open_dataset("gtav", root=tmp_path, split="test")


def test_data_error_survives_pickling():
    err = pickle.loads(pickle.dumps(DataError("labels/00001.png", "truncated PNG")))
    assert (
        isinstance(err, DataError) and err.path == "labels/00001.png" and str(err) == "labels/00001.png: truncated PNG"
    )


@pytest.mark.parametrize("size", [(20000, 20000), (8193, 8192)])  # far over Pillow's own limit; just over ours
def test_an_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path, monkeypatch, size):
    from datagen import save_bomb
    from PIL import ImageFile

    from diffseg.data.readers import MAX_IMAGE_PIXELS, file_size

    make_gtav(tmp_path, n=2)
    bomb = tmp_path / "images" / "00002.png"
    save_bomb(bomb, size)
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda img: decoded.append(img.size) or real_load(img))
    ds = open_dataset("gtav", root=tmp_path)
    with pytest.raises(DataError, match="image too large") as err:
        ds.load(1)
    assert err.value.path == str(bomb) and size not in decoded  # refused before any decoding
    assert ds.check(1) == [str(err.value)]
    assert size[0] * size[1] > MAX_IMAGE_PIXELS >= 5000 * 4000  # Mapillary's largest photos fit
    with pytest.raises(DataError, match="label too large"):
        file_size(bomb)  # an eval cache's planned label size never comes from a bomb's header


def test_a_label_over_the_pixel_limit_is_refused_in_every_reader(tmp_path):
    from datagen import save_bomb

    make_gtav(tmp_path / "gta", n=1)
    save_bomb(tmp_path / "gta" / "labels" / "00001.png", (9000, 9000), colour_type=3)
    with pytest.raises(DataError, match="label too large"):
        open_dataset("gtav", root=tmp_path / "gta").load(0)
    make_synthia(tmp_path / "syn", n=1)  # OpenCV's 16-bit path: checked before cv2.imread decodes it
    save_bomb(tmp_path / "syn" / "GT" / "LABELS" / "0000000.png", (9000, 9000), bit_depth=16)
    with pytest.raises(DataError, match="label too large"):
        open_dataset("synthia", root=tmp_path / "syn").load(0)
