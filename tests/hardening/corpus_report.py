"""Bad input for tseg-report A B: reports that are not reports, damaged or of other splits, and output
folders that are inputs or hold the user's files. Each is one line on stderr, exit 1, nothing lost.

The reports are real ones, written in the sandbox by the runtime's own report writer from the
tiny split's truth and made-up predictions (no model run: a case costs milliseconds).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from tests.hardening.cases import Case, Sandbox, Setup
from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.data.label_png import save_label_png
from tseg.runtime.data.metrics import ConfusionMatrix
from tseg.runtime.palette import distinct_palette
from tseg.runtime.report.collect import ReportCollector
from tseg.runtime.report.write import ReportSettings, link_from, split_json, write_report


def write_report_folder(box: Sandbox, name: str, *, split: Path | None = None, crf: bool = False,
                        classes: tuple[str, ...] | None = None) -> Path:
    """inputs/NAME: a report of ``split`` (default: the tiny val.json) whose labels are the truth shifted
    sideways (and, with ``crf``, shifted less "after the CRF"); labels in inputs/NAME-labels/."""
    split = split or box.coco() / "val.json"
    dataset = CocoDataset(split)
    classes = classes or dataset.classes
    palette = distinct_palette(len(classes))
    folder, labels_dir = box.inputs / name, box.inputs / f"{name}-labels"
    folder.mkdir()
    targets = [labels_dir / Path(image.file_name).with_suffix(".png") for image in dataset.images]
    collector = ReportCollector(folder=folder, num_classes=len(classes), crf=crf, count=1,
                                names=[image.file_name for image in dataset.images],
                                label_pngs=[link_from(folder, target) for target in targets])
    plain, refined = ConfusionMatrix(len(classes)), ConfusionMatrix(len(classes))
    for index, target in enumerate(targets):
        truth = dataset.label_map(index)
        guess = np.roll(truth, 2 + index, axis=1)
        after = np.roll(truth, 1, axis=1) if crf else None
        target.parent.mkdir(parents=True, exist_ok=True)
        save_label_png(target, guess if after is None else after, palette=palette)
        collector(SimpleNamespace(index=index, truth=truth, plain=guess if crf else None,
                                  labels=guess if after is None else after, image=dataset.read_image(index)))
        plain.update(truth, guess)
        if after is not None:
            refined.update(truth, after)
    write_report(ReportSettings(folder=folder, images=1), collector=collector, title=f"report {name}",
                 facts=[("model", "made up"), ("CRF", "on" if crf else "off")], classes=classes, palette=palette,
                 scores=plain.compute(), matrix=plain.matrix, crf_scores=refined.compute() if crf else None,
                 crf_matrix=refined.matrix if crf else None, split=split_json(split, split.parent))
    return folder


def _pair(box: Sandbox) -> tuple[Path, Path]:
    return write_report_folder(box, "A"), write_report_folder(box, "B", crf=True)


def _args(box: Sandbox, a, b, *extra, out: object = "cmp") -> list[str]:
    """tseg-report A B --out out/``out`` (a Path as it is; None: no --out)."""
    args = [box.rel(a) if isinstance(a, Path) else a, box.rel(b) if isinstance(b, Path) else b, *extra]
    if out is not None:
        args += ["--out", box.rel(out if isinstance(out, Path) else box.out / str(out))]
    return args


def _case(name: str, change, *, expect_ok: bool = False, setup: Setup | None = None) -> Case:
    """A case on the pair A (model alone) and B (with the CRF): ``change(box, a, b)`` damages them and
    returns the arguments."""

    def build(box: Sandbox) -> list[str]:
        a, b = _pair(box)
        return change(box, a, b)

    return Case(f"report/{name}" if not expect_ok else f"control/report-{name}", "report", build,
                expect_ok=expect_ok, setup=setup)


def _edit(path: Path, change) -> None:
    numbers = json.loads(path.read_text())
    change(numbers)
    path.write_text(json.dumps(numbers))


def _replace(box: Sandbox, target: Path, kind: str) -> Path:
    target.unlink()
    return box.special(target, kind)


def _other_split(box: Sandbox, change) -> Path:
    """inputs/other/val.json: the tiny split after ``change(data)`` (same images folder)."""
    root = box.coco()
    data = json.loads((root / "val.json").read_text())
    change(data)
    path = root / "other.json"
    path.write_text(json.dumps(data))
    return path


def _drop_image(data: dict) -> None:
    gone = data["images"].pop()["id"]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != gone]


def _different(box: Sandbox, a: Path, b: Path, change) -> list[str]:
    shutil.rmtree(b)
    return _args(box, a, write_report_folder(box, "C", split=_other_split(box, change), crf=True))


def _other_classes(box: Sandbox, a: Path, b: Path) -> list[str]:
    shutil.rmtree(b)
    return _args(box, a, write_report_folder(box, "C", classes=("Background", "Tin", "Paper", "Glass")))


def _old_format(box: Sandbox, a: Path, b: Path) -> list[str]:
    _edit(a / "report.json", lambda n: [n.pop(key) for key in ("classes", "palette", "split")])
    return _args(box, a, b, "--images", "3")


def _setup_first(box: Sandbox) -> list[str]:
    return _args(box, box.inputs / "A", box.inputs / "B", "--images", "3")


def _comparison_as_a(box: Sandbox, a: Path, b: Path) -> list[str]:
    return _args(box, box.out / "cmp", b, out="second")


def _two_csv_lines(path: Path) -> None:
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))


def _damaged(action: Callable[[Path, Path], object], *extra: str) -> Callable[[Sandbox, Path, Path], list[str]]:
    """Runs ``action(a, b)`` (it damages a report), then compares A and B."""

    def change(box: Sandbox, a: Path, b: Path) -> list[str]:
        action(a, b)
        return _args(box, a, b, *extra)

    return change


def _empty_a(box: Sandbox, a: Path, b: Path) -> list[str]:
    (box.inputs / "empty").mkdir()
    return _args(box, box.inputs / "empty", b)


def _b_links_to_a(box: Sandbox, a: Path, b: Path) -> list[str]:
    (box.inputs / "link").symlink_to("A", target_is_directory=True)
    return _args(box, a, box.inputs / "link")


def _special(name: str, kind: str, side: str = "a") -> Callable[[Sandbox, Path, Path], list[str]]:
    """A's (or B's) file ``name`` replaced by a special file of ``kind``."""

    def change(box: Sandbox, a: Path, b: Path) -> list[str]:
        _replace(box, (a if side == "a" else b) / name, kind)
        return _args(box, a, b)

    return change


REPORT_CASES = [
    _case("a-missing", lambda box, a, b: _args(box, box.inputs / "none", b)),
    _case("b-missing", lambda box, a, b: _args(box, a, box.inputs / "none")),
    _case("a-is-a-file", lambda box, a, b: _args(box, a / "report.json", b)),
    _case("a-is-a-fifo", lambda box, a, b: _args(box, box.special("fifo", "fifo"), b)),
    _case("a-not-a-report", lambda box, a, b: _args(box, box.write("mine/notes.txt", "mine").parent, b)),
    _case("a-empty-folder", _empty_a),
    _case("a-is-b", lambda box, a, b: _args(box, a, a)),
    _case("a-is-b-through-a-link", _b_links_to_a),
    _case("a-is-a-comparison", _comparison_as_a, setup=Setup("report", _setup_first)),
    _case("report-json-missing", _damaged(lambda a, b: (a / "report.json").unlink())),
    _case("report-json-not-json", _damaged(lambda a, b: (a / "report.json").write_bytes(b"\x00\xff{"))),
    _case("report-json-no-scores", _damaged(lambda a, b: _edit(a / "report.json", lambda n: n.pop("model_alone")))),
    _case("report-json-nan-images", _damaged(lambda a, b: (b / "report.json").write_text('{"images": NaN}'))),
    _case("report-json-fifo", _special("report.json", "fifo")),
    _case("report-json-dev-zero", _special("report.json", "dev-zero-link", side="b")),
    _case("report-json-sparse-1g", _special("report.json", "sparse-1g")),
    _case("report-json-spaces-50m", _special("report.json", "spaces-50m")),
    _case("csv-missing", _damaged(lambda a, b: (b / "per_image.csv").unlink())),
    _case("csv-short", _damaged(lambda a, b: _two_csv_lines(a / "per_image.csv"))),
    _case("csv-binary", _damaged(lambda a, b: (a / "per_image.csv").write_bytes(b"\xff\x00" * 99))),
    _case("csv-one-endless-line", _special("per_image.csv", "sparse-4g")),
    _case("csv-fifo", _special("per_image.csv", "fifo", side="b")),
    _case("other-images", lambda box, a, b: _different(box, a, b, _drop_image)),
    _case("other-annotations", lambda box, a, b: _different(box, a, b, lambda d: d["annotations"].pop())),
    _case("other-classes", _other_classes),
    _case("out-not-a-comparison", lambda box, a, b: _args(box, a, b, out=box.write("mine/notes.txt", "x").parent)),
    _case("out-is-an-evaluation-report", lambda box, a, b: _args(box, a, b, out=write_report_folder(box, "C"))),
    _case("out-is-a-file", lambda box, a, b: _args(box, a, b, out=box.write("notes.txt", "mine"))),
    _case("out-is-a", lambda box, a, b: _args(box, a, b, out=a)),
    _case("out-inside-b", lambda box, a, b: _args(box, a, b, out=b / "pictures")),
    _case("out-inside-the-data-root", lambda box, a, b: _args(box, a, b, out=box.coco() / "compare")),
    _case("images-too-many", lambda box, a, b: _args(box, a, b, "--images", "101")),
    _case("images-not-a-number", lambda box, a, b: _args(box, a, b, "--images", "six")),
    _case("compare", lambda box, a, b: _args(box, a, b, "--images", "3"), expect_ok=True),
    _case("older-report", _old_format, expect_ok=True),
    _case("replaces-its-comparison", lambda box, a, b: _args(box, a, b, "--images", "1"), expect_ok=True,
          setup=Setup("report", _setup_first)),
]
