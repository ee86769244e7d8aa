"""The competition's submission CSV: exact format, streaming, atomicity, reading back, scoring."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.data.metrics import ConfusionMatrix
from tseg.runtime.data.submission import (
    HEADER,
    SUBMISSION_SIZE,
    SubmissionWriter,
    read_submission,
    score_submission,
)
from tseg.runtime.errors import TsegError
from tseg.runtime.files import TEMP_SUFFIX, remove_stale_temp_files
from tseg.runtime.images import resize_labels
from tseg.runtime.model.metadata import MAX_CLASSES


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def label_maps(json_path: Path) -> list[tuple[str, np.ndarray]]:
    dataset = CocoDataset(json_path)
    return [(image.file_name, dataset.label_map(i)) for i, image in enumerate(dataset.images)]


# --- format -------------------------------------------------------------------------------------------------


def test_the_file_is_exactly_the_competition_format(tmp_path):
    labels = np.zeros((512, 512), np.uint8)
    labels[:, 256:] = 3
    labels[100:300, :] = 11
    path = tmp_path / "sub.csv"
    with SubmissionWriter(path) as writer:
        writer.add("batch_01_vt/0002.jpg", labels)
        writer.add("batch_03/0511.jpg", np.full((512, 512), 7, np.uint8))
    lines = path.read_bytes().split(b"\n")
    assert lines[0] == b"image_id,PredictionString" and lines[-1] == b""  # ends with a newline, no \r
    assert len(lines) == 4
    name, values = lines[1].split(b",")
    assert name == b"batch_01_vt/0002.jpg"
    numbers = values.split(b" ")
    assert len(numbers) == 65536 and all(numbers)  # single spaces, no leading or trailing space
    grid = np.array([int(v) for v in numbers]).reshape(256, 256)  # row-major
    assert (grid[:, :128] != 3).all() and (grid[:, 128:] != 0).all()
    assert (grid[50:150] == 11).all() and (grid[:50, 128:] == 3).all() and (grid[150:, :128] == 0).all()
    assert np.array_equal(grid, labels[1::2, 1::2])  # nearest neighbour 512 -> 256: centre samples
    assert lines[2] == b"batch_03/0511.jpg," + b" ".join([b"7"] * 65536)


def test_small_grids_and_nearest_neighbour_upsampling(tmp_path):
    path = tmp_path / "s.csv"
    with SubmissionWriter(path, size=(2, 4)) as writer:
        writer.add("a.png", np.array([[0, 1], [2, 300]], np.uint16))
    assert path.read_text() == "image_id,PredictionString\na.png,0 0 1 1 2 2 300 300\n"


def test_round_trip_on_coco_label_maps_and_a_perfect_score(tiny_coco_dir, tmp_path):
    """What is written is what is read back: the JSON's label maps resized to 256 by nearest neighbour."""
    truths = label_maps(tiny_coco_dir / "train.json")
    path = tmp_path / "out" / "sub.csv"  # the folder is created
    with SubmissionWriter(path) as writer:
        for name, labels in truths:
            writer.add(name, labels)
    assert writer.rows == len(truths)
    rows = list(read_submission(path, num_classes=4))
    assert [name for name, _ in rows] == [name for name, _ in truths]  # in the JSON's order
    for (_, got), (_, labels) in zip(rows, truths, strict=True):
        assert got.shape == SUBMISSION_SIZE and got.dtype == np.uint8
        assert np.array_equal(got, resize_labels(labels, SUBMISSION_SIZE))
        assert set(np.unique(got)) == set(np.unique(labels))  # all classes survive the 256 grid here
    scores = score_submission(path, tiny_coco_dir / "train.json")
    assert scores.miou == 1.0 and scores.pixel_accuracy == 1.0


def test_names_with_commas_and_quotes_are_quoted_and_read_back(tmp_path):
    path = tmp_path / "q.csv"
    names = ['a,b.jpg', 'say "hi".png', "plain.jpg"]
    with SubmissionWriter(path, size=(1, 2)) as writer:
        for name in names:
            writer.add(name, np.array([[1, 2]], np.uint8))
    assert path.read_text().splitlines()[1:] == ['"a,b.jpg",1 2', '"say ""hi"".png",1 2', "plain.jpg,1 2"]
    assert [name for name, _ in read_submission(path, size=(1, 2))] == names


