"""BoundRunner: IOBinding on CUDA, session.run on the CPU.

No GPU here: the CUDA branch runs against a fake session that records the calls, and the
IOBinding calls themselves run for real with tensors bound on the CPU device (the same
ONNX Runtime API; only the device string differs). benchmarks/gpu_check.py runs the
real CUDA path where a GPU is lent.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from tseg.runtime.model.binding import BoundRunner
from tseg.runtime.model.session import create_session

CUDA, TRT, CPU = "CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"


@pytest.fixture(scope="module")
def cpu_session(tmp_path_factory):
    from tests.conv_models import conv_model

    path = conv_model(tmp_path_factory.mktemp("binding") / "m.onnx")
    return create_session(path, device="cpu", threads=1)


def batch(n=2, h=5, w=7, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3, h, w)).astype(np.float32)


def test_on_the_cpu_run_is_session_run_byte_for_byte(cpu_session):
    runner = BoundRunner(cpu_session, input_name="image", output_name="logits")
    assert not runner.uses_binding
    for n, h, w in [(1, 4, 4), (3, 9, 5)]:
        x = batch(n, h, w, seed=n)
        expected = cpu_session.run(["logits"], {"image": x})[0]
        got = runner.run(x)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert got.tobytes() == expected.tobytes()


def test_the_iobinding_calls_run_for_real_on_the_cpu_device(cpu_session):
    """The bound path with ONNX Runtime's real IOBinding API: same bytes as session.run."""
    runner = BoundRunner(cpu_session, input_name="image", output_name="logits")
    runner.uses_binding, runner.device_type = True, "cpu"
    for n, h, w in [(1, 4, 4), (4, 6, 11)]:  # the output shape changes between calls
        x = batch(n, h, w, seed=10 + n)
        got = runner.run(x[:, :, :, ::-1])  # not contiguous: copied once before binding
        expected = cpu_session.run(["logits"], {"image": np.ascontiguousarray(x[:, :, :, ::-1])})[0]
        assert got.shape == expected.shape and got.tobytes() == expected.tobytes()


class FakeBinding:
    def __init__(self, log, output):
        self.log, self.output = log, output

    def bind_ortvalue_input(self, name, value):
        self.log.append(("bind_input", name, value))

    def bind_output(self, name, device_type="cpu", device_id=0):
        self.log.append(("bind_output", name, device_type, device_id))

    def copy_outputs_to_cpu(self):
        self.log.append(("copy_outputs_to_cpu",))
        return [self.output]


class FakeCudaSession:
    """Records what a runner asks of an ONNX Runtime session on CUDA."""

    def __init__(self, providers, options=None, fails=None):
        self.providers, self.options, self.fails = providers, options, fails
        self.log = []
        self.output = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)

    def get_providers(self):
        return self.providers

    def get_provider_options(self):
        if self.options is None:
            raise AttributeError("no provider options")
        return self.options

    def io_binding(self):
        self.log.append(("io_binding",))
        return FakeBinding(self.log, self.output)

    def run_with_iobinding(self, binding):
        self.log.append(("run_with_iobinding",))
        if self.fails:
            raise self.fails

    def run(self, *args, **kwargs):
        self.log.append(("run",))
        return [self.output]


@pytest.fixture
def fake_ort(monkeypatch):
    """An onnxruntime whose OrtValue records where each array was put."""
    placed = []

    class OrtValue:
        @staticmethod
        def ortvalue_from_numpy(array, device_type="cpu", device_id=0):
            placed.append((array, device_type, device_id))
            return ("ortvalue", len(placed))

    module = types.ModuleType("onnxruntime")
    module.OrtValue = OrtValue
    monkeypatch.setitem(sys.modules, "onnxruntime", module)
    return placed


@pytest.mark.parametrize("providers", [[CUDA, CPU], [TRT, CUDA, CPU]])
def test_on_cuda_the_batch_is_bound_to_the_device_and_the_output_copied_once(fake_ort, providers):
    session = FakeCudaSession(providers, options={providers[0]: {"device_id": "1"}})
    runner = BoundRunner(session, input_name="image", output_name="logits")
    assert runner.uses_binding and runner.device_id == 1
    x = batch(2, 4, 6)[:, :, ::2]  # not contiguous
    out = runner.run(x)
    assert out is session.output
    (array, device_type, device_id), = fake_ort
    assert (device_type, device_id) == ("cuda", 1)
    assert array.flags.c_contiguous and np.array_equal(array, x)
    assert session.log == [
        ("io_binding",),
        ("bind_input", "image", ("ortvalue", 1)),
        ("bind_output", "logits", "cuda", 1),
        ("run_with_iobinding",),
        ("copy_outputs_to_cpu",),
    ]  # never session.run: no second copy through the host


def test_without_provider_options_cuda_device_0_is_used(fake_ort):
    session = FakeCudaSession([CUDA, CPU], options=None)
    runner = BoundRunner(session, input_name="image", output_name="logits")
    runner.run(batch())
    assert runner.device_id == 0 and fake_ort[0][1:] == ("cuda", 0)
    assert ("bind_output", "logits", "cuda", 0) in session.log


def test_a_cpu_session_never_binds(fake_ort):
    session = FakeCudaSession([CPU])
    runner = BoundRunner(session, input_name="image", output_name="logits")
    assert runner.run(batch()) is session.output
    assert session.log == [("run",)] and fake_ort == []


def test_onnx_runtime_errors_propagate_for_the_caller_to_word(fake_ort):
    session = FakeCudaSession([CUDA, CPU], options={}, fails=RuntimeError("[ONNXRuntimeError] : 6 : CUDA failure"))
    runner = BoundRunner(session, input_name="image", output_name="logits")
    with pytest.raises(RuntimeError, match="CUDA failure"):
        runner.run(batch())
    assert ("copy_outputs_to_cpu",) not in session.log


def test_a_bound_output_is_handed_over_through_the_cuda_array_interface(cpu_session):
    """run_on_device's adapter on a real OrtValue (on the CPU here: the same data_ptr, shape and
    element type calls as on a GPU): the interface names its buffer, holds it, and has no stream
    to wait on (the run was synchronised); an FP16 graph's output is not wrapped."""
    import onnxruntime as ort

    from tseg.runtime.model.binding import OrtCudaBuffer

    value = ort.OrtValue.ortvalue_from_numpy(batch(2, 4, 6), "cpu", 0)
    buffer = OrtCudaBuffer.wrap(value)
    face = buffer.__cuda_array_interface__
    assert face["data"] == (value.data_ptr(), False) and face["shape"] == (2, 3, 4, 6)
    assert face["typestr"] == "<f4" and face["strides"] is None and face["stream"] is None
    assert buffer.value is value
    assert OrtCudaBuffer.wrap(ort.OrtValue.ortvalue_from_numpy(np.zeros(3, np.float16), "cpu", 0)) is None


def test_an_fp16_output_left_for_the_device_comes_back_to_the_host(cpu_session, monkeypatch):
    """run_on_device with ONNX Runtime's real IOBinding (on the CPU device): an output the CRF's
    float32 kernels cannot read is copied as run() copies it, after the run was synchronised."""
    from tseg.runtime.model import binding

    runner = BoundRunner(cpu_session, input_name="image", output_name="logits")
    runner.uses_binding, runner.device_type = True, "cpu"
    monkeypatch.setattr(binding.OrtCudaBuffer, "wrap", classmethod(lambda cls, value: None))
    x = batch(2, 4, 6, seed=3)
    got = runner.run_on_device(x)
    assert isinstance(got, np.ndarray) and got.tobytes() == runner.run(x).tobytes()
