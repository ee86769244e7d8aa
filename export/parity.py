"""Does the ONNX file compute what PyTorch computes? Logits and argmax, side by side."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.images import preprocess
from tseg.runtime.model.session import create_session
from tseg.runtime.scores import argmax_classes
from tseg.train.checkpoints import ModelSpec

MIN_AGREEMENT = 0.999


@dataclass(frozen=True)
class ParityCase:
    """One input compared: its name, size, the largest logit gap and argmax agreement."""

    name: str
    height: int
    width: int
    max_abs_diff: float
    argmax_agreement: float


@dataclass(frozen=True)
class ParityReport:
    """All cases, the worst figures, and whether they pass ``min_agreement``."""

    cases: tuple[ParityCase, ...]
    providers: tuple[str, ...]
    min_agreement: float = MIN_AGREEMENT

    @property
    def worst_agreement(self) -> float:
        return min(c.argmax_agreement for c in self.cases)

    @property
    def max_abs_diff(self) -> float:
        return max(c.max_abs_diff for c in self.cases)

    @property
    def passed(self) -> bool:
        return bool(self.worst_agreement >= self.min_agreement and np.isfinite(self.max_abs_diff))

    def to_dict(self) -> dict:
        """Strict-JSON form: a non-finite difference (NaN or inf logits) becomes null."""
        return {
            "passed": self.passed,
            "worst_argmax_agreement": self.worst_agreement,
            "max_abs_diff": finite_or_none(self.max_abs_diff),
            "min_agreement": self.min_agreement,
            "providers": list(self.providers),
            "cases": [dict(asdict(c), max_abs_diff=finite_or_none(c.max_abs_diff)) for c in self.cases],
        }

    def summary(self) -> str:
        lines = [f"{'case':<28} {'size':>9}  {'max |dlogit|':>12}  {'argmax agree':>12}"]
        for c in self.cases:
            lines.append(
                f"{c.name:<28} {c.height:>4}x{c.width:<4}  {c.max_abs_diff:12.2e}  {c.argmax_agreement:12.5%}"
            )
        verdict = "PASS" if self.passed else "FAIL"
        lines.append(
            f"{verdict}: worst agreement {self.worst_agreement:.5%}"
            f" (need >= {self.min_agreement:.1%}), max |dlogit| {self.max_abs_diff:.2e}"
        )
        return "\n".join(lines)


def _labels(logits: np.ndarray) -> np.ndarray:
    """(N, C, h, w) logits -> (N, h, w) labels; NaN or inf scores are judged by the caller, not refused."""
    return argmax_classes(np.moveaxis(logits, 1, 0), strict=False)


def finite_or_none(value: float) -> float | None:
    """A number for strict JSON: ``float(value)``, or None for NaN and infinities."""
    return float(value) if np.isfinite(value) else None


def generated_inputs(spec: ModelSpec, *, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Two synthetic images: one at the training size and one at another, non-square size.

    Smooth colour fields with edges rather than white noise, so logits are far from ties.
    """
    rng = np.random.default_rng(seed)
    height, width = spec.input_size
    sizes = [(height, width), (height * 3 // 2 + 7, max(width * 3 // 4 + 5, 16))]
    cases = []
    for h, w in sizes:
        coarse = rng.integers(0, 256, size=(h // 16 + 2, w // 16 + 2, 3), dtype=np.uint8)
        image = np.kron(coarse, np.ones((16, 16, 1), dtype=np.uint8))[:h, :w]
        image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
        cases.append((f"generated {h}x{w}", preprocess(image, size=(h, w), mean=spec.mean, std=spec.std)))
    return cases


def dataset_inputs(coco: CocoDataset, spec: ModelSpec, *, limit: int) -> list[tuple[str, np.ndarray]]:
    """Up to ``limit`` images of a split, preprocessed as the runtime does."""
    return [
        (
            coco.images[i].file_name,
            preprocess(coco.read_image(i), size=spec.input_size, mean=spec.mean, std=spec.std),
        )
        for i in range(min(limit, len(coco)))
    ]


def compare(
    model: nn.Module,
    onnx_path: str | Path,
    inputs: Iterable[tuple[str, np.ndarray]],
    *,
    device: str = "cpu",
    min_agreement: float = MIN_AGREEMENT,
    session=None,
) -> ParityReport:
    """Runs each (3, H, W) input through PyTorch and ONNX Runtime and compares.

    Args:
        model: the PyTorch model (eval mode, on the CPU).
        onnx_path: the exported file.
        inputs: (name, (3, H, W) float32 normalised image) pairs.
        device: ONNX Runtime device (see tseg.runtime.model.session).
        min_agreement: the argmax agreement a case needs to pass.
        session: an ONNX Runtime session already open on ``onnx_path`` (else one is opened).
    """
    session = session if session is not None else create_session(onnx_path, device=device)
    input_name = session.get_inputs()[0].name
    cases = []
    model = model.eval().cpu()
    for name, chw in inputs:
        batch = chw[None].astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(batch))["out"].numpy()
        got = session.run(None, {input_name: batch})[0]
        cases.append(
            ParityCase(
                name=name,
                height=chw.shape[1],
                width=chw.shape[2],
                # NaN or inf on either side is a failure, never a silent pass.
                max_abs_diff=float(np.abs(got - expected).max())
                if np.isfinite(got).all() and np.isfinite(expected).all()
                else float("inf"),
                argmax_agreement=float((_labels(got) == _labels(expected)).mean()),
            )
        )
    return ParityReport(tuple(cases), tuple(session.get_providers()), min_agreement)


def parity_inputs(spec: ModelSpec, coco: CocoDataset | None, *, limit: int) -> list:
    """Generated inputs, plus dataset images when a split is given."""
    inputs: list[tuple[str, np.ndarray]] = generated_inputs(spec)
    if coco is not None:
        inputs += dataset_inputs(coco, spec, limit=limit)
    return inputs


__all__: Sequence[str] = ["ParityCase", "ParityReport", "compare", "parity_inputs"]
