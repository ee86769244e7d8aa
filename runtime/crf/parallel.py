"""Run Numba kernels on a few threads, chunk by chunk, without spinning.

Numba's ``parallel=True`` runs on its process-wide threading layer; its OpenMP layer
(the default where libgomp exists) spin-waits, and on a loaded machine, for instance
while an ONNX session runs beside the CRF, a mean-field step then takes 10-50 times
longer. Here each kernel is a serial ``nogil`` function over an index range
``[start, stop)``; a parallel region hands the chunks of one or more kernels to the
calling thread plus pooled workers, which take them from a shared counter (so a
descheduled thread delays nothing but its own chunk) and block, not spin, when done.
The caller never waits for a helper that has not started (a busy pool, a forked
child) since it runs every chunk left over itself.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

Job = tuple
"""(kernel, args, n[, grain]): run ``kernel(*args, start, stop)`` over the range [0, n),
in chunks of at least ``grain`` items (default MIN_CHUNK)."""

MIN_CHUNK = 4096  # items; below this a chunk costs more to hand out than to run
CHUNKS_PER_THREAD = 4
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0  # a forked child inherits the pool object but not its threads
_pool_lock = threading.Lock()


def available_threads() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _workers() -> ThreadPoolExecutor:
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max(1, available_threads() - 1),
                                       thread_name_prefix="tseg-crf")
            _pool_pid = os.getpid()
        return _pool


def _chunks(job: Job, threads: int) -> list[tuple]:
    kernel, args, n = job[:3]
    grain = job[3] if len(job) > 3 else MIN_CHUNK
    count = max(1, min(threads * CHUNKS_PER_THREAD, n // grain))
    bounds = [n * i // count for i in range(count + 1)]
    return [(kernel, args, bounds[i], bounds[i + 1]) for i in range(count)]


def run(jobs: Sequence[Job], threads: int) -> None:
    """Run every job's chunks on up to ``threads`` threads; return when all are done."""
    tasks = [task for job in jobs for task in _chunks(job, threads)]
    if threads <= 1 or len(tasks) == 1:
        for kernel, args, start, stop in tasks:
            kernel(*args, start, stop)
        return
    counter = itertools.count()

    def drain() -> None:
        for i in counter:
            if i >= len(tasks):
                return
            kernel, args, start, stop = tasks[i]
            kernel(*args, start, stop)

    helpers: list[Future] = [_workers().submit(drain)
                             for _ in range(min(threads, len(tasks)) - 1)]
    try:
        drain()
    finally:
        for future in helpers:
            if not future.cancel():  # a helper that never started has nothing to do
                future.result()
