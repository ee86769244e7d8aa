"""tseg.runtime: the torch-free core. Run exported models, read COCO data, score them.

Nothing here imports torch, so ``pip install tseg`` gives a lean inference install.
"""

import os
from importlib.metadata import PackageNotFoundError, version

# ONNX Runtime's telemetry writes ~/.cache/Microsoft/DeveloperTools at import; a
# toolkit must not write outside the folders it is given. Set before any stage
# imports onnxruntime (every stage imports tseg.runtime first); a user's own value wins.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from tseg.runtime.errors import TsegError
from tseg.runtime.metadata import ModelMetadata
from tseg.runtime.metrics import ConfusionMatrix, SegmentationScores
from tseg.runtime.segmenter import Segmenter

try:
    __version__ = version("tseg")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "ConfusionMatrix",
    "ModelMetadata",
    "SegmentationScores",
    "Segmenter",
    "TsegError",
    "__version__",
]
