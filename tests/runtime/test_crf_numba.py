"""The dense CRF's Numba side: kernel cache, GIL release, threads, fork safety, packaging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.runtime.test_crf import make_image, make_probs
from tseg.runtime.crf import dense_crf


def _kernels():
    from numba.core.registry import CPUDispatcher

    from tseg.runtime.crf import lattice, meanfield

    for module in (lattice, meanfield):
        for name in dir(module):
            if isinstance(getattr(module, name), CPUDispatcher):
                yield f"{module.__name__}.{name}", getattr(module, name)


def test_kernels_are_cached_and_release_the_gil():
    kernels = dict(_kernels())
    assert len(kernels) >= 10
    for name, kernel in kernels.items():
        assert kernel.targetoptions.get("nogil") is True, name
        assert kernel._cache.__class__.__name__ == "FunctionCache", name


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_parallel_run_covers_each_index_once_and_reraises(threads):
    from tseg.runtime.crf import parallel

    hits = np.zeros(50_000, np.int64)

    def mark(out, start, stop):
        out[start:stop] += 1

    parallel.run([(mark, (hits,), 30_000), (mark, (hits[30_000:],), 20_000, 1)], threads)
    np.testing.assert_array_equal(hits, 1)

    def fail(start, stop):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        parallel.run([(fail, (), 100_000)], threads)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_crf_runs_in_a_forked_child_after_the_parent_used_threads():
    import multiprocessing

    image, probs = make_image(), make_probs()
    expected = dense_crf(probs, image, threads=2)  # the parent's pool is up
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(dense_crf, (probs, image), {"threads": 2}).get(timeout=60)
    np.testing.assert_array_equal(got, expected)


def test_crf_package_never_imports_torch():
    code = "import sys, tseg.runtime.crf; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_numba_cache_dir_is_respected_and_warm_start_compiles_nothing(tmp_path):
    """A cold process compiles into NUMBA_CACHE_DIR; the next one loads every kernel
    from it (no timing: each kernel's own cache counters say so)."""
    script = textwrap.dedent("""
        import json, numpy as np
        from numba.core.registry import CPUDispatcher
        from tseg.runtime import crf
        from tseg.runtime.crf import dense_crf
        probs = np.full((2, 8, 8), 0.5, np.float32)
        dense_crf(probs, np.zeros((8, 8, 3), np.uint8))
        hits = misses = 0
        for module in vars(crf).values():
            for kernel in vars(module).values() if hasattr(module, "__dict__") else ():
                if isinstance(kernel, CPUDispatcher) and kernel.signatures:
                    hits += sum(kernel.stats.cache_hits.values())
                    misses += sum(kernel.stats.cache_misses.values())
        print(json.dumps({"hits": hits, "misses": misses}))
    """)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}

    def run():
        out = subprocess.run([sys.executable, "-c", script], env=env, check=True,
                             capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    cold = run()
    assert list(tmp_path.rglob("*.nbi")), "nothing was cached in NUMBA_CACHE_DIR"
    assert cold["misses"] > 0, cold
    warm = run()
    assert warm["misses"] == 0 and warm["hits"] > 0, (cold, warm)
