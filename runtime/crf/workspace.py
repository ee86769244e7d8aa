"""Large CRF arrays whose memory is reused across calls, sparing fresh pages' faults.

A 512 x 512 CRF touches about 100 MB of lattice and scratch arrays. Fresh memory from
the system costs a page fault per page on first touch (about 15% of a call's time), so
large arrays come from a pool of raw buffers with explicit ownership:

- a :class:`Lease` takes buffers from the pool (:meth:`Lease.array`) and returns them
  all when released (:meth:`Lease.release`, or leaving its ``with`` block). Whoever
  holds a lease owns its buffers: the pool never hands a leased buffer to anyone else,
  so threads cannot share one;
- a lease shared by several owners (a cached lattice used by several CRFs) is retained
  once per owner (:meth:`Lease.retain`) and goes back to the pool at the last release;
- long-lived owners (a DenseCRF, a mean-field state) keep their leases in
  :class:`Holdings`, released by their ``close()``; a finalizer releases them too when
  such an object is dropped unclosed, as a safety net only;
- arrays handed to a caller (results) never come from the pool;
- the pool keeps at most ``_KEEP_BYTES`` of free buffers (the oldest go first).

No reference counts of the interpreter are read: reuse depends only on these calls.
"""

from __future__ import annotations

import collections
import math
import os
import threading
import weakref
from dataclasses import dataclass

import numpy as np
from numba import njit

from tseg.runtime.crf import parallel

_ALIGN = 64  # bytes: rows of float32 vector groups start on cache lines
_KEEP_BYTES = 768 * 2**20  # free buffers kept at most
_MIN_BYTES = 1 << 20  # smaller arrays come from NumPy directly

_lock = threading.Lock()
_free: list[np.ndarray] = []  # raw uint8 buffers nobody holds, oldest first
_deferred: collections.deque = collections.deque()  # leases released by finalizers


def _after_fork_in_child() -> None:
    # A thread of the parent may have held the lock at the fork; it does not exist here.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass
class PoolStats:
    """Counters of the pool (for tests and benchmarks).

    Attributes:
        allocations: raw buffers ever allocated from the system.
        allocated_bytes: their total size.
        reuses: requests served by a free buffer.
        free_buffers: buffers in the pool now, free for the next request.
        free_bytes: their total size.
        leased_bytes: bytes of buffers held by leases now.
    """

    allocations: int = 0
    allocated_bytes: int = 0
    reuses: int = 0
    free_buffers: int = 0
    free_bytes: int = 0
    leased_bytes: int = 0


_stats = PoolStats()


def stats() -> PoolStats:
    """A snapshot of the pool's counters."""
    _drain_deferred()
    with _lock:
        return PoolStats(**vars(_stats))


def clear() -> None:
    """Forget every free buffer (leased ones stay with their owners)."""
    _drain_deferred()
    with _lock:
        _free.clear()
        _stats.free_buffers = _stats.free_bytes = 0


def _take(nbytes: int) -> np.ndarray:
    """The smallest free buffer of nbytes .. 2 * nbytes, or a new one; now leased."""
    with _lock:
        best = -1
        for i, raw in enumerate(_free):
            if nbytes <= raw.nbytes <= 2 * nbytes and (best < 0 or raw.nbytes < _free[best].nbytes):
                best = i
        if best >= 0:
            raw = _free.pop(best)
            _stats.reuses += 1
            _stats.free_buffers -= 1
            _stats.free_bytes -= raw.nbytes
        else:
            raw = None
            _stats.allocations += 1
            _stats.allocated_bytes += nbytes
        _stats.leased_bytes += nbytes if raw is None else raw.nbytes
    return np.empty(nbytes, np.uint8) if raw is None else raw


def _give_back(raws: list[np.ndarray]) -> None:
    """Return leased buffers to the pool; the oldest free ones go past the cap."""
    with _lock:
        for raw in raws:
            _stats.leased_bytes -= raw.nbytes
            if raw.nbytes > _KEEP_BYTES:
                continue
            _free.append(raw)
            _stats.free_buffers += 1
            _stats.free_bytes += raw.nbytes
        while _stats.free_bytes > _KEEP_BYTES:
            dropped = _free.pop(0)
            _stats.free_buffers -= 1
            _stats.free_bytes -= dropped.nbytes


