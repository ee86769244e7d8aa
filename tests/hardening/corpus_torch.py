"""Bad inputs for the torch CLIs: tseg-train settings, tseg-export checkpoints and outputs, tseg-plot CSVs.

Each of these cases pays for importing torch (seconds), so there are only as many as the
issue's classes need; the settings are otherwise a valid 1-epoch, 32 px run on the tiny
dataset, so that old code which accepts a bad value finishes quickly instead of hanging.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from tests.hardening.cases import Case, Sandbox

# --- 4. tseg-train hyper-parameters --------------------------------------------------------


def train_args(box: Sandbox, *flags: str) -> list[str]:
    """A valid tiny run's arguments with ``flags`` added (a flag given there replaces the base one)."""
    base = {
        "--data": box.rel(box.coco()),
        "--size": "32",
        "--epochs": "1",
        "--batch-size": "2",
        "--runs-dir": box.rel(box.out / "runs"),
        "--name": "r",
    }
    args = [item for flag, value in base.items() if flag not in flags for item in (flag, value)]
    return args + ["-q", *flags]


def _train(name: str, *flags: str) -> Case:
    return Case(f"train/{name}", "train", lambda box: train_args(box, *flags))


TRAIN_CASES = [
    _train("lr-nan", "--lr", "nan"),
    _train("lr-infinite", "--lr", "inf"),
    _train("lr-negative", "--lr", "-1"),
    _train("min-lr-negative", "--lr-schedule", "warmup-cosine", "--min-lr", "-1"),
    _train("weight-decay-nan", "--weight-decay", "nan"),
    _train("momentum-negative", "--optimizer", "sgd", "--momentum", "-0.5"),
    _train("warmup-epochs-nan", "--lr-schedule", "warmup-cosine", "--warmup-epochs", "nan"),
    _train("warmup-steps-and-epochs", "--lr-schedule", "warmup-cosine", "--warmup-steps", "2", "--warmup-epochs", "1"),
    _train("batch-size-negative", "--batch-size", "-1"),
    _train("size-zero", "--size", "0"),
    _train("scale-aug-nan", "--scale-aug", "nan", "2"),
    _train("color-jitter-infinite", "--color-jitter", "inf"),
    _train("ignore-index-300", "--ignore-index", "300"),
    _train("ignore-index-negative", "--ignore-index", "-1"),
    _train("class-weights-nan", "--class-weights", "1,nan,1,1"),
    _train("device-cuda-unavailable", "--device", "cuda"),
]


# --- 1 and 3. tseg-export: outputs onto the checkpoint, broken checkpoints ---------------------


def export_args(box: Sandbox, checkpoint, out=None) -> list[str]:
    """tseg-export arguments with cheap settings (no onnxslim, one parity image).

    ``out``: the -o path (a str is passed as written), None for out/model.onnx, False for no -o.
    """
    if out is None:
        out = box.out / "model.onnx"
    out_args = [] if out is False else ["-o", out if isinstance(out, str) else box.rel(out)]
    return ["--onnx", box.rel(checkpoint), *out_args, "--no-simplify", "--parity-images", "1"]


def _export(name: str, build: Callable[[Sandbox], list[str]]) -> Case:
    return Case(name, "export", build)


def _ckpt(name: str, change: Callable[[dict], object]) -> Case:
    """A checkpoint made from the real one by ``change(payload)`` (edits in place or returns a new object)."""
    return _export(f"ckpt/{name}", lambda box: export_args(box, box.checkpoint_variant("run/best.pt", change)))


def _raw_ckpt(name: str, make: Callable[[Sandbox], bytes]) -> Case:
    return _export(f"ckpt/{name}", lambda box: export_args(box, box.write("run/best.pt", make(box))))


def _onto_checkpoint(name: str, spelling: Callable[[Sandbox], str] | None = None) -> Callable[[Sandbox], list[str]]:
    """-o is the checkpoint inputs/run/``name`` itself, as written by ``spelling`` (default: the same path).

    A checkpoint named .onnx makes -o pass any suffix rule, so only a same-file check can refuse it.
    """

    def build(box: Sandbox) -> list[str]:
        checkpoint = box.checkpoint(f"run/{name}")
        return export_args(box, checkpoint, spelling(box) if spelling else checkpoint)

    return build


def _symlink_out(box: Sandbox) -> list[str]:
    checkpoint = box.checkpoint()
    (checkpoint.parent / "alias.onnx").symlink_to(checkpoint.name)
    return export_args(box, checkpoint, checkpoint.parent / "alias.onnx")


def _parity_onto_checkpoint(box: Sandbox) -> list[str]:
    checkpoint = box.checkpoint("run/m.parity.json")  # tseg-export writes <out>.parity.json beside -o
    return export_args(box, checkpoint, checkpoint.parent / "m.onnx")


def _plain_dict(payload: dict) -> dict:
    import torch

    return {"weights": torch.zeros(3)}


def _wrong_keys(payload: dict) -> None:
    import torch

    payload["state_dict"] = {"conv.weight": torch.zeros(1, 1, 1, 1)}


def _more_classes(payload: dict) -> None:
    spec = payload["model"]
    spec["classes"] = [*spec["classes"], "Plastic"]
    spec["palette"] = [*spec["palette"], [10, 20, 30]]


def _spec(**changes) -> Callable[[dict], None]:
    return lambda payload: payload["model"].update(changes)


def _kwargs(**changes) -> Callable[[dict], None]:
    return lambda payload: payload["model"]["kwargs"].update(changes)