@settings(max_examples=40, deadline=None)
@given(
    labels=hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.uint16, np.int32]),
        shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
        elements=st.integers(0, MAX_CLASSES - 1),
    ),
    size=st.tuples(st.integers(1, 24), st.integers(1, 24)),
)
def test_any_label_map_round_trips_through_the_file(labels, size):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "h.csv"
        with SubmissionWriter(path, size=size) as writer:
            writer.add("x.jpg", labels)
        ((name, got),) = list(read_submission(path, size=size))
        assert leftovers(Path(folder)) == ["h.csv"]
    expected = resize_labels(labels, size)
    assert name == "x.jpg" and got.shape == size and np.array_equal(got, expected)
    assert got.dtype == np.uint8


# --- streaming and atomicity ---------------------------------------------------------------------------------


def test_rows_go_to_a_temp_file_as_they_come_and_appear_at_the_end(tmp_path):
    path = tmp_path / "sub.csv"
    writer = SubmissionWriter(path, size=(8, 8))
    expected = HEADER + "\n"
    for i in range(5):
        labels = np.full((16, 16), i, np.uint8)
        writer.add(f"{i}.jpg", labels)
        expected += f"{i}.jpg," + " ".join([str(i)] * 64) + "\n"
        assert not path.exists()
        # Every row is in the temp file already: the writer holds none of them.
        assert writer.temp_path.parent == tmp_path and writer.temp_path.read_text() == expected
    assert writer.temp_path.name.startswith(".sub.csv.") and writer.temp_path.name.endswith(TEMP_SUFFIX)
    writer.close()
    assert path.read_text() == expected and leftovers(tmp_path) == ["sub.csv"]


