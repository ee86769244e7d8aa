"""TensorRT through ONNX Runtime: the provider options tseg hands over, its caches, and its refusals.

There is no GPU and no TensorRT here: the options are checked as data, sessions are made
with the fake onnxruntime of test_session.py, and the real ``--device tensorrt`` must end
in one line (or, on a machine that has TensorRT and a GPU, run).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from tests.conv_models import conv_model, metadata
from tests.runtime.test_session import CPU, CUDA, TRT, fake_ort, use
from tseg.runtime.errors import TsegError
from tseg.runtime.infer.cli import main
from tseg.runtime.model import tensorrt as trt
from tseg.runtime.model.onnx_file import TensorInfo, read_model_file
from tseg.runtime.model.session import create_session
from tseg.runtime.model.tensorrt import TensorrtSettings, tensorrt_provider_options
from tseg.runtime.segment import segmenter as segmenter_module
from tseg.runtime.segment.segmenter import Segmenter
from tseg.runtime.segment.tta import TtaSettings

GPU, VERSION = "NVIDIA H200", "10.13.3"
CALIBRATION_KEYS = ("trt_int8_calibration_table_name", "trt_int8_use_native_calibration_table")


@pytest.fixture
def model(tmp_path) -> Path:
    return conv_model(tmp_path / "best.onnx")


def options_for(path: Path, precision: str = "fp32", *, gpu: str = GPU, version: str = VERSION, **settings):
    settings.setdefault("cache_dir", path.parent / "cache")
    calibration = {"target": "tensorrt"} if precision == "int8" else {}  # tseg-export --int8-target tensorrt
    meta = metadata(precision=precision, calibration=calibration)
    return tensorrt_provider_options(path, meta, TensorrtSettings(**settings), gpu=gpu, trt_version=version)


def test_an_int8_file_quantized_for_the_cpu_is_refused_in_one_line(model):
    for calibration in ({}, {"target": "cpu", "images": 4}):
        with pytest.raises(TsegError, match=r"quantized for the CPU .*--int8-target tensorrt"):
            tensorrt_provider_options(
                model, metadata(precision="int8", calibration=calibration), TensorrtSettings(),
                gpu=GPU, trt_version=VERSION,
            )


def test_the_options_for_an_fp32_model(model, tmp_path):
    options = options_for(model, batch_size=4)
    root = tmp_path / "cache" / "tensorrt"
    engines, timing = Path(options.pop("trt_engine_cache_path")), Path(options.pop("trt_timing_cache_path"))
    assert engines.parent == root / "engines" and timing.parent == root / "timing"
    assert options == {
        "trt_fp16_enable": "False",
        "trt_int8_enable": "False",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_prefix": "best",
        "trt_timing_cache_enable": "True",
        "trt_profile_min_shapes": "image:1x3x8x12",  # metadata input size (8, 12)
        "trt_profile_opt_shapes": "image:4x3x8x12",
        "trt_profile_max_shapes": "image:4x3x8x12",
    }


@pytest.mark.parametrize(
    ("precision", "trt_fp16", "fp16", "int8"),
    [
        ("fp32", False, "False", "False"),
        ("fp32", True, "True", "False"),
        ("fp16", False, "True", "False"),  # the file is FP16 already: TensorRT must keep it so
        ("fp16", True, "True", "False"),
        ("int8", False, "False", "True"),  # QDQ: TensorRT's explicit quantization
        ("int8", True, "True", "True"),  # FP16 for the layers left in float
    ],
)
def test_precision_flags_follow_the_file_and_trt_fp16(model, precision, trt_fp16, fp16, int8):
    options = options_for(model, precision, fp16=trt_fp16)
    assert (options["trt_fp16_enable"], options["trt_int8_enable"]) == (fp16, int8)
    assert not any(key in options for key in CALIBRATION_KEYS)  # never a calibration table


def test_the_engine_cache_is_keyed_by_model_bytes_gpu_tensorrt_and_flags(model, tmp_path):
    def folders(path=model, precision="fp32", **changes):
        options = options_for(path, precision, cache_dir=tmp_path / "cache", **changes)
        return Path(options["trt_engine_cache_path"]).name, Path(options["trt_timing_cache_path"]).name

    engine, timing = folders()
    assert folders() == (engine, timing)  # the same model, machine and flags: the same engine
    copy = tmp_path / "copy" / "other.onnx"
    copy.parent.mkdir()
    shutil.copyfile(model, copy)
    assert folders(copy) == (engine, timing)  # keyed by content, not by path

    retrained = onnx.load(str(model))  # the same tensor names (ONNX Runtime's own hash), other weights
    retrained.graph.initializer[1].raw_data = np.full(3, 0.25, np.float32).tobytes()
    onnx.save(retrained, str(copy))
    assert folders(copy)[0] != engine and folders(copy)[1] == timing
    for changes in ({"gpu": "NVIDIA A100-SXM4-80GB"}, {"version": "10.13.4"}):
        changed_engine, changed_timing = folders(**changes)
        assert changed_engine != engine and changed_timing != timing
    for changes in ({"fp16": True}, {"precision": "int8"}, {"precision": "fp16"}, {"batch_size": 8}):
        changed_engine, changed_timing = folders(**changes)
        assert changed_engine != engine and changed_timing == timing  # timings hold for any model


def test_the_cache_folder_is_tsegs_unless_given(model, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    options = tensorrt_provider_options(model, metadata(), TensorrtSettings(), gpu=GPU, trt_version=VERSION)
    assert Path(options["trt_engine_cache_path"]).parents[1] == tmp_path / "xdg" / "tseg" / "tensorrt"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # ignored, as the XDG spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert trt.default_cache_dir() == tmp_path / "home" / ".cache" / "tseg"
    mine = options_for(model, cache_dir=tmp_path / "mine")
    assert Path(mine["trt_timing_cache_path"]).parents[1] == tmp_path / "mine" / "tensorrt"
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "mine").exists()  # options create nothing


def test_profiles_use_the_graphs_input_name_and_static_dims(tmp_path):
    renamed = onnx.load(str(conv_model(tmp_path / "m.onnx")))
    renamed.graph.input[0].name = renamed.graph.node[0].input[0] = "pixels"
    onnx.save(renamed, str(tmp_path / "pixels.onnx"))
    options = options_for(tmp_path / "pixels.onnx", batch_size=2)
    assert options["trt_profile_max_shapes"] == "pixels:2x3x8x12"

    fixed_batch = conv_model(tmp_path / "b1.onnx", input_shape=[1, 3, "H", "W"])
    options = options_for(fixed_batch, batch_size=8)
    assert {options[f"trt_profile_{k}_shapes"] for k in ("min", "opt", "max")} == {"image:1x3x8x12"}
    static = conv_model(tmp_path / "static.onnx", input_shape=[1, 3, 8, 12], output_shape=[1, 3, 8, 12])
    assert not any(key.startswith("trt_profile") for key in options_for(static, batch_size=8))


def test_read_model_file_matches_onnx(tmp_path):
    path = conv_model(tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    proto.graph.input.append(onnx.helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [3, 3, 1, 1]))
    onnx.save(proto, str(path))  # an initializer listed as an input (IR < 4 style) is not an input
    info = read_model_file(path)
    assert info.inputs == (TensorInfo("image", "tensor(float)", ("N", 3, "H", "W")),)
    assert [(o.name, o.type, len(o.shape)) for o in info.outputs] == [("logits", "tensor(float)", 4)]
    assert info.props == {p.key: p.value for p in proto.metadata_props}
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    data = path.read_bytes()
    for garbage in (b"", b"\xff" * 40, b"not an onnx model at all", data[: len(data) // 2], data[:-3]):
        (tmp_path / "bad.onnx").write_bytes(garbage)
        with pytest.raises(TsegError, match="bad.onnx is (not a readable ONNX model: |not an ONNX model|empty)"):
            read_model_file(tmp_path / "bad.onnx")


def test_the_install_hint_names_the_tensorrt_this_onnxruntime_links(tmp_path, monkeypatch):
    library = tmp_path / "libonnxruntime_providers_tensorrt.so"
    library.write_bytes(b"\x00libcudart.so.12\x00libnvinfer.so.11\x00libnvinfer_plugin.so.11\x00")
    monkeypatch.setattr(trt, "_provider_library", lambda: library)
    assert trt.required_versions() == ("11", "12")
    hint = trt.install_hint()
    assert "libnvinfer.so.11" in hint and "pip install 'tensorrt-cu12>=11,<12'" in hint
    monkeypatch.setattr(trt, "_provider_library", lambda: None)
    assert trt.required_versions() == ("10", None)


def test_tensorrt_versions_decode_both_encodings():
    assert trt._decode_version(100300) == "10.3.0"
    assert trt._decode_version(110400) == "11.4.0"
    assert trt._decode_version(8601) == "8.6.1"


# ---------------------------------------------------------------------- sessions (fake onnxruntime)


def fake_ort_with_options(**kwargs):
    """test_session's fake onnxruntime, taking (provider, options) pairs as the real one does."""
    module, calls = fake_ort(**kwargs)
    base = module.InferenceSession

    class InferenceSession(base):
        def __init__(self, path, sess_options, providers):
            super().__init__(path, sess_options, [p[0] if isinstance(p, tuple) else p for p in providers])
            calls.requested = list(providers)

    module.InferenceSession = InferenceSession
    return module, calls


