"""The competition's submission CSV: write it row by row, read it back, score it.

The format (see the competition notes): a header ``image_id,PredictionString``, then one
row per test image in the JSON's order; ``image_id`` is the image's ``file_name`` and
``PredictionString`` its label map resized to 256x256 by nearest neighbour
(:func:`tseg.runtime.images.resize_labels`), flattened row-major, as 65,536
space-separated integers. A file name with a comma or a quote is quoted as CSV does.

:class:`SubmissionWriter` streams: each row goes to a temp file in the destination
folder as soon as it is added (no row is kept in memory), and ``os.replace`` puts the
file in place on success, so a failed or interrupted run leaves no half-written
submission (through :class:`tseg.runtime.files.TempFile`, which also removes what a killed
run left). :func:`read_submission` streams rows back,
checking each; :func:`score_submission` scores them against a COCO JSON's label maps.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.data.metrics import ConfusionMatrix, SegmentationScores
from tseg.runtime.errors import TsegError
from tseg.runtime.files import TempFile, no_space_error
from tseg.runtime.images import resize_labels
from tseg.runtime.inputs import open_input
from tseg.runtime.model.metadata import MAX_CLASSES
from tseg.runtime.paths import parameter_named

SUBMISSION_SIZE = (256, 256)
HEADER = "image_id,PredictionString"
_NAME_LIMIT = 4096  # characters of an image_id (quoted); paths are shorter than this
_DIGITS_AND_SPACES = re.compile(r"[0-9 ]*")
_SMALL_INTS = tuple(str(i) for i in range(256))


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise TsegError(f"submission size must be (height, width), got {size!r}") from None
    if height < 1 or width < 1:
        raise TsegError(f"submission size must be positive, got {height}x{width}")
    return height, width


def _quote_name(file_name: object) -> str:
    """The ``image_id`` field: the file name, CSV-quoted when it holds a comma or a quote."""
    if not isinstance(file_name, str) or not file_name:
        raise TsegError(f"a submission row needs the image's file_name (a non-empty string), got {file_name!r}")
    if "\n" in file_name or "\r" in file_name or "\x00" in file_name:
        raise TsegError(f"file_name {file_name!r} has a line break or NUL: it cannot be a CSV image_id")
    if len(file_name) > _NAME_LIMIT // 2:
        raise TsegError(f"file_name is {len(file_name)} characters long: at most {_NAME_LIMIT // 2} fit an image_id")
    text = io.StringIO()
    csv.writer(text, lineterminator="").writerow([file_name])
    return text.getvalue()


def format_labels(labels: np.ndarray, size: Sequence[int] = SUBMISSION_SIZE) -> str:
    """A PredictionString: labels resized by nearest neighbour, row-major, space-separated.

    Args:
        labels: (H, W) non-negative integer labels at the image's size.
        size: (height, width) of the submission grid.

    Raises:
        TsegError: not a non-empty 2-D array of non-negative integers.
    """
    height, width = _check_size(size)
    if not isinstance(labels, np.ndarray) or labels.ndim != 2 or labels.size == 0 or labels.dtype.kind not in "iu":
        raise TsegError(
            "a submission row needs (H, W) integer labels, got"
            f" {getattr(labels, 'shape', type(labels).__name__)} {getattr(labels, 'dtype', '')}".rstrip()
        )
    small = resize_labels(labels, (height, width))
    if small.dtype.kind == "i" and small.min() < 0:
        raise TsegError(f"labels must be non-negative class indices, got {small.min()}")
    values = small.ravel().tolist()
    if small.max() < len(_SMALL_INTS):  # the usual case: a table lookup is ~4x faster than str()
        return " ".join(map(_SMALL_INTS.__getitem__, values))
    return " ".join(map(str, values))


class SubmissionWriter:
    """Writes a submission CSV one row at a time, atomically.

    Use as a context manager: the file appears at ``path`` when the block ends without
    an exception; on an exception the temp file is removed and nothing is replaced.
    Without ``with``, call :meth:`close` (success) or :meth:`abort`.

    Args:
        path: the CSV to write; its folder is created.
        size: the (height, width) every label map is resized to (the competition's 256x256).
        what: the parameter that named ``path``, for errors (a caller's own, such as "submission").

    Raises:
        TsegError: ``path`` is a folder, or the disk is full.
    """

    def __init__(self, path: str | Path, *, size: Sequence[int] = SUBMISSION_SIZE, what: str = "path") -> None:
        self.path = Path(path)
        self.size = _check_size(size)
        if self.path.is_dir():
            raise TsegError(
                f"{what} {self.path} is a folder: need a file name such as submission.csv",
                parameter=parameter_named(what),
            )
        self._temp = TempFile(self.path)
        self.temp_path = self._temp.temp
        self._file = open(self.temp_path, "w", encoding="utf-8", newline="\n")  # noqa: SIM115 (closed by close/abort)
        self._names: set[str] = set()
        self._state = "open"  # then "closed" (file in place) or "aborted" (temp removed)
        self.rows = 0
        self._write(HEADER + "\n")

    def _write(self, text: str) -> None:
        try:
            self._file.write(text)
            self._file.flush()  # the row is on its way to disk, not held here
        except BaseException as err:
            self.abort()
            raise no_space_error(err, self.path) or err from None

    def add(self, file_name: str, labels: np.ndarray) -> None:
        """Appends one image's row.

        Args:
            file_name: the image's ``file_name`` in the COCO JSON (the row's ``image_id``).
            labels: (H, W) integer labels at the image's own size.

        Raises:
            TsegError: the writer is closed, the name was already added, the labels are
                not a label map, or the disk is full (the temp file is then removed).
        """
        if self._state != "open":
            raise TsegError(f"the submission {self.path} is already {self._state}: cannot add {file_name!r}")
        field = _quote_name(file_name)
        if file_name in self._names:
            raise TsegError(f"{file_name!r} is already in the submission {self.path}: one row per image")
        row = f"{field},{format_labels(labels, self.size)}\n"
        self._write(row)
        self._names.add(file_name)
        self.rows += 1

    def close(self) -> Path:
        """Puts the complete file in place (permissions as ``open(path, 'w')`` would give). Returns the path."""
        if self._state == "closed":
            return self.path
        if self._state == "aborted":
            raise TsegError(f"the submission {self.path} was abandoned after an error: nothing to close")
        try:
            self._file.close()
            self._temp.commit()
            self._state = "closed"
        except BaseException as err:
            self.abort()
            raise no_space_error(err, self.path) or err from None
        return self.path

    def abort(self) -> None:
        """Drops what was written: closes and removes the temp file; ``path`` is untouched."""
        if self._state == "closed":
            return
        self._state = "aborted"
        try:
            if not self._file.closed:
                self._file.close()
        except OSError:
            pass
        finally:
            self._temp.discard()

    def __enter__(self) -> SubmissionWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _parse_name(head: str, where: str) -> str:
    if not head:
        raise TsegError(f"{where}: the image_id is empty")
    if head[0] != '"':
        if '"' in head:
            raise TsegError(f"{where}: image_id {head[:80]!r} has a stray quote")
        return head
    try:
        fields = next(csv.reader([head], strict=True), [])
    except csv.Error:
        fields = []
    if len(fields) != 1 or not fields[0] or _quote_name(fields[0]) != head:  # quoted exactly as CSV quotes
        raise TsegError(f"{where}: cannot read the quoted image_id {head[:80]!r}")
    return fields[0]


def parse_row(line: str, *, where: str, size: Sequence[int] = SUBMISSION_SIZE, limit: int = MAX_CLASSES):
    """One CSV row -> (file_name, (height, width) labels).

    Labels come back as uint8 when every value is below 256, else uint16.

    Raises:
        TsegError: naming ``where`` (file and line) and what is wrong.
    """
    height, width = _check_size(size)
    head, comma, values = line.rpartition(",")
    if not comma:
        raise TsegError(f"{where}: need 'image_id,PredictionString', got {line[:80]!r}")
    name = _parse_name(head, where)
    where = f"{where} ({name})"
    if not _DIGITS_AND_SPACES.fullmatch(values):
        bad = re.search(r"[^0-9 ]", values).group(0)
        raise TsegError(f"{where}: the PredictionString must be space-separated non-negative integers, found {bad!r}")
    tokens = values.split()
    if tokens and max(map(len, tokens)) > len(str(limit)):  # before int(): Python refuses 4,300+ digits
        raise TsegError(f"{where}: a label is too large to be a class: need labels in [0, {limit})")
    if len(tokens) != height * width:
        raise TsegError(
            f"{where}: need {height * width} labels ({height}x{width}, row-major), got {len(tokens)}"
        )
    try:
        flat = np.fromiter(map(int, tokens), dtype=np.int64, count=len(tokens))
    except OverflowError:
        raise TsegError(f"{where}: a label is too large to be a class: need labels in [0, {limit})") from None
    top = int(flat.max())
    if top >= limit:
        raise TsegError(f"{where}: label {top} is not a class: need labels in [0, {limit})")
    dtype = np.uint8 if top < 256 else np.uint16
    return name, flat.astype(dtype).reshape(height, width)


def read_submission(
    path: str | Path, *, size: Sequence[int] = SUBMISSION_SIZE, num_classes: int | None = None
) -> Iterator[tuple[str, np.ndarray]]:
    """Reads a submission back, one row at a time (the file is never held whole).

    Args:
        path: the CSV.
        size: the (height, width) of each PredictionString.
        num_classes: labels must lie in [0, num_classes); default: any label tseg can make (< MAX_CLASSES).

    Yields:
        (file_name, (height, width) labels), uint8 (uint16 when a row has a label >= 256).

    Raises:
        TsegError: the file is missing or not a submission; the line is named.
    """
    path = Path(path)
    height, width = _check_size(size)
    limit = MAX_CLASSES if num_classes is None else int(num_classes)
    line_limit = _NAME_LIMIT + 1 + height * width * 7  # 5 digits and a space per label, with room
    file = open_input(path, what="submission")  # closed in the finally below; lines decoded one by one
    try:
        number = 0
        while True:
            number += 1
            raw = file.readline(line_limit)
            if not raw:
                break
            if len(raw) >= line_limit and not raw.endswith(b"\n"):
                raise TsegError(f"{path}, line {number}: longer than {line_limit} bytes: not a submission row")
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise TsegError(f"{path}, line {number}: not UTF-8 text: need a submission CSV") from None
            if number == 1:
                if line != HEADER:
                    raise TsegError(f"{path} is not a submission: line 1 must be {HEADER!r}, got {line[:80]!r}")
                continue
            yield parse_row(line, where=f"{path}, line {number}", size=(height, width), limit=limit)
        if number == 1:
            raise TsegError(f"{path} is empty: need the header {HEADER!r} and one row per image")
    finally:
        file.close()


def score_submission(
    path: str | Path,
    coco_json: str | Path,
    *,
    data_root: str | Path | None = None,
    size: Sequence[int] = SUBMISSION_SIZE,
) -> SegmentationScores:
    """Scores a submission against a COCO JSON with annotations (e.g. val.json).

    The truth is each image's label map (:meth:`CocoDataset.label_map`) resized to
    ``size`` by nearest neighbour, as the predictions were. Rows may come in any
    order; every image of the JSON needs exactly one row. One confusion matrix over
    the whole set (dataset-level mIoU, as ``--eval``).

    Args:
        path: the submission CSV.
        coco_json: the annotation file.
        data_root: folder the JSON's file names are relative to (default: the JSON's folder).
        size: the submission grid.

    Raises:
        TsegError: the JSON has no annotations, or a row is bad, names an image not in
            the JSON or one seen before, or an image has no row.
    """
    dataset = CocoDataset(coco_json, root=data_root)
    if not dataset.has_annotations:
        raise TsegError(f"{coco_json} has no annotations: score a submission against a split with labels")
    index = {image.file_name: i for i, image in enumerate(dataset.images)}
    seen: dict[str, int] = {}
    matrix = ConfusionMatrix(dataset.num_classes)
    for row, (name, prediction) in enumerate(read_submission(path, size=size, num_classes=dataset.num_classes)):
        line = row + 2
        if name not in index:
            raise TsegError(f"{path}, line {line}: {name!r} is not an image of {coco_json}")
        if name in seen:
            raise TsegError(f"{path}, line {line}: {name!r} already has a row (line {seen[name]}): one row per image")
        seen[name] = line
        matrix.update(resize_labels(dataset.label_map(index[name]), size), prediction)
    missing = [image.file_name for image in dataset.images if image.file_name not in seen]
    if missing:
        raise TsegError(
            f"{path} has no row for {len(missing)} of the {len(index)} images of {coco_json}, e.g. {missing[0]!r}"
        )
    return matrix.compute()
