"""The Gaussian lattices of the last image sizes, shared by the CRFs of those sizes.

The Gaussian kernel's lattice depends on the image size and its width alone, so images
of one size (a dataset, a video) share it. The cache is one owner of each lattice it
holds (see :class:`tseg.runtime.crf.workspace.Lease`): an evicted lattice goes back to
the pool once the CRFs using it are closed too.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from tseg.runtime.crf.lattice import Lattice

_MOST = 2  # lattices kept
_MOST_BYTES = 128 * 2**20


class LatticeCache:
    """A small LRU of lattices by key, each retained while cached.

    Args:
        most: lattices kept at most.
        most_bytes: bytes kept at most (a single bigger lattice is not kept).
    """

    def __init__(self, most: int = _MOST, most_bytes: int = _MOST_BYTES) -> None:
        self._items: OrderedDict[tuple, Lattice] = OrderedDict()
        self._lock = threading.Lock()
        self.most = most
        self.most_bytes = most_bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def nbytes(self) -> int:
        """Pooled bytes the cached lattices hold."""
        with self._lock:
            return sum(lattice.lease.nbytes for lattice in self._items.values())

    def take(self, key: tuple) -> Lattice | None:
        """The lattice cached under ``key``, retained once for the caller (who releases
        its lease when done), or None."""
        with self._lock:
            lattice = self._items.get(key)
            if lattice is None:
                return None
            self._items.move_to_end(key)
            lattice.lease.retain()  # under the lock: no eviction can release it first
            return lattice

    def put(self, key: tuple, lattice: Lattice) -> None:
        """Keep ``lattice`` (retained once more) under ``key``; evict past the limits."""
        dropped = []
        with self._lock:
            if key in self._items:
                dropped.append(self._items.pop(key))
            lattice.lease.retain()
            self._items[key] = lattice
            total = sum(lat.nbytes for lat in self._items.values())
            while len(self._items) > self.most or (total > self.most_bytes and len(self._items) > 1):
                _, old = self._items.popitem(last=False)
                total -= old.nbytes
                dropped.append(old)
            if total > self.most_bytes:  # a single huge lattice: keep nothing
                dropped.extend(self._items.values())
                self._items.clear()
        for old in dropped:
            old.lease.release()

    def clear(self) -> None:
        """Forget (release) every cached lattice."""
        with self._lock:
            dropped = list(self._items.values())
            self._items.clear()
        for old in dropped:
            old.lease.release()
