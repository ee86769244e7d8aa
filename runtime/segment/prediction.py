"""What :meth:`tseg.runtime.Segmenter.predict` returns for one image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tseg.runtime.data.label_png import save_label_png
from tseg.runtime.errors import TsegError
from tseg.runtime.segment.overlay import overlay_labels


@dataclass(frozen=True, eq=False)
class Prediction:
    """One image's segmentation.

    Attributes:
        labels: (H, W) uint8 labels at the image's own size.
        classes: the model's class names; ``classes[label]`` names a label.
        palette: (r, g, b) per class, as in the label PNGs.
        probs: (C, H, W) float32 class probabilities when asked for (``predict(..., probs=True)``);
            without a CRF, ``labels`` is their argmax.
        image: (H, W, 3) uint8 RGB image that was segmented (for :meth:`overlay`).
        source: the image's path, when it was read from a file.
    """

    labels: np.ndarray
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    probs: np.ndarray | None = None
    image: np.ndarray | None = None
    source: str | None = None

    def save(self, path: str | Path) -> None:
        """Writes the labels as a palette PNG (pixel values are labels), atomically."""
        save_label_png(path, self.labels, palette=self.palette)

    def overlay(self, *, alpha: float = 0.5, legend: bool = True) -> np.ndarray:
        """The image with the labels blended in (and a legend of the classes present).

        Args:
            alpha: weight of the class colours, 0..1.
            legend: add the legend on a strip below the image (it never covers the image).

        Returns:
            (H, W, 3) uint8 RGB without the legend; with it, taller (and wider only where one
            legend entry alone is wider than the image), the image's pixels at [:H, :W].

        Raises:
            TsegError: the prediction holds no image.
        """
        if self.image is None:
            raise TsegError("this Prediction holds no image to draw on (it was made without one)")
        return overlay_labels(
            self.image, self.labels, classes=self.classes, palette=self.palette, alpha=alpha, legend=legend
        )

    def __repr__(self) -> str:
        names = [self.classes[i] for i in np.flatnonzero(np.bincount(self.labels.ravel()))]
        where = f", source={self.source!r}" if self.source else ""
        probs = ", probs" if self.probs is not None else ""
        return f"Prediction({self.labels.shape[0]}x{self.labels.shape[1]}, classes present {names}{probs}{where})"
