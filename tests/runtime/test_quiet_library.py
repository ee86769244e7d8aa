"""Library calls print nothing: an image that fails reaches the caller through the result, the
``on_failure`` callback or the ``tseg`` logger; tseg-infer shows it as a ``failed:`` line."""

from __future__ import annotations

import logging

from click.testing import CliRunner

from tests.notes import without_auto_note
from tseg.runtime.errors import logger
from tseg.runtime.infer.cli import main as infer_cli
from tseg.runtime.infer.run import InferSettings, infer_paths
from tseg.runtime.pixel_limit import image_pixel_limit


def _photos_with_a_bad_one(photo_dir, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes((photo_dir / "a.png").read_bytes())
    (folder / "bad.png").write_text("not a PNG")
    return folder


def test_infer_paths_prints_nothing_and_logs_the_failure(colour_onnx, photo_dir, tmp_path, capsys, caplog,
                                                         monkeypatch):
    folder = _photos_with_a_bad_one(photo_dir, tmp_path)
    monkeypatch.setattr(logger, "handlers", [])  # a CLI run earlier in this process may have added its stderr one
    settings = InferSettings(model=colour_onnx, out=tmp_path / "out", device="cpu", progress=False)
    with caplog.at_level(logging.INFO, logger="tseg"):
        result = infer_paths([folder], settings=settings)
    assert capsys.readouterr() == ("", "")
    line = f"failed: {folder / 'bad.png'}: cannot read image"
    assert len(result.failures) == 1 and result.failures[0].line().startswith(line)
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("failed:")] == [
        result.failures[0].line()
    ]
    assert result.errors_file.read_text().splitlines()[1] == result.failures[0].line()


def test_on_failure_gets_each_failure_instead_of_the_logger(colour_onnx, photo_dir, tmp_path, capsys, caplog,
                                                            monkeypatch):
    folder = _photos_with_a_bad_one(photo_dir, tmp_path)
    monkeypatch.setattr(logger, "handlers", [])
    seen = []
    settings = InferSettings(model=colour_onnx, out=tmp_path / "out", device="cpu", progress=False)
    with caplog.at_level(logging.INFO, logger="tseg"), image_pixel_limit(100):  # a.png is 53x37
        result = infer_paths([folder], settings=settings, on_failure=seen.append)
    assert capsys.readouterr() == ("", "") and not [r for r in caplog.records if "failed:" in r.getMessage()]
    assert tuple(seen) == result.failures and len(seen) == 2
    assert "raise the limit with tseg.runtime.set_max_image_pixels(1961)" in seen[0].reason  # Python's words


def test_tseg_infer_shows_failures_on_stderr_in_its_words(colour_onnx, photo_dir, tmp_path):
    folder = _photos_with_a_bad_one(photo_dir, tmp_path)
    out = tmp_path / "out"
    args = [str(folder), "--model", str(colour_onnx), "--out", str(out), "-q", "--max-image-pixels", "100"]
    result = CliRunner().invoke(infer_cli, args)
    assert result.exit_code == 1 and result.stdout == ""
    lines = without_auto_note(result)
    assert lines[0].startswith(f"failed: {folder / 'a.png'}: is 53x37: 1961 pixels is over the limit of 100")
    assert "raise the limit with --max-image-pixels 1961 (or the environment variable" in lines[0]
    assert lines[1].startswith(f"failed: {folder / 'bad.png'}: cannot read image")
    assert lines[2] == f"Error: 0 written, 2 failed (listed in {out / 'errors.txt'})"
    assert (out / "errors.txt").read_text().splitlines()[1:] == lines[:2]
