"""The CRF's buffer pool: explicit ownership, reuse across calls, results that stay the
caller's, threads, long-lived CRFs, and the > 1 Mpixel path."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

from tseg.runtime.crf import (
    DenseCRF,
    dense,
    dense_crf,
    dense_crf_labels,
    meanfield,
    unary_from_probs,
    workspace,
)
from tseg.runtime.errors import TsegError


def make_case(height, width, num_classes=4, seed=0):
    """A blocky image and smooth-ish random probabilities of its size."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3))
    image = np.repeat(np.repeat(blocks, 16, 0), 16, 1)[:height, :width]
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    logits = rng.normal(0, 1.5, (num_classes, height, width))
    probs = np.exp(logits - logits.max(0))
    return image, (probs / probs.sum(0)).astype(np.float32)


def free_buffers():
    """The raw buffers in the pool now (white box: nobody holds them)."""
    with workspace._lock:
        return list(workspace._free)


def assert_not_pooled(array):
    for raw in free_buffers():
        assert not np.shares_memory(array, raw), "a result lives in a pooled buffer"


@pytest.fixture(autouse=True)
def fresh_pool():
    dense._gaussian_cache.clear()
    workspace.clear()
    yield
    dense._gaussian_cache.clear()


# ---------------------------------------------------------------- reuse


def rss_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@pytest.mark.parametrize("call", ["dense_crf", "labels", "DenseCRF"])
def test_repeated_calls_allocate_no_new_buffers(call):
    """After a warm-up, more calls of one size take every buffer from the pool: the pool
    counts its own allocations (no reference counts of the interpreter involved)."""
    image, probs = make_case(256, 192, 5)
    labels = probs.argmax(0).astype(np.uint8)

    def run(i):
        if call == "dense_crf":
            return dense_crf(probs, image, threads=2)
        if call == "labels":
            return dense_crf_labels(labels, image, num_classes=5, threads=2)
        crf = DenseCRF(image, threads=2)  # never closed: dropped, the safety net returns it
        return crf.inference(unary_from_probs(probs), iterations=3)

    for i in range(2):
        run(i)
    warm = workspace.stats()
    assert warm.allocations > 0 and warm.free_bytes > 0
    rss = rss_bytes()
    for i in range(12):
        run(i)
    after = workspace.stats()
    assert after.allocations == warm.allocations, (warm, after)
    assert after.reuses > warm.reuses
    # Nothing leaks out of the pool: only the cached Gaussian lattice stays leased.
    assert after.leased_bytes == warm.leased_bytes
    assert after.leased_bytes == dense._gaussian_cache.nbytes
    if call != "DenseCRF":  # (the dropped CRFs' buffers come back at the pool's next use)
        assert rss_bytes() - rss < warm.allocated_bytes / 2


def test_released_buffers_are_reused_and_held_ones_never_shared():
    with workspace.Lease() as first:
        a = first.array((512, 1024))
        with workspace.Lease() as second:
            b = second.array((512, 1024))
            assert not np.shares_memory(a, b)  # both held: two buffers
    allocations = workspace.stats().allocations
    with workspace.Lease() as third:
        c = third.array((512, 1024))
        assert np.shares_memory(c, a) or np.shares_memory(c, b)
    assert workspace.stats().allocations == allocations
    assert c.ctypes.data % 64 == 0 and c.flags.c_contiguous


def test_shared_lease_goes_back_at_the_last_release():
    lease = workspace.Lease()
    lease.array((1 << 20,))
    lease.retain()
    lease.release()
    assert workspace.stats().free_buffers == 0  # one owner left
    lease.release()
    assert workspace.stats().free_buffers == 1
    lease.release()  # more releases than owners: nothing more happens
    assert workspace.stats().free_buffers == 1
    with pytest.raises(RuntimeError):
        lease.array((1 << 20,))


def test_free_buffers_are_capped(monkeypatch):
    monkeypatch.setattr(workspace, "_KEEP_BYTES", 5 << 20)
    leases = [workspace.Lease() for _ in range(4)]
    for lease in leases:
        lease.array((1 << 19,))  # 2 MiB each
    for lease in leases:
        lease.release()
    stats = workspace.stats()
    assert stats.free_buffers == 2 and stats.free_bytes <= 5 << 20


def test_a_dropped_crf_returns_its_buffers_at_the_next_use():
    image, _ = make_case(384, 256)
    crf = DenseCRF(image, threads=2)
    held = workspace.stats().leased_bytes
    assert held > 0
    del crf
    gc.collect()
    # Finalizers only queue the release; the pool's next use (here stats) performs it.
    assert workspace.stats().leased_bytes == dense._gaussian_cache.nbytes < held


# ---------------------------------------------------------------- results are the caller's


