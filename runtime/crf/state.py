"""Mean-field state of one unary on a DenseCRF: its buffers, passes and results.

The state owns its buffers (one :class:`tseg.runtime.crf.workspace.Lease`) and one
ownership of each lattice it reads, so closing the DenseCRF meanwhile is safe. Arrays it
returns (:meth:`MeanField.probs`, :meth:`MeanField.labels`) are the caller's: never
pooled memory that a later call could overwrite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tseg.runtime.crf import aliases, meanfield, parallel, simd, split, workspace
from tseg.runtime.crf.checks import Compat, check_compat, check_iterations, check_probs_values
from tseg.runtime.crf.lattice import Lattice
from tseg.runtime.crf.unary import CLIP, usable_as_is
from tseg.runtime.errors import TsegError
from tseg.runtime.scores import argmax_classes


class _Kernel:
    """One pairwise kernel's state in mean field: its lattice, gain and buffers."""

    def __init__(self, lattice: Lattice, compat_name: str, compat: Compat, num_classes: int,
                 lanes: int, threads: int, lease: workspace.Lease) -> None:
        matrix, self.diagonal = check_compat(compat_name, compat, num_classes)
        # Row j: what label j's message adds to each label's logits: -compat^T,
        # times the slice's alpha (the lattice leaves it out).
        self.gain = np.zeros((lanes, lanes), np.float32)
        scaled = -matrix.T * np.float32(lattice.alpha)
        if self.diagonal:
            self.gain[0, :num_classes] = np.diag(scaled)
        else:
            self.gain[:num_classes, :num_classes] = scaled
        self.lattice = lattice
        if lattice.aliases is not None:  # tasks splat into the rows themselves (aliases.py)
            rows = lattice.aliases.rows
            # Zeroed once: the rows of vertices that only the embedding's padding points touch
            # are never splatted, and the blur reads them.
            self.values = lease.array((rows, lanes), zero=True, threads=threads)
            self.scratch, self.second = lease.array((rows, lanes)), lease.array((rows, lanes))
            self.scratch[0] = self.second[0] = 0  # a missing blur neighbour
            self.messages = self.scratch
            return
        rows = lattice.num_vertices + 1  # row 0 stands for a missing blur neighbour
        self.values = lease.array((rows, lanes))
        self.scratch = lease.array((rows, lanes))
        self.values[0] = self.scratch[0] = 0
        # Task t splats vertex rows lo..hi (those its pixels touch) into accumulator rows
        # from base on: (T, 3) [lo, hi, base].
        lo, hi = lattice.task_rows[:, 0], lattice.task_rows[:, 1]
        sizes = hi - lo + 1
        self.ranges = np.stack([lo, hi, np.cumsum(sizes) - sizes], axis=1).astype(np.int64)
        self.accs = lease.array((int(sizes.sum()), lanes), zero=True, threads=threads)
        self.messages = self.values  # the blurred buffer the next pixel pass reads

    def splat_target(self, task: int) -> tuple:
        """The pixel pass's (accumulator, shift) for mean-field task ``task``: the splat
        buffer and None (alias rows, first-touch bits) with aliases."""
        if self.lattice.aliases is not None:
            return self.values, None
        return self.accs, self.ranges[task, 2] - self.ranges[task, 0]


