"""Test-time augmentation: average the model's softmax over flipped and rescaled views.

Each view is the image resized to ``round(input_size * scale)`` and, with ``hflip``,
its mirror image too. The logits of a view are un-flipped, upsampled to the image's
own size and turned into probabilities; the views' probabilities are averaged. The
labels are then their argmax, or the dense CRF run on the averaged probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tseg.runtime.errors import TsegError
from tseg.runtime.images import preprocess
from tseg.runtime.scores import resize_scores, softmax

TTA_MODES = ("hflip",)
SCALE_RANGE = (0.1, 4.0)
MAX_SCALES = 8
ROWS_PER_BAND = 128


def _check_scale(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TsegError(f"TTA scales: need finite numbers in {SCALE_RANGE[0]}..{SCALE_RANGE[1]}, got {value!r:.40}")
    if not SCALE_RANGE[0] <= value <= SCALE_RANGE[1]:
        raise TsegError(f"TTA scales: need numbers in {SCALE_RANGE[0]}..{SCALE_RANGE[1]}, got {value:g}")
    return float(value)


@dataclass(frozen=True)
class TtaSettings:
    """Which views to average at inference.

    Attributes:
        hflip: also run each view mirrored left-right (and mirror its output back).
        scales: the model input size is multiplied by each (1 to 8 distinct values in
            0.1..4); a scale other than 1 needs a model with dynamic height and width.
    """

    hflip: bool = False
    scales: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if not isinstance(self.hflip, bool):
            raise TsegError(f"TTA hflip: need True or False, got {self.hflip!r:.40}")
        if isinstance(self.scales, (str, bytes)) or not isinstance(self.scales, Sequence):
            raise TsegError(f"TTA scales: need a sequence of numbers, got {self.scales!r:.60}")
        scales = tuple(_check_scale(s) for s in self.scales)
        if not 1 <= len(scales) <= MAX_SCALES or len(set(scales)) != len(scales):
            raise TsegError(f"TTA scales: need 1 to {MAX_SCALES} distinct numbers, got {self.scales!r:.60}")
        object.__setattr__(self, "scales", scales)

    @property
    def views(self) -> tuple[tuple[float, bool], ...]:
        """(scale, flipped) for every view, in the order they are averaged."""
        flips = (False, True) if self.hflip else (False,)
        return tuple((scale, flip) for scale in self.scales for flip in flips)

    @property
    def is_identity(self) -> bool:
        """True when the only view is the plain image at the model's size."""
        return self.views == ((1.0, False),)

    @classmethod
    def parse(cls, tta: str | None, tta_scales: str | None) -> TtaSettings | None:
        """Settings from text as a user types it: ``parse("hflip", "0.75,1,1.25")``.

        The parameters are named as tseg-infer's options (``--tta``, ``--tta-scales``), so
        its errors name them there (see :class:`~tseg.runtime.errors.TsegError`).

        Args:
            tta: None, "" or "none" for no flip, or "hflip".
            tta_scales: comma-separated numbers, or None for (1,).

        Returns:
            None when neither asks for anything (plain inference).

        Raises:
            TsegError: an unknown mode or a malformed scale list.
        """
        mode = (tta or "").strip().lower()
        if mode not in ("", "none", *TTA_MODES):
            raise TsegError(f"tta: unknown mode {tta!r:.40}; valid: {', '.join(TTA_MODES)}", parameter="tta")
        values: tuple[float, ...] = (1.0,)
        if tta_scales is not None:
            values = tuple(_parse_number(part, text=tta_scales) for part in str(tta_scales).split(","))
        settings = cls(hflip=mode == "hflip", scales=values)
        return None if settings.is_identity else settings


def _parse_number(part: str, *, text: str) -> float:
    part = part.strip()
    try:
        if not part.isascii():  # float() also takes other scripts' digits
            raise ValueError(part)
        return float(part)
    except ValueError:
        raise TsegError(
            f"tta_scales: need comma-separated numbers such as 0.75,1,1.25, got {text!r:.60}", parameter="tta_scales"
        ) from None


