"""tseg-report A B: the numbers against both report.json's and per_image.csv's, the pictures (copied from
the reports or drawn), older reports, and bad input (one line, exit 1, nothing written).
The page in a real browser: test_report_compare_browser.py."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from tseg.runtime.errors import TsegError
from tseg.runtime.report.cli import main as report_cli
from tseg.runtime.report.compare import compare_reports
from tseg.runtime.report.read import read_report
from tseg.runtime.report.write import is_report


def invoke(*args):
    return CliRunner().invoke(report_cli, [str(a) for a in args])


def compare(a: Path, b: Path, out: Path, *extra) -> str:
    result = invoke(a, b, "--out", out, *extra)
    assert result.exit_code == 0, result.output
    return result.output


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def final(row: dict[str, str], key: str) -> float:
    """A report row's score of the labels written (after the CRF where it ran)."""
    return float(row[f"crf_{key}"] or row[key])


def same(x: float, y: float) -> bool:
    return (math.isnan(x) and math.isnan(y)) or x == y


def test_the_numbers_are_the_reports_and_their_differences(report_pair, tmp_path):
    out = tmp_path / "compare"
    output = compare(report_pair.a, report_pair.b, out, "--images", "1")
    a = json.loads((report_pair.a / "report.json").read_text())
    b = json.loads((report_pair.b / "report.json").read_text())
    numbers = json.loads((out / "comparison.json").read_text())
    assert a["after_crf"] is None and b["after_crf"] is not None  # A: the model alone, B: after the CRF
    assert numbers["a"]["miou"] == a["model_alone"]["miou"] and numbers["b"]["miou"] == b["after_crf"]["miou"]
    assert numbers["change"]["miou"] == b["after_crf"]["miou"] - a["model_alone"]["miou"]
    assert numbers["change"]["pixel_accuracy"] == b["after_crf"]["pixel_accuracy"] - a["model_alone"]["pixel_accuracy"]
    for name in a["classes"]:
        expected = b["after_crf"]["iou"][name] - a["model_alone"]["iou"][name]
        assert same(numbers["change"]["iou"][name], expected), name
    assert numbers["a"]["settings"] == a["settings"] and numbers["b"]["scores"] == "after_crf"
    assert f"({numbers['change']['miou']:+.4f})" in output and "comparison written to" in output

    rows_a, rows_b = rows(report_pair.a / "per_image.csv"), rows(report_pair.b / "per_image.csv")
    table = rows(out / "per_image.csv")
    assert [r["file_name"] for r in table] == [r["file_name"] for r in rows_a]
    changes = []
    for row, row_a, row_b in zip(table, rows_a, rows_b, strict=True):
        assert float(row["a_miou"]) == final(row_a, "miou") and float(row["b_miou"]) == final(row_b, "miou")
        assert float(row["change"]) == final(row_b, "miou") - final(row_a, "miou")
        assert float(row["b_pixel_accuracy"]) == final(row_b, "pixel_accuracy")
        changes.append(float(row["change"]))
    worst, best = min(range(3), key=changes.__getitem__), max(range(3), key=changes.__getitem__)
    assert numbers["worse"] == ([worst] if changes[worst] < 0 else [])
    assert numbers["better"] == ([best] if changes[best] > 0 else [])
    assert numbers["counts"]["better"] + numbers["counts"]["worse"] + numbers["counts"]["same"] == 3

    page = (out / "index.html").read_text()
    assert is_report(out, generator="tseg report comparison") and not is_report(out)
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "the page must open without a network"
    assert f'data-score="a_miou">{a["model_alone"]["miou"]:.4f}<' in page
    assert f'data-score="b_miou">{b["after_crf"]["miou"]:.4f}<' in page
    assert f'data-score="change_miou">{numbers["change"]["miou"]:+.4f}<' in page


