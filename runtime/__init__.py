"""tseg.runtime: the torch-free core. Run exported models, read COCO data, score them.

Nothing here imports torch, so ``pip install tseg`` gives a lean inference install;
Numba is imported only when a CRF runs (``dense_crf`` is loaded on first use).

    >>> from tseg.runtime import Segmenter
    >>> pred = Segmenter("model.onnx").predict("photo.jpg")
    >>> pred.save("photo.png")
"""

import os
from importlib.metadata import PackageNotFoundError, version

# ONNX Runtime's telemetry writes ~/.cache/Microsoft/DeveloperTools at import; a
# toolkit must not write outside the folders it is given. Set before any stage
# imports onnxruntime (every stage imports tseg.runtime first); a user's own value wins.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from tseg.runtime.data.metrics import ConfusionMatrix, SegmentationScores
from tseg.runtime.errors import TsegError
from tseg.runtime.images import read_image
from tseg.runtime.model.metadata import ModelMetadata
from tseg.runtime.model.openvino import OpenVinoSettings
from tseg.runtime.model.tensorrt import TensorrtSettings
from tseg.runtime.pixel_limit import set_max_image_pixels
from tseg.runtime.segment.prediction import Prediction
from tseg.runtime.segment.refine import CrfParams
from tseg.runtime.segment.segmenter import Segmenter
from tseg.runtime.segment.tta import TtaSettings

try:
    __version__ = version("tseg")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {"dense_crf": "tseg.runtime.crf"}  # imports Numba: loaded when first used


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ConfusionMatrix",
    "CrfParams",
    "ModelMetadata",
    "Prediction",
    "SegmentationScores",
    "Segmenter",
    "OpenVinoSettings",
    "TensorrtSettings",
    "TsegError",
    "TtaSettings",
    "__version__",
    "dense_crf",
    "read_image",
    "set_max_image_pixels",
]