def _drain_deferred() -> None:
    """Release the leases that finalizers queued (they may run inside any lock, so
    they only queue)."""
    while True:
        try:
            lease = _deferred.popleft()
        except IndexError:
            return
        lease.release()


def release_later(lease: Lease) -> None:
    """Release ``lease`` at the pool's next use: safe from a finalizer, which may run
    at any allocation, even one inside the pool's lock."""
    _deferred.append(lease)


class Lease:
    """Buffers of the pool owned together: taken by :meth:`array`, returned by the last
    :meth:`release`. Arrays from a lease must not outlive it: after the release their
    memory belongs to the pool's next user.

    Example:
        >>> with Lease() as lease:
        ...     scratch = lease.array((1024, 1024))
    """

    def __init__(self) -> None:
        self._raws: list[np.ndarray] = []
        self._owners = 1
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes of pooled buffers held."""
        with self._lock:
            return sum(raw.nbytes for raw in self._raws)

    def array(self, shape: tuple[int, ...], dtype: type = np.float32, *, zero: bool = False,
              threads: int = 1) -> np.ndarray:
        """An uninitialised (or zeroed) C-contiguous array, 64-byte aligned.

        Args:
            shape: array shape.
            dtype: NumPy dtype.
            zero: fill with zeros (on ``threads`` threads).
            threads: threads for zeroing.

        Returns:
            The array: pooled memory (owned by this lease) from _MIN_BYTES up, else a
            plain NumPy array.
        """
        _drain_deferred()
        dtype = np.dtype(dtype)
        nbytes = math.prod(int(k) for k in shape) * dtype.itemsize
        if nbytes < _MIN_BYTES:
            out = np.empty(shape, dtype)
        else:
            with self._lock:
                if self._owners <= 0:
                    raise RuntimeError("CRF workspace: this lease was released")
            raw = _take(nbytes + _ALIGN)
            with self._lock:
                self._raws.append(raw)
            skip = -raw.ctypes.data % _ALIGN
            out = raw[skip:skip + nbytes].view(dtype).reshape(shape)
        if zero:
            flat = out.reshape(-1).view(np.uint8)
            parallel.run([(_zero, (flat,), flat.shape[0], 1 << 20)], threads)
        return out

    def give_back(self, array: np.ndarray) -> None:
        """Return the buffer under ``array`` now, before the rest (no view of it may
        remain in use); a plain NumPy array is left alone."""
        raw = array
        while isinstance(raw, np.ndarray) and raw.base is not None:
            raw = raw.base
        with self._lock:
            for i, held in enumerate(self._raws):
                if held is raw:
                    del self._raws[i]
                    break
            else:
                return
        _give_back([raw])

    def retain(self) -> Lease:
        """One more owner: the buffers go back at the last owner's release."""
        with self._lock:
            if self._owners <= 0:
                raise RuntimeError("CRF workspace: this lease was released")
            self._owners += 1
        return self

    def release(self) -> None:
        """One owner less; at the last, every buffer goes back to the pool. Releasing
        more often than owning is a no-op."""
        with self._lock:
            if self._owners <= 0:
                return
            self._owners -= 1
            if self._owners > 0:
                return
            raws, self._raws = self._raws, []
        _give_back(raws)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@njit(cache=True, nogil=True)
def _zero(flat, start, stop):
    flat[start:stop] = 0


def _release_later(leases: list[Lease]) -> None:
    for lease in leases:
        release_later(lease)


class Holdings:
    """The leases one object owns, released by :meth:`close` or, as a safety net only,
    when the object is garbage collected (queued, see :func:`release_later`).

    Args:
        owner: the object whose arrays live in the leases.
        leases: the leases, one ownership of each passes to this object.
    """

    def __init__(self, owner: object, leases: list[Lease]) -> None:
        self._leases = list(leases)
        self._finalizer = weakref.finalize(owner, _release_later, self._leases)
        self._finalizer.atexit = False

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Release every lease now (once; later calls do nothing)."""
        if self._finalizer.detach() is not None:
            for lease in self._leases:
                lease.release()
