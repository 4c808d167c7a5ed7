"""256-entry id -> train-id lookup tables (docs/guides/datasets.md "Id -> train id tables").

Every table defaults to 255: an id without a train id is ignore, never an error
(GTAV labels hold such ids). Apply with `table[ids_HW]`.
"""

from __future__ import annotations

import numpy as np


def make_table(mapping: dict[int, int]) -> np.ndarray:
    """{id: train id} -> read-only uint8[256] table, 255 elsewhere."""
    table = np.full(256, 255, np.uint8)
    for src, dst in mapping.items():
        table[src] = dst
    table.setflags(write=False)
    return table


# Cityscapes label ids: GTAV labels, Cityscapes / ACDC / Dark Zurich `labelIds`.
CITYSCAPES_IDS = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}
# SYNTHIA RAND_CITYSCAPES class ids (not the SYNTHIA-SEQS table).
SYNTHIA_IDS = {
    3: 0,
    4: 1,
    2: 2,
    21: 3,
    5: 4,
    7: 5,
    15: 6,
    9: 7,
    6: 8,
    16: 9,
    1: 10,
    10: 11,
    17: 12,
    8: 13,
    18: 14,
    19: 15,
    20: 16,
    12: 17,
    11: 18,
}
# Mapillary Vistas v1.2 (66 ids), convention A (RobustNet, HRDA).
MAPILLARY_A = {
    13: 0,
    24: 0,
    41: 0,
    2: 1,
    15: 1,
    17: 2,
    6: 3,
    3: 4,
    45: 5,
    47: 5,
    48: 6,
    50: 7,
    30: 8,
    29: 9,
    27: 10,
    19: 11,
    20: 12,
    21: 12,
    22: 12,
    55: 13,
    61: 14,
    54: 15,
    58: 16,
    57: 17,
    52: 18,
}
# Convention B (Rein / openseg): A plus more ids, and 41 (manhole) ignored.
MAPILLARY_B = {
    **{k: v for k, v in MAPILLARY_A.items() if k != 41},
    7: 0,
    8: 0,
    10: 0,
    14: 0,
    23: 0,
    9: 1,
    11: 1,
    44: 5,
    46: 7,
    49: 7,
}

CITYSCAPES_TABLE = make_table(CITYSCAPES_IDS)
SYNTHIA_TABLE = make_table(SYNTHIA_IDS)
MAPILLARY_TABLES = {"A": make_table(MAPILLARY_A), "B": make_table(MAPILLARY_B)}