def test_pictures_are_the_reports_own_where_they_have_one_else_drawn(report_pair, tmp_path):
    out = tmp_path / "compare"
    compare(report_pair.a, report_pair.b, out, "--images", "3")
    numbers = json.loads((out / "comparison.json").read_text())
    shown = numbers["worse"] + numbers["better"]
    assert sorted(p.name for p in (out / "pictures").iterdir()) == sorted(
        f"{side}-{i}.jpg" for side in "ab" for i in shown)
    page = (out / "index.html").read_text()
    for side, report in (("a", report_pair.a), ("b", report_pair.b)):
        own = {i: kind for kind in ("worst", "best") for i in json.loads((report / "report.json").read_text())[kind]}
        for index in shown:
            picture = out / "pictures" / f"{side}-{index}.jpg"
            if index in own:  # copied byte for byte
                assert picture.read_bytes() == (report / "pictures" / f"{own[index]}-{index}.jpg").read_bytes()
            else:  # drawn: photo | truth | the labels written, and said so
                with Image.open(picture) as image:
                    image.load()
                assert f"drawn from the split and the label PNG of {side.upper()}" in page
            assert f'src="pictures/{side}-{index}.jpg"' in page


def test_an_earlier_comparison_is_replaced_and_nothing_else(report_pair, tmp_path):
    out = tmp_path / "compare"
    compare(report_pair.a, report_pair.b, out, "--images", "3")
    (out / "pictures" / "mine.jpg").write_bytes(b"keep")
    compare(report_pair.a, report_pair.b, out, "--images", "0")
    assert [p.name for p in (out / "pictures").iterdir()] == ["mine.jpg"]
    assert json.loads((out / "comparison.json").read_text())["worse"] == []


