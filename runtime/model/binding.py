"""Running a batch through a session: IOBinding on the GPU, a plain ``session.run`` on the CPU.

With ``session.run`` on CUDA, ONNX Runtime copies the input to the device and every
output back to the host through its own staging buffers. With IOBinding the batch is
copied once into an ``OrtValue`` on the device, the output is allocated on the device
by ONNX Runtime (its shape is only known after the run: dynamic height and width), and
``copy_outputs_to_cpu`` brings it to the host once. On the CPU there is nothing to
save, so the plain call is used and its result is returned unchanged.
"""

from __future__ import annotations

import numpy as np

# Providers whose tensors live in CUDA memory (TensorRT runs on CUDA buffers too).
CUDA_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def _device_id(session, provider: str) -> int:
    """The CUDA device the session runs on (``device_id`` of its provider options, default 0)."""
    try:
        options = session.get_provider_options().get(provider, {})
        return int(options.get("device_id", 0))
    except (AttributeError, TypeError, ValueError):
        return 0


class BoundRunner:
    """Runs (N, 3, h, w) float32 batches through one ONNX Runtime session.

    Args:
        session: an ``onnxruntime.InferenceSession`` (from ``create_session``).
        input_name: the graph's image input.
        output_name: the graph's logits output.

    Attributes:
        uses_binding: True when batches go through IOBinding (the session's first
            provider is CUDA or TensorRT), False for ``session.run``.
        device_id: the CUDA device bound to (0 on the CPU).

    Thread-safe as ``session.run`` is: each call makes its own binding.
    """

    def __init__(self, session, *, input_name: str, output_name: str) -> None:
        self.session = session
        self.input_name = input_name
        self.output_name = output_name
        provider = session.get_providers()[0]
        self.uses_binding = provider in CUDA_PROVIDERS
        self.device_id = _device_id(session, provider) if self.uses_binding else 0
        self.device_type = "cuda"  # where bound tensors live (tests bind on "cpu" to run this path for real)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """One batch through the model.

        Args:
            batch: (N, 3, h, w) float32.

        Returns:
            The output, e.g. (N, C, h', w') float32 logits, as a host NumPy array.

        Raises:
            Whatever ONNX Runtime raises (a bad shape, a failing kernel): the caller
            (``Segmenter.run_batch``) turns it into a one-line error.
        """
        if not self.uses_binding:
            return self.session.run([self.output_name], {self.input_name: batch})[0]
        return self._run_bound(np.ascontiguousarray(batch))

    def _run_bound(self, batch: np.ndarray) -> np.ndarray:
        return self._bind_and_run(batch).copy_outputs_to_cpu()[0]

    def _bind_and_run(self, batch: np.ndarray):
        """The IOBinding of one run: input copied to the device, output left there."""
        import onnxruntime as ort

        binding = self.session.io_binding()
        device_input = ort.OrtValue.ortvalue_from_numpy(batch, self.device_type, self.device_id)
        binding.bind_ortvalue_input(self.input_name, device_input)
        binding.bind_output(self.output_name, self.device_type, self.device_id)
        self.session.run_with_iobinding(binding)
        return binding

    def run_on_device(self, batch: np.ndarray):
        """One batch through the model, its output left on the GPU (issue 21's handoff to the
        CUDA CRF): a Numba device array over ONNX Runtime's own buffer, no copy, which keeps
        that buffer alive. A model whose output is not float32 (an FP16 graph's) comes back
        as a host array, as :meth:`run` gives it: the CRF's kernels read float32.

        Only with IOBinding on CUDA (``uses_binding``); the caller checks it.
        """
        binding = self._bind_and_run(np.ascontiguousarray(batch))
        binding.synchronize_outputs()  # the output is complete before another stream reads it
        buffer = OrtCudaBuffer.wrap(binding.get_outputs()[0])
        if buffer is None:
            return binding.copy_outputs_to_cpu()[0]
        from numba import cuda

        return cuda.as_cuda_array(buffer)


class OrtCudaBuffer:
    """An ONNX Runtime OrtValue on the GPU seen through ``__cuda_array_interface__`` (version 3),
    as Numba (and CuPy, PyTorch) read device memory without a copy; it holds the OrtValue, so the
    memory lives as long as this object and the arrays made from it.

    ``stream`` is None: the caller synchronised the run (:meth:`BoundRunner.run_on_device`).
    """

    def __init__(self, value, shape: tuple[int, ...]) -> None:
        self.value = value
        self.__cuda_array_interface__ = {"shape": shape, "typestr": "<f4", "data": (value.data_ptr(), False),
                                         "strides": None, "version": 3, "stream": None}

    @classmethod
    def wrap(cls, value) -> OrtCudaBuffer | None:
        """The buffer of a float32 OrtValue; None for another element type."""
        if value.data_type() != "tensor(float)":
            return None
        return cls(value, tuple(int(d) for d in value.shape()))
