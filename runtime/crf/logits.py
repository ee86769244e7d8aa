"""The dense CRF to labels, from a model's logits or probabilities, with no (C, H, W)
array in between.

``labels_from_probs(probs, image)`` gives ``dense_crf(probs, image).argmax(0)`` without
writing Q: the labels come from the last pass. ``labels_from_logits(logits, image)`` gives
what ``dense_crf(softmax(resize_scores(logits, (H, W))), image).argmax(0)`` gives, without
that chain's four full-size temporaries:

- the unary is written straight into mean field's pixel-major buffer by one parallel
  pass (:func:`tseg.runtime.crf.unary.logits_fill`): the bilinear taps, a log-softmax
  and pydensecrf's clip of the probabilities at 1e-5, with no exp then log round trip;
- the labels come from the last pass over the pixels (the argmax of Q in registers,
  first of equal values), Q is never written.

With ``device="cuda"`` both run on the GPU (:mod:`tseg.runtime.crf.cuda`): the unary, mean field
and the argmax there, only the logits at the model's resolution go in and the labels come back
(the same fill as the CPU's, one thread a pixel: ``CudaDenseCRF.start_from_logits``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tseg.runtime.crf.checks import (
    Compat,
    _value_range,
    check_device,
    check_float_array,
    check_iterations,
    check_probs,
)
from tseg.runtime.crf.dense import DenseCRF
from tseg.runtime.crf.parameters import (
    BILATERAL_COMPAT,
    BILATERAL_SRGB,
    BILATERAL_SXY,
    GAUSSIAN_COMPAT,
    GAUSSIAN_SXY,
    ITERATIONS,
)
from tseg.runtime.crf.unary import CLIP, logits_fill
from tseg.runtime.device_arrays import is_device_array
from tseg.runtime.errors import TsegError
from tseg.runtime.images import check_image
from tseg.runtime.scores import label_dtype


def check_logits(logits: object) -> np.ndarray:
    """(C, h, w) float logits, C >= 2, finite; a one-line error otherwise."""
    logits = check_float_array("logits", logits, "(C, h, w)")
    if logits.shape[0] < 2:
        raise TsegError(f"logits: need at least 2 classes, got shape {logits.shape}")
    _value_range("logits", logits)
    return logits


def _check_device_logits(logits: object) -> object:
    from tseg.runtime.crf.cuda.crf import check_device_logits  # needs numba-cuda: only here

    return check_device_logits(logits)


def _crf_labels(image: np.ndarray, shape: tuple[int, int, int], iterations: int,
                settings: dict, threads: int | None, **source: object) -> np.ndarray:
    """Mean field's labels on checked inputs: ``source`` is ``probs=`` or ``fill=``, as
    :class:`tseg.runtime.crf.state.MeanField` takes them."""
    with DenseCRF(image, threads=threads, **settings) as crf, \
            crf._start(shape, **source) as state:
        state.step(iterations)
        return state._write_labels(np.empty(shape[1:], label_dtype(shape[0])))


def _cuda_labels(image: np.ndarray, iterations: int, settings: dict, threads: int | None,
                 num_classes: int, start: Callable) -> np.ndarray:
    """Mean field's labels on the GPU from the state ``start(crf)`` begins on the device CRF
    (its ``start_from_probs`` or ``start_from_logits``)."""
    with DenseCRF(image, threads=threads, device="cuda", **settings) as crf, start(crf) as state:
        state.step(iterations)
        return state.labels(label_dtype(num_classes))


def labels_from_probs(
    probs: np.ndarray,
    image: np.ndarray,
    *,
    iterations: int = ITERATIONS,
    gaussian_sxy: float = GAUSSIAN_SXY,
    gaussian_compat: Compat = GAUSSIAN_COMPAT,
    bilateral_sxy: float = BILATERAL_SXY,
    bilateral_srgb: float = BILATERAL_SRGB,
    bilateral_compat: Compat = BILATERAL_COMPAT,
    threads: int | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """CRF labels from class probabilities: ``dense_crf(probs, image).argmax(0)``, the
    same labels bit for bit, without writing Q or taking its argmax.

    Args:
        probs: (C, H, W) float probabilities in [0, 1] (e.g. a softmax).
        image: (H, W, 3) uint8 RGB image the probabilities belong to.
        iterations, gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb,
        bilateral_compat, threads, device: as in :func:`tseg.runtime.crf.dense_crf`
        (``device="cuda"``: the same labels up to float rounding, module docstring).

    Returns:
        (H, W) labels, uint8 (uint16 beyond 256 classes).
    """
    check_image(image)
    on_cpu = check_device(device) == "cpu"  # there the first pass checks the values
    probs = check_probs(probs, image.shape[0], image.shape[1], values=not on_cpu)
    check_iterations(iterations)
    settings = dict(gaussian_sxy=gaussian_sxy, gaussian_compat=gaussian_compat,
                    bilateral_sxy=bilateral_sxy, bilateral_srgb=bilateral_srgb,
                    bilateral_compat=bilateral_compat)
    if not on_cpu:
        return _cuda_labels(image, iterations, settings, threads, probs.shape[0],
                            lambda crf: crf.start_from_probs(probs, CLIP))
    return _crf_labels(image, probs.shape, iterations, settings, threads, probs=probs)


def labels_from_logits(
    logits: np.ndarray,
    image: np.ndarray,
    *,
    iterations: int = ITERATIONS,
    gaussian_sxy: float = GAUSSIAN_SXY,
    gaussian_compat: Compat = GAUSSIAN_COMPAT,
    bilateral_sxy: float = BILATERAL_SXY,
    bilateral_srgb: float = BILATERAL_SRGB,
    bilateral_compat: Compat = BILATERAL_COMPAT,
    threads: int | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """CRF labels from a model's logits at any resolution (resized bilinearly inside).

    The same labels as ``dense_crf(softmax(resize_scores(logits, (H, W))), image)``'s
    argmax up to float rounding (module docstring), faster and with less memory.

    Args:
        logits: (C, h, w) float logits, e.g. a model's output (h, w need not be H, W). With
            ``device="cuda"`` they may be on the GPU already (a Numba device array, or any
            C-contiguous float32 array with ``__cuda_array_interface__``): then they are
            checked there and never copied.
        image: (H, W, 3) uint8 RGB image.
        iterations, gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb,
        bilateral_compat, threads, device: as in :func:`tseg.runtime.crf.dense_crf`.

    Returns:
        (H, W) labels, uint8 (uint16 beyond 256 classes).
    """
    check_image(image)
    on_gpu = is_device_array(logits)
    if on_gpu and check_device(device) != "cuda":
        raise TsegError("logits: they are on the GPU; run the CRF there (device='cuda') or copy them "
                        "to the host first")
    logits = _check_device_logits(logits) if on_gpu else check_logits(logits)
    check_iterations(iterations)
    height, width = image.shape[:2]
    settings = dict(gaussian_sxy=gaussian_sxy, gaussian_compat=gaussian_compat,
                    bilateral_sxy=bilateral_sxy, bilateral_srgb=bilateral_srgb,
                    bilateral_compat=bilateral_compat)
    if check_device(device) == "cuda":
        return _cuda_labels(image, iterations, settings, threads, logits.shape[0],
                            lambda crf: crf.start_from_logits(logits, CLIP))
    return _crf_labels(image, (logits.shape[0], height, width), iterations, settings, threads,
                       fill=logits_fill(logits, height, width))