def test_the_default_folder_is_new_under_runs_compare(report_pair, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for expected in ("runs/compare/A-vs-B", "runs/compare/A-vs-B-2"):
        result = invoke(report_pair.a, report_pair.b)
        assert result.exit_code == 0, result.output
        assert f"comparison written to {expected}/index.html" in result.output
    assert invoke(report_pair.a, tmp_path / "none").exit_code == 1
    assert sorted(p.name for p in (tmp_path / "runs" / "compare").iterdir()) == ["A-vs-B", "A-vs-B-2"]


def test_an_older_report_without_colours_or_split_stays_readable(report_pair, tmp_path):
    pair = report_pair.copy(tmp_path / "reports")
    numbers = json.loads((pair.a / "report.json").read_text())
    for key in ("classes", "palette", "split"):
        numbers.pop(key)
    (pair.a / "report.json").write_text(json.dumps(numbers))
    out = tmp_path / "compare"
    compare(pair.a, pair.b, out, "--images", "3")
    page = (out / "index.html").read_text()
    assert "tseg's default palette" in page
    assert "predates the split&#x27;s location" in page  # A's images it did not picture: said why


def test_a_moved_split_is_said_on_the_page_not_an_error(report_pair, tmp_path):
    pair = report_pair.copy(tmp_path / "reports")
    numbers = json.loads((pair.b / "report.json").read_text())
    numbers["split"]["json"] = str(tmp_path / "gone" / "val.json")
    (pair.b / "report.json").write_text(json.dumps(numbers))
    compare(pair.a, pair.b, tmp_path / "compare", "--images", "3")
    assert "no picture: the split cannot be read" in (tmp_path / "compare" / "index.html").read_text()


def _edit_json(report: Path, change) -> None:
    numbers = json.loads((report / "report.json").read_text())
    change(numbers)
    (report / "report.json").write_text(json.dumps(numbers))


def _rename_class(numbers: dict) -> None:
    numbers["classes"][1] = "Tin"
    iou = numbers["model_alone"]["iou"]
    numbers["model_alone"]["iou"] = {("Tin" if name == "Metal" else name): value for name, value in iou.items()}


def _drop_last_image(report: Path) -> None:
    lines = (report / "per_image.csv").read_text().splitlines(keepends=True)
    (report / "per_image.csv").write_text("".join(lines[:-1]))
    def change(numbers: dict) -> None:
        numbers["images"] -= 1
        for kind in ("worst", "best"):
            numbers[kind] = [i for i in numbers[kind] if i < numbers["images"]]

    _edit_json(report, change)


def _more_truth(numbers: dict) -> None:
    numbers["model_alone"]["confusion"][0][0] += 1


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p, t: (p.a / "index.html").unlink(), "A {a}: not a tseg evaluation report"),
        (lambda p, t: (p.a / "report.json").unlink(), "A {a}: has no report.json"),
        (lambda p, t: (p.b / "per_image.csv").unlink(), "B {b}: has no per_image.csv"),
        (lambda p, t: (p.a / "report.json").write_text("{"), "A {a}: report.json is not a tseg report's"),
        (lambda p, t: (p.a / "per_image.csv").write_text("index,name\n"), "per_image.csv is not a tseg report's"),
        (lambda p, t: _edit_json(p.a, lambda n: n.update(images=7)), "has 3 image row(s), report.json says 7"),
        (lambda p, t: _edit_json(p.a, _rename_class), "A and B have different classes"),
        (lambda p, t: _drop_last_image(p.b), "A and B cover different images: A {a} has 3, B {b} has 2, 2 in common"),
        (lambda p, t: _edit_json(p.a, _more_truth), "A and B were scored against different annotations"),
    ],
    ids=["a-not-a-report", "no-report-json", "no-csv", "bad-json", "bad-csv", "short-csv", "other-classes",
         "other-images", "other-truth"],
)
def test_reports_that_cannot_be_compared_are_one_line(report_pair, tmp_path, setup, message):
    pair = report_pair.copy(tmp_path / "reports")
    setup(pair, tmp_path)
    result = invoke(pair.a, pair.b, "--out", tmp_path / "compare")
    assert result.exit_code == 1 and result.stdout == "", result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert message.format(a=pair.a, b=pair.b) in result.stderr, result.stderr
    assert not (tmp_path / "compare").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (lambda r, t: [r.a, t / "none", "--out", t / "c"], "B {none}: no such folder"),
        (lambda r, t: [t / "file.txt", r.b, "--out", t / "c"], "A {file} is a file: need a report folder"),
        (lambda r, t: [r.a, r.a, "--out", t / "c"], "A and B are the same report"),
        (lambda r, t: [r.a, r.b, "--out", t / "mine"], "--out {mine} exists and is not a tseg comparison"),
        (lambda r, t: [r.a, r.b, "--out", t / "file.txt"], "--out {file} is a file: need a folder"),
        (lambda r, t: [r.a, r.b, "--out", r.a], "--out {a} lies in the input folder"),
        (lambda r, t: [r.a, r.b, "--out", r.a / "compare"], "--out {a}/compare lies in the input folder"),
        (lambda r, t: [r.a, r.b, "--out", r.b.parent], "--out {parent} exists and is not a tseg comparison"),
        (lambda r, t: [r.a, r.b, "--out", t / "c", "--images", "101"], "--images"),
    ],
    ids=["b-missing", "a-is-a-file", "a-is-b", "out-not-a-comparison", "out-is-a-file", "out-is-a", "out-inside-a",
         "out-holds-the-reports", "too-many-images"],
)
def test_bad_arguments_are_one_line(report_pair, tmp_path, args, message):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    (tmp_path / "file.txt").write_text("mine")
    result = invoke(*args(report_pair, tmp_path))
    assert result.exit_code == 1 and result.stdout == "", result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    expected = message.format(none=tmp_path / "none", file=tmp_path / "file.txt", a=report_pair.a,
                              mine=tmp_path / "mine", parent=report_pair.b.parent)
    assert expected in result.stderr, result.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine" and (tmp_path / "file.txt").read_text() == "mine"
    assert not (tmp_path / "c").exists() and not (report_pair.a / "compare").exists()


def test_the_python_api_names_its_parameters(report_pair):
    a, b = read_report(report_pair.a, what="a"), read_report(report_pair.b, what="b")
    with pytest.raises(TsegError) as caught:
        compare_reports(a, b, images=-1)
    assert caught.value.parameter == "images" and "--" not in str(caught.value)
    with pytest.raises(TsegError) as caught:
        read_report(report_pair.a / "pictures", what="a")
    assert caught.value.parameter == "a"
    comparison = compare_reports(a, b, images=0)
    assert comparison.worse == () and comparison.better == ()
    assert [p.a.file_name for p in comparison.pairs] == [r.file_name for r in a.rows]
