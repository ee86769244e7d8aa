"""The resolved settings of a training run: one frozen dataclass, saved with the run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MODEL = "deeplabv3_mobilenet_v3_large"


@dataclass(frozen=True)
class TrainSettings:
    """Everything that defines a training run.

    Attributes:
        data: dataset root in the competition layout; None = the built-in synthetic set.
        train_json, val_json: split files, relative to ``data``.
        model: registry name.
        backbone_weights: None (random init), "imagenet" (torchvision's weights) or a .pth path.
        size: training size; images are resized to size x size.
        epochs, batch_size, lr: the optimisation (Adam, cross-entropy).
        name: run name; the folder is ``runs_dir/name`` (suffixed -2, -3 ... if taken).
        runs_dir: where run folders go.
        seed: seeds model init, shuffling and flips.
        workers: DataLoader worker processes (0 = load in the main process).
        cache: keep decoded, resized images in memory after their first use.
        hflip: random horizontal flips.
        device: "auto", "cpu" or "cuda".
        progress: tqdm progress bars.
    """

    data: Path | None = None
    train_json: str = "train.json"
    val_json: str = "val.json"
    model: str = DEFAULT_MODEL
    backbone_weights: str | None = None
    size: int = 256
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    name: str = "run"
    runs_dir: Path = Path("runs")
    seed: int = 0
    workers: int = 0
    cache: bool = True
    hflip: bool = True
    device: str = "auto"
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON- and weights_only-safe form (paths as strings)."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
