"""Options that some adapters read (the rest ignore them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class DatasetOptions:
    split_file: Path | None = None  # ids restricting the split (GTAV/Synthia val needs one)
    mapillary_map: str = "A"  # Mapillary 66 -> 19 convention: "A" (RobustNet/HRDA) or "B" (Rein)
    conditions: tuple[str, ...] | None = None  # ACDC conditions to keep (per-condition layout)
