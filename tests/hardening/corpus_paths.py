"""Output paths that are inputs, generated: every output option x every input role x every way to be one.

For each command line below, every output option (``--out``, ``--overlay``, ``--submission``,
tseg-bench's ``--json``, ``--markdown`` and ``--html``, tseg-export's ``-o`` and ``--triton``, tseg-plot's
``-o``, tseg-train's ``--runs-dir``) is pointed at each input role of that command (the photo
folder, a photo, the model, its crf.json, the COCO JSON, the data root, a dataset image, the
checkpoint, the run folder) in each way a path can be the same file or folder:

    same      the input's own path
    spelling  the same path spelled ``./inputs/../inputs/...``
    hardlink  a hard link to the input file, in out/ (files only)
    symlink   a symbolic link to the input, in out/
    bind      an empty file or folder in out/ with the input bind-mounted on it (the child's
              own mount namespace; skipped where the machine has none)
    inside    a path inside an input folder

Only kinds that make sense meet: a folder output with a folder input (all but hardlink), a
folder output with a file input (same), a file output with a file input (all but inside), a
file output with a folder input (same, inside). Each output option is also tried as a
symlink loop, a FIFO and a character device in out/ (a file output also as a device node in
the input folder). Every case must be refused before any work: exit 1, one line, every
input unchanged, no file written under out/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.hardening.cases import Case, Sandbox
from tests.hardening.corpus_bench import FAST
from tests.hardening.corpus_torch import export_args, train_args

CRF_JSON = '{"iterations": 2}\n'


@dataclass(frozen=True)
class Output:
    """One output option.

    Attributes:
        option: as typed, e.g. "--out".
        kind: "dir" or "file".
        name: a fresh name for it (its suffix passes the option's own suffix rule).
    """

    option: str
    kind: str
    name: str

    @property
    def slug(self) -> str:
        """The option in case names: "--out" -> "out"."""
        return self.option.lstrip("-")

    @property
    def alias(self) -> str:
        """The name of a link (or mount point) in out/ standing for an input."""
        return "alias" + Path(self.name).suffix


@dataclass(frozen=True)
class Command:
    """A command line whose output options are pointed at its inputs.

    Attributes:
        slug: names the cases, e.g. "coco" for tseg-infer --coco.
        tool: the CLI.
        roles: input role -> "dir" or "file" (each role that an output is pointed at).
        inputs: (sandbox, role under test) -> role -> path: makes the command's inputs (a costly
            one only when its role is under test).
        argv: (sandbox, inputs, {option: path text} for the output under test, role under
            test) -> the arguments; options not under test get their defaults.
        outputs: the output options.
    """

    slug: str
    tool: str
    roles: dict[str, str]
    inputs: Callable[[Sandbox, str], dict[str, Path]]
    argv: Callable[[Sandbox, dict[str, Path], dict[str, str], str], list[str]]
    outputs: tuple[Output, ...]


# --- the relations: each makes the output path for an input and returns it as the CLI sees it --


def _alias(box: Sandbox, output: Output) -> Path:
    return box.out / output.alias


def _spelling(box: Sandbox, source: Path, output: Output) -> str:
    parts = Path(box.rel(source)).parts
    return os.path.join(".", parts[0], "..", *parts)


def _hardlink(box: Sandbox, source: Path, output: Output) -> str:
    os.link(source, _alias(box, output))
    return box.rel(_alias(box, output))


def _symlink(box: Sandbox, source: Path, output: Output) -> str:
    alias = _alias(box, output)
    alias.symlink_to(os.path.relpath(source, alias.parent), target_is_directory=source.is_dir())
    return box.rel(alias)


def _bind(box: Sandbox, source: Path, output: Output) -> str:
    return box.rel(box.bind(source, _alias(box, output)))


RELATIONS: dict[str, Callable[[Sandbox, Path, Output], str]] = {
    "same": lambda box, source, output: box.rel(source),
    "spelling": _spelling,
    "hardlink": _hardlink,
    "symlink": _symlink,
    "bind": _bind,
    "inside": lambda box, source, output: box.rel(source / output.name),
}
# (output kind, input kind) -> the relations that make sense
PAIRS = {
    ("dir", "dir"): ("same", "spelling", "symlink", "bind", "inside"),
    ("dir", "file"): ("same",),
    ("file", "file"): ("same", "spelling", "hardlink", "symlink", "bind"),
    ("file", "dir"): ("same", "inside"),
}
SPECIALS = ("loop", "fifo", "device")
BEFORE_ANY_WORK = ("nothing-written",)  # an output path is checked before the first file is written


# --- the command lines ---------------------------------------------------------------------


def _infer_inputs(box: Sandbox, role: str) -> dict[str, Path]:
    photos = box.photos()
    model = box.model("m/model.onnx")
    return {"photos": photos, "photo": photos / "a.jpg", "model": model, "crf-json": box.write("m/crf.json", CRF_JSON)}


def _infer_argv(box: Sandbox, inputs: dict[str, Path], targets: dict[str, str], role: str) -> list[str]:
    args = [box.rel(inputs["photos"]), "--model", box.rel(inputs["model"]), "-q"]
    args += ["--out", targets.get("--out", box.rel(box.out / "labels"))]
    args += ["--overlay", targets["--overlay"]] if "--overlay" in targets else []
    return args + (["--crf"] if role == "crf-json" else [])


def _coco_inputs(box: Sandbox, role: str) -> dict[str, Path]:
    data = box.coco()
    model = box.model("m/model.onnx")
    return {
        "coco-json": data / "val.json",
        "data-root": data,
        "image": data / "rgb" / "006.jpg",
        "model": model,
        "crf-json": box.write("m/crf.json", CRF_JSON),
    }


def _coco_argv(box: Sandbox, inputs: dict[str, Path], targets: dict[str, str], role: str) -> list[str]:
    args = ["--coco", box.rel(inputs["coco-json"]), "--model", box.rel(inputs["model"]), "-q"]
    args += ["--out", targets.get("--out", box.rel(box.out / "pred"))]
    for option in ("--overlay", "--submission"):
        args += [option, targets[option]] if option in targets else []
    return args + (["--crf"] if role == "crf-json" else [])


def _bench_inputs(box: Sandbox, role: str) -> dict[str, Path]:
    data = box.coco()
    inputs = {"model": box.model("m/model.onnx"), "coco-json": data / "val.json", "data-root": data,
              "image": data / "rgb" / "006.jpg"}  # fmt: skip
    return inputs | ({"checkpoint": box.checkpoint()} if role == "checkpoint" else {})


def _bench_argv(box: Sandbox, inputs: dict[str, Path], targets: dict[str, str], role: str) -> list[str]:
    args = [box.rel(inputs["model"]), *FAST, "--coco", box.rel(inputs["coco-json"])]
    args += ["--checkpoint", box.rel(inputs["checkpoint"])] if role == "checkpoint" else []
    return args + [item for pair in targets.items() for item in pair]


def _export_inputs(box: Sandbox, role: str) -> dict[str, Path]:
    data = box.coco()
    return {"checkpoint": box.checkpoint(), "data-root": data, "val-json": data / "val.json"}


def _export_argv(box: Sandbox, inputs: dict[str, Path], targets: dict[str, str], role: str) -> list[str]:
    args = export_args(box, inputs["checkpoint"], targets.get("-o", box.out / "model.onnx"))
    args += ["--data", box.rel(inputs["data-root"])]
    return args + (["--triton", targets["--triton"], "--triton-device", "cpu"] if "--triton" in targets else [])


def _plot_inputs(box: Sandbox, role: str) -> dict[str, Path]:
    run = box.inputs / "run"
    run.mkdir()
    for name in ("metrics.csv", "lr.csv"):
        shutil.copyfile(box.fixtures.checkpoint.parent / name, run / name)
    return {"run": run, "metrics": run / "metrics.csv"}


def _train_inputs(box: Sandbox, role: str) -> dict[str, Path]:
    return {"train-json": box.coco() / "train.json"}


COMMANDS = (
    Command("infer", "infer", {"photos": "dir", "photo": "file", "model": "file", "crf-json": "file"},
            _infer_inputs, _infer_argv, (Output("--out", "dir", "labels"), Output("--overlay", "dir", "pictures"))),
    Command("coco", "infer",
            {"data-root": "dir", "coco-json": "file", "image": "file", "model": "file", "crf-json": "file"},
            _coco_inputs, _coco_argv,
            (Output("--out", "dir", "pred"), Output("--overlay", "dir", "pictures"),
             Output("--submission", "file", "sub.csv"))),
    Command("bench", "bench",
            {"data-root": "dir", "model": "file", "coco-json": "file", "image": "file", "checkpoint": "file"},
            _bench_inputs, _bench_argv,
            (Output("--json", "file", "bench.json"), Output("--markdown", "file", "b.md"),
             Output("--html", "file", "b.html"))),
    Command("export", "export", {"data-root": "dir", "checkpoint": "file", "val-json": "file"},
            _export_inputs, _export_argv, (Output("-o", "file", "model.onnx"), Output("--triton", "dir", "repo"))),
    Command("plot", "plot", {"run": "dir", "metrics": "file"}, _plot_inputs,
            lambda box, inputs, targets, role: [box.rel(inputs["run"]), "-o", targets["-o"]],
            (Output("-o", "dir", "plots"),)),
    Command("train", "train", {"train-json": "file"}, _train_inputs,
            lambda box, inputs, targets, role: train_args(box, "--runs-dir", targets["--runs-dir"]),
            (Output("--runs-dir", "dir", "runs"),)),
)  # fmt: skip
# Combinations left out, mostly to spare torch imports (each tseg-export case costs one, and the
# whole harness has three minutes): the checkpoint is a tseg-bench input for --json only
# (--markdown and --html go through the same check);
# tseg-export's -o as the checkpoint itself, another spelling of it or a symlink to it are
# export/o-is-checkpoint, -other-spelling and -symlink-to-checkpoint already; -o must end in
# .onnx, so the same path or spelling of val.json is refused by that rule alone; a dataset
# image is a file in the data root as val.json is; --triton onto a file needs one file to say
# so. tseg-plot's -o inside the run folder is where tseg-train itself puts its charts (RUN/plots).
LEFT_OUT = {
    ("plot", "-o", "run"): ("inside",),
    ("bench", "--markdown", "checkpoint"): PAIRS[("file", "file")],
    ("bench", "--html", "checkpoint"): PAIRS[("file", "file")],
    ("export", "-o", "checkpoint"): ("same", "spelling", "symlink"),
    ("export", "-o", "val-json"): ("same", "spelling"),
    ("export", "--triton", "data-root"): ("spelling",),
    ("export", "--triton", "val-json"): ("same",),
}


# --- the generated cases ---------------------------------------------------------------------


def identity_case(command: Command, output: Output, role: str, relation: str) -> Case:
    """``output`` of ``command`` made the input ``role`` by ``relation``."""

    def build(box: Sandbox) -> list[str]:
        inputs = command.inputs(box, role)
        target = RELATIONS[relation](box, inputs[role], output)
        return command.argv(box, inputs, {output.option: target}, role)

    return Case(f"paths/{command.slug}-{output.slug}-{relation}-{role}", command.tool, build, checks=BEFORE_ANY_WORK)


def special_case(command: Command, output: Output, kind: str, *, in_folder: str | None = None) -> Case:
    """``output`` of ``command`` is an existing special file (see special_files) in out/ or in an input folder."""

    def build(box: Sandbox) -> list[str]:
        inputs = command.inputs(box, "")
        folder = inputs[in_folder] if in_folder else box.out
        target = box.special(folder / output.name, kind)
        return command.argv(box, inputs, {output.option: box.rel(target)}, "")

    where = f"-in-{in_folder}" if in_folder else ""
    return Case(f"paths/{command.slug}-{output.slug}-{kind}{where}", command.tool, build, checks=BEFORE_ANY_WORK)


def _identity_cases() -> list[Case]:
    cases = []
    for command in COMMANDS:
        for output in command.outputs:
            for role, kind in command.roles.items():
                left_out = LEFT_OUT.get((command.slug, output.option, role), ())
                for relation in PAIRS[(output.kind, kind)]:
                    if relation not in left_out:
                        cases.append(identity_case(command, output, role, relation))
    return cases


def _special_cases() -> list[Case]:
    """Each output option once (tseg-infer's --out and --overlay with photo folders, not again with --coco)."""
    cases, seen = [], set()
    for command in COMMANDS:
        for output in command.outputs:
            if (command.tool, output.option) in seen:
                continue
            seen.add((command.tool, output.option))
            cases += [special_case(command, output, kind) for kind in SPECIALS]
            folders = [role for role, kind in command.roles.items() if kind == "dir"]
            if output.kind == "file" and folders:
                cases.append(special_case(command, output, "device", in_folder=folders[0]))
    return cases


def _sibling_onto_checkpoint(sibling: str, relation: str) -> Case:
    """tseg-export -o out/m.onnx writes out/m.``sibling`` too (the parity report, the FP16 file):
    that sibling is the checkpoint itself (``same``: the checkpoint lies there under that name)
    or a hard link to it."""

    def build(box: Sandbox) -> list[str]:
        if relation == "same":
            checkpoint = box.checkpoint(f"run/m.{sibling}")
            out = checkpoint.parent / "m.onnx"
        else:
            checkpoint, out = box.checkpoint(), box.out / "m.onnx"
            os.link(checkpoint, box.out / f"m.{sibling}")
        return export_args(box, checkpoint, out) + ["--precision", "fp32,fp16"]

    name = f"paths/export-sibling-{sibling.replace('.', '-')}-{relation}-checkpoint"
    return Case(name, "export", build, checks=BEFORE_ANY_WORK)


# (the parity report that is the checkpoint by name is export/parity-report-onto-checkpoint)
SIBLING_CASES = [_sibling_onto_checkpoint(s, r) for s, r in
                 (("parity.json", "hardlink"), ("fp16.onnx", "same"), ("fp16.onnx", "hardlink"))]  # fmt: skip
PATH_CASES = _identity_cases() + _special_cases() + SIBLING_CASES
