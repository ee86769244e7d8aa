"""The resolved settings of a training run: one frozen dataclass, saved with the run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tseg.runtime.errors import TsegError
from tseg.train.schedules import SCHEDULES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MODEL = "deeplabv3_mobilenet_v3_large"
OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass(frozen=True)
class TrainSettings:
    """Everything that defines a training run.

    Attributes:
        data: dataset root in the competition layout; None = the built-in synthetic set.
        train_json, val_json: split files, relative to ``data``.
        model: registry name.
        backbone_weights: None (random init), "imagenet" (torchvision's weights) or a .pth path.
        size: training size; images are resized to size x size.
        epochs: passes over the training split.
        batch_size: the global batch (split evenly across processes under torchrun).
        accumulate: micro-batches per optimizer step (gradient accumulation).
        lr: peak learning rate.
        lr_schedule: constant, warmup-cosine, warmup-poly or warmup-step (see schedules.py).
        warmup_steps: optimizer steps of the linear warm-up (or use warmup_epochs).
        warmup_epochs: warm-up length in epochs (fractions allowed); ignored if warmup_steps > 0.
        min_lr: where the decays end.
        optimizer: adam, adamw or sgd; weight_decay and momentum (sgd) apply.
        class_weights: "none", "balanced" (median frequency) or comma-separated weights per class.
        ignore_index: label excluded from the loss and the metrics (also fills crop padding).
        hflip, scale_range, color_jitter: augmentations (see data/transforms.py).
        amp: mixed precision (bf16 autocast on CPU, fp16 + GradScaler on CUDA).
        channels_last: NHWC memory format (faster convolutions on CPU and tensor cores).
        sync_bn: SyncBatchNorm across processes under torchrun.
        bn_momentum: set every BatchNorm's running-stat momentum (None keeps the model's;
            MobileNetV3 uses 0.01, too slow for short runs from scratch, where 0.1 helps).
        name: run name; the folder is ``runs_dir/name`` (suffixed -2, -3 ... if taken).
        runs_dir: where run folders go.
        seed: seeds model init, shuffling and augmentation.
        workers: DataLoader worker processes per process (0 = load in the main process).
        cache: decode and resize the dataset once into uint8 memmaps.
        tensorboard: also log to TensorBoard (runs/NAME/tensorboard).
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
    accumulate: int = 1
    lr: float = 1e-3
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    class_weights: str = "none"
    ignore_index: int = 255
    hflip: bool = True
    scale_range: tuple[float, float] | None = None
    color_jitter: float = 0.0
    amp: bool = False
    channels_last: bool = True
    sync_bn: bool = False
    bn_momentum: float | None = None
    name: str = "run"
    runs_dir: Path = Path("runs")
    seed: int = 0
    workers: int = 0
    cache: bool = False
    tensorboard: bool = False
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise TsegError(f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in SCHEDULES:
            raise TsegError(f"unknown LR schedule {self.lr_schedule!r}; valid: {', '.join(SCHEDULES)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise TsegError(f"unknown device {self.device!r}; valid: auto, cpu, cuda")
        if self.scale_range is not None and not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise TsegError(f"scale range needs 0 < min <= max, got {self.scale_range}")
        if self.bn_momentum is not None and not 0 < self.bn_momentum <= 1:
            raise TsegError(f"BatchNorm momentum must be in (0, 1], got {self.bn_momentum}")
        if self.warmup_steps < 0 or self.warmup_epochs < 0 or self.workers < 0 or self.color_jitter < 0:
            raise TsegError("warm-up, workers and colour jitter must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """JSON- and weights_only-safe form (paths as strings, tuples as lists)."""
        out = {}
        for key, value in asdict(self).items():
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSettings:
        """Inverse of :meth:`to_dict`; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("data", "runs_dir"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        if values.get("scale_range") is not None:
            values["scale_range"] = tuple(values["scale_range"])
        return cls(**values)
