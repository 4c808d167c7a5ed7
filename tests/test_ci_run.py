""".ci/run starts from nothing (it deletes .venv) but, outside CI, only in a fresh copy of the tree: run on
a small git repository with a stand-in `python3` that records where it ran and stops the script there."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FAKE_PYTHON3 = """#!/usr/bin/env bash
# where the README command's first step ran, and what that tree held; then fail, ending the script
{ pwd; find . -path ./.git -prune -o -type f -print | sort; git ls-files | sed 's/^/tracked: /'; } > "$FAKE_LOG"
exit 3
"""


@pytest.fixture
def repo(tmp_path):
    if shutil.which("git") is None or shutil.which("tar") is None:
        pytest.skip("needs git and tar")
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", repo / ".ci" / "run")
    (repo / ".gitignore").write_text(".venv/\n/runs/\n")
    (repo / "tracked.py").write_text("x = 1\n")
    (repo / "gone.py").write_text("y = 1\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    (repo / "gone.py").unlink()  # deleted, not committed: still tracked
    (repo / "tracked.py").write_text("x = 2\n")  # an uncommitted edit
    (repo / "new.py").write_text("z = 1\n")  # untracked, not ignored
    (repo / ".venv").mkdir()
    (repo / ".venv" / "keep").write_text("the developer's environment\n")
    (repo / "runs").mkdir()
    (repo / "runs" / "big.bin").write_text("ignored output\n")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text(FAKE_PYTHON3)
    (fake / "python3").chmod(0o755)
    return repo


def run_ci(repo: Path, ci: bool) -> tuple[subprocess.CompletedProcess, list[str]]:
    log = repo.parent / "fake.log"
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "DIFFSEG_CI_COPY", "CI_KEEP")}
    env.update(PATH=f"{repo.parent / 'bin'}{os.pathsep}{env['PATH']}", FAKE_LOG=str(log), TMPDIR=str(repo.parent))
    if ci:
        env["CI"] = "true"
    proc = subprocess.run(["bash", str(repo / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60)
    return proc, log.read_text().splitlines()


def test_outside_ci_it_runs_in_a_removed_copy_and_leaves_the_tree_alone(repo):
    proc, seen = run_ci(repo, ci=False)
    assert proc.returncode == 3, proc.stderr  # the stand-in's failure is the script's
    where, files = Path(seen[0]), seen[1:]
    assert where != repo and where.parent == repo.parent and not where.exists()  # a temporary copy, removed
    assert (repo / ".venv" / "keep").read_text() == "the developer's environment\n"
    assert "./tracked.py" in files and "./new.py" in files and "./.ci/run" in files
    assert "./gone.py" not in files and not any(f.startswith(("./.venv/", "./runs/")) for f in files)
    assert (where.parent / "repo" / "tracked.py").read_text() == "x = 2\n"
    # the copy is a repository of its own tracking exactly what was copied (tests ask git for tracked files)
    copied = {f[2:] for f in files if f.startswith("./")} - {".ci-pytest.log"}  # the log: written by the run
    assert {f[len("tracked: ") :] for f in files if f.startswith("tracked: ")} == copied


def test_the_copy_has_the_uncommitted_edits(repo, tmp_path):
    (repo / "tracked.py").write_text("x = 3\n")
    fake = tmp_path / "bin" / "python3"
    fake.write_text(FAKE_PYTHON3.replace("exit 3", 'cp tracked.py "$FAKE_LOG.tracked"; exit 3'))
    proc, _ = run_ci(repo, ci=False)
    assert proc.returncode == 3 and Path(f"{tmp_path / 'fake.log'}.tracked").read_text() == "x = 3\n"


def test_under_ci_it_runs_in_the_checkout_itself(repo):
    proc, seen = run_ci(repo, ci=True)
    assert proc.returncode == 3, proc.stderr
    assert Path(seen[0]) == repo and not (repo / ".venv").exists()  # a fresh clone: its .venv is rebuilt
