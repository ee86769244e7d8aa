"""tseg.runtime: the torch-free core. Run exported models, read COCO data, score them.

Nothing here imports torch, so ``pip install tseg`` gives a lean inference install.
"""

from importlib.metadata import PackageNotFoundError, version

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
