"""CRF settings as the runtime uses them: defaults, crf.json beside a model, CLI overrides."""

from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from tseg.runtime.errors import TsegError
from tseg.runtime.files import atomic_write_bytes
from tseg.runtime.labels import labels_from_scores, softmax

CRF_FILE = "crf.json"
MAX_ITERATIONS = 1000


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
        iterations = self.iterations
        if not isinstance(iterations, numbers.Integral) or isinstance(iterations, bool):
            raise TsegError(f"CRF iterations must be an integer, got {repr(iterations)[:60]}")
        if not 0 <= iterations <= MAX_ITERATIONS:
            raise TsegError(f"CRF iterations must be in 0..{MAX_ITERATIONS}, got {repr(iterations)[:60]}")
        for f in fields(self)[1:]:
            value = getattr(self, f.name)
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not -1e300 < value < 1e300:
                raise TsegError(f"CRF {f.name} must be a finite number, got {repr(value)[:60]}")
            if f.name in ("gaussian_sxy", "bilateral_sxy", "bilateral_srgb") and not value > 0:
                raise TsegError(f"CRF {f.name} must be > 0, got {value}")
            object.__setattr__(self, f.name, float(value))
        object.__setattr__(self, "iterations", int(iterations))

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
        """Reads parameters written by :meth:`save`.

        Unknown keys, and values of the wrong type (a string, a bool, a float
        where iterations need an integer), are an error, not converted.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, ValueError, RecursionError) as err:  # ValueError: bad JSON, encoding, huge ints
            first = (str(err).splitlines() or [type(err).__name__])[0][:200]
            raise TsegError(f"cannot read CRF parameters from {path}: {first}") from None
        valid = [f.name for f in fields(cls)]
        if not isinstance(data, dict) or set(data) - set(valid):
            unknown = sorted(set(data) - set(valid)) if isinstance(data, dict) else type(data).__name__
            raise TsegError(f"{path}: unknown CRF parameters {str(unknown)[:200]}; valid: {', '.join(valid)}")
        try:
            return cls(**data)
        except TsegError as err:
            raise TsegError(f"{path}: {err}") from None


def crf_file_for(model_path: str | Path) -> Path:
    """Where a model's tuned CRF parameters live: crf.json in the model's folder."""
    return Path(model_path).parent / CRF_FILE


def resolve_crf_params(model_path: str | Path, overrides: dict[str, float | int | None]) -> CrfParams:
    """The CRF settings to use: defaults < crf.json beside the model < non-None ``overrides``.

    Args:
        model_path: the .onnx file; its folder's crf.json is read when present.
        overrides: parameter -> value from the command line (None: not given).

    Raises:
        TsegError: crf.json is unreadable or malformed (also when a folder has its
            name), or a value is out of range.
    """
    path = crf_file_for(model_path)
    base = CrfParams.load(path) if path.exists() else CrfParams()
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
