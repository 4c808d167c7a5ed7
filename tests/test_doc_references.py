"""Every file a source comment, docstring or document points at is in the repository, and no text
points at a tracker users cannot see.

A reference is path-like when it names a `.md`, `.py`, `.toml` or `.json` file or starts with one of the
repository's top-level folders. It resolves when it is a tracked file or folder, when it is one relative to
the file that mentions it (Markdown links), or when it is the tail of a tracked path at a `/` (modules name
each other as `cache/loader.py` or `loader.py`). Names of files diffseg writes or reads outside the
repository (a run's `config.json`, a cache's `zarr.json`, a report's `ablation.md`) are lowercase and carry
no repository folder; they are not references to check, nor are config files (a run's `config.toml`, the
`experiment.toml` of an example). What must resolve: anything under a repository folder, every `.py` name,
pyproject.toml, and every `.md` whose stem is upper case (the repository's own documents: a document cited
by that kind of name that is not in the tree is one a user cannot open).
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_FOLDERS = ("diffseg", "tests", "docs", "benchmarks", "experiments")
SCANNED_SUFFIXES = {".py", ".md", ".toml", ".yml", ".yaml", ".sh", ".txt", ".cfg"}
# Written by a tracked script when it runs, never committed.
GENERATED = {"benchmarks/gpu-results.md", "benchmarks/gpu-results-dry.md", "benchmarks/results-quick.md"}
# Paths that are not this repository's, by the file that names them: paths inside other projects, cited
# next to the project's name (where a fixture's bytes come from), and files a test writes for itself.
EXTERNAL = {
    "tests/fixtures/SOURCES.md": {
        "tests/data/pseudo_bdd100k_dataset/",  # MMSegmentation
        "tests/data/pseudo_cityscapes_dataset/",  # MMSegmentation
        "tests/data/pseudo_mapillary_dataset/",  # MMSegmentation
        "tests/test_data/",  # mseg-api
    },
    "tests/fixtures/synthetic/make_synthetic_fixtures.py": {"labels.py"},  # cityscapesScripts
    # files a test writes into a throwaway tree (a fake repository, a spawned worker's site hook)
    "tests/test_ci_run.py": {"tracked.py", "gone.py", "new.py", "./tracked.py", "./gone.py", "./new.py"},
    "tests/test_extract_faults.py": {"sitecustomize.py"},
}

_PATH = re.compile(
    r"(?<![\w./:-])"  # not the middle of a longer token or a URL
    r"((?:\.{1,2}/)*(?:[\w.*<>{}-]+/)*[\w.-]*\w\.(?:md|py|toml|json)"
    r"|(?:" + "|".join(TOP_FOLDERS) + r")/[\w./-]*)"
    r"(?![\w/-])"
)
_TRACKER = re.compile(r"\bissues?\s+#?\d+", re.IGNORECASE)
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+")


@cache
def tracked() -> tuple[frozenset[str], frozenset[str]]:
    """(tracked files, their parent folders), as POSIX paths relative to the root."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    files = frozenset(p for p in out.decode().split("\0") if p)
    folders = {str(Path(p).parent.as_posix()) + "/" for p in files}
    folders |= {"/".join(p.split("/")[:k]) + "/" for p in files for k in range(1, p.count("/") + 1)}
    return files, frozenset(folders)


def _resolves(ref: str, source: str) -> bool:
    files, folders = tracked()
    ref = ref.split("::")[0].split("#")[0].rstrip(".")
    if ref in GENERATED:
        return True
    if any(ch in ref for ch in "*<>{}"):  # a pattern: its fixed folder must exist
        head = ref[: min(ref.index(ch) for ch in "*<>{}" if ch in ref)]
        head = head[: head.rfind("/") + 1]
        return not head or head in folders
    candidates = [ref.lstrip("/"), os.path.normpath(os.path.join(os.path.dirname(source), ref))]
    for cand in candidates:
        cand = cand.replace(os.sep, "/")
        if cand in files or cand.rstrip("/") + "/" in folders:
            return True
    tail = "/" + ref.lstrip("./")
    return any(f.endswith(tail) or f == ref for f in files) or any(d.endswith(tail.rstrip("/") + "/") for d in folders)


def _must_resolve(ref: str) -> bool:
    bare = ref.lstrip("./")
    if bare.split("/")[0] in TOP_FOLDERS and "/" in bare:
        return True
    name = bare.rsplit("/", 1)[-1]
    if name.endswith(".py") or name == "pyproject.toml":
        return True
    stem = name[: -len(".md")] if name.endswith(".md") else ""
    return bool(stem) and stem.upper() == stem and any(c.isalpha() for c in stem)


# This file: its patterns and examples name missing files on purpose.
SELF = Path(__file__).resolve().relative_to(ROOT).as_posix()


def _scanned(area: str) -> list[str]:
    files, _ = tracked()
    if area.endswith((".md", ".toml", ".yml")):
        return [area] if area in files else []
    return sorted(f for f in files if f.startswith(area + "/") and Path(f).suffix in SCANNED_SUFFIXES and f != SELF)


AREAS = ["README.md", "pyproject.toml", "mkdocs.yml", *TOP_FOLDERS]


def _problems(area: str) -> list[str]:
    problems = []
    for source in _scanned(area):
        text = (ROOT / source).read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            for hit in _TRACKER.finditer(line):
                problems.append(f"{source}:{number}: tracker reference {hit.group(0)!r}: say the reason instead")
            for hit in _PATH.finditer(_URL.sub(" ", line)):
                ref = hit.group(1)
                if ref in EXTERNAL.get(source, ()):
                    continue
                if _must_resolve(ref) and not _resolves(ref, source):
                    problems.append(f"{source}:{number}: {ref!r} is not a file in the repository")
    return problems


@pytest.mark.parametrize("area", AREAS)
def test_references_name_tracked_files(area):
    problems = _problems(area)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("line", "bad"),
    [
        ("see METHOD" + ".md §4", True),
        ("see docs/reference/cli.md", False),
        ("runs/x/config.json holds it", False),
        ("the fix for issue " + "12", True),
        ("(issue #" + "3)", True),
        ("diffseg/nope/" + "missing.py", True),
        ("`cache/loader.py`", False),
    ],
)
def test_the_check_itself(line, bad):
    """The rules above on single lines, so a change to the patterns cannot silently pass everything."""
    source = "docs/x.md"
    refs = [m.group(1) for m in _PATH.finditer(_URL.sub(" ", line))]
    flagged = any(_must_resolve(r) and not _resolves(r, source) for r in refs) or bool(_TRACKER.search(line))
    assert flagged is bad
