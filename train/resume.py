"""Training state beyond the weights: optimizer, step, best so far, RNG streams."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tseg.runtime.errors import TsegError
from tseg.train.checkpoints import load_checkpoint
from tseg.train.settings import TrainSettings


def rng_state() -> dict[str, Any]:
    """Every RNG a run draws from, in weights_only-loadable form."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def training_state(*, optimizer, scaler, step: int, best_miou: float, best_epoch: int) -> dict[str, Any]:
    """What last.pt holds besides the model, for an exact --resume."""
    return {
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "step": step,
        "best_miou": best_miou,
        "best_epoch": best_epoch,
        "rng": rng_state(),
    }


# Entries of last.pt that --resume needs, and the type each must have.
RESUME_KEYS = {
    "model": dict,
    "state_dict": dict,
    "optimizer": dict,
    "rng": dict,
    "log": dict,
    "settings": dict,
    "epoch": int,
    "step": int,
    "best_epoch": int,
    "best_miou": (int, float),
}


def load_resume_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """runs/RUN/last.pt, checked to hold the training state.

    Raises:
        TsegError: the folder or its last.pt is missing, or it lacks training state.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TsegError(f"cannot resume: run folder not found: {run_dir}")
    path = run_dir / "last.pt"
    if not path.is_file():
        raise TsegError(f"cannot resume: {run_dir} has no last.pt checkpoint")
    payload = load_checkpoint(path)
    if "optimizer" not in payload or "rng" not in payload:
        raise TsegError(f"cannot resume: {path} holds no training state (optimizer, RNG)")
    for key, kind in RESUME_KEYS.items():
        value = payload.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TsegError(f"cannot resume: {path} has a missing or malformed {key!r} entry ({type(value).__name__})")
    if payload["epoch"] < 0 or payload["step"] < 0:
        raise TsegError(f"cannot resume: {path} has a negative epoch or step ({payload['epoch']}, {payload['step']})")
    return payload


def resume_settings(payload: dict[str, Any], *, source: Path) -> TrainSettings:
    """The settings a resumed run continues with, as saved in its last.pt.

    Raises:
        TsegError: the saved settings are malformed or out of range, naming ``source``.
    """
    try:
        return TrainSettings.from_dict(payload["settings"])
    except (TsegError, TypeError) as err:
        raise TsegError(f"cannot resume: {source} has invalid saved settings: {err}") from None