def view_size(input_size: Sequence[int], scale: float) -> tuple[int, int]:
    """The model input (height, width) of a view: ``round(input_size * scale)``, at least 1."""
    return max(1, round(input_size[0] * scale)), max(1, round(input_size[1] * scale))


def check_tta_graph(settings: TtaSettings, input_size: Sequence[int], graph_size: Sequence[int | None], *,
                    source: str) -> None:
    """Refuses scales a graph with a fixed height or width cannot run.

    Args:
        settings: the TTA views.
        input_size: the model's (height, width) from its metadata.
        graph_size: the graph input's (height, width), None where dynamic.
        source: names the model.

    Raises:
        TsegError: a view's size differs from a fixed size of the graph.
    """
    for scale in settings.scales:
        size = view_size(input_size, scale)
        if any(fixed is not None and fixed != got for fixed, got in zip(graph_size, size, strict=True)):
            shown = "x".join("?" if d is None else str(d) for d in graph_size)
            raise TsegError(
                f"{source}: TTA scale {scale:g} needs a {size[0]}x{size[1]} input, but the graph takes only"
                f" {shown} (height x width); use scale 1 or a model exported with dynamic height and width"
            )


def view_inputs(image: np.ndarray, settings: TtaSettings, *, input_size: Sequence[int],
                mean: Sequence[float], std: Sequence[float]) -> list[np.ndarray]:
    """The model inputs of every view, in the order of ``settings.views``.

    Args:
        image: (H, W, 3) uint8, already checked.
        settings: the views.
        input_size, mean, std: the model's (from its metadata).

    Returns:
        (3, h, w) float32 inputs, one per view (a mirrored view is its plain view flipped).
    """
    inputs = []
    for scale in settings.scales:
        x = preprocess(image, size=view_size(input_size, scale), mean=mean, std=std)
        inputs += [x, x[:, :, ::-1]] if settings.hflip else [x]
    return inputs


def average_views(logits: Sequence[np.ndarray], settings: TtaSettings, size: Sequence[int]) -> np.ndarray:
    """The softmax averaged over the views, at the image's own size.

    Each view's probabilities are made and added in bands of rows, so beyond the
    (C, H, W) result memory stays O(C * band * W) even for a big photo.

    Args:
        logits: (C, h, w) float32 model outputs, one per view in the order of ``settings.views``.
        settings: the views.
        size: the image's (H, W).

    Returns:
        (C, H, W) float32 probabilities (each pixel sums to 1).
    """
    if len(logits) != len(settings.views):
        raise TsegError(f"logits: need one per TTA view ({len(settings.views)}), got {len(logits)}")
    total = np.zeros((logits[0].shape[0], int(size[0]), int(size[1])), np.float32)
    for (_, flipped), view in zip(settings.views, logits, strict=True):
        add_upsampled_probs(total, np.ascontiguousarray(view[:, :, ::-1] if flipped else view))
    total /= np.float32(len(settings.views))
    return total


def add_upsampled_probs(total: np.ndarray, logits: np.ndarray, *, band: int = ROWS_PER_BAND) -> None:
    """Adds ``upsample_probs(logits, total.shape[1:])`` to ``total`` in place, ``band`` rows at a time.

    The same function as :func:`upsample_probs` (:func:`~tseg.runtime.scores.resize_scores`,
    then softmax over C), band by band, so the values are bit for bit its values.

    Args:
        total: (C, H, W) float32 accumulator.
        logits: (C, h, w) float32.
    """
    height = total.shape[1]
    for top in range(0, height, band):
        rows = slice(top, top + band)
        total[:, rows] += softmax(resize_scores(logits, total.shape[1:], rows=rows))


def logits_from_probs(probs: np.ndarray, *, in_place: bool = False) -> np.ndarray:
    """log(p), finite: logits whose softmax is ``probs`` (the CRF's unary is then -log p).

    Args:
        probs: (C, H, W) float32 probabilities.
        in_place: overwrite ``probs`` (a 12 MP photo's probabilities are 576 MiB with 12 classes).
    """
    out = probs if in_place else None
    clipped = np.maximum(probs, np.finfo(np.float32).tiny, out=out)
    return np.log(clipped, out=clipped)
