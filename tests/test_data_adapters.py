"""Every adapter on generated files in the exact on-disk formats."""

import numpy as np
import pytest
from datagen import (
    make_acdc,
    make_bdd100k,
    make_cityscapes,
    make_darkzurich,
    make_gtav,
    make_mapillary,
    make_synthia,
    save_grey,
)
from PIL import Image

from diffseg.core.errors import DiffsegError
from diffseg.data import DATASET_NAMES, open_dataset


def _assert_matches(ds, expected: dict) -> None:
    assert ds.ids == sorted(expected)
    for i, sample_id in enumerate(ds.ids):
        s = ds.load(i)
        assert s.id == sample_id
        assert s.image.dtype == np.uint8 and s.image.ndim == 3 and s.image.shape[2] == 3
        assert s.label.dtype == np.uint8 and s.image.shape[:2] == s.label.shape
        np.testing.assert_array_equal(s.label, expected[sample_id])
        assert ds.check(i) == []
        assert ds.label_size(i) == s.label.shape


def test_names():
    assert set(DATASET_NAMES) == {
        "gtav",
        "synthia",
        "cityscapes",
        "bdd100k",
        "mapillary",
        "acdc",
        "darkzurich",
        "folder",
        "demo",
    }


def test_gtav_palette_indices_not_luminance(tmp_path):
    expected = make_gtav(tmp_path, n=3)
    ds = open_dataset("gtav", root=tmp_path)
    assert len(ds) == 3 and ds.ids == ["00001", "00002", "00003"] and ds.root == tmp_path
    _assert_matches(ds, expected)
    label = ds.load(0).label
    assert 255 in label and 0 in label  # ids 0..4, 34 have no train id; 7 -> road
    assert Image.open(tmp_path / "labels" / "00001.png").mode == "P"


def test_gtav_val_needs_a_split_file(tmp_path):
    make_gtav(tmp_path, n=3)
    with pytest.raises(DiffsegError, match="split-file"):
        open_dataset("gtav", root=tmp_path, split="val")
    (tmp_path / "val.txt").write_text("00003\n00002.png\n\n")
    ds = open_dataset("gtav", root=tmp_path, split="val", split_file=tmp_path / "val.txt")
    assert ds.ids == ["00002", "00003"] and ds.info["split_file"] == str(tmp_path / "val.txt")


def test_synthia_16bit_labels(tmp_path):
    expected = make_synthia(tmp_path, n=2)
    # Pillow sees the 16-bit class channel as zeros: the adapter must not rely on it
    assert np.asarray(Image.open(tmp_path / "GT" / "LABELS" / "0000000.png"))[..., 0].max() == 0
    ds = open_dataset("synthia", root=tmp_path)
    _assert_matches(ds, expected)
    lab = ds.load(0).label
    assert {0, 2, 3, 10, 13, 255} <= set(np.unique(lab).tolist())  # 3 road, 2 building, 8 car, 21 wall
    assert 9 not in lab  # Synthia has no terrain


def test_cityscapes_derives_train_ids_from_label_ids(tmp_path):
    expected = make_cityscapes(tmp_path, "val", n=2, train_ids=True)  # labelTrainIds differ on purpose
    ds = open_dataset("cityscapes", root=tmp_path, split="val")
    assert ds.ids == ["aachen/aachen_000000_000019", "aachen/aachen_000001_000019"]
    _assert_matches(ds, expected)


def test_cityscapes_label_train_ids_when_label_ids_absent(tmp_path):
    expected = make_cityscapes(tmp_path, "train", n=2, label_ids=False, train_ids=True)
    _assert_matches(open_dataset("cityscapes", root=tmp_path, split="train"), expected)


@pytest.mark.parametrize("legacy", [False, True])
def test_bdd100k_layouts(tmp_path, legacy):
    expected = make_bdd100k(tmp_path, "val", n=2, legacy=legacy)
    ds = open_dataset("bdd100k", root=tmp_path, split="val")
    _assert_matches(ds, expected)


@pytest.mark.parametrize("layout", ["v1.2", "v2.0"])
@pytest.mark.parametrize("mapping", ["A", "B"])
def test_mapillary_layouts_and_conventions(tmp_path, layout, mapping):
    expected = make_mapillary(tmp_path, "val", n=2, layout=layout, mapping=mapping)
    ds = open_dataset("mapillary", root=tmp_path, split="val", mapillary_map=mapping)
    assert ds.info["mapillary_map"] == mapping
    _assert_matches(ds, expected)
    labels = np.concatenate([ds.load(i).label.ravel() for i in range(len(ds))])
    # id 44 (street light): ignore under A, pole under B; 41 (manhole): road under A only
    assert (5 in labels) and (0 in labels)


