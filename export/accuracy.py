"""The accuracy gate: what each exported precision costs against PyTorch, and whether to keep it.

Every file (FP32, FP16, INT8) is compared with the PyTorch model it came from on the
parity inputs (generated images, and val images when a dataset is given) and, with a
dataset, on the whole validation split the way the runtime scores it: each image
preprocessed as ``tseg-infer`` does, labels upsampled to the image's size, mIoU over
the split. The verdict per precision: argmax agreement at or above its threshold and
an mIoU drop of at most ``max_miou_drop``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from tseg.export.parity import MIN_AGREEMENT, ParityCase, finite_or_none
from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.data.metrics import ConfusionMatrix
from tseg.runtime.errors import TsegError
from tseg.runtime.images import preprocess
from tseg.runtime.model.metadata import PRECISIONS
from tseg.runtime.segment.upsample import upsample_labels
from tseg.train.checkpoints import ModelSpec

# The precisions the gate judges: each file's, and bf16, the FP32 file as OpenVINO runs it in
# bfloat16 on CPUs that have it (a precision of the run, not a file of its own).
GATED_PRECISIONS = (*PRECISIONS, "bf16")
RUN_PRECISIONS = ("bf16",)
# Argmax agreement with PyTorch each precision needs. FP32 differs from PyTorch only by
# summation order; FP16 rounds every activation (a plain conversion of the demo model agrees
# on 99.8% of pixels of random noise); bf16 keeps 8 bits of mantissa to FP16's 11 (98.5% of
# random noise's pixels on the demo model); INT8 moves pixels near class boundaries, and is
# judged above all on mIoU.
DEFAULT_MIN_AGREEMENT = {"fp32": MIN_AGREEMENT, "fp16": 0.99, "int8": 0.95, "bf16": 0.98}
DEFAULT_MAX_MIOU_DROP = 0.01

Runner = Callable[[np.ndarray], np.ndarray]
"""(1, 3, h, w) float32 normalised image -> (1, C, h, w) logits."""


def parse_min_agreement(text: str | float) -> dict[str, float]:
    """``0.999`` (FP32's threshold) or ``fp16=0.99,int8=0.9``: thresholds merged over the defaults.

    Raises:
        TsegError: an unknown precision, or a value that is not a fraction in [0, 1].
    """
    thresholds = dict(DEFAULT_MIN_AGREEMENT)
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise TsegError(
            "min_agreement: need a fraction such as 0.999, or PRECISION=FRACTION pairs", parameter="min_agreement"
        )
    for part in parts:
        precision, _, value = part.rpartition("=")
        precision = precision.strip().lower() or "fp32"
        if precision not in GATED_PRECISIONS:
            raise TsegError(
                f"min_agreement: unknown precision {precision!r}; valid: {', '.join(GATED_PRECISIONS)}",
                parameter="min_agreement",
            )
        try:
            fraction = float(value)
        except ValueError:
            fraction = float("nan")
        if not 0.0 <= fraction <= 1.0:
            raise TsegError(
                f"min_agreement: {part!r} needs a fraction from 0 to 1 (e.g. {precision}=0.99)",
                parameter="min_agreement",
            )
        thresholds[precision] = fraction
    return thresholds


@dataclass(frozen=True)
class SplitScores:
    """One file on the validation split: its mIoU and its pixels' agreement with PyTorch."""

    miou: float
    agreement: float
    max_abs_diff: float


@dataclass(frozen=True)
class PrecisionVerdict:
    """One precision's figures and verdict.

    Attributes:
        precision: fp32, fp16, int8, or bf16 (the FP32 file run by OpenVINO in bfloat16).
        path: the file as written (before any rejection rename).
        cases: the parity cases (generated and val images) against PyTorch.
        min_agreement: the threshold of this precision.
        split: the validation split's figures (None without a dataset).
        torch_miou: PyTorch's val mIoU (None without a dataset).
        max_miou_drop: the largest mIoU drop allowed.
        rejected_as: where a rejected file was moved ('' when kept).
        details: figures about the file (ONNX Runtime's providers, its size in bytes).
        sha256: the file's digest as judged: a later run keeps this record only while the
            file still has it (:mod:`tseg.export.records`).
    """

    precision: str
    path: str
    cases: tuple[ParityCase, ...]
    min_agreement: float
    split: SplitScores | None = None
    torch_miou: float | None = None
    max_miou_drop: float = DEFAULT_MAX_MIOU_DROP
    rejected_as: str = ""
    details: Mapping[str, object] = field(default_factory=dict)
    sha256: str = ""

    @property
    def judged_cases(self) -> tuple[ParityCase, ...]:
        """FP32 is judged on every case; FP16 and INT8 on real images when there are any."""
        if self.precision == "fp32":
            return self.cases
        real = tuple(c for c in self.cases if not c.name.startswith("generated "))
        return real or self.cases

    @property
    def worst_agreement(self) -> float:
        values = [c.argmax_agreement for c in self.judged_cases]
        if self.split is not None and self.precision != "fp32":
            values.append(self.split.agreement)
        return min(values)

    @property
    def max_abs_diff(self) -> float:
        return max(c.max_abs_diff for c in self.cases)

    @property
    def miou_drop(self) -> float | None:
        if self.split is None or self.torch_miou is None:
            return None
        return self.torch_miou - self.split.miou

    def failures(self) -> list[str]:
        """Why this precision fails its gate ([] when it passes)."""
        reasons = []
        if not np.isfinite(self.max_abs_diff):
            reasons.append("NaN or infinite logits")
        if self.worst_agreement < self.min_agreement:
            reasons.append(f"argmax agreement {self.worst_agreement:.4%} < {self.min_agreement:.2%}")
        drop = self.miou_drop
        if drop is not None and drop > self.max_miou_drop:
            reasons.append(
                f"val mIoU {self.split.miou:.4f} vs PyTorch {self.torch_miou:.4f}:"
                f" drop {drop:.4f} > max_miou_drop={self.max_miou_drop:g}"
            )
        return reasons

    @property
    def passed(self) -> bool:
        return not self.failures()

    def to_dict(self) -> dict:
        """Strict JSON (a non-finite difference becomes null)."""
        return {
            "precision": self.precision,
            "path": self.path,
            "sha256": self.sha256 or None,
            "passed": self.passed,
            "failures": self.failures(),
            "rejected_as": self.rejected_as or None,
            "worst_argmax_agreement": self.worst_agreement,
            "min_agreement": self.min_agreement,
            "max_abs_diff": finite_or_none(self.max_abs_diff),
            "val_miou": None if self.split is None else self.split.miou,
            "val_agreement": None if self.split is None else self.split.agreement,
            "val_max_abs_diff": None if self.split is None else finite_or_none(self.split.max_abs_diff),
            "torch_val_miou": self.torch_miou,
            "miou_drop": self.miou_drop,
            "max_miou_drop": self.max_miou_drop,
            "details": dict(self.details),
            "cases": [dict(asdict(c), max_abs_diff=finite_or_none(c.max_abs_diff)) for c in self.cases],
        }


def torch_runner(model: nn.Module) -> Runner:
    """The PyTorch model (eval, CPU) as a :data:`Runner`."""
    model = model.eval().cpu()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(batch))["out"].numpy()

    return run


