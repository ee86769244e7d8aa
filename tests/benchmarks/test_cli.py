"""tseg-bench end to end on hand-built models (fast): rows, figures, outputs, one-line refusals."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.onnx_models import INPUT_SIZE, write_colour_model  # noqa: E402
from tests.tiny_coco import write_tiny_coco  # noqa: E402
from tseg.benchmarks.cli import main  # noqa: E402
from tseg.runtime.errors import TsegError  # noqa: E402

FAST = ["--min-time", "0", "--min-runs", "2", "--warmup", "1", "--pause", "0", "--no-progress"]


def bench(*args: str):
    return CliRunner().invoke(main, [*map(str, args), *FAST])


def one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_rows_figures_and_reports(colour_onnx, tmp_path):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "new" / "folder" / "bench.md"  # folders made
    out_html = tmp_path / "other" / "bench.html"
    result = bench(colour_onnx, "--sizes", "16,32", "--batch-sizes", "1,2", "--threads", "1",
                   "--json", out_json, "--markdown", out_md, "--html", out_html)
    assert result.exit_code == 0, result.output
    data = json.loads(out_json.read_text())
    rows = data["rows"]
    assert [(r["size"], r["batch"]) for r in rows] == [([16, 16], 1), ([16, 16], 2), ([32, 32], 1), ([32, 32], 2)]
    peak = data["peaks_gflops_per_s"]["fp32 GEMM on cpu"]
    assert isinstance(peak, float) and math.isfinite(peak), peak  # a figure that did not come out is null
    # The peak is the fastest of the GEMMs timed for it (two square shapes and a convolution's im2col shape).
    gemms = data["peak_gemms"]["fp32 GEMM on cpu"]
    shapes = ["1024x1024x1024", "2048x2048x2048", "4096x1152x256"]
    assert [g.split(":")[0] for g in gemms] == [f"MatMul {shape}" for shape in shapes]
    assert round(peak) == max(int(g.split(": ")[1]) for g in gemms)
    for row in rows:
        assert row["status"] == "ran" and row["precision"] == "fp32" and row["device"] == "cpu"
        assert row["runs"] >= 2 and row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        side = row["size"][0]
        assert row["gflops"] == pytest.approx(2 * 4 * side * side * 3 / 1e9)  # a 1x1 conv, 3 -> 4 channels
        assert row["gflops_per_s"] == pytest.approx(row["gflops"] * row["batch"] / (row["p50_ms"] / 1e3))
        assert row["peak_fraction"] == pytest.approx(row["gflops_per_s"] / peak)
        assert row["file_mb"] == pytest.approx(colour_onnx.stat().st_size / 1e6)
    assert data["machine"]["threads"] == 1 and data["machine"]["cpu"]
    markdown = out_md.read_text()
    assert markdown.startswith("| model | precision | device | size | batch | status |")
    assert markdown.count("| colour.onnx | fp32 | cpu |") == 4
    assert "Method: " in markdown and "Machine: " in markdown
    assert "colour.onnx" in result.output and "Method: " in result.output
    page = out_html.read_text()
    shown = re.findall(r'data-field="p50_ms" data-value="([^"]*)"', page)
    assert [float(v) for v in shown] == [r["p50_ms"] for r in rows]  # the JSON's numbers, exactly
    assert page.count("data-series=") == 4 and "Machine:" in page  # a latency point per row, no mIoU


def test_default_size_is_the_models_own(colour_onnx):
    result = bench(colour_onnx, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"{INPUT_SIZE[0]}x{INPUT_SIZE[1]}" in result.output


@pytest.fixture()
def cuda_fails(monkeypatch):
    """Every non-CPU session fails to open, as a GPU provider that does not load does (the CPU ones open)."""
    from tseg.runtime.model import session as session_module

    real = session_module.create_session

    def create_session(path, *, device="auto", **kwargs):
        if device != "cpu":
            raise TsegError(f"--device {device}: CUDAExecutionProvider did not load (libcudnn.so.9 missing)")
        return real(path, device=device, **kwargs)

    monkeypatch.setattr(session_module, "create_session", create_session)


@pytest.fixture()
def batch_2_fails_later(monkeypatch):
    """A batch of 2 runs once, then fails (as a GPU that runs out of memory mid-benchmark)."""
    from tseg.runtime.model.binding import BoundRunner

    real = BoundRunner.run
    calls = []

    def run(self, batch, *args, **kwargs):
        if len(batch) == 2:
            calls.append(1)
            if len(calls) > 1:
                raise RuntimeError("out of memory while timing\nsecond line")
        return real(self, batch, *args, **kwargs)

    monkeypatch.setattr(BoundRunner, "run", run)


def test_a_row_that_fails_while_timing_fails_the_run(colour_onnx, tmp_path, batch_2_fails_later):
    """The table and reports still come out; then one line per failed row on stderr, one Error line, exit 1."""
    out_json = tmp_path / "b.json"
    result = bench(colour_onnx, "--batch-sizes", "1,2", "--json", out_json)
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("model ") and "colour.onnx" in result.stdout and "Method: " in result.stdout
    rows = json.loads(out_json.read_text())["rows"]
    assert [(r["batch"], r["status"]) for r in rows] == [
        (1, "ran"), (2, "failed: RuntimeError: out of memory while timing")]
    assert rows[1]["p50_ms"] is None and isinstance(rows[0]["p50_ms"], float) and math.isfinite(rows[0]["p50_ms"])
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning: load average")]
    assert lines == [
        "failed: colour.onnx cpu 24x40/2: RuntimeError: out of memory while timing",
        "Error: 1 of 2 benchmark rows failed (each named above)",
    ], result.stderr


def test_a_device_that_does_not_load_is_refused_before_timing(colour_onnx, cuda_fails, no_timing):
    one_line_error(bench(colour_onnx, "--device", "cpu,cuda", "--batch-sizes", "1,2"),
                   "colour.onnx cuda 24x40/1: --device cuda: CUDAExecutionProvider did not load")


def test_a_row_that_cannot_run_even_once_is_refused_before_timing(colour_onnx, monkeypatch, no_timing):
    from tseg.runtime.model.binding import BoundRunner

    def run(self, batch, *args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : BFCArena cannot allocate 40000000000 bytes")

    monkeypatch.setattr(BoundRunner, "run", run)
    one_line_error(bench(colour_onnx), "colour.onnx cpu 24x40/1: RuntimeError: [ONNXRuntimeError]", "40000000000")


def test_failure_lines_name_each_failed_row_and_section_row():
    from tseg.benchmarks.report import BenchReport, failure_lines
    from tseg.benchmarks.rows import Row
    from tseg.benchmarks.stats import TimingPolicy

    ran = Row("m.onnx", "m.onnx", "onnxruntime", "fp32", "cpu", (32, 32), 1)
    failed = Row("m.onnx", "m.onnx", "onnxruntime", "fp32", "cuda", (32, 48), 4)
    failed.fail("out of memory\nmore")
    report = BenchReport([ran, failed], {}, TimingPolicy())
    report.sections["Dense CRF"] = (("size", "classes", "tseg CRF p50 ms", "pydensecrf p50 ms"),
                                    [["64x64", "4", "1.0", "2.0"], ["64x64", "21", "failed: no memory", "-"]], "")
    report.sections["Stages"] = (("model", "device", "photo size", "status"), [["m.onnx", "cpu", "64x64", "ran"]], "")
    assert failure_lines(report) == [
        "m.onnx cuda 32x48/4: out of memory",  # the first line of the error
        "Dense CRF, size 64x64, classes 21: tseg CRF p50 ms: no memory",
    ]
    report.rows, report.sections = [ran], {}
    assert failure_lines(report) == []


@pytest.fixture()
def no_timing(monkeypatch):
    """Bad input must be refused before any row is timed: timing here fails the test."""
    from tseg.benchmarks import cli

    def measure_rows(*args, **kwargs):
        raise AssertionError("bad input reached the timing")

    monkeypatch.setattr(cli, "measure_rows", measure_rows)


def test_tensorrt_at_a_size_its_engine_does_not_take_is_refused_before_timing(colour_onnx, no_timing):
    one_line_error(bench(colour_onnx, "--sizes", "16", "--device", "cpu,tensorrt"),
                   "--device tensorrt with --sizes 16", "input size (colour.onnx: 24x40")


def test_a_coco_split_with_another_class_count_is_refused_before_timing(tmp_path, no_timing):
    from tests.onnx_models import colour_metadata

    three = write_colour_model(tmp_path / "three.onnx", colour_metadata(classes=("Background", "Metal", "Paper")))
    root = tmp_path / "data"
    root.mkdir()
    write_tiny_coco(root)
    one_line_error(bench(three, "--coco", root / "val.json", "--data", root),
                   "the model three.onnx has 3 classes but val.json has 4 (with background): Background, Metal")


def test_a_batch_larger_than_the_machines_memory_is_refused_before_timing(colour_onnx, no_timing):
    from tseg.benchmarks.checks import physical_memory

    memory = physical_memory()
    assert isinstance(memory, int)  # Linux and macOS say
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():  # Linux: the kernel's figure in kB; physical_memory() is in bytes
        total = int(re.search(r"MemTotal:\s+(\d+) kB", meminfo.read_text()).group(1)) * 1024
        assert memory == pytest.approx(total, rel=0.05)
    result = bench(colour_onnx, "--sizes", "8192", "--batch-sizes", "1024")
    need = 1024 * (3 + 4) * 8192 * 8192 * 4
    one_line_error(result, "size 8192x8192", "--batch-sizes 1024", f"{need / 1e9:,.1f} GB",
                   f"{memory / 1e9:,.1f} GB of memory")


def test_the_memory_rule_counts_one_batchs_input_and_logits():
    from tseg.benchmarks.checks import batch_bytes, check_batch_memory

    assert batch_bytes(2, (10, 20), 5) == 2 * 3 * 10 * 20 * 4 + 2 * 5 * 10 * 20 * 4
    fits = ("m.onnx", (10, 20), 2, 5)
    check_batch_memory([fits], memory=batch_bytes(2, (10, 20), 5))  # exactly the memory: fits
    with pytest.raises(TsegError, match=r"size 10x20 with batch_sizes=2: one batch of m.onnx"):
        check_batch_memory([fits], memory=batch_bytes(2, (10, 20), 5) - 1)
    check_batch_memory([("m.onnx", (8192, 8192), 1024, 21)], memory=None)  # the OS does not say: not refused


def _external_data_outside(folder):
    """colour.onnx in folder/models whose weights are external data at ../w_NAME.bin (outside its folder)."""
    import onnx

    path = write_colour_model(folder / "models" / "escape.onnx")
    model = onnx.load(str(path))
    for tensor in model.graph.initializer:
        array = onnx.numpy_helper.to_array(tensor)
        (folder / f"w_{tensor.name}.bin").write_bytes(array.tobytes())
        tensor.ClearField("float_data")
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", f"../w_{tensor.name}.bin"), ("length", str(array.nbytes))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def test_external_data_outside_the_models_folder_is_refused_before_timing(tmp_path, no_timing):
    """As tseg-infer and Segmenter refuse it (ONNX Runtime's own check), in one line."""
    from tseg.runtime.segment.segmenter import Segmenter

    escape = _external_data_outside(tmp_path)
    with pytest.raises(TsegError) as err:
        Segmenter(escape, device="cpu")
    one_line_error(bench(escape), str(err.value))
    assert "escapes model directory" in str(err.value)


def test_threads_beyond_the_cpus_are_refused(colour_onnx, no_timing):
    from tseg.benchmarks.cli import BenchSettings, run_bench
    from tseg.runtime.model.session import MAX_THREADS

    for threads in sorted({MAX_THREADS + 1, max(1024, MAX_THREADS + 1)}):
        one_line_error(bench(colour_onnx, "--threads", threads), "Invalid value for '--threads'", f"{threads}")
    for threads in (MAX_THREADS + 1, 0, 2.5, True, "2"):
        with pytest.raises(TsegError, match=rf"threads: need an integer in 1\.\.{MAX_THREADS}"):
            run_bench(BenchSettings(models=(colour_onnx,), threads=threads))


def test_a_split_that_cannot_be_scored_fails_its_rows(colour_onnx, tmp_path):
    """An image that does not decode is found while scoring (after the timing): the rows fail, exit 1."""
    root = tmp_path / "data"
    root.mkdir()
    write_tiny_coco(root)
    first = json.loads((root / "val.json").read_text())["images"][0]["file_name"]
    (root / first).write_bytes(b"not an image")
    result = bench(colour_onnx, "--coco", root / "val.json", "--data", root)
    assert result.exit_code == 1, result.output
    assert "colour.onnx" in result.stdout
    assert "failed: colour.onnx cpu 24x40/1: mIoU: 1 of" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "Error: 1 of 1 benchmark rows failed (each named above)"


def test_coco_scores_each_row_as_tseg_infer_eval_does(colour_onnx, tmp_path):
    from tseg.runtime.infer.run import InferSettings, infer_coco

    root = tmp_path / "data"
    root.mkdir()
    write_tiny_coco(root)
    out_json = tmp_path / "b.json"
    result = bench(colour_onnx, "--coco", root / "val.json", "--data", root, "--json", out_json)
    assert result.exit_code == 0, result.output
    [row] = json.loads(out_json.read_text())["rows"]
    expected = infer_coco(root / "val.json", data_root=root, evaluate=True,
                          settings=InferSettings(model=colour_onnx, out=tmp_path / "eval", progress=False))
    assert row["miou"] == pytest.approx(expected.scores.miou)
    assert row["miou"] > 0.5


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["missing.onnx"], ["model file not found: missing.onnx"]),
        (["{model}", "--device", "gpu"], ["unknown device 'gpu'", "cpu, cuda, tensorrt"]),
        (["{model}", "--sizes", "256,big"], ["--sizes: need comma-separated integers", "'256,big'"]),
        (["{model}", "--sizes", "0"], ["--sizes: need comma-separated integers in 1..8192", "got 0"]),
        (["{model}", "--batch-sizes", "x"], ["--batch-sizes: need comma-separated integers"]),
        (["{model}", "--json", "{model}"], ["is the input"]),
        (["{model}", "--markdown", "{model}/under/a/file.md"], ["is a file, so the folder cannot be made"]),
        (["{model}", "--html", "{model}"], ["--html", "is the input"]),
        (["{model}", "--data", "."], ["--data is the image root of --coco"]),
        ([], ["need at least one MODEL.onnx"]),
    ],
)
def test_bad_input_is_one_line_and_exit_1(colour_onnx, args, fragments):
    one_line_error(bench(*[a.format(model=colour_onnx) for a in args]), *fragments)


def test_a_non_tseg_onnx_is_refused(tmp_path):
    plain = write_colour_model(tmp_path / "plain.onnx", props={})
    one_line_error(bench(plain), "has no tseg metadata", "export it with tseg-export")


def test_checkpoint_without_torch_names_the_extra(colour_onnx, tmp_path, monkeypatch):
    import sys

    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # as where torch is not installed: its import fails
    monkeypatch.delitem(sys.modules, "tseg.benchmarks.eager", raising=False)
    one_line_error(bench(colour_onnx, "--checkpoint", checkpoint), "--checkpoint needs PyTorch",
                   "pip install 'tseg[train]'")


def test_the_cli_imports_neither_torch_nor_tseg_train():
    code = (
        "import sys, tseg.benchmarks.cli, tseg.benchmarks.measure, tseg.benchmarks.report;"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'tseg.train', 'tseg.export'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_bf16_without_device_openvino_is_one_line(colour_onnx, no_timing):
    one_line_error(bench(colour_onnx, "--bf16"), "--bf16", "--device openvino")