def test_results_are_not_changed_by_later_calls():
    image, probs = make_case(384, 320, 3, seed=0)  # (C, H, W) float32 above 1 MiB: pooled size
    image2, probs2 = make_case(384, 320, 3, seed=1)
    labels = probs.argmax(0).astype(np.int32)
    unary = unary_from_probs(probs)
    crf = DenseCRF(image, threads=2)
    state = crf.start(unary)
    state.step(2)
    results = {
        "dense_crf": dense_crf(probs, image, threads=2),
        "inference": crf.inference(unary, iterations=3),
        "labels": dense_crf_labels(labels, image, num_classes=3, threads=2),
        "unary": unary_from_probs(probs),
        "state.probs": state.probs(),
        "state.labels": state.labels(),
    }
    state.close()
    crf.close()
    copies = {name: r.copy() for name, r in results.items()}
    for _ in range(3):  # other inputs of the same size: the same buffer sizes
        dense_crf(probs2, image2, threads=2)
        dense_crf_labels(probs2.argmax(0).astype(np.int32), image2, num_classes=3)
        with DenseCRF(image2) as other:
            other.inference(unary_from_probs(probs2))
    for name, result in results.items():
        np.testing.assert_array_equal(result, copies[name], err_msg=name)
        assert_not_pooled(result)


def test_closed_crf_and_state_refuse_to_run():
    image, probs = make_case(64, 64)
    crf = DenseCRF(image)
    state = crf.start(unary_from_probs(probs))
    crf.close()
    crf.close()  # twice is fine
    with pytest.raises(TsegError, match="this CRF is closed"):
        crf.inference(unary_from_probs(probs))
    state.step(1)  # a started state keeps its own hold on the lattices
    state.close()
    with pytest.raises(TsegError, match="this state is closed"):
        state.probs()


# ---------------------------------------------------------------- long-lived objects


def test_a_live_crf_keeps_working_while_other_calls_run():
    """Its lattices (the Gaussian one shared through the cache too) are never handed
    out: after calls of other sizes evict it from the cache and churn the pool, it
    gives the same result."""
    image, probs = make_case(384, 320, 4)  # lattice arrays above 1 MiB: pooled
    unary = unary_from_probs(probs)
    dense_crf(probs, image)  # caches the Gaussian lattice of this size
    crf = DenseCRF(image, threads=2)
    assert crf.gaussian is dense._gaussian_cache.take((384, 320, 3.0))
    crf.gaussian.lease.release()  # (take's)
    state = crf.start(unary)
    state.step(1)
    expected = crf.inference(unary, iterations=4)
    for k, (height, width) in enumerate([(320, 384), (352, 352), (384, 320), (400, 256)]):
        other_image, other_probs = make_case(height, width, 4, seed=k + 1)
        dense_crf(other_probs, other_image, threads=2, gaussian_sxy=2.0 + k)
    assert len(dense._gaussian_cache) == 2
    np.testing.assert_array_equal(crf.inference(unary, iterations=4), expected)
    state.step(3)
    np.testing.assert_array_equal(state.probs(), expected)
    state.close()
    crf.close()


# ---------------------------------------------------------------- threads


@pytest.mark.parametrize("threads_per_call", [1, 2])
def test_concurrent_calls_equal_sequential_ones(threads_per_call):
    """4 threads calling dense_crf at once (two image sizes, so Gaussian lattices are
    built, cached and shared concurrently) give the sequential results bit for bit."""
    cases = [make_case(*size, num_classes=3 + k, seed=k)
             for k, size in enumerate([(96, 128), (96, 128), (128, 96), (128, 96)])]
    expected = [dense_crf(p, img, threads=threads_per_call) for img, p in cases]
    dense._gaussian_cache.clear()
    results = [[] for _ in cases]
    errors = []
    barrier = threading.Barrier(len(cases))

    def work(k):
        try:
            image, probs = cases[k]
            barrier.wait()
            for _ in range(3):
                results[k].append(dense_crf(probs, image, threads=threads_per_call))
        except BaseException as err:  # reported below
            errors.append(err)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(len(cases))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors
    for k, runs in enumerate(results):
        for q in runs:
            np.testing.assert_array_equal(q, expected[k])


# ---------------------------------------------------------------- > 1 Mpixel


def test_more_than_a_megapixel_uses_eight_tasks_and_agrees_with_four(monkeypatch):
    """From 1 Mpixel on, pixels splat in 8 tasks (README); the result equals the
    4-task one up to float rounding (sums in another order)."""
    image, probs = make_case(1024, 1040, 2)
    n = 1024 * 1040
    assert len(meanfield.task_bounds(n)) - 1 == 8
    eight = dense_crf(probs, image, iterations=2)
    four = meanfield.task_bounds
    monkeypatch.setattr(meanfield, "task_bounds", lambda m: [m * t // 4 for t in range(5)])
    dense._gaussian_cache.clear()  # its task rows were computed for 8 tasks
    assert four(n) != meanfield.task_bounds(n)
    reference = dense_crf(probs, image, iterations=2)
    np.testing.assert_allclose(eight, reference, atol=2e-5)
    assert (eight.argmax(0) == reference.argmax(0)).mean() > 0.9999
    changed = (eight.argmax(0) != probs.argmax(0)).mean()
    assert changed > 0.05  # the CRF did work on this image