def test_mapillary_44_by_hand(tmp_path):
    key = "only44"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(_mk(tmp_path / "training" / "images" / f"{key}.jpg"))
    ids = np.array([[44, 41, 45, 65]] * 4, np.uint8)
    lab = Image.fromarray(ids, mode="P")
    lab.putpalette([0] * 768)
    lab.save(_mk(tmp_path / "training" / "labels" / f"{key}.png"))
    a = open_dataset("mapillary", root=tmp_path, split="train", mapillary_map="A").load(0).label
    b = open_dataset("mapillary", root=tmp_path, split="train", mapillary_map="B").load(0).label
    assert a[0].tolist() == [255, 0, 5, 255] and b[0].tolist() == [5, 255, 5, 255]
    with pytest.raises(DiffsegError, match="convention"):
        open_dataset("mapillary", root=tmp_path, split="train", mapillary_map="C")


def _mk(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_acdc_per_condition_and_selection(tmp_path):
    expected = make_acdc(tmp_path, "val", n=2)
    ds = open_dataset("acdc", root=tmp_path, split="val")
    assert len(ds) == 8 and not any("_ref" in i for i in ds.ids)
    assert ds.info["conditions"] == ["fog", "night", "rain", "snow"]
    _assert_matches(ds, expected)
    night = open_dataset("acdc", root=tmp_path, split="val", conditions=["night"])
    assert night.ids == sorted(k for k in expected if k.startswith("night/")) and len(night) == 2
    two = open_dataset("acdc", root=tmp_path, split="val", conditions=("fog", "rain"))
    assert {i.split("/")[0] for i in two.ids} == {"fog", "rain"}
    with pytest.raises(DiffsegError, match="unknown condition"):
        open_dataset("acdc", root=tmp_path, split="val", conditions=["dusk"])


def test_acdc_missing_condition_folder(tmp_path):
    make_acdc(tmp_path, "val", conditions=("night",))
    with pytest.raises(DiffsegError, match="fog"):
        open_dataset("acdc", root=tmp_path, split="val", conditions=["fog"])


def test_acdc_label_ids(tmp_path):
    expected = make_acdc(tmp_path, "train", conditions=("snow",), label_ids=True)
    _assert_matches(open_dataset("acdc", root=tmp_path, split="train"), expected)


def test_acdc_flattened(tmp_path):
    expected = make_acdc(tmp_path, "val", n=1, flat=True)
    ds = open_dataset("acdc", root=tmp_path, split="val")
    assert ds.ids == sorted(expected) and "/" not in ds.ids[0]
    _assert_matches(ds, expected)
    with pytest.raises(DiffsegError, match="flattened"):
        open_dataset("acdc", root=tmp_path, split="val", conditions=["night"])


def test_darkzurich_val_only(tmp_path):
    expected = make_darkzurich(tmp_path, n=2)
    _assert_matches(open_dataset("darkzurich", root=tmp_path, split="val"), expected)
    with pytest.raises(DiffsegError, match="val only"):
        open_dataset("darkzurich", root=tmp_path, split="train")


def test_conditions_rejected_outside_acdc(tmp_path):
    make_gtav(tmp_path, n=1)
    with pytest.raises(DiffsegError, match="acdc only"):
        open_dataset("gtav", root=tmp_path, conditions=["night"])


def test_listing_decodes_nothing(tmp_path):
    make_gtav(tmp_path, n=2)
    (tmp_path / "images" / "00003.png").write_bytes(b"not a png")
    ds = open_dataset("gtav", root=tmp_path)  # listing a broken file is fine; loading it is not
    assert len(ds) == 3


def test_train_id_label_255_and_all_classes_pass(tmp_path):
    make_bdd100k(tmp_path, "train", n=1)
    path = next((tmp_path / "labels").rglob("*.png"))
    values = np.array(list(range(19)) + [255] * 13, np.uint8)  # 32 columns
    save_grey(path, np.tile(values, (16, 1)))
    ds = open_dataset("bdd100k", root=tmp_path, split="train")
    assert ds.check(0) == [] and set(np.unique(ds.load(0).label).tolist()) <= set(range(19)) | {255}
