"""Running an exported model: images in, labels (a :class:`Prediction`) at each image's size out.

``Segmenter.predict`` takes an array, a path or a list/iterable of them and batches
internally. The stages it is made of (``model_inputs`` or ``preprocess`` -> ``run_batch`` ->
``postprocess``) are public and thread-safe; they and tseg-infer's pipeline take one
image the same way (:mod:`tseg.runtime.segment.steps`), so both give the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from tseg.runtime.device_arrays import is_device_array
from tseg.runtime.errors import TsegError
from tseg.runtime.images import check_image, read_image
from tseg.runtime.model.binding import BoundRunner
from tseg.runtime.model.metadata import MAX_BATCH_SIZE, ModelMetadata
from tseg.runtime.model.onnx_file import check_graph_io, static_dim
from tseg.runtime.model.openvino import OpenVinoSettings
from tseg.runtime.model.session import create_session, session_device
from tseg.runtime.model.tensorrt import TensorrtSettings
from tseg.runtime.scores import resize_scores
from tseg.runtime.segment.crf_device import require_cuda_crf
from tseg.runtime.segment.prediction import Prediction
from tseg.runtime.segment.refine import CrfParams
from tseg.runtime.segment.steps import Outcome, finish, model_inputs, run_inputs
from tseg.runtime.segment.tta import TtaSettings, check_tta_graph


def tensorrt_refused_scales(tta: TtaSettings | None) -> tuple[float, ...]:
    """The TTA scales device "tensorrt" cannot run (all but 1: its engine takes the model's input size only)."""
    return () if tta is None else tuple(scale for scale in tta.scales if scale != 1)


def _tensorrt_settings(device: str, settings: object, batch_size: int, tta: TtaSettings | None):
    """With device "tensorrt": settings whose engine takes every batch the segmenter runs.

    The profile's largest batch becomes at least ``batch_size`` (and 2 for the mirrored TTA
    pair). TTA scales other than 1 are refused: the engine is built for the input size only.
    With another device the settings are passed on as they came (``create_session`` refuses them).
    """
    if settings is not None and not isinstance(settings, TensorrtSettings):
        raise TsegError(f"tensorrt: need a TensorrtSettings or None, got {type(settings).__name__}")
    if device != "tensorrt":
        return settings
    settings = settings or TensorrtSettings()
    largest = max(settings.batch_size, batch_size)
    if tta is not None:
        other = tensorrt_refused_scales(tta)
        if other:
            raise TsegError(
                f"tta: scale(s) {','.join(f'{s:g}' for s in other)} with device='tensorrt': the TensorRT engine"
                " takes the model's input size only; use TtaSettings(hflip=True) without scales, or device='cuda'",
                parameter="tta",
            )
        largest = max(largest, 2 if tta.hflip else 1)
    return replace(settings, batch_size=largest)


class Segmenter:
    """An exported model, ready to segment images (the runtime's Python API).

    >>> seg = Segmenter("runs/demo/model.onnx")
    >>> pred = seg.predict("photo.jpg")          # or an (H, W, 3) uint8 array, or a list of either
    >>> pred.labels, pred.classes; pred.save("photo.png"); pred.overlay()

    Args:
        model: an .onnx file exported by ``tseg-export``.
        device: "auto" (a GPU that loads, else OpenVINO on the CPU when it is installed, else
            ONNX Runtime's CPU provider; :attr:`device` says which), "cpu" (ONNX Runtime),
            "cuda", "tensorrt" or "openvino" (see :func:`create_session`).
        threads: ONNX Runtime intra-op threads (OpenVINO's inference threads); None lets it choose.
        crf: dense-CRF parameters to refine every prediction with, or None. Their device "auto"
            is resolved for the model (the GPU when the model runs on CUDA and the CUDA CRF can
            run, else the CPU; one note to the logger, :mod:`~tseg.runtime.segment.crf_device`) and
            :attr:`crf` holds the choice; "cuda" that cannot run here is refused before the model loads.
        tta: test-time augmentation views (see :class:`TtaSettings`), or None.
        batch_size: images per model run when ``predict`` gets several (1 for a
            graph whose batch axis is fixed at 1).
        tensorrt: TensorRT engine settings (FP16, cache folder) for device "tensorrt";
            None there means the defaults. The engine's largest batch is raised to
            ``batch_size`` (and 2 with hflip TTA). Refused with other devices.
        openvino: OpenVINO's precision (f32 unless ``bf16``) and cache folder for device
            "openvino"; None there means f32. Refused with other devices.

    Raises:
        TsegError: the file is not an ONNX model, its tseg metadata is missing or
            malformed, its graph does not fit the metadata (see
            :func:`~tseg.runtime.model.onnx_file.check_graph_io`)
            or the TTA scales, or a setting is of the wrong kind, or the CRF's device is "cuda"
            and the CUDA CRF cannot run here.
    """

    def __init__(self, model: str | Path, *, device: str = "auto", threads: int | None = None,
                 crf: CrfParams | None = None, tta: TtaSettings | None = None, batch_size: int = 8,
                 tensorrt: TensorrtSettings | None = None, openvino: OpenVinoSettings | None = None):
        if crf is not None and not isinstance(crf, CrfParams):
            raise TsegError(f"crf: need a CrfParams or None, got {type(crf).__name__}")
        if tta is not None and not isinstance(tta, TtaSettings):
            raise TsegError(f"tta: need a TtaSettings or None, got {type(tta).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise TsegError(f"batch_size: need an integer in 1..{MAX_BATCH_SIZE}, got {batch_size!r:.40}")
        if not isinstance(model, (str, os.PathLike)):
            raise TsegError(f"model: need the path of an .onnx file, got {type(model).__name__}")
        self.model_path = Path(model)
        if crf is not None and crf.device == "cuda":
            require_cuda_crf()  # before the model loads
        tensorrt = _tensorrt_settings(device, tensorrt, batch_size, tta)
        self.session = create_session(self.model_path, device=device, threads=threads, tensorrt=tensorrt,
                                      openvino=openvino)
        props = self.session.get_modelmeta().custom_metadata_map
        self.metadata = ModelMetadata.from_props(props, source=str(self.model_path))
        image, scores = check_graph_io(self.session.get_inputs(), self.session.get_outputs(), self.metadata,
                                       source=str(self.model_path))
        self._input_name, self._output_name = image.name, scores.name
        self._runner = BoundRunner(self.session, input_name=self._input_name, output_name=self._output_name)
        shape = self.session.get_inputs()[0].shape
        self.batch_size = 1 if static_dim(shape[0]) == 1 else batch_size
        if tta is not None:
            check_tta_graph(tta, self.metadata.input_size, (static_dim(shape[2]), static_dim(shape[3])),
                            source=str(self.model_path))
        self.tta = tta
        self.crf = crf.resolve_device(self.device) if crf is not None else None  # last: no note before an error

    @property
    def providers(self) -> list[str]:
        """What runs the model: the execution providers ONNX Runtime actually uses, or OpenVINO's
        ``["OpenVINO CPU (f32)"]`` (``(bf16)`` when asked for)."""
        return self.session.get_providers()

    @property
    def device(self) -> str:
        """The device the model runs on: "cpu" (ONNX Runtime), "cuda", "tensorrt" or "openvino";
        with ``device="auto"``, the one its rule chose."""
        return session_device(self.session)

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names, in label order."""
        return self.metadata.classes

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        """(r, g, b) per class."""
        return self.metadata.palette

    # ------------------------------------------------------------------ the stages (thread-safe)

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (3, h, w) float32 model input (resized and normalised).

        Raises:
            TsegError: the image is not (H, W, 3) uint8 with H, W >= 1.
        """
        return model_inputs(image, metadata=self.metadata, tta=None)[0]

    def model_inputs(self, image: np.ndarray) -> list[np.ndarray]:
        """(H, W, 3) uint8 RGB -> its (3, h, w) float32 model inputs: :meth:`preprocess`'s one,
        or one per TTA view when the segmenter has TTA settings.

        Raises:
            TsegError: the image is not (H, W, 3) uint8 with H, W >= 1.
        """
        return model_inputs(image, metadata=self.metadata, tta=self.tta)

    @property
    def logits_on_device(self) -> bool:
        """Whether :meth:`run_batch` can leave the logits on the GPU for the CRF (``on_device``):
        the model runs on CUDA through IOBinding, the CRF runs on CUDA, and no TTA averages views."""
        return self._runner.uses_binding and self.crf is not None and self.crf.device == "cuda" and self.tta is None

    def run_batch(self, batch: np.ndarray, *, check_finite: bool = True, on_device: bool = False) -> np.ndarray:
        """Runs the model on a batch of preprocessed images.

        Args:
            batch: (N, 3, h, w) float32 (``preprocess`` outputs stacked).
            check_finite: refuse NaN or infinite scores here. The pipeline turns it off
                because its post-processing checks the same at 1/C of the cost
                (:func:`~tseg.runtime.scores.argmax_classes`, the CRF's own checks, on the
                GPU for logits left there).
            on_device: where :attr:`logits_on_device` holds, leave the logits on the GPU (a
                Numba device array) for :meth:`postprocess`'s CUDA CRF: only its labels come
                back to the host. Elsewhere ignored.

        Returns:
            (N, C, h', w') float32 finite logits (on the GPU with ``on_device``).

        Raises:
            TsegError: a batch of another shape or type, the model fails on it, or its
                output is not (N, C, h', w') finite scores for the model's C classes.
        """
        if not isinstance(batch, np.ndarray) or batch.ndim != 4 or batch.shape[1] != 3 or batch.dtype != np.float32:
            raise TsegError(
                f"need an (N, 3, h, w) float32 batch, got shape {getattr(batch, 'shape', None)}"
                f" {getattr(batch, 'dtype', type(batch).__name__)}"
            )
        try:
            if on_device and self.logits_on_device:
                output = self._runner.run_on_device(np.ascontiguousarray(batch))
            else:
                output = self._run_session(np.ascontiguousarray(batch))
        except Exception as err:  # onnxruntime's own exception types: a broken model, not a tseg bug
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise TsegError(
                f"{self.model_path} failed on an input of shape {batch.shape}: {first_line[:300]}"
            ) from None
        return self._check_output(output, len(batch), check_finite=check_finite)

    def _run_session(self, batch: np.ndarray) -> np.ndarray:
        """The one place a batch meets ONNX Runtime (IOBinding on CUDA, see :class:`BoundRunner`)."""
        return self._runner.run(batch)

    def _check_output(self, output: object, count: int, *, check_finite: bool = True) -> np.ndarray:
        """(N, C, h, w) finite float scores -> float32."""
        classes = self.metadata.num_classes
        shape = getattr(output, "shape", None)
        if is_device_array(output):
            return self._check_device_output(output, count, check_finite=check_finite)
        if (
            not isinstance(output, np.ndarray)
            or output.ndim != 4
            or output.shape[:2] != (count, classes)
            or min(output.shape[2:]) < 1
            or output.dtype.kind != "f"
        ):
            raise TsegError(
                f"{self.model_path}: need ({count}, {classes}, h, w) float scores (one per class:"
                f" {', '.join(self.metadata.classes)[:200]}), the model gave {shape}"
                f" {getattr(output, 'dtype', type(output).__name__)}"
            )
        logits = np.asarray(output, dtype=np.float32)
        if check_finite and not np.isfinite(logits).all():
            bad = [i for i in range(count) if not np.isfinite(logits[i]).all()]
            which = "this image" if count == 1 else f"image(s) {', '.join(map(str, bad[:5]))} of the batch"
            raise TsegError(f"{self.model_path}: the model gave NaN or infinite scores for {which}")
        return logits

    def _check_device_output(self, output, count: int, *, check_finite: bool):
        """(N, C, h, w) float32 logits on the GPU, their values checked there (one kernel a batch)."""
        shape, dtype = tuple(output.shape), np.dtype(output.dtype)
        if (len(shape) != 4 or shape[:2] != (count, self.metadata.num_classes) or min(shape[2:]) < 1
                or dtype != np.float32):
            raise TsegError(f"{self.model_path}: need ({count}, {self.metadata.num_classes}, h, w) float scores,"
                            f" the model gave {shape} {dtype} on the GPU")
        if check_finite:
            from tseg.runtime.crf.cuda.crf import all_finite_on_device

            if not all_finite_on_device(output):
                raise TsegError(f"{self.model_path}: the model gave NaN or infinite scores")
        return output

    def postprocess(self, logits: np.ndarray, image: np.ndarray, *, probs: bool = False,
                    source: str | None = None, crf_threads: int | None = None) -> Prediction:
        """One image's logits -> its :class:`Prediction` at the image's own size.

        Labels are the argmax of the bilinearly upsampled logits, or the dense CRF's
        when the segmenter has one.

        Args:
            logits: (C, h', w') float32, one item of :meth:`run_batch`'s output.
            image: (H, W, 3) uint8, the image they belong to.
            probs: also return the (C, H, W) float32 softmax of the upsampled logits.
            source: the image's path, kept in the prediction.
            crf_threads: the CRF's threads (None: every core). Several images post-processed
                side by side run faster on one thread each; the labels are the same.
        """
        outcome = finish([logits], size=image.shape[:2], image=image, crf=self.crf, crf_threads=crf_threads,
                         probs=probs)
        return self._prediction(outcome, image, source)

    def _prediction(self, outcome: Outcome, image: np.ndarray, source: str | None) -> Prediction:
        return Prediction(labels=outcome.labels, classes=self.metadata.classes, palette=self.metadata.palette,
                          probs=outcome.probs, image=image, source=source)

    def predict_tta(self, image: np.ndarray, *, probs: bool = False, source: str | None = None) -> Prediction:
        """One image through every TTA view: labels from the averaged softmax (then the CRF, if any).

        Raises:
            TsegError: the segmenter has no TTA settings, or a bad image.
        """
        if self.tta is None:
            raise TsegError("predict_tta: this Segmenter was made without tta=TtaSettings(...)")
        return next(self._predict_chunk([(check_image(image), source)], probs))

    # ------------------------------------------------------------------ one image, the old API

    def logits(self, image: np.ndarray) -> np.ndarray:
        """Class scores at the model's output size: (H, W, 3) uint8 -> (C, h, w) float32.

        Raises:
            TsegError: the image is not (H, W, 3) uint8, the model fails on it, or
                its output is not (1, C, h, w) finite scores for C classes.
        """
        return self.run_batch(self.preprocess(image)[None])[0]

    def scores(self, image: np.ndarray) -> np.ndarray:
        """(C, H, W) float32 logits, bilinearly resized to the image's own size."""
        return resize_scores(self.logits(image), image.shape[:2])

    # ------------------------------------------------------------------ predict

    def predict(self, x: object, *, probs: bool = False) -> Prediction | list[Prediction] | Iterator[Prediction]:
        """Segments one image or many.

        Args:
            x: an (H, W, 3) uint8 RGB array or an image path (EXIF orientation applied)
                -> one :class:`Prediction`; a list or tuple of those -> a list; any other
                iterable -> an iterator yielding predictions in order, batch by batch
                (``batch_size`` images in memory at a time).
            probs: keep the (C, H, W) probabilities in each prediction.

        Raises:
            TsegError: a bad image or path (naming its index in a list), or a model failure.
        """
        if isinstance(x, (np.ndarray, str, os.PathLike)):
            image, source = self._load(x, None)
            return next(self._predict_chunk([(image, source)], probs))
        if isinstance(x, (list, tuple)):
            return list(self._predict_many(x, probs))
        if isinstance(x, Iterable) and not isinstance(x, (bytes, dict)):
            return self._predict_many(x, probs)
        raise TsegError(
            f"need an (H, W, 3) uint8 image array, an image path, or a list/iterable of them, got {type(x).__name__}"
        )

    def _load(self, item: object, index: int | None) -> tuple[np.ndarray, str | None]:
        """An input as (image, its path or None)."""
        name = "image" if index is None else f"input {index}"
        if isinstance(item, (str, os.PathLike)):
            try:
                return read_image(item, exif_transpose=True), str(item)
            except TsegError as err:
                if index is None:
                    raise
                raise TsegError(f"input {index}: {err}") from None
        if isinstance(item, np.ndarray):
            return check_image(item, name=name), None
        raise TsegError(f"{name}: need an (H, W, 3) uint8 image array or an image path, got {type(item).__name__}")

    def _predict_many(self, items: Iterable, probs: bool) -> Iterator[Prediction]:
        chunk: list[tuple[np.ndarray, str | None]] = []
        for index, item in enumerate(items):
            chunk.append(self._load(item, index))
            if len(chunk) == self.batch_size:
                yield from self._predict_chunk(chunk, probs)
                chunk = []
        if chunk:
            yield from self._predict_chunk(chunk, probs)

    def _predict_chunk(self, chunk: list[tuple[np.ndarray, str | None]], probs: bool) -> Iterator[Prediction]:
        """Checked images -> predictions: every input (TTA views included) through the model
        ``batch_size`` at a time, then each image's labels (:mod:`~tseg.runtime.segment.steps`)."""
        outputs = run_inputs(self.run_batch, [self.model_inputs(image) for image, _ in chunk],
                             batch_size=self.batch_size)
        for logits, (image, source) in zip(outputs, chunk, strict=True):
            outcome = finish(logits, size=image.shape[:2], image=image, crf=self.crf, tta=self.tta, probs=probs)
            yield self._prediction(outcome, image, source)
