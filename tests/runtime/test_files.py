import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tseg.runtime.errors import TsegError
from tseg.runtime.files import (
    TEMP_SUFFIX,
    TempFile,
    atomic_write,
    atomic_write_bytes,
    remove_stale_temp_files,
    safe_relative_path,
    temp_name_prefix,
)


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_get_the_umask_permissions_not_0600(tmp_path, umask_027):
    target = tmp_path / "sub" / "a.bin"
    atomic_write_bytes(target, b"abc")
    assert target.read_bytes() == b"abc"
    assert _mode(target) == 0o640
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert _mode(target) == _mode(plain)


def test_replacing_keeps_no_temp_file(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "last.pt"
    atomic_write_bytes(target, b"epoch 1")

    def crash(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, crash)
    assert target.read_bytes() == b"epoch 1"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_full_disk_is_one_line_and_the_old_file_survives(tmp_path):
    target = tmp_path / "last.pt"
    atomic_write_bytes(target, b"epoch 1")

    def full(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    with pytest.raises(TsegError, match="no space left") as info:
        atomic_write(target, full)
    assert "\n" not in str(info.value) and str(target) in str(info.value)
    assert target.read_bytes() == b"epoch 1"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_stale_temp_files_are_removed_and_nothing_else(tmp_path):
    stale = tmp_path / f".last.pt.abc123{TEMP_SUFFIX}"
    stale.write_bytes(b"torn")
    keep = [tmp_path / "last.pt", tmp_path / ".hidden", tmp_path / "x.tmp"]
    for path in keep:
        path.write_bytes(b"keep")
    assert remove_stale_temp_files(tmp_path) == [stale]
    assert not stale.exists() and all(p.exists() for p in keep)
    assert remove_stale_temp_files(tmp_path / "missing") == []


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x.jpg", "a/../../x.jpg", "", ".", "a\x00b.jpg"])
def test_relative_paths_that_escape_are_refused(bad):
    with pytest.raises(TsegError, match="relative path inside"):
        safe_relative_path(bad, what="val.json, image 3")


def test_relative_paths_inside_pass():
    assert safe_relative_path("images/a.jpg", what="x") == Path("images/a.jpg")
    assert safe_relative_path("a..b.jpg", what="x") == Path("a..b.jpg")




def test_temp_names_fit_wherever_the_final_name_fits(tmp_path):
    for name in ("a" * 250 + ".png", "é" * 120 + ".png", "short.csv"):
        target = tmp_path / name
        atomic_write_bytes(target, b"x")
        assert target.read_bytes() == b"x"
        temp = TempFile(target)
        assert len(temp.temp.name.encode()) <= 255 and temp.temp.name.startswith(temp_name_prefix(target))
        temp.discard()
    assert len(list(tmp_path.iterdir())) == 3


_HOLD = """
import sys, time
from tseg.runtime.files import TempFile
temp = TempFile(sys.argv[1])
print(temp.temp, flush=True)
time.sleep(60)
"""


def test_a_live_writers_temp_file_survives_cleanup_and_a_dead_ones_does_not(tmp_path):
    target = tmp_path / "sub.csv"
    writer = subprocess.Popen([sys.executable, "-c", _HOLD, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        temp = Path(writer.stdout.readline().strip())
        assert temp.is_file()
        assert remove_stale_temp_files(tmp_path) == []
        atomic_write_bytes(target, b"second run")  # cleans the target's stale temps first
        assert temp.is_file()
    finally:
        writer.kill()
        writer.wait()
    assert remove_stale_temp_files(tmp_path) == [temp] and not temp.exists()
    assert target.read_bytes() == b"second run"


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_writing_many_files_lists_their_folder_once_and_keeps_unowned_temps_of_other_targets(tmp_path, monkeypatch):
    import tseg.runtime.files as files

    dead = tmp_path / f".a.png.p{_dead_pid()}.x1{TEMP_SUFFIX}"  # a killed run's, any target: goes
    old_same = tmp_path / f".b.png.q2{TEMP_SUFFIX}"  # no pid (older tseg), the target written: goes
    old_other = tmp_path / f".c.png.q3{TEMP_SUFFIX}"  # no pid, another target: may be live, kept
    for path in (dead, old_same, old_other):
        path.write_bytes(b"torn")
    listings = []
    real = files._temp_files
    monkeypatch.setattr(files, "_temp_files", lambda *a: listings.append(a) or real(*a))
    for index in range(20):
        atomic_write_bytes(tmp_path / f"{index}.png", b"x")
    atomic_write_bytes(tmp_path / "b.png", b"x")
    assert len(listings) == 1
    assert not dead.exists() and not old_same.exists() and old_other.is_file()
