"""tseg-report's pictures: each changed image as A and as B saw it, copied into the comparison's folder.

A report pictures only its worst and best images. For one of those the report's own picture
(photo | truth | prediction | after the CRF) is copied; for any other the picture is drawn
(photo | truth | the labels the run wrote) when the split's photos and annotations and the
run's label PNG are still where the report says; else the page says why there is none.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import numpy as np
from PIL import Image

from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.data.label_png import read_label_png
from tseg.runtime.errors import TsegError
from tseg.runtime.files import atomic_write_bytes
from tseg.runtime.inputs import read_input
from tseg.runtime.report.collect import ImageRow, shrink
from tseg.runtime.report.pictures import jpeg_bytes, panel
from tseg.runtime.report.read import ReportData
from tseg.runtime.report.write import PICTURES

SIDES = ("a", "b")  # pictures/a-N.jpg, pictures/b-N.jpg
MAX_PICTURE_BYTES = 16 << 20  # a report's picture: four 480 px tiles as JPEG, well under 1 MiB in practice


@dataclass(frozen=True)
class Picture:
    """One run's picture of one image on the page.

    Attributes:
        src: the picture relative to the page, or None when there is none.
        width: its width in pixels (0: none).
        how: where it came from, or why there is none.
    """

    src: str | None
    width: int
    how: str


class _NoPicture(Exception):
    """Why an image cannot be drawn (shown on the page)."""


def label_png_path(run: ReportData, row: ImageRow) -> Path:
    """The label PNG a report's row links to (the link is relative to the report and URL-quoted)."""
    return run.folder / unquote(row.label_png)


class PictureMaker:
    """Copies or draws the pictures of a comparison into ``out/pictures``.

    Args:
        out: the comparison's folder.
        classes, palette: the class names and colours (the legend of drawn pictures).
    """

    def __init__(self, *, out: Path, classes: Sequence[str], palette: Sequence[Sequence[int]]) -> None:
        self.out, self.classes, self.palette = Path(out), classes, palette
        self._datasets: dict[tuple[str, str], CocoDataset | str] = {}

    def picture(self, run: ReportData, side: str, row: ImageRow) -> Picture:
        """The picture of ``row``'s image in ``run`` (``side``: "a" or "b"), written to pictures/SIDE-N.jpg."""
        relative = f"{PICTURES}/{side}-{row.index}.jpg"
        own = run.pictures.get(row.index)
        reason = ""
        if own is not None:
            try:
                data = read_input(own, what="picture", limit=MAX_PICTURE_BYTES)
                width = _jpeg_width(data)
                atomic_write_bytes(self.out / relative, data)
                return Picture(relative, width, f"the picture of report {side.upper()}")
            except (TsegError, OSError) as err:
                reason = f"its picture {own.name} is unreadable ({err}); "
        try:
            picture = self._draw(run, row)
        except _NoPicture as err:
            return Picture(None, 0, f"no picture: {reason}{err}")
        atomic_write_bytes(self.out / relative, jpeg_bytes(picture))
        return Picture(relative, picture.shape[1], f"drawn from the split and the label PNG of {side.upper()}")

    def _dataset(self, split) -> CocoDataset:
        key = (split["json"], split["root"])
        if key not in self._datasets:
            try:
                self._datasets[key] = CocoDataset(split["json"], root=split["root"])
            except (TsegError, OSError) as err:
                self._datasets[key] = f"the split cannot be read ({err})"
        found = self._datasets[key]
        if isinstance(found, str):
            raise _NoPicture(found)
        return found

    def _draw(self, run: ReportData, row: ImageRow) -> np.ndarray:
        """photo | truth | the labels written, with the legend: (H, W, 3) uint8."""
        if run.split is None:
            raise _NoPicture("the report does not picture this image and its report.json predates the split's"
                             " location (rerun tseg-infer --report to have it drawn)")
        dataset = self._dataset(run.split)
        if row.index >= len(dataset) or dataset.images[row.index].file_name != row.file_name:
            raise _NoPicture(f"the split {run.split['json']} has changed since the report (image {row.index}"
                             f" is not {row.file_name})")
        try:
            image, truth = dataset.read_image(row.index), dataset.label_map(row.index)
            labels = read_label_png(label_png_path(run, row))
        except (TsegError, OSError) as err:
            raise _NoPicture(str(err)) from None
        if labels.shape != truth.shape or int(labels.max(initial=0)) >= len(self.classes):
            raise _NoPicture(f"the label PNG {label_png_path(run, row)} does not fit the image or the classes")
        caption = "after the CRF" if run.crf else "prediction"
        layers = [("truth", shrink(truth.astype(np.uint8, copy=False))), (caption, shrink(labels))]
        return panel(shrink(image), layers, classes=self.classes, palette=self.palette)


def _jpeg_width(data: bytes) -> int:
    """The width of a picture's bytes, checked to be a JPEG that decodes."""
    try:
        with Image.open(io.BytesIO(data)) as picture:
            if picture.format != "JPEG":
                raise TsegError(f"a {picture.format} file, not a JPEG")
            picture.load()
            return picture.width
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise TsegError(f"not a picture: {err}") from None
