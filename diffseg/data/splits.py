"""Split names and split files (a text file of sample ids restricting a split)."""

from __future__ import annotations

from pathlib import Path

from diffseg.core.errors import DiffsegError

SPLITS = ("train", "val")
_EXTS = (".png", ".jpg", ".jpeg")


def check_split(name: str, split: str, allowed: tuple[str, ...] = SPLITS) -> str:
    if split not in allowed:
        raise DiffsegError(f"unknown split {split!r} for {name}: use {' or '.join(allowed)}")
    return split


def read_split_file(path: Path | str) -> list[str]:
    """Ids, one per line; blank lines and `#` comments ignored, a trailing image extension dropped."""
    path = Path(path)
    if not path.is_file():
        raise DiffsegError(f"split file {path} not found")
    ids = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        for ext in _EXTS:
            if line.lower().endswith(ext):
                line = line[: -len(ext)]
        ids.append(line)
    return ids


def restrict(items: list, key, split_file: Path | str | None, name: str, split: str) -> list:
    """Keep the items whose id (`key(item)`) the split file lists; an unknown id is an error."""
    if split_file is None:
        return items
    by_id = {key(item): item for item in items}
    wanted = read_split_file(split_file)
    for sample_id in wanted:
        if sample_id not in by_id:
            raise DiffsegError(f"split file {split_file}: id {sample_id!r} is not a sample of {name} {split}")
    return [by_id[i] for i in sorted(set(wanted))]