def test_the_reader_yields_each_row_before_reading_the_next(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(f"{HEADER}\na.jpg,1 2 3 4\nb.jpg,1 2 x 4\n")
    rows = read_submission(path, size=(2, 2))
    name, labels = next(rows)
    assert name == "a.jpg" and labels.tolist() == [[1, 2], [3, 4]]
    with pytest.raises(TsegError, match="line 3"):
        next(rows)


def test_an_exception_mid_way_leaves_no_file_and_no_temp(tmp_path):
    path = tmp_path / "sub.csv"
    path.write_text("the previous submission\n")
    with pytest.raises(RuntimeError, match="model failed"), SubmissionWriter(path) as writer:
        writer.add("a.jpg", np.zeros((4, 4), np.uint8))
        raise RuntimeError("model failed")
    assert path.read_text() == "the previous submission\n" and leftovers(tmp_path) == ["sub.csv"]
    with pytest.raises(TsegError, match="already aborted"):
        writer.add("b.jpg", np.zeros((4, 4), np.uint8))
    with pytest.raises(TsegError, match="abandoned"):
        writer.close()


def test_a_bad_row_mid_way_leaves_no_file_and_no_temp(tmp_path):
    path = tmp_path / "sub.csv"
    with pytest.raises(TsegError, match=r"\(H, W\) integer labels"), SubmissionWriter(path) as writer:
        writer.add("a.jpg", np.zeros((4, 4), np.uint8))
        writer.add("b.jpg", np.zeros((4, 4, 3), np.uint8))
    assert leftovers(tmp_path) == []


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    class FullDisk:
        closed = False

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            self.closed = True

    writer = SubmissionWriter(tmp_path / "sub.csv")
    writer._file.close()
    writer._file = FullDisk()
    with pytest.raises(TsegError, match=r"^no space left on the device to write .*sub.csv \(nothing was replaced\)$"):
        writer.add("a.jpg", np.zeros((2, 2), np.uint8))
    assert leftovers(tmp_path) == []


def test_a_killed_writers_temp_file_is_removed_by_the_next_run(tmp_path):
    code = (
        "import os, sys, numpy as np; from tseg.runtime.data.submission import SubmissionWriter;"
        "w = SubmissionWriter(sys.argv[1]); w.add('a.jpg', np.zeros((2, 2), np.uint8)); os._exit(9)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "sub.csv")], check=False)
    assert len(leftovers(tmp_path)) == 1  # what a killed run leaves
    with SubmissionWriter(tmp_path / "sub.csv") as writer:
        writer.add("a.jpg", np.zeros((2, 2), np.uint8))
    assert leftovers(tmp_path) == ["sub.csv"]


def test_a_running_writers_temp_file_survives_another_runs_cleanup(tmp_path):
    first = SubmissionWriter(tmp_path / "sub.csv")
    first.add("a.jpg", np.zeros((2, 2), np.uint8))
    assert remove_stale_temp_files(tmp_path) == []
    with SubmissionWriter(tmp_path / "sub.csv") as second:  # a second run into the same place
        second.add("b.jpg", np.zeros((2, 2), np.uint8))
    first.add("c.jpg", np.zeros((2, 2), np.uint8))
    first.close()
    assert leftovers(tmp_path) == ["sub.csv"]
    assert [name for name, _ in read_submission(tmp_path / "sub.csv")] == ["a.jpg", "c.jpg"]


def test_the_file_gets_the_permissions_open_would_give(tmp_path):
    old = os.umask(0o027)
    try:
        with SubmissionWriter(tmp_path / "sub.csv") as writer:
            writer.add("a.jpg", np.zeros((2, 2), np.uint8))
    finally:
        os.umask(old)
    assert (tmp_path / "sub.csv").stat().st_mode & 0o777 == 0o640


def test_the_writer_refuses_what_is_not_a_row(tmp_path):
    with pytest.raises(TsegError, match="is a folder"):
        SubmissionWriter(tmp_path)
    writer = SubmissionWriter(tmp_path / "sub.csv")
    writer.add("a.jpg", np.zeros((2, 2), np.uint8))
    cases = [
        ("a.jpg", np.zeros((2, 2), np.uint8), "already in the submission"),
        ("", np.zeros((2, 2), np.uint8), "non-empty string"),
        ("x\ny.jpg", np.zeros((2, 2), np.uint8), "line break"),
        ("b.jpg", np.zeros((2, 2), np.float32), "integer labels"),
        ("b.jpg", np.zeros((0, 2), np.uint8), "integer labels"),
        ("b.jpg", [[0, 1]], "integer labels"),
        ("b.jpg", np.array([[0, -1]], np.int8), "non-negative"),
    ]
    for name, labels, message in cases:
        with pytest.raises(TsegError, match=message) as caught:
            writer.add(name, labels)
        assert "\n" not in str(caught.value)
    writer.close()
    assert read_submission(tmp_path / "sub.csv", size=SUBMISSION_SIZE).__next__()[0] == "a.jpg"
    with pytest.raises(TsegError, match="already closed"):
        writer.add("c.jpg", np.zeros((2, 2), np.uint8))


# --- bad files ----------------------------------------------------------------------------------------------

GOOD = "a.jpg,0 1 2 3"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty: need the header"),
        ("image_id,Prediction\n" + GOOD, "line 1 must be 'image_id,PredictionString'"),
        (GOOD + "\n", "line 1 must be"),
        (f"{HEADER}\n{GOOD}\nb.jpg,0 1 2\n", r"line 3 \(b.jpg\): need 4 labels \(2x2, row-major\), got 3"),
        (f"{HEADER}\nb.jpg,0 1 2 3 4\n", "line 2 .*got 5"),
        (f"{HEADER}\nb.jpg,0 1 2.5 3\n", r"line 2 .*non-negative integers, found '\.'"),
        (f"{HEADER}\nb.jpg,0 -1 2 3\n", "line 2 .*found '-'"),
        (f"{HEADER}\nb.jpg,0 1 x 3\n", "line 2 .*found 'x'"),
        (f"{HEADER}\nb.jpg,0 1 2 7\n", r"line 2 \(b.jpg\): label 7 is not a class: need labels in \[0, 5\)"),
        (f"{HEADER}\nb.jpg,0 1 2 {'9' * 40}\n", "line 2 .*too large to be a class"),
        (f"{HEADER}\n{GOOD}\n\n", "line 3: need 'image_id,PredictionString'"),
        (f"{HEADER}\nb.jpg 0 1 2 3\n", "line 2: need 'image_id,PredictionString'"),
        (f"{HEADER}\n,0 1 2 3\n", "line 2: the image_id is empty"),
        (f'{HEADER}\na"b.jpg,0 1 2 3\n', "stray quote"),
        (f'{HEADER}\n"a.jpg"x,0 1 2 3\n', "cannot read the quoted image_id"),
        (f"{HEADER}\nb.jpg,{'0 ' * 5000}\n", "line 2: longer than"),
    ],
)
def test_bad_files_are_one_line_errors_naming_the_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TsegError, match=message) as caught:
        list(read_submission(path, size=(2, 2), num_classes=5))
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_files_that_are_not_text_or_not_there(tmp_path):
    (tmp_path / "bin.csv").write_bytes(HEADER.encode() + b"\n\xff\xfe\x00garbage\n")
    with pytest.raises(TsegError, match="line 2: not UTF-8 text"):
        list(read_submission(tmp_path / "bin.csv"))
    with pytest.raises(TsegError, match="submission file not found"):
        list(read_submission(tmp_path / "missing.csv"))
    with pytest.raises(TsegError, match="is a folder"):
        list(read_submission(tmp_path))


