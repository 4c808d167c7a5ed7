"""The dataset adapters on small files in each dataset's real on-disk format.

tests/fixtures holds what may be redistributed (generated format-faithful files and mmsegmentation's 8x8 BDD100K
pseudo files, see tests/fixtures/SOURCES.md). Real dataset content stays outside the repository under its dataset's
terms, in ../shared/fixtures beside the clone; the tests that need it skip when it is absent and say why.
"""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from diffseg.data import open_dataset

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def needs_real(folder: str, dataset: str):
    """Skip unless ../shared/fixtures/<folder> is there: real content this repository may not redistribute."""
    return pytest.mark.skipif(
        not (REAL / folder).is_dir(),
        reason=f"needs ../shared/fixtures/{folder}: real {dataset} content, "
        "not redistributable (see tests/fixtures/SOURCES.md)",
    )


@needs_real("cityscapes", "Cityscapes")
def test_cityscapes_fixture_uses_label_ids():
    ds = open_dataset("cityscapes", root=REAL / "cityscapes", split="val")
    assert ds.ids == ["frankfurt/frankfurt_000000_000294"]
    s = ds.load(0)
    assert s.image.shape == (128, 256, 3) and s.label.shape == (128, 256)
    assert sorted(np.unique(s.label).tolist()) == [0, 1, 2, 4, 5, 7, 8, 10, 11, 13, 255]
    shipped = np.asarray(
        Image.open(REAL / "cityscapes/gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelTrainIds.png")
    )
    differ = float((shipped != s.label).mean())
    assert 0 < differ < 0.01  # the separately downscaled labelTrainIds differs on ~0.2% of pixels


@needs_real("mapillary", "Mapillary Vistas")
def test_mapillary_fixture_v2_layout_and_conventions():
    a = open_dataset("mapillary", root=REAL / "mapillary", split="val", mapillary_map="A").load(0).label
    b = open_dataset("mapillary", root=REAL / "mapillary", split="val", mapillary_map="B").load(0).label
    ids = np.asarray(Image.open(REAL / "mapillary/validation/v1.2/labels/__CRyFzoDOXn6unQ6a3DnQ.png"))
    assert sorted(np.unique(ids).tolist()) == [17, 44, 45]
    assert (a[ids == 44] == 255).all() and (b[ids == 44] == 5).all()
    assert (a[ids == 17] == 2).all() and (b[ids == 45] == 5).all()


@pytest.mark.parametrize("split, n", [("train", 3), ("val", 3)])
def test_bdd_fixture(split, n):
    ds = open_dataset("bdd100k", root=FIXTURES / "bdd100k", split=split)
    assert len(ds) == n and all(ds.check(i) == [] for i in range(n))
    assert ds.load(0).image.shape == (8, 8, 3)  # grey JPEGs come back as RGB


def test_gtav_fixture_palette():
    ds = open_dataset("gtav", root=FIXTURES / "synthetic" / "gta")
    label = ds.load(0).label
    assert sorted(np.unique(label).tolist()) == list(range(19)) + [255]


def test_synthia_fixture_16bit():
    ds = open_dataset("synthia", root=FIXTURES / "synthetic" / "synthia")
    label = ds.load(0).label
    assert sorted(np.unique(label).tolist()) == list(range(19)) + [255]


def test_acdc_and_darkzurich_fixtures():
    acdc = open_dataset("acdc", root=FIXTURES / "synthetic" / "acdc", split="val")
    assert len(acdc) == 4 and [i.split("/")[0] for i in acdc.ids] == ["fog", "night", "rain", "snow"]
    night = open_dataset("acdc", root=FIXTURES / "synthetic" / "acdc", split="val", conditions=["night"])
    assert night.ids == ["night/GP010376/GP010376_frame_000129"]
    dz = open_dataset("darkzurich", root=FIXTURES / "synthetic" / "dark_zurich", split="val")
    assert len(dz) == 2 and all(dz.check(i) == [] for i in range(2))
    assert dz.load(0).label.shape == (54, 96)


def test_synthetic_fixtures_are_what_their_generator_writes(tmp_path):
    """The committed synthetic files are reproducible: the generator beside them writes the same pixels."""
    synthetic = FIXTURES / "synthetic"
    subprocess.run([sys.executable, str(synthetic / "make_synthetic_fixtures.py"), str(tmp_path)], check=True)
    committed = sorted(p.relative_to(synthetic) for p in synthetic.rglob("*.png"))
    assert committed == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.png"))
    assert len(committed) == 20
    for rel in committed:
        # decoded, not byte-compared: another zlib may compress the same pixels differently. Pillow keeps palette
        # indices (GTAV) but only the high byte of 16-bit files (SYNTHIA); OpenCV reads those whole.
        want, got = Image.open(synthetic / rel), Image.open(tmp_path / rel)
        assert (want.mode, want.getpalette()) == (got.mode, got.getpalette()), rel
        assert np.array_equal(np.asarray(want), np.asarray(got)), rel
        want16 = cv2.imread(str(synthetic / rel), cv2.IMREAD_UNCHANGED)
        got16 = cv2.imread(str(tmp_path / rel), cv2.IMREAD_UNCHANGED)
        assert want16.dtype == got16.dtype and np.array_equal(want16, got16), rel