@pytest.fixture
def machine(monkeypatch):
    """TensorRT 10.13.3 and an H200, as far as tseg can tell."""
    monkeypatch.setattr(trt, "find_tensorrt", lambda: VERSION)
    monkeypatch.setattr(trt, "gpu_name", lambda: GPU)


def test_a_tensorrt_session_gets_the_options_and_its_cache_folders(monkeypatch, model, tmp_path, machine, capfd):
    module, calls = fake_ort_with_options(available=[TRT, CUDA, CPU], loads=[TRT, CUDA, CPU])
    use(monkeypatch, module)
    settings = TensorrtSettings(fp16=True, cache_dir=tmp_path / "cache", batch_size=4)
    session = create_session(model, device="tensorrt", tensorrt=settings)
    assert session.get_providers()[0] == TRT
    expected = tensorrt_provider_options(model, metadata(), settings, gpu=GPU, trt_version=VERSION)
    assert calls.requested == [(TRT, expected), CUDA, CPU]
    assert expected["trt_fp16_enable"] == "True" and expected["trt_profile_max_shapes"] == "image:4x3x8x12"
    assert Path(expected["trt_engine_cache_path"]).is_dir() and Path(expected["trt_timing_cache_path"]).is_dir()
    assert calls.events == ["preload", "session"]
    assert capfd.readouterr() == ("", "")


