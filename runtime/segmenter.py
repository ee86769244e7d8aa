"""Running an exported model: image in, scores or labels at the image's size out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tseg.runtime.errors import TsegError
from tseg.runtime.images import preprocess
from tseg.runtime.labels import labels_from_scores, resize_scores
from tseg.runtime.metadata import ModelMetadata
from tseg.runtime.session import create_session

INPUT_TYPE = "tensor(float)"  # what preprocess() makes
OUTPUT_TYPES = ("tensor(float)", "tensor(float16)", "tensor(double)")


def _static(dim: object) -> int | None:
    """A graph dimension as an int, or None when it is symbolic or unknown."""
    return dim if isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 else None


def _check_dims(what: str, shape: Sequence[object], expected: Sequence[int | None], names: str) -> None:
    for dim, want, name in zip(shape, expected, names.split(), strict=True):
        got = _static(dim)
        if want is not None and got is not None and got != want:
            raise TsegError(f"{what}: need {name} {want}, the graph has {got} (shape {list(shape)})")


def check_graph(session, metadata: ModelMetadata, *, source: str) -> tuple[str, str]:
    """Checks that a model's graph fits its metadata before any image is run.

    The input must be one rank-4 float tensor (N, 3, H, W) with N 1 or dynamic
    and H, W the metadata's input size or dynamic; the first output a rank-4
    float tensor (N, C, h, w) with C the number of classes (when the graph
    states it; otherwise :meth:`Segmenter.logits` checks it on every run).

    Args:
        session: an ``onnxruntime.InferenceSession``.
        metadata: the model's tseg metadata.
        source: names the model in errors.

    Returns:
        The input and output names.

    Raises:
        TsegError: naming the model, what the graph has and what tseg needs.
    """
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise TsegError(f"{source}: need a model with one input (an image batch), got {len(inputs)}")
    if not outputs:
        raise TsegError(f"{source}: need a model with an output (class scores), got none")
    image, scores = inputs[0], outputs[0]
    for what, tensor, types in (("input", image, (INPUT_TYPE,)), ("output", scores, OUTPUT_TYPES)):
        if tensor.type not in types:
            raise TsegError(f"{source}: need a {' or '.join(types)} {what}, got {tensor.type}")
        if tensor.shape is None or len(tensor.shape) != 4:
            raise TsegError(f"{source}: need a rank-4 {what} (N, C, H, W), got shape {tensor.shape}")
    height, width = metadata.input_size
    _check_dims(f"{source} input", image.shape, (1, 3, height, width), "batch channels height width")
    _check_dims(
        f"{source} output (one score per class: {metadata.num_classes})",
        scores.shape,
        (1, metadata.num_classes, None, None),
        "batch channels height width",
    )
    return image.name, scores.name


class Segmenter:
    """An ONNX model plus the metadata tseg stored in it, both checked when opened.

    Args:
        model_path: an .onnx file exported by ``tseg-export``.
        device: "auto", "cpu", "cuda" or "tensorrt" (see :func:`create_session`).
        threads: ONNX Runtime intra-op threads; None lets it choose.

    Raises:
        TsegError: the file is not an ONNX model, its tseg metadata is missing or
            malformed, or its graph does not fit the metadata (see :func:`check_graph`).
    """

    def __init__(self, model_path: str | Path, *, device: str = "auto", threads: int | None = None):
        self.model_path = Path(model_path)
        self.session = create_session(self.model_path, device=device, threads=threads)
        props = self.session.get_modelmeta().custom_metadata_map
        self.metadata = ModelMetadata.from_props(props, source=str(self.model_path))
        self._input_name, self._output_name = check_graph(self.session, self.metadata, source=str(self.model_path))

    @property
    def providers(self) -> list[str]:
        """The execution providers ONNX Runtime actually uses."""
        return self.session.get_providers()

    def logits(self, image: np.ndarray) -> np.ndarray:
        """Class scores at the model's input size.

        Args:
            image: (H, W, 3) uint8 RGB, H and W >= 1.

        Returns:
            (C, h, w) float32 logits; (h, w) is the model's output size.

        Raises:
            TsegError: the image is not (H, W, 3) uint8, the model fails on it, or
                its output is not (1, C, h, w) finite scores for C classes.
        """
        if (
            not isinstance(image, np.ndarray)
            or image.ndim != 3
            or image.shape[2] != 3
            or image.dtype != np.uint8
            or min(image.shape[:2]) < 1
        ):
            shape, dtype = getattr(image, "shape", None), getattr(image, "dtype", type(image).__name__)
            raise TsegError(f"need an (H, W, 3) uint8 image with H, W >= 1, got shape {shape} {dtype}")
        meta = self.metadata
        batch = preprocess(image, size=meta.input_size, mean=meta.mean, std=meta.std)[None]
        try:
            output = self.session.run([self._output_name], {self._input_name: batch})[0]
        except Exception as err:  # onnxruntime's own exception types: a broken model, not a tseg bug
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise TsegError(
                f"{self.model_path} failed on an input of shape {batch.shape}: {first_line[:300]}"
            ) from None
        return self._check_output(output)

    def _check_output(self, output: object) -> np.ndarray:
        """(1, C, h, w) finite float scores -> (C, h, w) float32."""
        classes = self.metadata.num_classes
        shape = getattr(output, "shape", None)
        if (
            not isinstance(output, np.ndarray)
            or output.ndim != 4
            or output.shape[:2] != (1, classes)
            or min(output.shape[2:]) < 1
            or output.dtype.kind != "f"
        ):
            raise TsegError(
                f"{self.model_path}: need (1, {classes}, h, w) float scores (one per class:"
                f" {', '.join(self.metadata.classes)[:200]}), the model gave {shape}"
                f" {getattr(output, 'dtype', type(output).__name__)}"
            )
        logits = np.asarray(output[0], dtype=np.float32)
        if not np.isfinite(logits).all():
            raise TsegError(f"{self.model_path}: the model gave NaN or infinite scores for this image")
        return logits

    def scores(self, image: np.ndarray) -> np.ndarray:
        """(C, H, W) float32 logits, bilinearly resized to the image's own size."""
        return resize_scores(self.logits(image), image.shape[:2])

    def predict(self, image: np.ndarray) -> np.ndarray:
        """(H, W) labels at the image's own size."""
        return labels_from_scores(self.logits(image), image.shape[:2])
