"""Outputs are kept apart from inputs by identity: spellings, links, hard links, special files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tseg.runtime.errors import TsegError
from tseg.runtime.paths import Input, Inputs, Output, check_outputs, resolve


@pytest.fixture
def tree(tmp_path):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    (photos / "a.jpg").write_bytes(b"jpeg")
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    return tmp_path


def _inputs(tree: Path) -> list[Input]:
    return [Input("PATHS", tree / "photos", folder=True), Input("--model", tree / "model.onnx")]


@pytest.mark.parametrize("spelling", ["photos", "photos/sub", "photos/../photos", "./photos/sub/new"])
def test_a_folder_output_in_an_input_folder_is_refused_under_any_spelling(tree, spelling):
    with pytest.raises(TsegError, match="lies in the input folder .*photos"):
        check_outputs([Output("--out", tree / spelling, folder=True)], _inputs(tree))


def test_links_to_an_input_folder_are_refused(tree):
    (tree / "link").symlink_to(tree / "photos", target_is_directory=True)
    with pytest.raises(TsegError, match="lies in the input folder"):
        check_outputs([Output("--overlay", tree / "link", folder=True)], _inputs(tree))


def test_a_file_output_that_is_an_input_is_refused_also_as_a_hard_link(tree):
    with pytest.raises(TsegError, match="is the input .*model.onnx \\(--model\\)"):
        check_outputs([Output("--submission", tree / "x" / ".." / "model.onnx")], _inputs(tree))
    os.link(tree / "model.onnx", tree / "hard.csv")
    with pytest.raises(TsegError, match="is the input"):
        check_outputs([Output("--submission", tree / "hard.csv")], _inputs(tree))


def test_a_file_output_in_an_input_folder_is_refused(tree):
    with pytest.raises(TsegError, match="lies in the input folder"):
        check_outputs([Output("--json", tree / "photos" / "sub" / "bench.json")], _inputs(tree))


def test_special_files_and_links_at_an_output_place_are_refused(tree):
    os.mkfifo(tree / "fifo.csv")
    (tree / "link.csv").symlink_to(tree / "elsewhere.csv")
    (tree / "dir.csv").mkdir()
    cases = {"fifo.csv": "is a FIFO", "link.csv": "is a symbolic link", "dir.csv": "is a folder"}
    for name, message in cases.items():
        with pytest.raises(TsegError, match=message):
            check_outputs([Output("--submission", tree / name)], [])
    with pytest.raises(TsegError, match="is a file: need a folder"):
        check_outputs([Output("--out", tree / "model.onnx", folder=True)], [])
    with pytest.raises(TsegError, match="model.onnx is a file, so the folder cannot be made"):
        check_outputs([Output("--out", tree / "model.onnx" / "labels", folder=True)], [])


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_device_at_an_output_place_is_refused(tree):
    os.mknod(tree / "null.md", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    with pytest.raises(TsegError, match="is a device"):
        check_outputs([Output("--markdown", tree / "null.md")], [])


def test_a_symlink_loop_is_one_line(tree):
    (tree / "loop").symlink_to(tree / "loop")
    for output in (Output("--out", tree / "loop" / "x", folder=True), Output("-o", tree / "loop" / "m.onnx")):
        with pytest.raises(TsegError, match="symbolic-link loop"):
            check_outputs([output], [])
    with pytest.raises(TsegError, match="symbolic-link loop"):
        resolve(tree / "loop", what="--json")


def test_outputs_must_be_apart_from_each_other(tree):
    with pytest.raises(TsegError, match="are the same place"):
        check_outputs([Output("--json", tree / "r.txt"), Output("--markdown", tree / "./r.txt")], [])
    with pytest.raises(TsegError, match="a file cannot go inside the folder of results"):
        check_outputs([Output("--out", tree / "out", folder=True), Output("--submission", tree / "out" / "s.csv")], [])


def test_good_outputs_pass(tree):
    (tree / "out").mkdir()
    (tree / "old.csv").write_text("earlier result")
    outputs = [Output("--out", tree / "out", folder=True), Output("--submission", tree / "old.csv"),
               Output("--overlay", tree / "new" / "pictures", folder=True)]  # fmt: skip
    check_outputs(outputs, _inputs(tree))
    check_outputs([Output("--out", tree, folder=True)], _inputs(tree))  # above the inputs: replaces nothing


def test_inputs_that_do_not_exist_are_left_to_their_own_checks(tree):
    known = Inputs([Input("--model", tree / "missing.onnx"), *_inputs(tree)])
    assert known.same_file(tree / "missing.onnx") is None
    assert known.same_file(tree / "model.onnx").option == "--model"


def test_a_file_output_that_is_a_hard_link_of_a_file_inside_an_input_folder_is_refused(tree):
    os.link(tree / "photos" / "a.jpg", tree / "report.json")
    with pytest.raises(TsegError, match=r"is the input .*photos/a.jpg \(a file in PATHS"):
        check_outputs([Output("--json", tree / "report.json")], _inputs(tree))
