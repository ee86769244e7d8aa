"""The dense CRF as the runtime uses it: settings (defaults, crf.json beside a model, CLI
overrides) and the refinement of a model's logits.

Importing this module does not import Numba: :mod:`tseg.runtime.crf` (the algorithm) is
imported inside the methods that run the CRF, so a plain ``tseg-infer`` never pays for it.

Big photographs: the CRF's memory grows with the pixels (a 4000x3000 photo peaked at
6.6 GiB with 12 classes). Above ``max_pixels`` (default :data:`MAX_CRF_PIXELS`, 1 Mpx)
the CRF runs on the image resized to fit the cap (Pillow, antialiased) with the logits
resized bilinearly to the same grid; the refined probabilities are then brought to full
size by :func:`~tseg.runtime.segment.upsample.upsample_labels` (bilinear, argmax) without a
(C, H, W) array at full size. The kernel widths stay in pixels of the capped image: the
CRF sees a picture of about 1 Mpx, the regime its parameters are tuned in (scaling them
down with the image would make the Gaussian kernel sub-pixel, and double the lattices'
memory). Measured on a 4000x3000 JPEG, 12 classes, 2 cores (benchmarks/postprocess.py
--crf-rss, read_image included): peak RSS 7.2 GiB and 30 s uncapped, 0.6 GiB and 2.3 s
with the default cap. At or below the cap nothing changes.

The device: ``CrfParams(device=...)`` is "auto" (default), "cpu" or "cuda"
(:mod:`tseg.runtime.segment.crf_device` holds the rule for "auto" and the checks). A
:class:`~tseg.runtime.segment.segmenter.Segmenter` resolves it against its model's device
(:meth:`CrfParams.resolve_device`); settings used without a model run "auto" on the CPU. The
device is not saved in crf.json: the file goes with the model, the device is the machine's.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from tseg.runtime.crf import parameters as crf_parameters
from tseg.runtime.device_arrays import is_device_array, to_host
from tseg.runtime.errors import TsegError
from tseg.runtime.files import atomic_write_bytes
from tseg.runtime.images import check_image, resize_image
from tseg.runtime.inputs import read_input
from tseg.runtime.scores import resize_scores, softmax
from tseg.runtime.segment.crf_device import check_crf_device, resolve_crf_device
from tseg.runtime.segment.upsample import upsample_labels

CRF_FILE = "crf.json"
MAX_ITERATIONS = 1000
MAX_CRF_PIXELS = 1_000_000  # default cap: ~0.6 GiB peak for the CRF with 12 classes
MAX_PIXELS_RANGE = (1024, 10**12)  # smallest and largest max_pixels accepted
_FLOAT_FIELDS = ("gaussian_sxy", "gaussian_compat", "bilateral_sxy", "bilateral_srgb", "bilateral_compat")
_NOT_IN_FILE = ("device",)  # settings crf.json does not hold (they belong to the machine, not the model)


@dataclass(frozen=True)
class CrfParams:
    """Mean-field iterations and the two kernels' widths and weights (Potts).

    Defaults are pydensecrf's example (:mod:`tseg.runtime.crf.parameters`); ``crf.json`` beside a model (written by
    ``tseg-infer --crf-tune``) overrides them, and CLI flags override both.
    ``max_pixels`` (1024..10**12, default :data:`MAX_CRF_PIXELS`) caps the resolution
    the CRF runs at (module docstring); ``crf.json`` files without it get the default.
    ``device`` ("auto", "cpu" or "cuda"; :mod:`tseg.runtime.segment.crf_device`) is where the
    CRF runs: a Segmenter resolves "auto" against its model (:meth:`resolve_device`), and
    :meth:`refine` / :meth:`refine_logits` called directly run "auto" on the CPU. crf.json does
    not hold it.
    """

    iterations: int = crf_parameters.ITERATIONS
    gaussian_sxy: float = crf_parameters.GAUSSIAN_SXY
    gaussian_compat: float = crf_parameters.GAUSSIAN_COMPAT
    bilateral_sxy: float = crf_parameters.BILATERAL_SXY
    bilateral_srgb: float = crf_parameters.BILATERAL_SRGB
    bilateral_compat: float = crf_parameters.BILATERAL_COMPAT
    max_pixels: int = MAX_CRF_PIXELS
    device: str = "auto"

    def __post_init__(self) -> None:
        _check_integer("iterations", self.iterations, 0, MAX_ITERATIONS)
        _check_integer("max_pixels", self.max_pixels, *MAX_PIXELS_RANGE)
        check_crf_device(self.device)
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not -1e300 < value < 1e300:
                raise TsegError(f"CRF {name} must be a finite number, got {repr(value)[:60]}")
            if name in ("gaussian_sxy", "bilateral_sxy", "bilateral_srgb") and not value > 0:
                raise TsegError(f"CRF {name} must be > 0, got {value}")
            object.__setattr__(self, name, float(value))
        object.__setattr__(self, "iterations", int(self.iterations))
        object.__setattr__(self, "max_pixels", int(self.max_pixels))

    def crf_kwargs(self) -> dict[str, float | int]:
        """:func:`tseg.runtime.crf.dense_crf`'s keyword arguments (all fields but max_pixels and device:
        the device goes on its own)."""
        kwargs = asdict(self)
        del kwargs["max_pixels"], kwargs["device"]
        return kwargs

    def _run_device(self) -> str:
        """The algorithm's device: "cpu" or "cuda" ("auto" not resolved for a model is the CPU; the
        algorithm checks "cuda" itself)."""
        return "cpu" if self.device == "auto" else self.device

    def resolve_device(self, model_device: str | None) -> CrfParams:
        """These settings with "auto" resolved for a model on ``model_device`` (the choice is logged) and
        "cuda" checked (:func:`~tseg.runtime.segment.crf_device.resolve_crf_device`).

        Raises:
            TsegError: device "cuda" where the CUDA CRF cannot run (one line naming what to install).
        """
        return replace(self, device=resolve_crf_device(self.device, model_device=model_device))

    def refine(self, scores: np.ndarray, image: np.ndarray, *, threads: int | None = None) -> np.ndarray:
        """Labels after the CRF.

        Args:
            scores: (C, H, W) logits at the image's size.
            image: (H, W, 3) uint8 RGB.

        Returns:
            (H, W) uint8 labels. Above ``max_pixels`` the
            CRF runs at a capped resolution (module docstring); prefer
            :meth:`refine_logits`, which never needs (C, H, W) scores.
        """
        image = check_image(image)
        scores = _check_logits(scores)
        if scores.shape[1:] != image.shape[:2]:
            raise TsegError(f"CRF: scores {scores.shape} do not match the image's size {image.shape[:2]}")
        if image.shape[0] * image.shape[1] > self.max_pixels:
            return self._refine_capped(scores, image, threads=threads)
        from tseg.runtime.crf.logits import labels_from_logits

        return labels_from_logits(scores, image, threads=threads, device=self._run_device(), **self.crf_kwargs())

    def refine_logits(self, logits: np.ndarray, image: np.ndarray, *, threads: int | None = None) -> np.ndarray:
        """Labels after the CRF, from the model's logits at any resolution. Thread-safe.

        At or below ``max_pixels`` this equals ``refine(resize_scores(logits, (H, W)), image)``;
        above it, the CRF runs at a capped resolution (module docstring) and peak memory
        stays bounded (a 4000x3000 photo: under ~1.5 GiB).

        Args:
            logits: (C, h, w) float logits (e.g. the model's output); on the GPU too (a Numba
                device array or ``__cuda_array_interface__``), read there by the CUDA CRF
                (copied to the host for the CPU's, or above ``max_pixels``).
            image: (H, W, 3) uint8 RGB.
            threads: the CRF's threads; None: every core (the labels do not depend on it).

        Returns:
            (H, W) uint8 labels.
        """
        image = check_image(image)
        logits = _check_logits(logits)
        if image.shape[0] * image.shape[1] > self.max_pixels:  # resized on the host
            return self._refine_capped(to_host(logits), image, threads=threads)
        if is_device_array(logits) and self._run_device() != "cuda":
            logits = to_host(logits)
        from tseg.runtime.crf.logits import labels_from_logits

        # On the CPU the resize, softmax, unary and argmax happen inside the CRF's passes.
        return labels_from_logits(logits, image, threads=threads, device=self._run_device(), **self.crf_kwargs())

    def _refine_capped(self, logits: np.ndarray, image: np.ndarray, *, threads: int | None) -> np.ndarray:
        """The CRF on the image and logits resized to fit max_pixels; labels at full size."""
        from tseg.runtime.crf.dense import dense_crf

        height, width = image.shape[:2]
        size = capped_size(height, width, self.max_pixels)
        probs = dense_crf(softmax(resize_scores(logits, size)), resize_image(image, size), threads=threads,
                          device=self._run_device(), **self.crf_kwargs())
        # Probabilities, not their log: a probability that underflowed to 0 would be -inf.
        return upsample_labels(probs, (height, width))

    def save(self, path: str | Path) -> None:
        """Writes the parameters as JSON, atomically (crf.json: all but the device)."""
        data = {k: v for k, v in asdict(self).items() if k not in _NOT_IN_FILE}
        atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())

    @classmethod
    def load(cls, path: str | Path) -> CrfParams:
        """Reads parameters written by :meth:`save`.

        Unknown keys (``device`` among them: it is chosen where the CRF runs), and values of
        the wrong type (a string, a bool, a float where iterations need an integer), are an
        error, not converted. The device is the default, "auto".
        """
        path = Path(path)
        try:
            data = json.loads(read_input(path, what="CRF parameters").decode("utf-8"))
        except TsegError as err:
            raise TsegError(f"cannot read CRF parameters: {err}") from None
        except (OSError, ValueError, RecursionError) as err:  # ValueError: bad JSON, encoding, huge ints
            first = (str(err).splitlines() or [type(err).__name__])[0][:200]
            raise TsegError(f"cannot read CRF parameters from {path}: {first}") from None
        valid = [f.name for f in fields(cls) if f.name not in _NOT_IN_FILE]
        if isinstance(data, dict) and "device" in data:
            raise TsegError(f"{path}: the CRF's device is not read from this file (it belongs to the machine"
                            " that runs the CRF, not to the model): choose it with tseg-infer --crf-device or"
                            " CrfParams' device")
        if not isinstance(data, dict) or set(data) - set(valid):
            unknown = sorted(set(data) - set(valid)) if isinstance(data, dict) else type(data).__name__
            raise TsegError(f"{path}: unknown CRF parameters {str(unknown)[:200]}; valid: {', '.join(valid)}")
        try:
            return cls(**data)
        except TsegError as err:
            raise TsegError(f"{path}: {err}") from None


def capped_size(height: int, width: int, max_pixels: int) -> tuple[int, int]:
    """(h, w) of about the same aspect with h * w <= max_pixels (the input size if it fits)."""
    if height * width <= max_pixels:
        return height, width
    scale = (max_pixels / (height * width)) ** 0.5
    small_h = max(1, min(height, int(height * scale)))
    small_w = max(1, min(width, int(width * scale), max_pixels // small_h))
    return min(small_h, max_pixels // small_w), small_w  # a side floored at 1 pixel can leave h * w too big


def _check_integer(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TsegError(f"CRF {name} must be an integer, got {repr(value)[:60]}")
    if not low <= value <= high:
        raise TsegError(f"CRF {name} must be in {low}..{high}, got {repr(value)[:60]}")


def _check_logits(logits: object) -> np.ndarray:
    """(C, h, w) float logits (on the host, or on the GPU: :mod:`tseg.runtime.device_arrays`),
    or a one-line TsegError."""
    if not ((isinstance(logits, np.ndarray) or is_device_array(logits))
            and np.dtype(logits.dtype).kind == "f" and len(logits.shape) == 3 and min(logits.shape) >= 1):
        shape, dtype = getattr(logits, "shape", None), getattr(logits, "dtype", type(logits).__name__)
        raise TsegError(f"CRF: need (C, h, w) float logits with C, h, w >= 1, got shape {shape} {dtype}")
    return logits


def crf_file_for(model_path: str | Path) -> Path:
    """Where a model's tuned CRF parameters live: crf.json in the model's folder."""
    return Path(model_path).parent / CRF_FILE


def resolve_crf_params(model_path: str | Path, overrides: dict[str, float | int | None]) -> CrfParams:
    """The CRF settings to use: defaults < crf.json beside the model < non-None ``overrides``.

    Args:
        model_path: the .onnx file; its folder's crf.json is read when present.
        overrides: parameter -> value from the command line (None: not given); ``device``
            among them (crf.json never holds it).

    Raises:
        TsegError: crf.json is unreadable or malformed (also when a folder has its
            name), or a value is out of range.
    """
    path = crf_file_for(model_path)
    base = CrfParams.load(path) if path.exists() or path.is_symlink() else CrfParams()  # a dangling link: refused
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