def test_tensorrt_settings_with_another_device_are_refused(monkeypatch, model, tmp_path, machine):
    module, calls = fake_ort_with_options(available=[TRT, CUDA, CPU], loads=[CUDA, CPU])
    use(monkeypatch, module)
    for device in ("cpu", "cuda", "auto"):
        with pytest.raises(TsegError, match=f"^tensorrt: .* apply only to device='tensorrt', got device='{device}'$"):
            create_session(model, device=device, tensorrt=TensorrtSettings(cache_dir=tmp_path / "cache"))
    assert calls.requested is None and not (tmp_path / "cache").exists()
    create_session(model, device="cpu")  # a CPU session makes no cache folder either
    assert calls.requested == [CPU] and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("missing", ["tensorrt", "gpu"])
def test_missing_tensorrt_or_gpu_is_one_line_before_any_session(monkeypatch, model, tmp_path, missing):
    module, calls = fake_ort_with_options(available=[TRT, CUDA, CPU], loads=[TRT, CUDA, CPU])
    use(monkeypatch, module)
    monkeypatch.setattr(trt, "gpu_name", lambda: None if missing == "gpu" else GPU)
    if missing == "tensorrt":
        monkeypatch.setattr(trt, "_library_candidates", lambda major: [str(tmp_path / f"libnvinfer.so.{major}")])
    else:
        monkeypatch.setattr(trt, "find_tensorrt", lambda: VERSION)
    with pytest.raises(TsegError) as caught:
        create_session(model, device="tensorrt", tensorrt=TensorrtSettings(cache_dir=tmp_path / "cache"))
    text = str(caught.value)
    assert text.startswith("device='tensorrt': ") and caught.value.parameter == "device" and "\n" not in text
    if missing == "tensorrt":
        assert "libnvinfer.so.10" in text and "pip install 'tensorrt-cu" in text
    else:
        assert "no NVIDIA GPU found" in text and "use device='cpu'" in text and "--" not in text
    assert calls.requested is None and not (tmp_path / "cache").exists()


def test_a_cache_folder_that_cannot_be_made_is_one_line(monkeypatch, model, tmp_path, machine):
    module, calls = fake_ort_with_options(available=[TRT, CUDA, CPU], loads=[TRT, CUDA, CPU])
    use(monkeypatch, module)
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(TsegError, match="cannot create the TensorRT cache folder .*file/tensorrt"):
        create_session(model, device="tensorrt", tensorrt=TensorrtSettings(cache_dir=tmp_path / "file"))
    assert calls.requested is None


