"""Hand-built tseg ONNX models whose outputs are known, for runtime tests.

The colour model is one 1x1 convolution on the normalised RGB input. It undoes
the normalisation, so its logits are the pixels on the [0, 1] scale: class k
(1..3) scores the k-th RGB channel, class 0 (background) a constant threshold.
A pixel is labelled with its dominant channel, or background when every channel
is below the threshold. :func:`colour_labels` computes the same labels in NumPy
from an image, through the runtime's own preprocessing and resize, so a test can
compare what ``tseg-infer`` wrote with labels it did not get from the model.

Models look like ``tseg-export``'s: input "image" (N, 3, H, W) float32 and
output "logits" (N, C, H, W) with dynamic N, H and W, and tseg metadata in
``metadata_props``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tseg.runtime.images import preprocess
from tseg.runtime.model.metadata import ModelMetadata, default_palette
from tseg.runtime.scores import labels_from_scores, resize_scores

# The tiny COCO dataset's class names: its Metal, Paper and Glass objects are
# red-, green- and blue-dominant on a grey background (see tests/tiny_coco.py).
COLOUR_CLASSES = ("Background", "Metal", "Paper", "Glass")
# ImageNet statistics: unequal per channel, so a runtime that swapped channels
# or skipped normalisation would label differently.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# A channel must exceed this (on [0, 1]) to beat background; the tiny dataset's
# grey noise stays below it (90..140 of 255), its objects' main channel above it.
THRESHOLD = 0.62
INPUT_SIZE = (24, 40)  # (height, width): not square, so a height/width mix-up shows
OPSET = 17
IR_VERSION = 8


def colour_metadata(
    *,
    classes: Sequence[str] = COLOUR_CLASSES,
    input_size: tuple[int, int] = INPUT_SIZE,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
) -> ModelMetadata:
    """The tseg metadata of a colour model."""
    return ModelMetadata(
        classes=tuple(classes),
        palette=default_palette(len(classes)),
        mean=tuple(mean),
        std=tuple(std),
        input_size=tuple(input_size),
        model_name="colour_1x1_conv",
        tseg_version="test",
        extra={"made_by": "tests/onnx_models.py"},
    )


def colour_weights(
    metadata: ModelMetadata, *, threshold: float = THRESHOLD, all_background: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The 1x1 convolution's weight (C, 3, 1, 1) and bias (C,), float32.

    ``x = (p - mean) / std`` comes in, so ``std * x + mean = p`` (the pixel on [0, 1]).
    ``all_background`` gives a stub that labels every pixel 0.
    """
    num_classes = metadata.num_classes
    weight = np.zeros((num_classes, 3, 1, 1), np.float32)
    bias = np.zeros(num_classes, np.float32)
    bias[0] = threshold
    if all_background:
        bias[0] = 10.0
        return weight, bias
    for label in range(1, min(num_classes, 4)):
        channel = label - 1
        weight[label, channel, 0, 0] = metadata.std[channel]
        bias[label] = metadata.mean[channel]
    for label in range(4, num_classes):  # more classes than channels: never the best
        bias[label] = -10.0
    return weight, bias


def build_colour_model(
    metadata: ModelMetadata | None = None,
    *,
    threshold: float = THRESHOLD,
    all_background: bool = False,
    output_channels: int | None = None,
    props: dict[str, str] | None = None,
):
    """An ``onnx.ModelProto``: a 1x1 conv from "image" (N, 3, H, W) to "logits" (N, C, H, W).

    Args:
        metadata: tseg metadata (default :func:`colour_metadata`).
        threshold: background's constant score.
        all_background: a stub whose every pixel is background.
        output_channels: C of the graph when it must differ from the class count
            (a model whose metadata does not match its graph).
        props: metadata_props to store instead of ``metadata.to_props()`` (e.g. {} for none).
    """
    from onnx import TensorProto, helper, numpy_helper

    metadata = metadata or colour_metadata()
    weight, bias = colour_weights(metadata, threshold=threshold, all_background=all_background)
    channels = output_channels or metadata.num_classes
    if channels != metadata.num_classes:
        weight = np.resize(weight, (channels, 3, 1, 1))
        bias = np.resize(bias, channels)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "weight", "bias"], ["logits"], kernel_shape=[1, 1])],
        "colour_model",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", channels, "height", "width"])],
        initializer=[numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tseg-tests")
    model.ir_version = IR_VERSION
    helper.set_model_props(model, metadata.to_props() if props is None else props)
    return model


def write_colour_model(path: str | Path, metadata: ModelMetadata | None = None, **kwargs) -> Path:
    """Builds a colour model (see :func:`build_colour_model`), checks it and saves it to ``path``."""
    import onnx

    model = build_colour_model(metadata, **kwargs)
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def colour_logits(image: np.ndarray, metadata: ModelMetadata | None = None, **kwargs) -> np.ndarray:
    """What the colour model outputs for an image, in NumPy: (C, h, w) at the model's input size.

    Args:
        image: (H, W, 3) uint8 RGB.
        metadata: as given to :func:`build_colour_model`; kwargs as there.
    """
    metadata = metadata or colour_metadata()
    weight, bias = colour_weights(metadata, **kwargs)
    x = preprocess(image, size=metadata.input_size, mean=metadata.mean, std=metadata.std)
    return np.einsum("ck,khw->chw", weight[:, :, 0, 0], x) + bias[:, None, None]


def colour_scores(image: np.ndarray, metadata: ModelMetadata | None = None, **kwargs) -> np.ndarray:
    """The colour model's logits resized to the image: (C, H, W) float32."""
    return resize_scores(colour_logits(image, metadata, **kwargs), image.shape[:2])


def colour_labels(
    image: np.ndarray, metadata: ModelMetadata | None = None, *, tie_gap: float = 1e-4, **kwargs
) -> tuple[np.ndarray, np.ndarray]:
    """The labels a runtime must give for ``image`` with a colour model.

    Returns:
        (H, W) expected labels, and an (H, W) bool mask of the pixels where the
        two best classes differ by at least ``tie_gap`` (elsewhere float rounding
        in ONNX Runtime may pick either).
    """
    scores = colour_scores(image, metadata, **kwargs)
    labels = labels_from_scores(scores)
    top2 = np.sort(scores, axis=0)[-2:]
    return labels, (top2[1] - top2[0]) >= tie_gap


def colour_blocks_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A dark noisy image with red, green and blue rectangles (every class present), (H, W, 3) uint8."""
    image = rng.integers(0, 110, size=(height, width, 3)).astype(np.uint8)
    colours = [(230, 40, 30), (30, 220, 50), (40, 60, 240), (240, 200, 20)]
    for index, colour in enumerate(colours):
        top = int(rng.integers(0, max(height - height // 3, 1)))
        left = int(rng.integers(0, max(width - width // 3, 1)))
        bottom = min(height, top + max(height // 3, 2) + index)
        right = min(width, left + max(width // 3, 2))
        image[top:bottom, left:right] = colour
    return image
