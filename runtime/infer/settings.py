"""What a tseg-infer run is asked to do (:class:`InferSettings`), and the Segmenter it opens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tseg.runtime.infer.pipeline import PipelineSettings
from tseg.runtime.model.openvino import OpenVinoSettings
from tseg.runtime.model.tensorrt import TensorrtSettings
from tseg.runtime.report.write import ReportSettings
from tseg.runtime.segment.refine import CrfParams
from tseg.runtime.segment.segmenter import Segmenter


@dataclass(frozen=True)
class InferSettings:
    """How to run a model over images.

    Attributes:
        model: the exported .onnx file.
        out: folder for the label PNGs (created if missing).
        device: "auto", "cpu", "cuda", "tensorrt" or "openvino" (see :class:`Segmenter`).
        threads: the engine's threads (ONNX Runtime intra-op, OpenVINO inference); None lets it choose.
        progress: show a progress bar (images/s) on stderr.
        crf: dense-CRF post-processing parameters, or None for none (the Segmenter resolves their
            device "auto" for the model).
        batch_size: images per model run.
        workers: decoding threads (0: every stage in turn on one thread, the sequential path).
        post_workers: post-processing (upsampling, CRF) threads; None: as many as ``workers``
            with a CRF or TTA, else one.
        fail_fast: stop at the first image that fails instead of carrying on.
        tta: test-time augmentation views (a :class:`~tseg.runtime.segment.tta.TtaSettings`), or None.
        overlay: folder for pictures of each image with its labels blended in, or None.
        submission: the competition's CSV to write (COCO splits only), or None.
        trt_fp16: let TensorRT use FP16 kernels (device "tensorrt" only).
        bf16: let OpenVINO compute in bfloat16 (device "openvino" only).
        report: write an evaluation report (COCO splits with ``evaluate`` only; a
            :class:`~tseg.runtime.report.write.ReportSettings`), or None.
    """

    model: Path
    out: Path
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    crf: CrfParams | None = None
    batch_size: int = 8
    workers: int = 2
    post_workers: int | None = None
    fail_fast: bool = False
    tta: object | None = None
    overlay: Path | None = None
    submission: Path | None = None
    trt_fp16: bool = False
    bf16: bool = False
    report: ReportSettings | None = None

    def tensorrt(self) -> TensorrtSettings | None:
        """TensorRT's settings for device "tensorrt" (or with ``trt_fp16``, which other devices refuse)."""
        if self.device != "tensorrt" and not self.trt_fp16:
            return None
        return TensorrtSettings(fp16=self.trt_fp16, batch_size=self.batch_size)

    def openvino(self) -> OpenVinoSettings | None:
        """OpenVINO's settings for device "openvino" (or with ``bf16``, which other devices refuse)."""
        if self.device != "openvino" and not self.bf16:
            return None
        return OpenVinoSettings(bf16=self.bf16)

    def pipeline(self) -> PipelineSettings:
        if self.post_workers is not None:
            post = self.post_workers
        else:  # the CRF (or TTA) is the heavy stage; the plain argmax keeps up on one thread
            post = max(1, self.workers) if self.crf is not None or self.tta is not None else 1
        return PipelineSettings(
            batch_size=self.batch_size,
            workers=self.workers,
            post_workers=post,
            fail_fast=self.fail_fast,
            progress=self.progress,
        )


def open_segmenter(settings: InferSettings) -> Segmenter:
    """The Segmenter the settings describe (CRF, TTA and batch size included)."""
    return Segmenter(
        settings.model,
        device=settings.device,
        threads=settings.threads,
        crf=settings.crf,
        tta=settings.tta,
        batch_size=settings.batch_size,
        tensorrt=settings.tensorrt(),
        openvino=settings.openvino(),
    )
