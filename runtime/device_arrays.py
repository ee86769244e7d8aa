"""Arrays on an NVIDIA GPU as the runtime passes them around, told apart from host arrays.

A model's logits can stay on the GPU from ONNX Runtime's IOBinding to the CUDA CRF
(issue 21): they travel as Numba device arrays (or any object with
``__cuda_array_interface__``). Nothing here imports Numba unless such an array is copied.
"""

from __future__ import annotations

import numpy as np


def is_device_array(x: object) -> bool:
    """Whether ``x`` lives on a GPU: a Numba device array (``copy_to_host``) or an object with
    ``__cuda_array_interface__``; never a NumPy array."""
    return not isinstance(x, np.ndarray) and (hasattr(x, "copy_to_host")
                                              or hasattr(x, "__cuda_array_interface__"))


def to_host(x: object) -> np.ndarray:
    """A GPU array's copy on the host (a host array as it is)."""
    if hasattr(x, "copy_to_host"):
        return x.copy_to_host()
    if hasattr(x, "__cuda_array_interface__"):
        from numba import cuda

        return cuda.as_cuda_array(x).copy_to_host()
    return x