def test_the_segmenter_sizes_the_profile_for_its_batches_and_refuses_tta_scales(monkeypatch, model):
    seen = []

    def fake_session(path, *, device, threads, tensorrt, openvino):
        seen.append(tensorrt)
        raise TsegError("stop here")

    monkeypatch.setattr(segmenter_module, "create_session", fake_session)
    for kwargs, batch in (({}, 8), ({"batch_size": 1}, 1), ({"batch_size": 1, "tta": TtaSettings(hflip=True)}, 2)):
        with pytest.raises(TsegError, match="stop here"):
            Segmenter(model, device="tensorrt", **kwargs)
        assert seen[-1] == TensorrtSettings(batch_size=batch)
    with pytest.raises(TsegError, match="stop here"):
        Segmenter(model, device="tensorrt", batch_size=2, tensorrt=TensorrtSettings(fp16=True, batch_size=16))
    assert seen[-1] == TensorrtSettings(fp16=True, batch_size=16)
    with pytest.raises(TsegError, match=r"tta: scale\(s\) 0.75,1.25 with device='tensorrt'") as caught:
        Segmenter(model, device="tensorrt", tta=TtaSettings(scales=(0.75, 1.0, 1.25)))
    assert caught.value.parameter == "tta" and "--" not in str(caught.value)
    with pytest.raises(TsegError, match="stop here"):
        Segmenter(model, device="cpu")
    assert seen[-1] is None and len(seen) == 5


# ---------------------------------------------------------------------- tseg-infer


def test_trt_fp16_without_device_tensorrt_is_one_line(model, tmp_path):
    (tmp_path / "in").mkdir()
    for device in ([], ["--device", "cpu"], ["--device", "cuda"]):
        result = CliRunner().invoke(
            main, [str(tmp_path / "in"), "-m", str(model), "-o", str(tmp_path / "out"), "--trt-fp16", *device]
        )
        assert result.exit_code == 1 and result.stdout == ""
        assert result.stderr == f"Error: --trt-fp16 needs --device tensorrt (it sets TensorRT's FP16 mode), got" \
            f" --device {device[1] if device else 'auto'}\n"
    assert not (tmp_path / "out").exists()


def test_device_tensorrt_on_this_machine_is_one_line_or_runs(tmp_path):
    """Here (no TensorRT, no GPU): one line naming what to install, and no cache or output folder."""
    model = conv_model(tmp_path / "m.onnx")
    image = tmp_path / "in" / "a.png"
    image.parent.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(image)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    command = [sys.executable, "-m", "tseg.runtime.infer.cli", str(image), "-m", str(model),
               "-o", str(tmp_path / "out"), "--device", "tensorrt", "--trt-fp16", "-q"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    if run.returncode == 0:
        assert (tmp_path / "out" / "a.png").is_file() and (tmp_path / "cache" / "tseg" / "tensorrt").is_dir()
        return
    assert run.returncode == 1 and run.stdout == "", run.stdout
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("Error: --device tensorrt"), run.stderr
    assert not (tmp_path / "out").exists()
    if "TensorRT's libraries were not found" in run.stderr:
        assert "pip install 'tensorrt-cu" in run.stderr and not (tmp_path / "cache").exists()


def test_find_tensorrt_loads_nvidias_pip_wheel_and_reads_its_version(tmp_path):
    """A stand-in libnvinfer.so.10 in a tensorrt_libs package: loaded, its version read, then found by name."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build a stand-in libnvinfer")
    package = tmp_path / "site" / "tensorrt_libs"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name, body in (("libnvinfer", "int getInferLibVersion(void) { return 101303; }"), ("libnvonnxparser", "")):
        source = tmp_path / f"{name}.c"
        source.write_text(body + "\nint tseg_stand_in(void) { return 1; }\n")
        target = package / f"{name}.so.10"
        subprocess.run([compiler, "-shared", "-fPIC", f"-Wl,-soname,{target.name}", "-o", str(target), str(source)],
                       check=True, capture_output=True)
    code = (
        "import ctypes\n"
        "from tseg.runtime.model import tensorrt as t\n"
        "t._provider_library = lambda: None\n"  # TensorRT 10, whatever this onnxruntime links
        "print(t.find_tensorrt())\n"
        "print(ctypes.CDLL('libnvinfer.so.10').getInferLibVersion(),"
        " ctypes.CDLL('libnvonnxparser.so.10').tseg_stand_in())\n"
    )
    env = {"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "10.13.3\n101303 1\n"  # ONNX Runtime's load by name then finds the wheel's libraries
