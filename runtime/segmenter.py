"""Running an exported model: image in, scores or labels at the image's size out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tseg.runtime.errors import TsegError
from tseg.runtime.images import preprocess
from tseg.runtime.labels import labels_from_scores, resize_scores
from tseg.runtime.metadata import ModelMetadata
from tseg.runtime.session import create_session


class Segmenter:
    """An ONNX model plus the metadata tseg stored in it.

    Args:
        model_path: an .onnx file exported by ``tseg-export``.
        device: "auto", "cpu", "cuda" or "tensorrt" (see :func:`create_session`).
        threads: ONNX Runtime intra-op threads; None lets it choose.

    Raises:
        TsegError: the file is not an ONNX model or has no tseg metadata.
    """

    def __init__(self, model_path: str | Path, *, device: str = "auto", threads: int | None = None):
        self.model_path = Path(model_path)
        self.session = create_session(self.model_path, device=device, threads=threads)
        props = self.session.get_modelmeta().custom_metadata_map
        self.metadata = ModelMetadata.from_props(props, source=str(self.model_path))
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise TsegError(f"{self.model_path}: need a model with one input, got {len(inputs)}")
        self._input_name = inputs[0].name
        self._output_name = self.session.get_outputs()[0].name

    @property
    def providers(self) -> list[str]:
        """The execution providers ONNX Runtime actually uses."""
        return self.session.get_providers()

    def logits(self, image: np.ndarray) -> np.ndarray:
        """Class scores at the model's input size.

        Args:
            image: (H, W, 3) uint8 RGB.

        Returns:
            (C, h, w) float32 logits, (h, w) = metadata.input_size.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise TsegError(f"need an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        meta = self.metadata
        batch = preprocess(image, size=meta.input_size, mean=meta.mean, std=meta.std)[None]
        return self.session.run([self._output_name], {self._input_name: batch})[0][0]

    def scores(self, image: np.ndarray) -> np.ndarray:
        """(C, H, W) float32 logits, bilinearly resized to the image's own size."""
        return resize_scores(self.logits(image), image.shape[:2])

    def predict(self, image: np.ndarray) -> np.ndarray:
        """(H, W) labels at the image's own size."""
        return labels_from_scores(self.logits(image), image.shape[:2])