def test_windows_line_endings_and_a_bom_are_read(tmp_path):
    path = tmp_path / "w.csv"
    path.write_bytes(b"\xef\xbb\xbf" + f"{HEADER}\r\n{GOOD}\r\n".encode())
    ((name, labels),) = list(read_submission(path, size=(2, 2)))
    assert name == "a.jpg" and labels.tolist() == [[0, 1], [2, 3]]


# --- scoring ------------------------------------------------------------------------------------------------


def write_rows(path: Path, rows) -> Path:
    with SubmissionWriter(path) as writer:
        for name, labels in rows:
            writer.add(name, labels)
    return path


def test_scores_equal_a_confusion_matrix_over_the_resized_maps(tiny_coco_dir, tmp_path):
    truths = label_maps(tiny_coco_dir / "val.json")
    rng = np.random.default_rng(3)
    predictions = [(name, np.where(rng.random(t.shape) < 0.2, rng.integers(0, 4, t.shape), t)) for name, t in truths]
    predictions = [(name, p.astype(np.uint8)) for name, p in predictions]
    path = write_rows(tmp_path / "sub.csv", predictions[::-1])  # any row order
    expected = ConfusionMatrix(4)
    for (_, truth), (_, prediction) in zip(truths, predictions, strict=True):
        expected.update(resize_labels(truth, SUBMISSION_SIZE), resize_labels(prediction, SUBMISSION_SIZE))
    scores = score_submission(path, tiny_coco_dir / "val.json")
    assert scores == expected.compute() and 0 < scores.miou < 1


def test_scoring_refuses_missing_extra_and_duplicate_images(tiny_coco_dir, tmp_path):
    truths = label_maps(tiny_coco_dir / "val.json")
    val = tiny_coco_dir / "val.json"
    missing = write_rows(tmp_path / "missing.csv", truths[:-1])
    with pytest.raises(TsegError, match=rf"has no row for 1 of the 3 images of .*val.json, e.g. '{truths[-1][0]}'"):
        score_submission(missing, val)
    extra = write_rows(tmp_path / "extra.csv", [*truths, ("rgb/999.jpg", truths[0][1])])
    with pytest.raises(TsegError, match=r"extra.csv, line 5: 'rgb/999.jpg' is not an image of"):
        score_submission(extra, val)
    twice = tmp_path / "twice.csv"
    text = (write_rows(tmp_path / "one.csv", truths)).read_text()
    twice.write_text(text + text.splitlines(keepends=True)[1])
    with pytest.raises(TsegError, match=rf"line 5: '{truths[0][0]}' already has a row \(line 2\)"):
        score_submission(twice, val)
    out_of_range = write_rows(tmp_path / "range.csv", [(n, np.full_like(t, 4)) for n, t in truths])
    with pytest.raises(TsegError, match=r"line 2 .*label 4 is not a class: need labels in \[0, 4\)"):
        score_submission(out_of_range, val)


def test_scoring_against_a_json_without_annotations_is_refused(tiny_coco_dir, tmp_path):
    data = json.loads((tiny_coco_dir / "val.json").read_text())
    data["annotations"] = []
    test_json = tmp_path / "test.json"
    test_json.write_text(json.dumps(data))
    sub = write_rows(tmp_path / "sub.csv", label_maps(tiny_coco_dir / "val.json"))
    with pytest.raises(TsegError, match="test.json has no annotations"):
        score_submission(sub, test_json, data_root=tiny_coco_dir)


def test_scoring_finds_images_under_data_root(tiny_coco_dir, tmp_path):
    shutil.copy(tiny_coco_dir / "val.json", tmp_path / "val.json")
    sub = write_rows(tmp_path / "sub.csv", label_maps(tiny_coco_dir / "val.json"))
    assert score_submission(sub, tmp_path / "val.json", data_root=tiny_coco_dir).miou == 1.0


def test_rows_equal_the_label_pngs_resized_to_256(tmp_path):
    """The same labels written as a PNG and as a row: the row is the PNG resized to 256 by nearest neighbour."""
    from tseg.runtime.data.label_png import read_label_png, save_label_png
    from tseg.runtime.model.metadata import default_palette

    labels = np.random.default_rng(5).integers(0, 12, (300, 410)).astype(np.uint8)
    save_label_png(tmp_path / "a.png", labels, palette=default_palette(12))
    path = write_rows(tmp_path / "sub.csv", [("a.jpg", labels)])
    ((_, row),) = list(read_submission(path, num_classes=12))
    assert np.array_equal(row, resize_labels(read_label_png(tmp_path / "a.png"), SUBMISSION_SIZE))
