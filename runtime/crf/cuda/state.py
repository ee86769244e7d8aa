"""Mean-field state of one unary on the device: buffers, iterations, results.

The counterpart of :class:`tseg.runtime.crf.state.MeanField`: the same passes in the
same order (Q from the previous messages, splat, compatibility, blur), with every
buffer on the device. Only what :meth:`CudaMeanField.probs` or
:meth:`CudaMeanField.labels` returns comes back to the host.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import cuda

from tseg.runtime.crf.checks import Compat, check_compat, check_iterations
from tseg.runtime.crf.cuda import kernels, scan
from tseg.runtime.crf.cuda.device import grid
from tseg.runtime.crf.cuda.lattice import DeviceLattice
from tseg.runtime.errors import TsegError


class _Kernel:
    """One pairwise kernel's messages: its lattice, compatibility and two buffers."""

    def __init__(self, lattice: DeviceLattice, name: str, compat: Compat,
                 num_classes: int) -> None:
        matrix, self.diagonal = check_compat(name, compat, num_classes)
        # What label j's message adds to label k's logits: -compat[k, j] * alpha (the
        # lattice leaves the slice's alpha out), as the CPU path's gain.
        gain = np.ascontiguousarray(-matrix.T * np.float32(lattice.alpha), np.float32)
        self.scale = cuda.to_device(np.diag(gain).copy() if self.diagonal
                                    else np.ones(num_classes, np.float32))
        self.gain = None if self.diagonal else cuda.to_device(gain)
        self.lattice = lattice
        shape = (num_classes, lattice.num_vertices + 1)
        self.values = cuda.device_array(shape, np.float32)
        self.scratch = cuda.device_array(shape, np.float32)
        for buffer in (self.values, self.scratch):  # column 0 stays zero: no neighbour
            scan.fill(buffer.reshape(-1), 0)
        self.messages = self.values

    def update(self, q) -> None:
        """The next pass's messages from Q (C, N): splat, compatibility, blur."""
        lat = self.lattice
        m = lat.num_vertices
        src, dst = self.values, self.scratch
        if self.diagonal:
            kernels.splat[grid(m)](q, lat.starts, lat.entries, lat.weights, self.scale, src)
        else:
            kernels.splat[grid(m)](q, lat.starts, lat.entries, lat.weights, self.scale, dst)
            kernels.compat[grid(m)](dst, self.gain, src)
        for axis in range(lat.neighbours.shape[0]):
            kernels.blur_axis[grid(m)](src, dst, lat.neighbours, axis)
            src, dst = dst, src
        self.messages = src


class CudaMeanField:
    """Mean-field state of one unary on a CUDA DenseCRF (made by its ``start``).

    Args:
        shape: (C, H, W), the classes and the image size.
        lattices: the CRF's (Gaussian, bilateral) device lattices.
        compat: the (Gaussian, bilateral) compatibilities.
        base: (C, H * W) float32 device array of -unary, owned by this state from now on.
    """

    def __init__(self, shape: tuple[int, int, int], lattices: Sequence[DeviceLattice], *,
                 compat: Sequence[Compat], base) -> None:
        self._shape = tuple(shape)
        self._base = base
        self._q = cuda.device_array(base.shape, np.float32)
        self._kernels = [_Kernel(lat, name, c, shape[0]) for lat, name, c in
                         zip(lattices, ("gaussian_compat", "bilateral_compat"), compat, strict=True)]
        self._q_current = False  # self._q holds Q of the current messages
        self._closed = False
        self.iterations = 0

    def close(self) -> None:
        """Drop the device buffers; the state cannot be used afterwards."""
        self._closed = True
        self._base = self._q = self._kernels = None

    def __enter__(self) -> CudaMeanField:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _current_q(self):
        """Q (C, N) on the device, from the current messages."""
        if self._closed:
            raise TsegError("MeanField: this state is closed; start a new one with DenseCRF.start")
        if not self._q_current:
            g, b = self._kernels
            kernels.pixel_pass[grid(self._q.shape[1])](
                self._base, g.lattice.rows, g.lattice.weights, g.messages, b.lattice.rows,
                b.lattice.weights, b.messages, self.iterations > 0, self._q)
            self._q_current = True
        return self._q

    def step(self, iterations: int = 1) -> None:
        """Run ``iterations`` more mean-field iterations in place."""
        check_iterations(iterations)
        for _ in range(iterations):
            q = self._current_q()
            for kernel in self._kernels:
                kernel.update(q)
            self.iterations += 1
            self._q_current = False

    def probs(self) -> np.ndarray:
        """Current marginals Q, (C, H, W) float32 (a new host array)."""
        return self._current_q().copy_to_host().reshape(self._shape)

    def labels(self, dtype=np.int64) -> np.ndarray:
        """Current MAP labels, (H, W) of ``dtype`` (a new host array): the argmax of Q
        over C, the first of equal values. Only the labels leave the device."""
        q = self._current_q()
        labels = cuda.device_array(q.shape[1], np.dtype(dtype))
        kernels.argmax_labels[grid(q.shape[1])](q, labels)
        return labels.copy_to_host().reshape(self._shape[1:])
