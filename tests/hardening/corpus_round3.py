"""Round 3's other classes: crash leftovers, long names, file/folder collisions, ONNX Runtime noise, records.

tempfiles/  a stale temp file of a dead writer in the output folder, then a successful run:
            it must exit 0 and leave no temp file under out/; a live writer's temp file stays
good/       photos whose names are 250 to 255 bytes long are segmented (temp names must fit)
collide/    two inputs whose outputs collide only across a file and a folder of one name:
            refused before anything is written under out/
noise/      a batch that fails and is retried image by image, a model that would allocate
            40 GB: stderr holds tseg's lines only (no ONNX Runtime log line, no colour codes)
records/    a second tseg-export in the same place keeps the first one's parity records
train/      --backbone-weights imagenet offline: one line, nothing on stdout
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.hardening.cases import Case, Sandbox, Setup
from tests.hardening.corpus_bench import FAST
from tests.hardening.corpus_coco import coco_args
from tests.hardening.corpus_infer import infer_args
from tests.hardening.corpus_torch import export_args, train_args
from tests.hardening.onnx_files import tail_model_bytes

NO_TEMP = ("no-temp-files",)


# --- temp files of dead and live writers ------------------------------------------------------


def stale_temp_name(target: Path, pid: int, *, with_pid: bool = True) -> str:
    """The name of a temp file that tseg's writer of ``target`` (process ``pid``) leaves when killed.

    Built from tseg's own ``temp_name_prefix`` and ``TEMP_SUFFIX`` with the writer's pid as
    ``p<pid>.``; ``with_pid=False`` gives the older name without it (a temp file of a tseg
    from before temp files carried their owner).
    """
    from tseg.runtime.files import TEMP_SUFFIX, temp_name_prefix

    owner = f"p{pid}." if with_pid else ""
    return f"{temp_name_prefix(target)}{owner}k1ll3d{TEMP_SUFFIX}"


def dead_pid() -> int:
    """The process id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-S", "-c", ""])
    child.wait()
    return child.pid


def _plant(target: Path, *, pid: int | None = None, with_pid: bool = True) -> Path:
    """A stale temp file for ``target`` in its folder (a dead writer's unless ``pid`` is given)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / stale_temp_name(target, dead_pid() if pid is None else pid, with_pid=with_pid)
    temp.write_bytes(b"half a file from a run that was killed\n")
    return temp


def _submission_after(**plant) -> Callable[[Sandbox], list[str]]:
    def build(box: Sandbox) -> list[str]:
        _plant(box.out / "sub.csv", **plant)
        return coco_args(box, box.coco() / "val.json", evaluate=False, extra=["--submission", "out/sub.csv"])

    return build


def _labels_after(box: Sandbox) -> list[str]:
    _plant(box.out / "labels" / "a.png")
    return infer_args(box, box.photos())


def _overlay_after(box: Sandbox) -> list[str]:
    _plant(box.out / "pictures" / "a.jpg")
    return infer_args(box, box.photos(), extra=["--overlay", "out/pictures"])


def _eval_after(box: Sandbox) -> list[str]:
    _plant(box.out / "pred" / "eval.json")
    return coco_args(box, box.coco() / "val.json")


def _bench_after(box: Sandbox) -> list[str]:
    _plant(box.out / "bench.json")
    return [box.rel(box.model()), *FAST, "--json", "out/bench.json"]


def _control(name: str, tool: str, build: Callable[[Sandbox], list[str]], *, checks: tuple[str, ...] = NO_TEMP) -> Case:
    return Case(name, tool, build, expect_ok=True, checks=checks)


TEMPFILE_CASES = [
    _control("tempfiles/stale-submission-temp", "infer", _submission_after()),
    _control("tempfiles/stale-submission-temp-without-pid", "infer", _submission_after(with_pid=False)),
    _control("tempfiles/stale-label-temp", "infer", _labels_after),
    _control("tempfiles/stale-overlay-temp", "infer", _overlay_after),
    _control("tempfiles/stale-eval-temp", "infer", _eval_after),
    _control("tempfiles/stale-bench-report-temp", "bench", _bench_after),
    # The harness is alive while the case runs: its temp file must survive (the sandbox check).
    _control("tempfiles/live-writer-temp-kept", "infer", _submission_after(pid=os.getpid()), checks=()),
]


# --- long names: temp names must fit wherever the final name fits -----------------------------


def _long_name(stem: str, *extra: str) -> Callable[[Sandbox], list[str]]:
    def build(box: Sandbox) -> list[str]:
        folder = box.inputs / "photos"
        folder.mkdir()
        shutil.copyfile(box.fixtures.coco / "rgb" / "000.jpg", folder / f"{stem}.jpg")
        return infer_args(box, folder, extra=extra)

    return build


def outputs_written(*relative: str) -> Callable[[Path], list[str]]:
    """A case check: each of these files (relative to out/) was written."""

    def verify(root: Path) -> list[str]:
        missing = [name for name in relative if not (root / "out" / name).is_file()]
        return [f"not written: out/{name[:60]}..." for name in missing]

    return verify


def _long_name_case(name: str, stem: str, *, overlay: bool = False) -> Case:
    extra = ("--overlay", "out/pictures") if overlay else ()
    written = [f"labels/{stem}.png"] + ([f"pictures/{stem}.jpg"] if overlay else [])
    return Case(name, "infer", _long_name(stem, *extra), expect_ok=True, checks=NO_TEMP,
                verify=outputs_written(*written))  # fmt: skip


GOOD_CASES = [
    _long_name_case("good/name-250-bytes", "a" * 246),
    _long_name_case("good/name-255-bytes-with-overlay", "b" * 251, overlay=True),
    _long_name_case("good/name-250-bytes-two-byte-characters", "\u00e9" * 123),
]


# --- outputs that collide only across a file and a folder of the same name --------------------


def _photo(box: Sandbox, relative: str, source: str = "rgb/000.jpg") -> Path:
    path = box.inputs / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(box.fixtures.coco / source, path)
    return path


def _labels_collide(box: Sandbox) -> list[str]:
    _photo(box, "photos/a.jpg")  # -> a.png
    _photo(box, "photos/a.png/x.jpg")  # -> a.png/x.png: a.png must be a file and a folder
    return infer_args(box, box.inputs / "photos")


def _overlays_collide(box: Sandbox) -> list[str]:
    _photo(box, "photos/a.png", "gray/001.png")  # overlay a.jpg
    _photo(box, "photos/a.jpg/x.png", "gray/001.png")  # overlay a.jpg/x.jpg
    return infer_args(box, box.inputs / "photos", extra=["--overlay", "out/pictures"])


def _two_paths_collide(box: Sandbox) -> list[str]:
    single = _photo(box, "one/a.jpg")  # given directly: -> a.png
    _photo(box, "many/a.png/b.jpg")  # a folder: -> a.png/b.png
    return infer_args(box, single, box.inputs / "many")


COLLIDE_CASES = [
    Case("collide/file-and-folder-labels", "infer", _labels_collide, checks=("nothing-written",)),
    Case("collide/file-and-folder-overlays", "infer", _overlays_collide, checks=("nothing-written",)),
    Case("collide/file-and-folder-two-paths", "infer", _two_paths_collide, checks=("nothing-written",)),
]


# --- ONNX Runtime's own output must not reach the user ----------------------------------------


def _tail_model(box: Sandbox, tail: str) -> Path:
    return box.write("m/model.onnx", tail_model_bytes(tail))


NOISE_CASES = [
    # A batch of two fails (the model takes one image at a time); tseg reruns each image alone.
    _control("noise/batch-retried-image-by-image", "infer",
             lambda box: infer_args(box, box.photos(), model=_tail_model(box, "batch-one")), checks=()),
    _control("noise/batch-retried-coco-eval", "infer",
             lambda box: coco_args(box, box.coco() / "val.json", model=_tail_model(box, "batch-one")), checks=()),
    Case("noise/model-allocates-40gb", "infer",
         lambda box: infer_args(box, box.photos(), model=_tail_model(box, "allocates-40gb"))),
    Case("noise/one-image-allocates-40gb", "infer",
         lambda box: infer_args(box, box.photos() / "a.jpg", model=_tail_model(box, "allocates-40gb"))),
    Case("noise/bench-model-allocates-40gb", "bench",
         lambda box: [box.rel(_tail_model(box, "allocates-40gb")), *FAST]),
]  # fmt: skip


# --- records that a later command must keep ---------------------------------------------------

LOW_PRECISIONS = ("fp16", "int8")


def _export_every_precision(box: Sandbox) -> list[str]:
    """The README's first export: every precision, judged on the data (loose gates: a 1-epoch model)."""
    args = export_args(box, box.inputs / "run" / "best.pt", box.out / "best.onnx")
    return args + ["--data", box.rel(box.coco()), "--precision", "fp32,fp16,int8", "--calib-images", "2",
                   "--min-agreement", "fp16=0.9,int8=0", "--max-miou-drop", "1"]  # fmt: skip


