"""CRF settings as the runtime uses them: defaults, crf.json beside a model, CLI overrides."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from tseg.runtime.errors import TsegError
from tseg.runtime.files import atomic_write_bytes
from tseg.runtime.labels import labels_from_scores, softmax

CRF_FILE = "crf.json"


@dataclass(frozen=True)
class CrfParams:
    """Mean-field iterations and the two kernels' widths and weights (Potts).

    Defaults are pydensecrf's example; ``crf.json`` beside a model (written by
    ``tseg-infer --crf-tune``) overrides them, and CLI flags override both.
    """

    iterations: int = 5
    gaussian_sxy: float = 3.0
    gaussian_compat: float = 3.0
    bilateral_sxy: float = 80.0
    bilateral_srgb: float = 13.0
    bilateral_compat: float = 10.0

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise TsegError(f"CRF iterations must be >= 0, got {self.iterations}")
        for name in ("gaussian_sxy", "bilateral_sxy", "bilateral_srgb"):
            if not getattr(self, name) > 0:
                raise TsegError(f"CRF {name} must be > 0, got {getattr(self, name)}")

    def refine(self, scores: np.ndarray, image: np.ndarray) -> np.ndarray:
        """Labels after the CRF.

        Args:
            scores: (C, H, W) logits at the image's size.
            image: (H, W, 3) uint8 RGB.

        Returns:
            (H, W) labels, uint8 (uint16 beyond 256 classes).
        """
        from tseg.runtime.crf.dense import dense_crf

        return labels_from_scores(dense_crf(softmax(scores), image, **asdict(self)))

    def save(self, path: str | Path) -> None:
        """Writes the parameters as JSON, atomically."""
        atomic_write_bytes(path, (json.dumps(asdict(self), indent=2) + "\n").encode())

    @classmethod
    def load(cls, path: str | Path) -> CrfParams:
        """Reads parameters written by :meth:`save`; unknown keys are an error."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise TsegError(f"cannot read CRF parameters from {path}: {err}") from None
        valid = [f.name for f in fields(cls)]
        if not isinstance(data, dict) or set(data) - set(valid):
            unknown = sorted(set(data) - set(valid)) if isinstance(data, dict) else data
            raise TsegError(f"{path}: unknown CRF parameters {unknown}; valid: {', '.join(valid)}")
        try:
            return cls(**{k: (int if k == "iterations" else float)(v) for k, v in data.items()})
        except (TypeError, ValueError) as err:
            raise TsegError(f"{path}: bad CRF parameter value ({err})") from None


def crf_file_for(model_path: str | Path) -> Path:
    """Where a model's tuned CRF parameters live: crf.json in the model's folder."""
    return Path(model_path).parent / CRF_FILE


def resolve_crf_params(model_path: str | Path, overrides: dict[str, float | int | None]) -> CrfParams:
    """crf.json beside the model (if any) or the defaults, then non-None ``overrides``."""
    path = crf_file_for(model_path)
    base = CrfParams.load(path) if path.is_file() else CrfParams()
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
