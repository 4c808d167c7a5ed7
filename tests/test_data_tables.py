"""Label space and id -> train-id tables, pinned against docs/guides/datasets.md written out by hand."""

import numpy as np

from diffseg.core.classes import colorize
from diffseg.data import CLASS_NAMES, IGNORE, NUM_CLASSES, PALETTE, SYNTHIA13, SYNTHIA16
from diffseg.data.tables import CITYSCAPES_TABLE, MAPILLARY_TABLES, SYNTHIA_TABLE


def _pairs(text: str) -> dict[int, int]:
    return {int(a): int(b) for a, b in (p.split(":") for p in text.split())}


# Copied from docs/guides/datasets.md "Id -> train id tables".
DOC_CITYSCAPES = _pairs(
    "7:0 8:1 11:2 12:3 13:4 17:5 19:6 20:7 21:8 22:9 23:10 24:11 25:12 26:13 27:14 28:15 31:16 32:17 33:18"
)
DOC_SYNTHIA = _pairs("3:0 4:1 2:2 21:3 5:4 7:5 15:6 9:7 6:8 16:9 1:10 10:11 17:12 8:13 18:14 19:15 20:16 12:17 11:18")
DOC_MAP_A = _pairs(
    "13:0 24:0 41:0 2:1 15:1 17:2 6:3 3:4 45:5 47:5 48:6 50:7 30:8 29:9 27:10 19:11 20:12 21:12 22:12 "
    "55:13 61:14 54:15 58:16 57:17 52:18"
)
DOC_MAP_B_EXTRA = _pairs("7:0 8:0 10:0 14:0 23:0 9:1 11:1 44:5 46:7 49:7")


def _expected(mapping: dict[int, int]) -> np.ndarray:
    table = np.full(256, 255, np.uint8)
    for k, v in mapping.items():
        table[k] = v
    return table


def test_cityscapes_and_synthia_tables_match_the_doc():
    np.testing.assert_array_equal(CITYSCAPES_TABLE, _expected(DOC_CITYSCAPES))
    np.testing.assert_array_equal(SYNTHIA_TABLE, _expected(DOC_SYNTHIA))
    assert CITYSCAPES_TABLE.dtype == np.uint8 and CITYSCAPES_TABLE.shape == (256,)
    # Synthia void, parking slot, road work, lane marking are ignored
    assert [SYNTHIA_TABLE[i] for i in (0, 13, 14, 22)] == [255] * 4


def test_mapillary_conventions():
    np.testing.assert_array_equal(MAPILLARY_TABLES["A"], _expected(DOC_MAP_A))
    b = {k: v for k, v in DOC_MAP_A.items() if k != 41} | DOC_MAP_B_EXTRA
    np.testing.assert_array_equal(MAPILLARY_TABLES["B"], _expected(b))
    assert MAPILLARY_TABLES["A"][44] == 255 and MAPILLARY_TABLES["B"][44] == 5
    assert MAPILLARY_TABLES["A"][41] == 0 and MAPILLARY_TABLES["B"][41] == 255
    assert MAPILLARY_TABLES["A"][65] == MAPILLARY_TABLES["B"][65] == 255  # unlabeled


def test_every_table_reaches_the_expected_classes():
    assert sorted(set(CITYSCAPES_TABLE.tolist()) - {255}) == list(range(19))
    assert sorted(set(MAPILLARY_TABLES["A"].tolist()) - {255}) == list(range(19))


def test_class_space():
    assert NUM_CLASSES == len(CLASS_NAMES) == 19 and IGNORE == 255
    assert CLASS_NAMES[0] == "road" and CLASS_NAMES[10] == "sky" and CLASS_NAMES[18] == "bicycle"
    assert PALETTE.shape == (19, 3) and PALETTE.dtype == np.uint8
    assert PALETTE[13].tolist() == [0, 0, 142] and PALETTE[6].tolist() == [250, 170, 30]
    assert SYNTHIA16 == (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
    assert SYNTHIA13 == (0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
    pic = colorize(np.array([[0, 255]], np.uint8))
    assert pic.tolist() == [[[128, 64, 128], [0, 0, 0]]]
