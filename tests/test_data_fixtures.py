"""The real and format-faithful files in ../shared/fixtures (skipped when the folder is absent)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffseg.data import open_dataset

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"{FIXTURES} not present")


def test_cityscapes_fixture_uses_label_ids():
    ds = open_dataset("cityscapes", root=FIXTURES / "cityscapes", split="val")
    assert ds.ids == ["frankfurt/frankfurt_000000_000294"]
    s = ds.load(0)
    assert s.image.shape == (128, 256, 3) and s.label.shape == (128, 256)
    assert sorted(np.unique(s.label).tolist()) == [0, 1, 2, 4, 5, 7, 8, 10, 11, 13, 255]
    shipped = np.asarray(
        Image.open(FIXTURES / "cityscapes/gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelTrainIds.png")
    )
    differ = float((shipped != s.label).mean())
    assert 0 < differ < 0.01  # the separately downscaled labelTrainIds differs on ~0.2% of pixels


def test_mapillary_fixture_v2_layout_and_conventions():
    a = open_dataset("mapillary", root=FIXTURES / "mapillary", split="val", mapillary_map="A").load(0).label
    b = open_dataset("mapillary", root=FIXTURES / "mapillary", split="val", mapillary_map="B").load(0).label
    ids = np.asarray(Image.open(FIXTURES / "mapillary/validation/v1.2/labels/__CRyFzoDOXn6unQ6a3DnQ.png"))
    assert sorted(np.unique(ids).tolist()) == [17, 44, 45]
    assert (a[ids == 44] == 255).all() and (b[ids == 44] == 5).all()
    assert (a[ids == 17] == 2).all() and (b[ids == 45] == 5).all()


@pytest.mark.parametrize("split, n", [("train", 3), ("val", 3)])
def test_bdd_fixture(split, n):
    ds = open_dataset("bdd100k", root=FIXTURES / "bdd100k", split=split)
    assert len(ds) == n and all(ds.check(i) == [] for i in range(n))
    assert ds.load(0).image.shape == (8, 8, 3)  # grey JPEGs come back as RGB


def test_gtav_fixture_palette():
    ds = open_dataset("gtav", root=FIXTURES / "_synthetic" / "gta")
    label = ds.load(0).label
    assert sorted(np.unique(label).tolist()) == list(range(19)) + [255]


def test_synthia_fixture_16bit():
    ds = open_dataset("synthia", root=FIXTURES / "_synthetic" / "synthia")
    label = ds.load(0).label
    assert sorted(np.unique(label).tolist()) == list(range(19)) + [255]


def test_acdc_and_darkzurich_fixtures():
    acdc = open_dataset("acdc", root=FIXTURES / "_synthetic" / "acdc", split="val")
    assert len(acdc) == 4 and [i.split("/")[0] for i in acdc.ids] == ["fog", "night", "rain", "snow"]
    night = open_dataset("acdc", root=FIXTURES / "_synthetic" / "acdc", split="val", conditions=["night"])
    assert night.ids == ["night/GP010376/GP010376_frame_000129"]
    dz = open_dataset("darkzurich", root=FIXTURES / "_synthetic" / "dark_zurich", split="val")
    assert len(dz) == 2 and all(dz.check(i) == [] for i in range(2))
    assert dz.load(0).label.shape == (54, 96)
