"""The splat as a gather: each vertex's entries, sorted, so its sums run in a fixed order.

Splatting by scattering would need float atomics, whose order (and so rounding) changes
from run to run. Instead each vertex lists the entries (pixel corners) that splat onto
it, in entry order (pixel order, as the CPU path sums), and one thread sums them:

- ``count_entries``: entries per vertex (integer atomics: exact in any order);
- an exclusive scan of the counts gives each vertex's segment;
- ``fill_segments``: entries drop into their segments in any order (integer atomics);
- ``sort_segments``: each segment sorted (a heapsort per vertex: in place, no recursion),
  which fixes the order whatever the scheduling was.
"""

from numba import cuda


@cuda.jit(cache=True)
def count_entries(rows, counts):
    """counts[v] += 1 per entry of vertex v among ``rows`` (the real pixels' entries:
    the reference's padding points are not splatted)."""
    for e in range(cuda.grid(1), rows.shape[0], cuda.gridsize(1)):
        cuda.atomic.add(counts, rows[e] - 1, 1)


@cuda.jit(cache=True)
def fill_segments(rows, starts, cursor, entries):
    """entries[starts[v] ...] = the entries of vertex v, in no particular order.

    Args:
        rows: (E,) int32 vertex rows (id + 1) of the real pixels' entries.
        starts: (M + 1,) int32 segment starts (exclusive scan of the counts).
        cursor: (M,) int32, zero beforehand.
        entries: (E,) int32 out.
    """
    for e in range(cuda.grid(1), rows.shape[0], cuda.gridsize(1)):
        v = rows[e] - 1
        entries[starts[v] + cuda.atomic.add(cursor, v, 1)] = e


@cuda.jit(device=True)
def _sift_down(a, first, root, end):
    """Heap property below ``root`` of the heap a[first:first + end] (0-based roots)."""
    while 2 * root + 1 < end:
        child = 2 * root + 1
        if child + 1 < end and a[first + child] < a[first + child + 1]:
            child += 1
        if a[first + root] >= a[first + child]:
            return
        a[first + root], a[first + child] = a[first + child], a[first + root]
        root = child


@cuda.jit(cache=True)
def sort_segments(starts, entries):
    """Sort every vertex's segment of ``entries`` ascending (heapsort, one thread each)."""
    for v in range(cuda.grid(1), starts.shape[0] - 1, cuda.gridsize(1)):
        first = starts[v]
        size = starts[v + 1] - first
        for root in range(size // 2 - 1, -1, -1):
            _sift_down(entries, first, root, size)
        for end in range(size - 1, 0, -1):
            entries[first], entries[first + end] = entries[first + end], entries[first]
            _sift_down(entries, first, 0, end)