def _export_to_triton(box: Sandbox) -> list[str]:
    """The second export: the same model into a Triton repository."""
    checkpoint = box.checkpoint()
    return export_args(box, checkpoint, box.out / "best.onnx") + ["--triton", "out/repo", "--triton-device", "cpu"]


def parity_records_kept(root: Path) -> list[str]:
    """best.parity.json still describes the FP16 and INT8 files that the first export wrote."""
    report = root / "out" / "best.parity.json"
    try:
        rows = {row.get("precision") for row in json.loads(report.read_text())["precisions"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        return [f"cannot read the precisions of {report.name}: {type(err).__name__}: {err}"]
    lost = [p for p in LOW_PRECISIONS if (root / "out" / f"best.{p}.onnx").is_file() and p not in rows]
    return [f"best.parity.json lost the record of {', '.join(lost)} (the files are still there)"] if lost else []


RECORD_CASES = [
    Case("records/export-then-triton-keeps-parity-records", "export", _export_to_triton, expect_ok=True,
         setup=Setup("export", _export_every_precision), verify=parity_records_kept, timeout_s=180),
]  # fmt: skip

# Offline: every download goes to a closed local port; torch's cache is the sandbox's empty $HOME one.
OFFLINE = (
    ("http_proxy", "http://127.0.0.1:9"), ("https_proxy", "http://127.0.0.1:9"),
    ("HTTP_PROXY", "http://127.0.0.1:9"), ("HTTPS_PROXY", "http://127.0.0.1:9"),
    ("no_proxy", ""), ("NO_PROXY", ""), ("TORCH_HOME", "home/.cache/torch"),
)  # fmt: skip

TRAIN_ROUND3_CASES = [
    Case("train/backbone-imagenet-offline", "train", lambda box: train_args(box, "--backbone-weights", "imagenet"),
         checks=("stdout-empty",), env=OFFLINE),
]  # fmt: skip

ROUND3_CASES = TEMPFILE_CASES + GOOD_CASES + COLLIDE_CASES + NOISE_CASES + RECORD_CASES + TRAIN_ROUND3_CASES
