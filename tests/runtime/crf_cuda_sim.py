"""The CUDA CRF against the CPU path in Numba's CUDA simulator: ``python -m tests.runtime.crf_cuda_sim``.

Run by ``tests/runtime/test_crf_cuda.py`` in a subprocess with NUMBA_ENABLE_CUDASIM=1
(the simulator must be chosen before Numba loads). Prints one JSON object: per case,
the share of equal labels and max |dQ| against ``dense_crf`` on the CPU, and the
checks of the lattice itself and of scheduling independence.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from tests.runtime.test_crf import make_image, make_probs
from tests.runtime.test_crf_threads import DEEPLAB, scene
from tseg.runtime.crf import DenseCRF, dense_crf, labels_from_probs, unary_from_labels
from tseg.runtime.crf.cuda import device
from tseg.runtime.errors import TsegError
from tseg.runtime.scores import resize_scores, softmax
from tseg.runtime.segment.refine import CrfParams
from tseg.runtime.segment.steps import finish


def _compare(q_cpu: np.ndarray, q_gpu: np.ndarray) -> dict:
    return {"agree": float(np.mean(q_cpu.argmax(0) == q_gpu.argmax(0))),
            "max_dq": float(np.abs(q_cpu - q_gpu).max())}


def _cases() -> dict:
    """name -> (probs, image, iterations, DenseCRF settings)."""
    photo, logits = scene(24, 17, 5)
    probs = softmax(resize_scores(logits, (24, 17)))
    rng = np.random.default_rng(4)
    matrix = rng.uniform(0, 6, (4, 4)).astype(np.float32)
    return {
        "16x16 default": (make_probs(3, 16, 16), make_image(16, 16), 5, {}),
        "24x17 deeplab": (probs, photo, 10, DEEPLAB),
        "24x17 default 0 it": (probs, photo, 0, {}),
        "24x17 matrix": (make_probs(4, 24, 17, seed=2), photo, 5,
                         {"bilateral_compat": matrix, "gaussian_compat": [1.0, 2.0, 3.0, 4.0]}),
    }


def _lattices(image: np.ndarray) -> dict:
    """The device lattices against the CPU's: the bilateral one (hashed, first-touch
    numbering on both) identical, the Gaussian one (direct-addressed on the CPU) the
    same size; the normalised weights equal to float rounding."""
    with DenseCRF(image, device="cuda", **DEEPLAB) as gpu, DenseCRF(image, **DEEPLAB) as cpu:
        g_lat, b_lat = gpu._lattices
        n = image.shape[0] * image.shape[1]
        return {
            "vertices": [g_lat.num_vertices, b_lat.num_vertices],
            "cpu_vertices": [cpu.gaussian.num_vertices, cpu.bilateral.num_vertices],
            "bilateral_rows_equal": bool(np.array_equal(b_lat.rows.copy_to_host()[:n],
                                                        cpu.bilateral.offsets)),
            "bilateral_neighbours_equal": bool(np.array_equal(b_lat.neighbours.copy_to_host(),
                                                              cpu.bilateral.neighbours)),
            "weights_max_diff": max(
                float(np.abs(lat.weights.copy_to_host() - ref.weights.reshape(-1)).max())
                for lat, ref in ((g_lat, cpu.gaussian), (b_lat, cpu.bilateral))),
        }


def _scheduling(probs: np.ndarray, image: np.ndarray) -> bool:
    """Q bit for bit the same with 3 and 8 simulated threads (other interleavings of
    the hash table's inserts and the segments' fills)."""
    results = []
    for threads in (3, 8):
        device._SIM_THREADS = threads
        results.append(dense_crf(probs, image, iterations=3, device="cuda", **DEEPLAB))
    return bool(np.array_equal(*results))


def _stepwise(image: np.ndarray) -> dict:
    """start/step/labels on the device: two steps then three equal five; labels from a
    hard-label unary equal the CPU's."""
    labels = (np.arange(image.shape[1])[None, :] * 3 // image.shape[1]).repeat(image.shape[0], 0)
    unary = unary_from_labels(labels, num_classes=3, gt_prob=0.6)
    with DenseCRF(image, device="cuda") as gpu, DenseCRF(image) as cpu:
        with gpu.start(unary) as state:
            state.step(2)
            state.step(3)
            stepped, gpu_labels = state.probs(), state.labels()
        with cpu.start(unary) as state:
            state.step(5)
            cpu_labels = state.labels()
        return {"steps_max_dq": float(np.abs(stepped - gpu.inference(unary, iterations=5)).max()),
                "labels_equal": bool(np.array_equal(gpu_labels, cpu_labels)),
                "labels_dtype": str(gpu_labels.dtype), "class": type(gpu).__name__}


def _runtime() -> dict:
    """The CUDA CRF as the runtime runs it (``--crf-device cuda``), against the CPU's labels:
    CrfParams' refine_logits from logits at a quarter of the image's size (resized on the host),
    its capped path (dense_crf on the device, then upsampled) and the pipeline's finish(); and
    "auto" for a model on CUDA, which picks the GPU here."""
    photo, logits = scene(24, 17, 5)
    big, big_logits = scene(40, 36, 3, seed=1)  # 1440 pixels: over a max_pixels of 1024
    report = {}
    for name, (image, low, params) in {
        "refine_logits default": (photo, logits, CrfParams()),
        "refine_logits deeplab": (photo, logits, CrfParams(iterations=10, **DEEPLAB)),
        "refine_logits capped": (big, big_logits, CrfParams(iterations=3, max_pixels=1024)),
    }.items():
        cpu = replace(params, device="cpu").refine_logits(low, image)
        gpu = replace(params, device="cuda").refine_logits(low, image)
        report[name] = {"agree": float(np.mean(cpu == gpu)), "same_kind": [str(gpu.dtype), gpu.shape] ==
                        [str(cpu.dtype), cpu.shape]}
    outcomes = [finish([logits], size=photo.shape[:2], image=photo, crf=CrfParams(device=device), plain=True)
                for device in ("cpu", "cuda")]
    report["finish"] = {"agree": float(np.mean(outcomes[0].labels == outcomes[1].labels)),
                        "plain_equal": bool(np.array_equal(outcomes[0].plain, outcomes[1].plain)),
                        "dtype": str(outcomes[1].labels.dtype)}
    probs = softmax(resize_scores(logits, photo.shape[:2]))
    on_gpu = labels_from_probs(probs, photo, device="cuda")
    report["labels_from_probs"] = {"agree": float(np.mean(labels_from_probs(probs, photo) == on_gpu)),
                                   "dtype": str(on_gpu.dtype)}
    report["auto_for_a_cuda_model"] = CrfParams().resolve_device("cuda").device
    return report


def _logits_fill() -> dict:
    """start_from_logits: the device's -unary against the CPU fill's (logits at a quarter of the
    image's size, and at its size), and logits already on the device giving the host's labels."""
    from numba import cuda

    from tseg.runtime.crf import labels_from_logits
    from tseg.runtime.crf.unary import CLIP, logits_fill

    report = {}
    for name, (height, width, low_h, low_w) in {"upsampled": (24, 17, 6, 5), "same size": (9, 11, 9, 11)}.items():
        logits = np.random.default_rng(5).normal(0, 4, (5, low_h, low_w)).astype(np.float32)
        cpu = np.empty((height * width, 16), np.float32)
        logits_fill(logits, height, width)(cpu, 1)
        with DenseCRF(make_image(height, width), device="cuda") as crf, \
                crf.start_from_logits(logits, CLIP) as state:
            gpu = state._base.copy_to_host()
        report[name] = float(np.abs(gpu - cpu[:, :5].T).max())
    photo, logits = scene(24, 17, 5)
    host = labels_from_logits(logits, photo, device="cuda")
    with DenseCRF(photo, device="cuda") as crf, \
            crf.start_from_logits(cuda.to_device(logits.astype(np.float32)), CLIP) as state:
        state.step(5)
        on_device = state.labels(host.dtype)
    report["device_logits_equal"] = bool(np.array_equal(host, on_device))
    return report


def _error(call) -> str:
    try:
        call()
    except TsegError as err:
        return str(err)
    return ""


def _device_handoff() -> dict:
    """Issue 21's item 4 without ONNX Runtime: logits already on the device (as the model's
    bound output would be) through labels_from_logits, CrfParams, finish, the pipeline's stages
    and Segmenter's output check; only labels come back."""
    from types import SimpleNamespace

    from numba import cuda

    from tseg.runtime.crf import labels_from_logits
    from tseg.runtime.infer.stages import Stages
    from tseg.runtime.segment.segmenter import Segmenter
    from tseg.runtime.segment.steps import run_inputs

    photo, logits = scene(24, 17, 5)
    logits = logits.astype(np.float32)
    host = labels_from_logits(logits, photo, device="cuda")
    report = {"labels_equal": bool(np.array_equal(
        host, labels_from_logits(cuda.to_device(logits), photo, device="cuda")))}
    bad = logits.copy()
    bad[2, 1, 3] = np.nan
    report["nan"] = _error(lambda: labels_from_logits(cuda.to_device(bad), photo, device="cuda"))
    report["float64"] = _error(lambda: labels_from_logits(cuda.to_device(logits.astype(np.float64)), photo,
                                                          device="cuda"))
    report["on_cpu"] = _error(lambda: labels_from_logits(cuda.to_device(logits), photo))
    gpu, cpu = CrfParams(device="cuda"), CrfParams(device="cpu")
    report["refine_equal"] = [
        bool(np.array_equal(params.refine_logits(cuda.to_device(logits), photo), params.refine_logits(logits, photo)))
        for params in (gpu, cpu)]
    outcomes = [finish([x], size=photo.shape[:2], image=photo, crf=gpu, plain=True)
                for x in (logits, cuda.to_device(logits))]
    report["finish_equal"] = bool(np.array_equal(outcomes[0].labels, outcomes[1].labels)
                                  and np.array_equal(outcomes[0].plain, outcomes[1].plain))
    # The pipeline's stages with a segmenter whose model output stays on the device.
    batch = np.stack([logits, logits[::-1].copy()])
    calls = []

    def run_batch(x, *, check_finite=True, on_device=False):
        calls.append(on_device)
        return cuda.to_device(batch[: len(x)])

    fake = SimpleNamespace(crf=gpu, tta=None, batch_size=2, logits_on_device=True, run_batch=run_batch)
    views = run_inputs(fake.run_batch, [[np.zeros((3, 8, 8), np.float32)]] * 2, batch_size=2)
    stages = Stages(fake)
    items = [SimpleNamespace(index=i, size=photo.shape[:2], image=photo, truth=None,
                             job=SimpleNamespace(source=f"{i}.png")) for i in range(2)]
    labels = [stages.post(item, [view]).labels for item, view in zip(items, views[0] + views[1], strict=True)]
    stages._run_inputs([SimpleNamespace(inputs=[np.zeros((3, 8, 8), np.float32)])])
    report["stages"] = {"on_device_asked": calls[-1], "views_on_device": [hasattr(v[0], "copy_to_host") for v in views],
                        "labels_equal": [bool(np.array_equal(got, gpu.refine_logits(want, photo)))
                                         for got, want in zip(labels, batch, strict=True)]}
    segmenter = Segmenter.__new__(Segmenter)  # its output check alone, without a model
    segmenter.metadata = SimpleNamespace(num_classes=5)
    segmenter.model_path = "model.onnx"
    bad_batch = cuda.to_device(np.stack([logits, bad]))
    report["segmenter"] = {
        "nan": _error(lambda: segmenter._check_device_output(bad_batch, 2, check_finite=True)),
        "unchecked": hasattr(segmenter._check_device_output(bad_batch, 2, check_finite=False), "copy_to_host"),
        "shape": _error(lambda: segmenter._check_device_output(bad_batch, 3, check_finite=True))}
    return report


def main() -> None:
    report = {}
    for name, (probs, image, iterations, settings) in _cases().items():
        report[name] = _compare(dense_crf(probs, image, iterations=iterations, **settings),
                                dense_crf(probs, image, iterations=iterations, device="cuda",
                                          **settings))
    photo = _cases()["24x17 deeplab"][1]
    report["lattices"] = _lattices(photo)
    report["scheduling_independent"] = _scheduling(make_probs(3, 16, 16), make_image(16, 16))
    report["stepwise"] = _stepwise(make_image(16, 16))
    report["runtime"] = _runtime()
    report["logits_fill"] = _logits_fill()
    report["device_handoff"] = _device_handoff()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
