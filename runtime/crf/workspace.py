"""Large CRF arrays whose memory is reused across calls, sparing fresh pages' faults.

A 512 x 512 CRF touches about 100 MB of lattice and scratch arrays. Fresh memory from
the system costs a page fault per page on first touch (about 15% of a call's time).
Here every large array is a view of a raw buffer that stays on a list; a later request
takes a buffer of fitting size whose views are all gone (its reference count says so),
in any thread.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
from numba import njit

from tseg.runtime.crf import parallel

_ALIGN = 64  # bytes: rows of float32 vector groups start on cache lines
_KEEP_BYTES = 768 * 2**20  # buffers tracked at most (free or in use)
_MIN_BYTES = 1 << 20  # smaller arrays come from NumPy directly

_lock = threading.Lock()
_buffers: list[np.ndarray] = []  # raw uint8 buffers, oldest first


def _free(raw: np.ndarray) -> bool:
    # References: the list, the caller's variable, this argument, getrefcount's own.
    # More means a view of the buffer is still alive somewhere.
    return sys.getrefcount(raw) <= 4


def _take(nbytes: int) -> np.ndarray:
    with _lock:
        best = -1
        for i in range(len(_buffers)):  # not enumerate: its tuple holds a reference
            raw = _buffers[i]
            if (nbytes <= raw.nbytes <= 2 * nbytes and _free(raw)
                    and (best < 0 or raw.nbytes < _buffers[best].nbytes)):
                best = i
        raw = _buffers.pop(best) if best >= 0 else np.empty(nbytes, np.uint8)
        _buffers.append(raw)
        total = sum(r.nbytes for r in _buffers)
        while total > _KEEP_BYTES:  # forget the oldest: its views (if any) keep it alive
            total -= _buffers.pop(0).nbytes
        return raw


def array(shape: tuple[int, ...], dtype: type = np.float32, *, zero: bool = False,
          threads: int = 1) -> np.ndarray:
    """An uninitialised (or zeroed) C-contiguous array, 64-byte aligned, whose memory
    is reused by a later call once the array and its views are gone.

    Args:
        shape: array shape.
        dtype: NumPy dtype.
        zero: fill with zeros (on ``threads`` threads).
        threads: threads for zeroing.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes < _MIN_BYTES:
        out = np.empty(shape, dtype)
    else:
        raw = _take(nbytes + _ALIGN)
        skip = -raw.ctypes.data % _ALIGN
        out = raw[skip:skip + nbytes].view(dtype).reshape(shape)
        del raw
    if zero:
        flat = out.reshape(-1).view(np.uint8)
        parallel.run([(_zero, (flat,), flat.shape[0], 1 << 20)], threads)
    return out


@njit(cache=True, nogil=True)
def _zero(flat, start, stop):
    flat[start:stop] = 0
