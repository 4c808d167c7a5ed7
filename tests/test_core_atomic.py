"""Atomic replacement: readers never see a partial file, failures leave no temporary file."""

import pytest

from diffseg.core.atomic import PARTIAL_SUFFIX, atomic_target, atomic_write


def test_writes_bytes_text_and_parts(tmp_path):
    atomic_write(tmp_path / "a" / "b.bin", b"xy")
    atomic_write(tmp_path / "t.txt", "héllo")
    atomic_write(tmp_path / "p.bin", [b"ab", memoryview(b"cd")])
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"xy"
    assert (tmp_path / "t.txt").read_text() == "héllo"
    assert (tmp_path / "p.bin").read_bytes() == b"abcd"


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "f.json"
    target.write_text("old")

    def parts():
        yield b"new, half written"
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, parts())
    assert target.read_text() == "old"
    assert not list(tmp_path.glob(f"*{PARTIAL_SUFFIX}"))


def test_target_path_is_unique_per_call(tmp_path):
    with atomic_target(tmp_path / "x", fsync=True) as a, atomic_target(tmp_path / "x") as b:
        assert a != b
        a.write_text("1")
        b.write_text("2")
    assert (tmp_path / "x").read_text() == "1"  # the outer context exits last


def test_exclusive_creates_or_refuses_and_keeps_the_umask_mode(tmp_path):
    import os
    import stat

    from diffseg.core.atomic import UMASK

    atomic_write(tmp_path / "c.json", "first", exclusive=True)
    with pytest.raises(FileExistsError):
        atomic_write(tmp_path / "c.json", "second", exclusive=True)
    assert (tmp_path / "c.json").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]  # no temporary left
    with atomic_target(tmp_path / "w.bin") as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)  # as safetensors creates its file
        os.close(fd)
    assert stat.S_IMODE((tmp_path / "w.bin").stat().st_mode) == 0o666 & ~UMASK
