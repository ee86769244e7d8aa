"""Inputs that are not plain files, or far too big: each must be refused in one line, quickly.

Every input a command reads (crf.json beside the model, a --score-submission CSV, a COCO
JSON, the model, a checkpoint, a run's metrics.csv, the photos of a folder) is made, in turn,
a FIFO (an ``open`` blocks until a writer comes: none does), a link to /dev/zero (endless
zeros), a character device, a symlink loop, a sparse file of gigabytes or 50 MB of valid
JSON; generated as role x kind. A hang shows as a timeout (these cases have a short limit),
a read without a bound as the memory check. Also tseg-bench's own round-3 refusals: a split
whose class count differs from the model's, absurd sizes and threads, external data that
climbs out of the model's folder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from tests.hardening.cases import Case, Sandbox, SkipCase
from tests.hardening.corpus_bench import FAST
from tests.hardening.corpus_coco import coco_args
from tests.hardening.corpus_infer import infer_args
from tests.hardening.corpus_torch import export_args, train_args
from tests.hardening.onnx_files import CLASSES, external_data_model, metadata_props

# Special files are refused up front; a reader blocked on a FIFO would otherwise take the run's limit.
SPECIAL_TIMEOUT_S = 45.0
# A model file of zeros is refused by its size or header, not after reading it whole into memory.
MODEL_CHECK_RSS_MIB = 512
PHOTO_FAILURES = (0, 1)  # a bad entry in a folder: a one-line refusal, or one "failed:" line and the summary


def _special(name: str, tool: str, build: Callable[[Sandbox], list[str]], *, failures=0) -> Case:
    return Case(f"special/{name}", tool, build, failures=failures, timeout_s=SPECIAL_TIMEOUT_S)


# --- each input role: (tool, builder given the special input's place) -------------------------


def _crf_json(box: Sandbox, kind: str) -> list[str]:
    model = box.model("m/model.onnx")
    box.special("m/crf.json", kind)
    return infer_args(box, box.photos(), model=model, extra=["--crf"])


def _score_csv(box: Sandbox, kind: str) -> list[str]:
    split = box.coco() / "val.json"
    csv = box.special("sub.csv", kind) if kind != "digits-5000" else _csv_with_huge_label(box, split)
    return ["--coco", box.rel(split), "--score-submission", box.rel(csv)]


def _csv_with_huge_label(box: Sandbox, split: Path) -> Path:
    """A submission for the split whose first label has 5,000 digits (Python's int() refuses 4,300+)."""
    import json

    names = [image["file_name"] for image in json.loads(split.read_text())["images"]]
    zeros = " ".join(["0"] * (256 * 256 - 1))
    rows = [f"{name},{('1' * 5000) if i == 0 else '0'} {zeros}" for i, name in enumerate(names)]
    return box.write("sub.csv", "image_id,PredictionString\n" + "\n".join(rows) + "\n")


def _coco_json(box: Sandbox, kind: str) -> list[str]:
    box.coco()
    (box.inputs / "coco" / "val.json").unlink()
    return coco_args(box, box.special("coco/val.json", kind))


def _bench_coco_json(box: Sandbox, kind: str) -> list[str]:
    box.coco()
    (box.inputs / "coco" / "val.json").unlink()
    return [box.rel(box.model()), *FAST, "--coco", box.rel(box.special("coco/val.json", kind))]


def _infer_model(box: Sandbox, kind: str) -> list[str]:
    return infer_args(box, box.photos(), model=box.special("m/model.onnx", kind))


def _bench_model(box: Sandbox, kind: str) -> list[str]:
    return [box.rel(box.special("m/model.onnx", kind)), *FAST]


def _export_checkpoint(box: Sandbox, kind: str) -> list[str]:
    return export_args(box, box.special("run/best.pt", kind))


def _bench_checkpoint(box: Sandbox, kind: str) -> list[str]:
    return [box.rel(box.model()), *FAST, "--checkpoint", box.rel(box.special("run/best.pt", kind))]


def _export_val_json(box: Sandbox, kind: str) -> list[str]:
    data = box.coco()
    (data / "val.json").unlink()
    box.special("coco/val.json", kind)
    return export_args(box, box.checkpoint()) + ["--data", box.rel(data)]


def _train_json(box: Sandbox, kind: str) -> list[str]:
    data = box.coco()
    (data / "train.json").unlink()
    box.special("coco/train.json", kind)
    return train_args(box)


def _plot_metrics(box: Sandbox, kind: str) -> list[str]:
    box.special("run/metrics.csv", kind)
    return [box.rel(box.inputs / "run"), "-o", box.rel(box.out / "plots")]


def _photo_direct(box: Sandbox, kind: str) -> list[str]:
    return infer_args(box, box.special("photos/x.jpg", kind))


# role -> (tool, builder, kinds)
ROLES: dict[str, tuple[str, Callable[[Sandbox, str], list[str]], tuple[str, ...]]] = {
    "crf-json": ("infer", _crf_json, ("fifo", "dev-zero-link", "zero-device", "loop", "spaces-50m")),
    "score-csv": ("infer", _score_csv, ("fifo", "dev-zero-link", "zero-device", "spaces-50m", "digits-5000")),
    "coco-json": ("infer", _coco_json, ("fifo", "dev-zero-link", "zero-device")),
    "bench-coco-json": ("bench", _bench_coco_json, ("fifo", "dev-zero-link")),
    "model": ("infer", _infer_model, ("fifo", "dev-zero-link", "sparse-1g", "sparse-4g")),
    "bench-model": ("bench", _bench_model, ("fifo", "dev-zero-link", "sparse-1g", "sparse-4g")),
    "checkpoint": ("export", _export_checkpoint, ("fifo", "dev-zero-link", "sparse-4g")),
    "bench-checkpoint": ("bench", _bench_checkpoint, ("fifo", "dev-zero-link")),
    "export-val-json": ("export", _export_val_json, ("fifo",)),
    "train-json": ("train", _train_json, ("fifo",)),
    "metrics-csv": ("plot", _plot_metrics, ("fifo", "dev-zero-link")),
    "photo-given": ("infer", _photo_direct, ("fifo", "device")),
}


def _role_case(role: str, kind: str) -> Case:
    tool, build, _ = ROLES[role]
    case = _special(f"{role}-{kind}", tool, lambda box: build(box, kind))
    if kind.startswith("sparse-") and role in ("model", "bench-model"):
        return dataclasses.replace(case, rss_limit_mib=MODEL_CHECK_RSS_MIB)
    return case


# --- a photo folder holding a good photo and one entry that is not a readable image file ------


def _folder_entry(name: str, make: Callable[[Sandbox, Path], object]) -> Case:
    def build(box: Sandbox) -> list[str]:
        folder = box.photos()
        (folder / "b.png").unlink()
        make(box, folder)
        return infer_args(box, folder)

    return _special(f"photos-{name}", "infer", build, failures=PHOTO_FAILURES)


def _coco_image_fifo(box: Sandbox) -> list[str]:
    data = box.coco()
    (data / "rgb" / "006.jpg").unlink()  # val.json's first image
    box.special("coco/rgb/006.jpg", "fifo")
    return coco_args(box, data / "val.json")


PHOTO_CASES = [
    _folder_entry("fifo-jpg", lambda box, folder: box.special(folder / "x.jpg", "fifo")),
    _folder_entry("device-jpg", lambda box, folder: box.special(folder / "x.jpg", "device")),
    _folder_entry("zero-device-jpg", lambda box, folder: box.special(folder / "x.jpg", "zero-device")),
    _folder_entry("symlink-loop-jpg", lambda box, folder: box.special(folder / "x.jpg", "loop")),
    _folder_entry("dev-zero-link-jpg", lambda box, folder: box.special(folder / "x.jpg", "dev-zero-link")),
    _folder_entry("unreadable-subfolder", lambda box, folder: box.unreadable(folder / "more")),
    _special("coco-image-fifo", "infer", _coco_image_fifo, failures=PHOTO_FAILURES),
]


# --- tseg-bench: bad input that became a "failed" row or a note, and exit 0 --------------------


def _bench(name: str, build: Callable[[Sandbox], list[str]], *, timeout_s: float | None = None) -> Case:
    return Case(f"bench/{name}", "bench", build, timeout_s=timeout_s)


def _class_count_differs(box: Sandbox) -> list[str]:
    three = {"classes": CLASSES[:3], "palette": [[0, 0, 0], [128, 0, 0], [0, 128, 0]]}
    model = box.model(props=metadata_props(three), channels=3)
    return [box.rel(model), *FAST, "--coco", box.rel(box.coco() / "val.json")]


def _external_data_climbs_out(box: Sandbox) -> Path:
    """inputs/m/model.onnx whose weight is stored at ../weights.bin (outside the model's folder)."""
    model, weight = external_data_model("../weights.bin")
    box.write("weights.bin", weight)
    return box.write("m/model.onnx", model)


def _cuda_row(box: Sandbox) -> list[str]:
    if Path("/dev/nvidia0").exists() or Path("/dev/nvidiactl").exists():
        raise SkipCase("a GPU is present: --device cuda would run")
    return [box.rel(box.model()), *FAST, "--device", "cpu,cuda"]


BENCH_ROUND3_CASES = [
    _bench("coco-class-count-differs", _class_count_differs),
    _bench("sizes-8192-batch-1024", lambda box: [box.rel(box.model()), *FAST, "--sizes", "8192",
                                                 "--batch-sizes", "1024"]),
    _bench("threads-1024", lambda box: [box.rel(box.model()), *FAST, "--threads", "1024"], timeout_s=60),
    _bench("external-data-climbs-out", lambda box: [box.rel(_external_data_climbs_out(box)), *FAST]),
    _bench("device-cuda-unavailable", _cuda_row),
    Case("model/external-data-climbs-out", "infer",
         lambda box: infer_args(box, box.photos(), model=_external_data_climbs_out(box))),
]  # fmt: skip

SPECIAL_CASES = (
    [_role_case(role, kind) for role, (_, _, kinds) in ROLES.items() for kind in kinds]
    + PHOTO_CASES
    + BENCH_ROUND3_CASES
)
