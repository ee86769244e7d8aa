"""--stages and --crf: where tseg-infer's time goes, and the dense CRF against pydensecrf.

--stages runs tseg-infer's own per-image functions one after another on synthetic photos
(smooth background, coloured shapes, sensor noise, saved as JPEG) at each size, and times
each: decode (``read_image``), preprocess (``Segmenter.preprocess``), session
(``Segmenter.run_batch``, batch 1), upsample (``upsample_labels``), CRF (``refine_logits``
with the model's crf.json or the defaults, as ``tseg-infer --crf``) and the label PNG
(``save_label_png``: encode and write). Then the end-to-end images/s of tseg-infer's threaded
pipeline (``infer_paths``, default workers) over the same files, without and with the CRF.

--crf times the CRF alone at each size with each model's class count (logits from a smooth
random field), tseg's and pydensecrf's (when importable) interleaved, same parameters.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np

from tseg.benchmarks.rows import read_metadata, reason_line
from tseg.benchmarks.stats import TimingPolicy, interleave, summarize
from tseg.runtime.errors import TsegError

STAGE_IMAGES = 6  # synthetic photos per size
# The pipeline's rate counts opening the model, as tseg-infer's wall clock does: over enough
# photos that the opening does not dominate (6 photos at 512 px took ~0.2 s, half of it the opening).
PIPELINE_IMAGES = 32
STAGES = ("decode", "preprocess", "session", "upsample", "CRF", "PNG write")
STAGE_TITLE = "Pipeline stages (tseg-infer, per image)"  # the --stages section's title in every report


def synthetic_photo(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) uint8: a smooth background, a few coloured shapes, sensor noise."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(rng.uniform(40, 220, size=(4, 4, 3)).astype(np.uint8)).resize((size, size),
                                                                                           Image.BICUBIC)
    draw = ImageDraw.Draw(picture)
    for _ in range(int(rng.integers(3, 8))):
        x0, y0 = (int(v) for v in rng.integers(0, max(1, size - size // 8), size=2))
        w, h = (int(v) for v in rng.integers(max(1, size // 16), max(2, size // 2), size=2))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, min(size, x0 + w), min(size, y0 + h)),
                                                                  fill=colour)
    noisy = np.asarray(picture, np.float32) + rng.normal(0, 6, size=(size, size, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def write_photos(folder: Path, size: int, count: int = STAGE_IMAGES) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(size)
    paths = []
    for index in range(count):
        path = folder / f"{index:03d}.jpg"
        Image.fromarray(synthetic_photo(rng, size)).save(path, quality=90)
        paths.append(path)
    return paths


def _stage_times(segmenter, crf, paths: list[Path], out: Path, passes: int) -> dict[str, list[float]]:
    """Seconds per image of each stage, over ``passes`` passes (after one untimed pass)."""
    from tseg.runtime.data.label_png import save_label_png
    from tseg.runtime.images import read_image
    from tseg.runtime.segment.upsample import upsample_labels

    times: dict[str, list[float]] = {name: [] for name in STAGES}
    for repeat in range(passes + 1):
        for path in paths:
            marks = [time.perf_counter()]
            image = read_image(path, exif_transpose=True)
            marks.append(time.perf_counter())
            tensor = segmenter.preprocess(image)
            marks.append(time.perf_counter())
            logits = segmenter.run_batch(tensor[None])[0]
            marks.append(time.perf_counter())
            labels = upsample_labels(logits, image.shape[:2])
            marks.append(time.perf_counter())
            crf.refine_logits(logits, image)
            marks.append(time.perf_counter())
            save_label_png(out / (path.stem + ".png"), labels, palette=segmenter.metadata.palette)
            marks.append(time.perf_counter())
            if repeat:  # pass 0 warms up (sessions, Numba, the page cache)
                for name, start, end in zip(STAGES, marks, marks[1:], strict=False):
                    times[name].append(end - start)
    return times


def _pipeline_rate(model: Path, warmup: Path, folder: Path, out: Path, *, device: str, threads, crf) -> float:
    """images/s of tseg-infer's pipeline over ``folder`` (after a warm-up run over ``warmup``)."""
    from tseg.runtime.infer.run import InferSettings, infer_paths

    settings = InferSettings(model=model, out=out, device=device, threads=threads, progress=False, crf=crf)
    infer_paths([warmup], settings=settings)
    start = time.perf_counter()
    result = infer_paths([folder], settings=settings)
    elapsed = time.perf_counter() - start
    if result.failures:
        raise TsegError(result.failures[0].line())
    return len(result.written) / elapsed


def stage_rows(models: list[Path], *, sizes: list[int], device: str, threads, policy: TimingPolicy) -> list[list[str]]:
    """One table row per (model, size): p50 ms of each stage, their sum, pipeline images/s without/with CRF."""
    from tseg.runtime.segment.refine import resolve_crf_params
    from tseg.runtime.segment.segmenter import Segmenter

    rows = []
    with tempfile.TemporaryDirectory(prefix="tseg-bench-stages-") as tmp:
        for model in models:
            meta = read_metadata(model)
            try:  # once per model: every photo is resized to the model's input size, whatever its own
                opened: tuple | Exception = (
                    Segmenter(model, device=device, threads=threads, batch_size=1),
                    resolve_crf_params(model, {}),
                )
            except Exception as err:  # a failing model or device: its rows say why, the others run
                opened = err
            for size in sizes or [meta.input_size[0]]:
                where = [model.name, device, f"{size}x{size}"]
                try:
                    if isinstance(opened, Exception):
                        raise opened
                    segmenter, crf = opened
                    folder = Path(tmp) / f"photos_{size}"
                    paths = sorted(folder.glob("*.jpg")) or write_photos(folder, size)
                    passes = max(1, math.ceil(policy.min_runs / len(paths)))
                    out = Path(tmp) / "out"
                    out.mkdir(exist_ok=True)
                    times = _stage_times(segmenter, crf, paths, out, passes)
                    p50 = [summarize(times[name], batch=1).p50_ms for name in STAGES]
                    many = Path(tmp) / f"pipeline_{size}"
                    if not many.is_dir():
                        write_photos(many, size, count=PIPELINE_IMAGES)
                    common = dict(device=device, threads=threads)
                    plain = _pipeline_rate(model, folder, many, Path(tmp) / "p", crf=None, **common)
                    refined = _pipeline_rate(model, folder, many, Path(tmp) / "c", crf=crf, **common)
                except Exception as err:  # a failing model or device: this row says why, the others run
                    rows.append([*where, *["-"] * (len(STAGES) + 3), f"failed: {reason_line(err)}"])
                    continue
                rows.append([*where, *(f"{v:.1f}" for v in p50), f"{sum(p50):.1f}", f"{plain:.1f}",
                             f"{refined:.1f}", "ran"])
    return rows


