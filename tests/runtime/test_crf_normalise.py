"""The normalisation's splat of ones (runtime/crf/normalise.py): each hashing chunk into
a band of the vertex rows, summed per vertex in chunk order."""

import numpy as np
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