def session_runner(session) -> Runner:
    """An ONNX Runtime session as a :data:`Runner`."""
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def score_split(
    reference: Runner,
    runners: Mapping[str, Runner],
    coco: CocoDataset,
    spec: ModelSpec,
    *,
    progress: bool = False,
) -> tuple[float, dict[str, SplitScores]]:
    """Scores PyTorch and each file on a split, one pass over its images.

    Each image is read and preprocessed once (as the runtime does), run through every
    runner, and its labels upsampled to the image's size, as ``tseg-infer --eval`` scores.

    Returns:
        PyTorch's mIoU, and per runner its mIoU, its pixel agreement with PyTorch's
        labels (at the image's size) and its largest logit difference.
    """
    num_classes = len(spec.classes)
    matrices = {name: ConfusionMatrix(num_classes) for name in ("torch", *runners)}
    agree = dict.fromkeys(runners, 0)
    worst = dict.fromkeys(runners, 0.0)
    pixels = 0
    for index in tqdm(range(len(coco)), desc="val mIoU", unit="img", disable=not progress, leave=False):
        image = coco.read_image(index)
        truth = coco.label_map(index)
        batch = preprocess(image, size=spec.input_size, mean=spec.mean, std=spec.std)[None]
        expected = np.asarray(reference(batch), np.float32)
        torch_labels = upsample_labels(expected[0], image.shape[:2])
        matrices["torch"].update(truth, torch_labels)
        pixels += torch_labels.size
        for name, run in runners.items():
            got = np.asarray(run(batch), np.float32)
            if not np.isfinite(got).all():
                raise TsegError(f"the {name} file gave NaN or infinite logits on {coco.images[index].file_name}")
            labels = upsample_labels(got[0], image.shape[:2])
            matrices[name].update(truth, labels)
            agree[name] += int((labels == torch_labels).sum())
            worst[name] = max(worst[name], float(np.abs(got - expected).max()))
    scores = {
        name: SplitScores(matrices[name].compute().miou, agree[name] / max(pixels, 1), worst[name])
        for name in runners
    }
    return matrices["torch"].compute().miou, scores


def summary(verdicts: Sequence[PrecisionVerdict]) -> str:
    """The printed table: one row per precision."""
    lines = [
        f"{'precision':<9} {'agreement':>10} {'(need)':>8} {'max|dlogit|':>11} {'val mIoU':>9}"
        f" {'PyTorch':>8} {'drop':>8}  verdict"
    ]
    for v in verdicts:
        miou = "-" if v.split is None else f"{v.split.miou:.4f}"
        torch_miou = "-" if v.torch_miou is None else f"{v.torch_miou:.4f}"
        drop = "-" if v.miou_drop is None else f"{v.miou_drop:+.4f}"
        verdict = "PASS" if v.passed else "FAIL: " + "; ".join(v.failures())
        if v.rejected_as:
            verdict += f" (moved to {v.rejected_as})"
        lines.append(
            f"{v.precision:<9} {v.worst_agreement:>10.4%} {v.min_agreement:>8.2%} {v.max_abs_diff:>11.2e}"
            f" {miou:>9} {torch_miou:>8} {drop:>8}  {verdict}"
        )
    return "\n".join(lines)
