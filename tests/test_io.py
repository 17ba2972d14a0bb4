"""Atomic writes: a crash leaves the old file or the new one; the mode follows the umask."""

from __future__ import annotations

import os
import stat

import pytest

from emlens.io import (
    atomic_write_bytes,
    atomic_write_text,
    atomic_write_with,
    read_jsonl,
    write_jsonl,
)


@pytest.fixture
def umask():
    """``umask(mask)`` sets the process umask; the one before the test is restored after."""
    before = os.umask(0o022)
    os.umask(before)
    yield os.umask
    os.umask(before)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_written_files_get_the_umask_mode(tmp_path, umask, mask):
    """What a plain open(path, "w") of a new file gives (the reference), for every writer."""
    umask(mask)
    reference = tmp_path / "plain.txt"
    with open(reference, "w") as f:
        f.write("x")
    assert _mode(reference) == 0o666 & ~mask
    written = [atomic_write_text(tmp_path / "a.txt", "hello"),
               atomic_write_bytes(tmp_path / "b.bin", b"\0\1"),
               write_jsonl(tmp_path / "c.jsonl", [{"a": 1}]),
               atomic_write_with(tmp_path / "d.dat", lambda p: p.write_bytes(b"d"))]
    for path in written:
        assert _mode(path) == _mode(reference), (path.name, oct(_mode(path)))
    # rewriting a file that an earlier emlens left at 0o600 gives it the normal mode too
    os.chmod(written[0], 0o600)
    atomic_write_text(written[0], "again")
    assert _mode(written[0]) == _mode(reference)
    assert read_jsonl(written[2]) == [{"a": 1}]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "keep.txt", "old")

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        atomic_write_with(path, boom)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_an_exclusive_write_creates_but_never_replaces(tmp_path, umask):
    umask(0o022)
    path = atomic_write_text(tmp_path / "config.json", "first", exclusive=True)
    assert path.read_text() == "first" and _mode(path) == 0o644
    with pytest.raises(FileExistsError):
        atomic_write_text(path, "second", exclusive=True)
    assert path.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]  # no temporary left
