"""Inputs are opened only when they are regular files, small ones read with a bound, models checked first."""

from __future__ import annotations

import os
import threading

import pytest

from tseg.runtime.errors import TsegError
from tseg.runtime.inputs import MAX_MODEL_BYTES, check_model_file, open_input, read_input


def _finishes(function, *args, seconds: float = 5.0, **kwargs):
    """Runs ``function`` in a thread and returns (raised error, finished in time)."""
    outcome = {}

    def run():
        try:
            function(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 (the test inspects it)
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return outcome.get("error"), not thread.is_alive()


def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "crf.json")
    error, finished = _finishes(read_input, tmp_path / "crf.json", what="crf.json")
    assert finished and isinstance(error, TsegError) and "is a FIFO, not a file" in str(error)


def test_a_link_to_a_device_is_refused_and_never_read(tmp_path):
    (tmp_path / "crf.json").symlink_to("/dev/zero")
    with pytest.raises(TsegError, match="is a link to a device"):
        read_input(tmp_path / "crf.json", what="crf.json")


def test_small_files_are_read_with_a_bound(tmp_path):
    (tmp_path / "big.json").write_bytes(b" " * 2000)
    assert read_input(tmp_path / "big.json", what="x", limit=2000) == b" " * 2000
    with pytest.raises(TsegError, match="larger than 1,999 bytes"):
        read_input(tmp_path / "big.json", what="x", limit=1999)


def test_missing_folders_and_loops_are_one_line(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    cases = ((tmp_path / "nope", "not found"), (tmp_path, "is a folder"), (tmp_path / "loop", "loop|Too many levels"))
    for path, message in cases:
        with pytest.raises(TsegError, match=message):
            open_input(path, what="--model")


def test_a_sparse_huge_model_is_refused_from_its_size(tmp_path):
    path = tmp_path / "huge.onnx"
    with open(path, "wb") as handle:
        handle.truncate(MAX_MODEL_BYTES + 1)  # no blocks on disk: reading it would take 2 GiB of memory
    with pytest.raises(TsegError, match="2.0 GiB: an ONNX file holds at most 2 GiB"):
        check_model_file(path)


def test_a_model_is_checked_by_its_first_bytes(tmp_path, colour_onnx):
    assert check_model_file(colour_onnx) == colour_onnx.stat().st_size
    for name, data in (("zeros.onnx", bytes(1 << 20)), ("text.onnx", b"hello world"), ("empty.onnx", b"")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(TsegError, match="not an ONNX model|is empty"):
            check_model_file(tmp_path / name)