def _int8_without_train_split(box: Sandbox) -> list[str]:
    data = box.coco()
    (data / "train.json").unlink()
    return export_args(box, box.checkpoint()) + ["--data", box.rel(data), "--precision", "fp32,int8"]


def _triton_repo_with_content(box: Sandbox) -> list[str]:
    repo = box.write("repo/notes.txt", "the user's own file\n").parent
    return export_args(box, box.checkpoint()) + ["--triton", box.rel(repo)]


EXPORT_CASES = [
    _export("export/o-is-checkpoint", _onto_checkpoint("best.pt")),
    _export(
        "export/o-is-checkpoint-other-spelling",
        _onto_checkpoint("best.onnx", lambda box: os.path.join(".", "inputs", "run", "..", "run", "best.onnx")),
    ),
    _export("export/o-is-symlink-to-checkpoint", _symlink_out),
    _export("export/checkpoint-named-onnx-no-o", lambda box: export_args(box, box.checkpoint("run/best.onnx"), False)),
    _export("export/parity-report-onto-checkpoint", _parity_onto_checkpoint),
    _export("export/o-is-existing-folder", lambda box: export_args(box, box.checkpoint(), box.out)),
    _raw_ckpt(
        "truncated", lambda box: box.fixtures.checkpoint.read_bytes()[: box.fixtures.checkpoint.stat().st_size // 2]
    ),
    _ckpt("plain-dict", _plain_dict),
    _ckpt("missing-model-spec", lambda payload: payload.pop("model") and None),
    _ckpt("missing-state-dict", lambda payload: payload.pop("state_dict") and None),
    _ckpt("unknown-kwarg", _kwargs(dropout_rate=0.5)),
    _ckpt("num-classes-string", _kwargs(num_classes="four")),
    _ckpt("classes-more-than-num-classes", _more_classes),
    _ckpt("state-dict-wrong-keys", _wrong_keys),
    _ckpt("other-architecture", _spec(name="deeplabv3_resnet50")),
    # Issue 11: precisions, calibration, the Triton repository (all refused before any export).
    _export("export/int8-without-data", lambda box: export_args(box, box.checkpoint()) + ["--precision", "int8"]),
    _export("export/int8-data-without-train-split", _int8_without_train_split),
    _export("export/triton-repo-with-other-content", _triton_repo_with_content),
]


# --- 4. tseg-plot on malformed runs ---------------------------------------------------------


def _plot(name: str, make: Callable[[Sandbox], object], *, expect_ok: bool = False) -> Case:
    """tseg-plot over inputs/run after ``make`` filled it; a Path that ``make`` returns is plotted instead."""

    def build(box: Sandbox) -> list[str]:
        run = box.inputs / "run"
        run.mkdir()
        made = make(box)
        return [box.rel(made if isinstance(made, Path) else run), "-o", box.rel(box.out / "plots")]

    return Case(name, "plot", build, expect_ok=expect_ok)


def _metrics(text: str | bytes) -> Callable[[Sandbox], object]:
    return lambda box: box.write("run/metrics.csv", text).name


def _real_run(box: Sandbox) -> None:
    for name in ("metrics.csv", "lr.csv"):
        shutil.copyfile(box.fixtures.checkpoint.parent / name, box.inputs / "run" / name)


def _out_is_file(box: Sandbox) -> list[str]:
    (box.inputs / "run").mkdir()
    _real_run(box)
    return [box.rel(box.inputs / "run"), "-o", box.rel(box.write("plots.txt", "keep me\n"))]


HEADER = "epoch,lr,train_loss,val_loss,train_miou,val_miou\n"
PLOT_CASES = [
    _plot("plot/empty-metrics", _metrics("")),
    _plot("plot/header-only", _metrics(HEADER)),
    _plot("plot/non-numeric-cells", _metrics(HEADER + "1,0.001,abc,0.5,0.2,0.3\n")),
    _plot("plot/ragged-rows", _metrics(HEADER + "1,0.001,0.9\n2,0.001,0.8,0.7,0.2,0.3,9,9\n")),
    _plot("plot/missing-epoch-column", _metrics("lr,train_loss\n0.001,0.9\n")),
    _plot("plot/binary-garbage", _metrics(bytes(range(256)) * 4)),
    _plot("plot/not-a-run-folder", lambda box: None),
    _plot("plot/metrics-is-folder", lambda box: (box.inputs / "run" / "metrics.csv").mkdir()),
    _plot("plot/run-missing", lambda box: box.inputs / "no-such-run"),
    Case("plot/out-is-existing-file", "plot", _out_is_file),
    _plot("control/plot-real-run", _real_run, expect_ok=True),
]

# Command lines that click itself rejects: answered before torch is imported.
USAGE_CASES = [
    Case("usage/train-lr-not-a-number", "train", lambda box: train_args(box, "--lr", "fast")),
    Case("usage/train-epochs-fraction", "train", lambda box: train_args(box, "--epochs", "1.5")),
    Case("usage/export-parity-images-zero", "export", lambda box: ["--onnx", "x.pt", "--parity-images", "0"]),
    Case("usage/export-min-agreement-2", "export", lambda box: ["--onnx", "x.pt", "--min-agreement", "2"]),
    Case("usage/export-unknown-precision", "export", lambda box: ["--onnx", "x.pt", "--precision", "fp32,fp8"]),
    Case("usage/export-calib-method", "export", lambda box: ["--onnx", "x.pt", "--calib-method", "kl"]),
    Case("usage/plot-without-out", "plot", lambda box: [box.rel(box.inputs)]),
]

TORCH_CASES = TRAIN_CASES + EXPORT_CASES + PLOT_CASES + USAGE_CASES
