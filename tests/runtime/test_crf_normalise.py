"""The normalisation's splat of ones (runtime/crf/normalise.py): each hashing chunk into
a band of the vertex rows, summed per vertex in chunk order."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tseg.runtime.crf import normalise


def _dense_sums(rows, bary, starts, n, m):
    """A row of every vertex per chunk, summed in chunk order (the layout before bands)."""
    ones = np.zeros((len(starts) - 1, m + 1), np.float32)
    for c in range(len(starts) - 1):
        for p in range(starts[c], min(starts[c + 1], n)):
            for r in range(rows.shape[1]):
                ones[c, rows[p, r]] += bary[p, r]
    total = np.zeros(m + 1, np.float32)
    for c in range(ones.shape[0]):
        total += ones[c]
    return total


@settings(max_examples=50, deadline=None)
@given(data=st.data(), chunks=st.integers(1, 6), m=st.integers(1, 9000), dp1=st.sampled_from([3, 6]))
def test_banded_splats_give_the_dense_layouts_sums(data, chunks, m, dp1):
    """Chunks touching rows anywhere (a hashed lattice's old vertices), some of them only
    padding points, give bit for bit the sums of a row of every vertex per chunk."""
    sizes = data.draw(st.lists(st.integers(0, 40), min_size=chunks, max_size=chunks))
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    points = int(starts[-1])
    n = data.draw(st.integers(0, points))  # points from n on are padding: not splatted
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    ids = rng.integers(0, m, (points, dp1)).astype(np.int32)  # direct ids: box index = id
    bary = rng.random((points, dp1), dtype=np.float32)
    counts = np.zeros(chunks, np.int64)
    bands = np.empty((chunks, 2), np.int64)
    remap = np.arange(m, dtype=np.int32)
    offsets = ids.copy()
    normalise.chunk_bands(offsets, remap, True, starts, counts, bands, 0, chunks)
    base, size = normalise.band_starts(bands)
    ones = np.zeros(size, np.float32)
    normalise.remap_and_splat_ones(offsets, remap, True, starts, n, bary, ones, bands, base,
                                   0, chunks)
    np.testing.assert_array_equal(offsets, ids + 1)  # rows are ids + 1
    values = np.full(m + 1, np.nan, np.float32)
    values[0] = 0
    for lo, hi in ((0, m // 2), (m // 2, m)):  # two jobs, as parallel.run splits them
        normalise.gather_ones(values, ones, bands, base, lo, hi)
    np.testing.assert_array_equal(values, _dense_sums(ids + 1, bary, starts, n, m))
    assert size <= sum(max(0, int(b[1] - b[0] + 1)) for b in bands)


def test_bands_of_a_hashed_lattice_follow_its_chunks_vertex_tables():
    """A hashed chunk's band spans the global ids its own vertex table maps to."""
    dp1 = 3
    starts = np.array([0, 2, 4, 4], np.int64)  # the last chunk has no points
    counts = np.array([3, 2, 0], np.int64)
    remap = np.full(4 * dp1, -1, np.int32)
    remap[0:3] = [0, 1, 2]  # chunk 0's local ids 0..2
    remap[6:8] = [7, 1]  # chunk 1's local ids 0..1 (vertex 1 is chunk 0's too)
    offsets = np.zeros((4, dp1), np.int32)
    bands = np.empty((3, 2), np.int64)
    normalise.chunk_bands(offsets, remap, False, starts, counts, bands, 0, 3)
    np.testing.assert_array_equal(bands, [[1, 3], [2, 8], [1, 0]])
    base, size = normalise.band_starts(bands)
    np.testing.assert_array_equal(base, [0, 3, 10])
    assert size == 3 + 7


@pytest.mark.parametrize("size", [(256, 256), (181, 233)])  # chunks on task bounds, or not
def test_banded_vertices_are_numbered_by_their_tasks_span(size):
    """A banded bilateral lattice numbers its vertices by the first, then the last
    mean-field task that touches them, so that a task's band of accumulator rows holds
    few vertices it does not touch; the filtering is that of the first-touch order."""
    from tseg.runtime.crf import DenseCRF, meanfield

    rng = np.random.default_rng(3)
    image = np.repeat(np.repeat(rng.integers(0, 256, (size[0] // 8 + 1, size[1] // 8 + 1, 3)),
                                8, 0), 8, 1)[:size[0], :size[1]].astype(np.uint8)
    with DenseCRF(image, threads=2) as crf:
        lattice = crf.bilateral
        assert lattice.aliases is None
        n = image.shape[0] * image.shape[1]
        bounds = meanfield.task_bounds(n)
        rows = lattice.offsets[:n] & 0x7FFFFFFF  # vertex v's row is v + 1
        first = np.full(lattice.num_vertices + 1, len(bounds), np.int64)
        last = np.full(lattice.num_vertices + 1, -1, np.int64)
        for t in range(len(bounds) - 1):
            touched = np.unique(rows[bounds[t]:bounds[t + 1]])
            first[touched] = np.minimum(first[touched], t)
            last[touched] = t
        seen = last[1:] >= 0  # (vertices only padding points reach: none here)
        key = first[1:][seen] * len(bounds) + last[1:][seen]
        if n % 64 == 0:  # hashing chunks on task bounds: exactly that order
            assert np.all(np.diff(key) >= 0)
        # The bands' rows against those of the first-touch order (pixel by pixel).
        _, first_seen = np.unique(rows.reshape(-1), return_index=True)
        rank = np.empty(lattice.num_vertices + 1, np.int64)
        rank[np.unique(rows)] = np.argsort(np.argsort(first_seen))
        first_touch_rows = sum(int(np.ptp(rank[np.unique(rows[bounds[t]:bounds[t + 1]])])) + 1
                               for t in range(len(bounds) - 1))
        band_rows = int((lattice.task_rows[:, 1] - lattice.task_rows[:, 0] + 1).sum())
        assert band_rows < 0.9 * first_touch_rows
