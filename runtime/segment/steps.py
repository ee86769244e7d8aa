"""One image's way through a model as plain functions: its inputs, the model runs, its labels.

:class:`~tseg.runtime.segment.segmenter.Segmenter` and tseg-infer's stages
(:mod:`tseg.runtime.infer.stages`) both go this way, so they give the same bytes::

    model_inputs(image)        the (3, h, w) inputs: one, or one per TTA view
    run_inputs(run, inputs)    their (C, h', w') logits, inputs of one shape batched together
    finish(logits, size=...)   labels at the image's size: upsampled argmax, TTA average, CRF

Nothing here calls back up: the model comes in as ``run``, a callable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tseg.runtime.device_arrays import is_device_array, to_host
from tseg.runtime.errors import TsegError
from tseg.runtime.images import check_image, preprocess
from tseg.runtime.model.metadata import ModelMetadata
from tseg.runtime.scores import argmax_classes
from tseg.runtime.segment.refine import CrfParams
from tseg.runtime.segment.tta import TtaSettings, average_views, logits_from_probs, view_inputs
from tseg.runtime.segment.upsample import upsample_labels, upsample_probs


@dataclass(frozen=True)
class Outcome:
    """What :func:`finish` gives for one image.

    Attributes:
        labels: (H, W) labels: the CRF's when there is one, else the model's.
        plain: (H, W) labels without the CRF, when asked for and there is a CRF; else None.
        probs: (C, H, W) float32 probabilities (the TTA average), when asked for; else None.
    """

    labels: np.ndarray
    plain: np.ndarray | None = None
    probs: np.ndarray | None = None


def model_inputs(image: np.ndarray, *, metadata: ModelMetadata, tta: TtaSettings | None) -> list[np.ndarray]:
    """(H, W, 3) uint8 RGB -> its (3, h, w) float32 model inputs: one, or one per TTA view.

    Raises:
        TsegError: the image is not (H, W, 3) uint8 with H, W >= 1.
    """
    image = check_image(image)
    if tta is None:
        return [preprocess(image, size=metadata.input_size, mean=metadata.mean, std=metadata.std)]
    return view_inputs(image, tta, input_size=metadata.input_size, mean=metadata.mean, std=metadata.std)


def run_inputs(run: Callable[[np.ndarray], np.ndarray], inputs: Sequence[Sequence[np.ndarray]], *,
               batch_size: int) -> list[list[np.ndarray]]:
    """Runs the model on several images' inputs, ``batch_size`` inputs per run.

    Inputs of one shape (every image's, or one TTA scale's views) run together, in order.

    Args:
        run: the model: (N, 3, h, w) float32 -> (N, C, h', w') logits.
        inputs: per image, its :func:`model_inputs`.
        batch_size: the most inputs in one run.

    Returns:
        Per image, the (C, h', w') logits of each of its inputs.
    """
    outputs: list[list[np.ndarray | None]] = [[None] * len(item) for item in inputs]
    groups: dict[tuple[int, ...], list[tuple[int, int]]] = {}
    for i, item in enumerate(inputs):
        for j, x in enumerate(item):
            groups.setdefault(x.shape, []).append((i, j))
    for places in groups.values():
        for start in range(0, len(places), batch_size):
            chunk = places[start : start + batch_size]
            logits = run(np.stack([inputs[i][j] for i, j in chunk]))
            for k, (i, j) in enumerate(chunk):  # indexed: a GPU array's items are views
                outputs[i][j] = logits[k]
    return outputs  # type: ignore[return-value]  (every place was filled)


def finish(logits: Sequence[np.ndarray], *, size: Sequence[int], image: np.ndarray | None = None,
           crf: CrfParams | None = None, tta: TtaSettings | None = None, crf_threads: int | None = None,
           plain: bool = False, probs: bool = False) -> Outcome:
    """One image's model outputs -> its labels at its own size. Thread-safe.

    Without TTA: the argmax of the bilinearly upsampled logits, or the dense CRF's labels.
    With TTA: the argmax of the views' averaged softmax, or the CRF's on it.

    Args:
        logits: (C, h', w') float32 per input of :func:`model_inputs` (one without TTA); on the
            GPU too (:mod:`tseg.runtime.device_arrays`): the CUDA CRF reads them there, other
            steps get a host copy.
        size: the image's (H, W).
        image: (H, W, 3) uint8, needed by the CRF only.
        crf: dense-CRF parameters, or None.
        tta: the TTA views ``logits`` belong to, or None.
        crf_threads: the CRF's threads (None: every core); the labels do not depend on it.
        plain: also give the labels without the CRF (when there is a CRF).
        probs: also give the (C, H, W) float32 probabilities.

    Raises:
        TsegError: NaN or infinite scores, or a CRF without its image.
    """
    if crf is not None and image is None:
        raise TsegError("image: the CRF needs the image, got None")
    plain = plain and crf is not None
    if any(is_device_array(x) for x in logits) and not (
            crf is not None and crf.device == "cuda" and tta is None and not plain and not probs):
        logits = [to_host(x) for x in logits]  # only the CUDA CRF reads them on the GPU
    if tta is not None:
        averaged = average_views(logits, tta, size)
        model_labels = argmax_classes(averaged) if crf is None or plain else None
        if crf is None:
            return Outcome(model_labels, probs=averaged if probs else None)
        # The CRF's input is the average's log; in place when the average is not kept.
        refined = crf.refine_logits(logits_from_probs(averaged, in_place=not probs), image, threads=crf_threads)
        return Outcome(refined, model_labels if plain else None, averaged if probs else None)
    if len(logits) != 1:
        raise TsegError(f"logits: need one model output without TTA, got {len(logits)}")
    size = (int(size[0]), int(size[1]))
    upsampled = upsample_probs(logits[0], size) if probs else None
    if crf is None:
        return Outcome(upsample_labels(logits[0], size), probs=upsampled)
    refined = crf.refine_logits(logits[0], image, threads=crf_threads)
    return Outcome(refined, upsample_labels(logits[0], size) if plain else None, upsampled)
