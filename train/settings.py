"""The resolved settings of a training run: one frozen dataclass, saved with the run."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tseg.runtime.errors import TsegError
from tseg.train.schedules import SCHEDULES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MODEL = "deeplabv3_mobilenet_v3_large"
OPTIMIZERS = ("adam", "adamw", "sgd")
MAX_SIZE = 4096  # training side in pixels; beyond it one image's tensors alone take gigabytes
MAX_SCALE = 4.0  # --scale-aug upper bound (torchvision's reference recipe uses 0.5-2.0)
MAX_WORKERS = 64  # DataLoader processes, each a copy of the main one
MAX_SEED = 2**32 - 1


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
        warmup_epochs: warm-up length in epochs (fractions allowed); give one of the two, not both.
        min_lr: where the decays end (0 <= min_lr <= lr; a decaying schedule only).
        optimizer: adam, adamw or sgd; weight_decay and momentum (sgd) apply.
        class_weights: "none", "balanced" (median frequency) or comma-separated weights per class.
        ignore_index: label excluded from the loss and the metrics (also fills crop padding);
            0..255 and not a class label.
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
        check_train_settings(self)

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


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_int(settings: TrainSettings, name: str, low: int, high: int | None = None) -> None:
    value = getattr(settings, name)
    if not _is_int(value) or value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise TsegError(f"{name} must be an integer {bound}, got {value!r}", parameter=name)


def _check_real(
    settings: TrainSettings,
    name: str,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """A finite number in [low, high] (open ends where asked)."""
    value = getattr(settings, name)
    ok = _is_real(value) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        if high == math.inf:
            where = f"> {low:g}" if low_open else f">= {low:g}"
        else:
            where = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise TsegError(f"{name} must be a finite number {where}, got {value!r}", parameter=name)


def _check_choices(settings: TrainSettings) -> None:
    for name, valid in (("optimizer", OPTIMIZERS), ("lr_schedule", SCHEDULES), ("device", ("auto", "cpu", "cuda"))):
        value = getattr(settings, name)
        if value not in valid:
            what = {"lr_schedule": "LR schedule"}.get(name, name)
            raise TsegError(f"{name}: unknown {what} {value!r}; valid: {', '.join(valid)}", parameter=name)
    for name in ("hflip", "amp", "channels_last", "sync_bn", "cache", "tensorboard", "progress"):
        if not isinstance(getattr(settings, name), bool):
            raise TsegError(f"{name} must be True or False, got {getattr(settings, name)!r}", parameter=name)
    for name in ("model", "train_json", "val_json", "name"):
        value = getattr(settings, name)
        if not isinstance(value, str) or not value or "\x00" in value:
            raise TsegError(f"{name} must be a non-empty string without NUL characters, got {value!r}", parameter=name)
    if "/" in settings.name or settings.name in (".", ".."):
        raise TsegError(f"name: the run name must be a plain folder name, got {settings.name!r}", parameter="name")
    if settings.data is not None and not isinstance(settings.data, Path):
        raise TsegError(f"data must be a Path or None, got {settings.data!r}", parameter="data")
    if not isinstance(settings.runs_dir, Path):
        raise TsegError(f"runs_dir must be a Path, got {settings.runs_dir!r}", parameter="runs_dir")
    if settings.backbone_weights is not None and (
        not isinstance(settings.backbone_weights, str) or not settings.backbone_weights
    ):
        raise TsegError(
            f"backbone_weights must be 'imagenet' or a file path, got {settings.backbone_weights!r}",
            parameter="backbone_weights",
        )


def _check_numbers(settings: TrainSettings) -> None:
    _check_int(settings, "size", 16, MAX_SIZE)
    _check_int(settings, "epochs", 1)
    _check_int(settings, "batch_size", 1)
    _check_int(settings, "accumulate", 1)
    _check_int(settings, "warmup_steps", 0)
    _check_int(settings, "ignore_index", 0, 255)
    _check_int(settings, "seed", 0, MAX_SEED)
    _check_int(settings, "workers", 0, MAX_WORKERS)
    _check_real(settings, "lr", low=0, low_open=True)
    if not (_is_real(settings.min_lr) and 0 <= settings.min_lr <= settings.lr):
        raise TsegError(
            f"min_lr must be a number from 0 to lr={settings.lr:g}, got {settings.min_lr!r}", parameter="min_lr"
        )
    _check_real(settings, "warmup_epochs", low=0)
    _check_real(settings, "weight_decay", low=0)
    _check_real(settings, "momentum", low=0, high=1, high_open=True)
    _check_real(settings, "color_jitter", low=0, high=1)
    if settings.bn_momentum is not None:
        _check_real(settings, "bn_momentum", low=0, high=1, low_open=True)


def _check_scale_range(scale_range: object) -> None:
    values = list(scale_range) if isinstance(scale_range, (tuple, list)) else []
    if (
        len(values) != 2
        or not all(_is_real(v) and math.isfinite(v) for v in values)
        or not 0 < values[0] <= values[1] <= MAX_SCALE
    ):
        raise TsegError(
            f"scale_range needs MIN MAX with 0 < MIN <= MAX <= {MAX_SCALE:g}, got {scale_range!r}",
            parameter="scale_range",
        )


def check_class_weights(spec: object) -> list[float] | None:
    """Parses ``class_weights``: None for "none"/"balanced", else the numbers (count checked later).

    Raises:
        TsegError: not "none", "balanced" or comma-separated finite numbers >= 0 with one > 0.
    """
    if spec in ("none", "balanced"):
        return None
    try:
        values = [float(v) for v in str(spec).split(",")] if isinstance(spec, str) else []
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) and v >= 0 for v in values) or max(values) == 0:
        raise TsegError(
            "class_weights needs 'none', 'balanced' or one finite number >= 0 per class (comma-separated,"
            f" not all 0), got {spec!r}",
            parameter="class_weights",
        )
    return values


def check_train_settings(settings: TrainSettings) -> None:
    """Every field's type and range, and settings that would be silently ignored.

    Raises:
        TsegError: one line naming the option, what it needs and what came.
    """
    _check_choices(settings)
    _check_numbers(settings)
    if settings.scale_range is not None:
        _check_scale_range(settings.scale_range)
    check_class_weights(settings.class_weights)
    if settings.warmup_steps > 0 and settings.warmup_epochs > 0:
        raise TsegError(
            f"give warmup_steps={settings.warmup_steps} or warmup_epochs={settings.warmup_epochs:g}, not both"
        )
    if settings.min_lr > 0 and settings.lr_schedule == "constant":
        decaying = ", ".join(s for s in SCHEDULES if s != "constant")
        raise TsegError(
            f"min_lr={settings.min_lr:g} has no effect with the constant LR schedule (lr_schedule='constant');"
            f" choose a decaying schedule ({decaying}) or leave min_lr=0",
            parameter="min_lr",
        )