STAGE_HEADER = ("model", "device", "photo size", *(f"{s} ms" for s in STAGES), "sum ms", "pipeline img/s",
                "pipeline+CRF img/s", "status")
STAGE_METHOD = (
    f"Stages: tseg-infer's functions run one after another on {STAGE_IMAGES} synthetic JPEG photos per size, batch 1,"
    " p50 per image after one warm-up pass (every photo is resized to the model's input size, so the session time"
    " does not follow the photo size; CRF: the model's crf.json or the defaults); pipeline img/s: tseg-infer's"
    f" threaded pipeline (default batch and workers) over {PIPELINE_IMAGES} such photos, from opening the model,"
    " after a warm-up run."
)


def smooth_logits(rng: np.random.Generator, num_classes: int, size: int) -> np.ndarray:
    """(C, size, size) float32 logits: a coarse random field, bilinearly upsampled (like a model's)."""
    from tseg.runtime.scores import resize_scores

    coarse = rng.normal(0, 3, size=(num_classes, max(2, size // 32), max(2, size // 32))).astype(np.float32)
    return np.ascontiguousarray(resize_scores(coarse, (size, size)), dtype=np.float32)


def _pydensecrf_runner(scores: np.ndarray, image: np.ndarray, params):
    """pydensecrf2 on the same input and parameters (softmax unary, Gaussian and bilateral kernels), or None."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError:
        return None
    from tseg.runtime.scores import softmax

    num_classes, height, width = scores.shape
    unary = np.ascontiguousarray(-np.log(np.maximum(softmax(scores), 1e-12)).reshape(num_classes, -1), np.float32)
    rgb = np.ascontiguousarray(image)

    def run() -> np.ndarray:
        crf = dcrf.DenseCRF2D(width, height, num_classes)
        crf.setUnaryEnergy(unary)
        crf.addPairwiseGaussian(sxy=params.gaussian_sxy, compat=params.gaussian_compat)
        crf.addPairwiseBilateral(sxy=params.bilateral_sxy, srgb=params.bilateral_srgb, rgbim=rgb,
                                 compat=params.bilateral_compat)
        return np.asarray(crf.inference(params.iterations))

    return run


def crf_rows(class_counts: list[int], *, sizes: list[int], threads, policy: TimingPolicy,
             params=None) -> list[list[str]]:
    """One row per (size, class count): tseg's CRF p50 and pydensecrf's ('-' when not installed), interleaved."""
    from tseg.runtime.segment.refine import CrfParams

    params = params or CrfParams()
    rows = []
    for size in sizes:
        for classes in class_counts:
            rng = np.random.default_rng(size + classes)
            image, scores = synthetic_photo(rng, size), smooth_logits(rng, classes, size)
            runners = [lambda scores=scores, image=image: params.refine(scores, image, threads=threads)]
            reference = _pydensecrf_runner(scores, image, params)
            if reference is not None:
                runners.append(reference)
            samples = interleave(runners, policy=policy)
            shown = []
            for result in samples:
                shown.append(f"failed: {reason_line(result.error)}" if result.error is not None
                             else f"{summarize(result.durations, batch=1).p50_ms:.1f}")
            if reference is None:
                shown.append("- (pip install pydensecrf2)")
            rows.append([f"{size}x{size}", str(classes), str(params.iterations), *shown])
    return rows


CRF_HEADER = ("size", "classes", "iterations", "tseg CRF p50 ms", "pydensecrf p50 ms")
CRF_METHOD = (
    "CRF: the dense CRF alone (kernels built and mean-field iterations, tseg's default parameters) on a synthetic"
    " photo and smooth random logits, tseg's and pydensecrf2's runs interleaved, p50."
)


def add_sections(report, settings) -> None:
    """Adds the --stages and --crf tables to ``report`` (a :class:`~tseg.benchmarks.report.BenchReport`)."""
    models = list(settings.models)
    if settings.stages and models:
        device = "cpu" if "cpu" in settings.devices else settings.devices[0]
        rows = stage_rows(models, sizes=list(settings.sizes), device=device, threads=settings.threads,
                          policy=settings.policy)
        report.sections[STAGE_TITLE] = (STAGE_HEADER, rows, STAGE_METHOD)
    if settings.crf:
        metas = [read_metadata(m) for m in models]
        classes = sorted({m.num_classes for m in metas})
        sizes = list(settings.sizes) or sorted({m.input_size[0] for m in metas})
        rows = crf_rows(classes, sizes=sizes, threads=settings.threads, policy=settings.policy)
        report.sections["Dense CRF"] = (CRF_HEADER, rows, CRF_METHOD)