class MeanField:
    """Mean-field state of one unary on a ``DenseCRF`` (made by ``DenseCRF.start``).

    Passes are lazy: a pass over the pixels computes Q from the previous messages and
    splats it for the next iteration, and Q itself is written out only when asked for.
    Close it (or use it as a context manager) to return its buffers to the pool at once;
    otherwise they go back when it is garbage collected.
    """

    def __init__(self, shape: tuple[int, int, int], lattices: list[Lattice], *, compat: Sequence[Compat],
                 threads: int, unary: np.ndarray | None = None, probs: np.ndarray | None = None,
                 fill: Callable[[np.ndarray, int], None] | None = None) -> None:
        """What a DenseCRF hands over (it, not this state, checks them).

        Args:
            shape: (C, H, W): the classes and the CRF's image size.
            lattices: the CRF's (Gaussian, bilateral), retained once for this state.
            compat: the (Gaussian, bilateral) compatibilities.
            threads: threads for the passes.
            unary: (C, H, W) float energies; or None.
            probs: (C, H, W) float probabilities, pydensecrf's unary_from_softmax's
                -log(clip(probs, 1e-5, 1)) taken by the first pass, which also checks
                that they lie in [0, 1] (check_probs(values=False) before); or None.
            fill: ``fill(base, threads)`` writes -unary into the (N, lanes) pixel-major
                buffer itself, padded lanes -3.4e38 (see :mod:`tseg.runtime.crf.logits`);
                or None. With ``probs`` or ``fill`` no (C, H, W) energies are ever held.
                Exactly one of ``unary``, ``probs`` and ``fill``.
        """
        num_classes = shape[0]
        n = shape[1] * shape[2]
        self._lease = workspace.Lease()
        self._holdings = workspace.Holdings(self, [self._lease, *(lat.lease for lat in lattices)])
        self._threads = threads
        self._shape = tuple(shape)
        self._q: np.ndarray | None = None  # pooled: only copies of it leave this state
        try:
            lanes = meanfield.padded_labels(num_classes)
            # Pixels are split into contiguous ranges, each splatting into its own
            # accumulators, fixed by the image size so threads do not change the sums.
            self._bounds = meanfield.task_bounds(n)
            self._groups = simd.lane_groups(lanes)
            self._base = self._lease.array((n, lanes))  # filled by the first pass
            # The first pass reads energies (clip 0) or probabilities (clip > 0).
            self._clip = np.float32(CLIP if probs is not None else 0)
            # Probabilities are checked by the first pass as it reads them (per task).
            self._probs = probs
            self._invalid = np.zeros(len(self._bounds) - 1, np.uint8)
            source = unary if probs is None else probs
            if fill is not None:
                fill(self._base, threads)
                self._unary = np.empty((num_classes, 0), np.float32)  # base is filled
            elif usable_as_is(source):
                self._unary = source.reshape(num_classes, n)  # read, never written
            else:  # any layout, byte order or float dtype: one copy
                self._unary = self._lease.array((num_classes, n))
                np.copyto(self._unary.reshape(source.shape), source, casting="same_kind")
            self._kernels = [_Kernel(lat, name, compat, num_classes, lanes, self._threads,
                                     self._lease)
                             for lat, name, compat in zip(lattices, ("gaussian_compat",
                                                                     "bilateral_compat"),
                                                          compat, strict=True)]
            tasks = len(self._bounds) - 1
            # More threads than the fused pass can use: the two-phase pass (split.py).
            self._split = split.SplitSplat(
                lattices, [[k.splat_target(t) for t in range(tasks)] for k in self._kernels],
                self._bounds, lanes, threads, self._lease) if split.wanted(tasks, threads) else None
        except BaseException:
            self.close()
            raise
        self._splatted = False  # the accumulators hold the splat of the current Q
        self._q_written = False  # self._q holds the current Q
        self.iterations = 0

    def close(self) -> None:
        """Return this state's buffers to the pool; it cannot be used afterwards."""
        self._holdings.close()

    def __enter__(self) -> MeanField:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._holdings.closed:
            raise TsegError("MeanField: this state is closed; start a new one with DenseCRF.start")

    def _pixel_jobs(self, q_out: np.ndarray | None, labels_out: np.ndarray | None,
                    rows_out: tuple | None) -> list:
        """The pixel pass's jobs: splat (all outputs None), or write Q, labels or the
        two-phase splat's rows (see meanfield.pixel_pass)."""
        g, b = self._kernels
        splats = q_out is None and labels_out is None and rows_out is None
        jobs = []
        for t in range(len(self._bounds) - 1):
            first, count = self._bounds[t], self._bounds[t + 1] - self._bounds[t]
            args = (self._base, self._unary if self.iterations == 0 else None, self._clip,
                    self._invalid[t:t + 1], self._shape[0],
                    g.lattice.offsets, g.lattice.weights, g.messages,
                    b.lattice.offsets, b.lattice.weights, b.messages,
                    meanfield.prefetched(b.lattice.offsets, b.messages), *g.splat_target(t),
                    *b.splat_target(t), q_out, labels_out, rows_out, self._groups, first)
            # A splatting task is one chunk: its sums run in pixel order. Passes that
            # splat nothing share out any way, as the threads ask (many: split.py).
            grain = count if splats or self._split is None else parallel.MIN_CHUNK
            jobs.append((meanfield.pixel_pass, args, count, grain))
        return jobs

    def _pixel_pass(self, q_out: np.ndarray | None = None,
                    labels_out: np.ndarray | None = None) -> None:
        """Run a pixel pass (see _pixel_jobs); the first one checks the probabilities it
        reads, and on a bad one closes this state and raises check_probs_values' error.
        A splat on more threads than the tasks can use runs in two phases (split.py)."""
        two_phase = self._split if q_out is None and labels_out is None else None
        rows_out = None if two_phase is None else (two_phase.x, two_phase.scale)
        parallel.run(self._pixel_jobs(q_out, labels_out, rows_out), self._threads)
        if self._probs is not None:
            probs, self._probs = self._probs, None  # read: base holds -unary from now on
            if self._invalid.any():
                self.close()
                check_probs_values(probs)
                raise TsegError("probs: need values in [0, 1]")  # (float32 rounding aside)
        if two_phase is not None:
            parallel.run(two_phase.splat_jobs(), self._threads)

    def _splat_pass(self) -> None:
        """Splat the current Q (computed from the previous messages) for the next step."""
        self._pixel_pass()
        self._splatted = True

    def _messages(self) -> None:
        """Gather the splats, apply the compatibilities, blur: the next pass's input."""
        banded = [k for k in self._kernels if k.lattice.aliases is None]
        aliased = [k for k in self._kernels if k.lattice.aliases is not None]
        if banded:
            blurred = meanfield.messages([(k.values, k.scratch, k.accs, k.ranges, k.gain,
                                           k.diagonal, k.lattice.neighbours) for k in banded],
                                         self._threads)
            for kernel, result in zip(banded, blurred, strict=True):
                kernel.messages = result  # read by pixel passes until the next gather
        if aliased:
            blurred = aliases.messages([(k.values, k.scratch, k.second, k.lattice.aliases, k.gain,
                                         k.diagonal, k.lattice.neighbours) for k in aliased],
                                       self._threads)
            for kernel, result in zip(aliased, blurred, strict=True):
                kernel.messages = result
        self._splatted = False

    def step(self, iterations: int = 1) -> None:
        """Run ``iterations`` more mean-field iterations in place."""
        check_iterations(iterations)
        self._check_open()
        for _ in range(iterations):
            if not self._splatted:
                self._splat_pass()
            self._messages()
            self.iterations += 1
            self._q_written = False
        # Q is written (and splatted) only when asked for: probs(), labels(), step().

    def _current_q(self) -> np.ndarray:
        """The current Q, (C, N), in this state's pooled buffer."""
        self._check_open()
        if self._q is None:
            self._q = self._lease.array((self._shape[0], self._shape[1] * self._shape[2]))
        if not self._q_written:
            self._pixel_pass(self._q)
            self._q_written = True
        return self._q

    def _write_probs(self, out: np.ndarray) -> np.ndarray:
        """Write the current Q into ``out`` ((C, H, W) C-contiguous float32, the
        caller's) without a pooled intermediate; returns ``out``."""
        self._check_open()
        if self._q_written:
            np.copyto(out, self._q.reshape(self._shape))
        else:
            self._pixel_pass(out.reshape(self._shape[0], -1))
        return out

    def _write_labels(self, out: np.ndarray) -> np.ndarray:
        """Write the current labels (argmax of Q, the first of equal values) into
        ``out`` ((H, W) C-contiguous unsigned integers, the caller's) straight from the
        last pass: Q is never written. Returns ``out``."""
        self._check_open()
        if self._q_written:
            out[...] = argmax_classes(self._q).reshape(out.shape)
        else:
            self._pixel_pass(None, out.reshape(-1))
        return out

    def probs(self) -> np.ndarray:
        """Current marginals Q, (C, H, W) float32, a new array of the caller's."""
        return self._current_q().reshape(self._shape).copy()

    def labels(self) -> np.ndarray:
        """Current MAP labels, (H, W) int64 (a new array): argmax of Q over C
        (:func:`~tseg.runtime.scores.argmax_classes`)."""
        return self._write_labels(np.empty(self._shape[1:], np.int64))
