"""Training state beyond the weights: optimizer, step, best so far, RNG streams."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tseg.runtime.errors import TsegError
from tseg.train.checkpoints import load_checkpoint


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
    return payload
