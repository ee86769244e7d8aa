"""The dense CRF on an NVIDIA GPU: the CPU path's model and results, in Numba CUDA kernels.

``dense_crf(..., device="cuda")`` and ``DenseCRF(..., device="cuda")`` land here. The
lattice is built on the device once per image (:mod:`.embed`: points and simplex corners;
:mod:`.table`: a lock-free hash table of vertex keys; :mod:`.lattice`: the build and the
symmetric normalisation) and the whole mean field runs there (:mod:`.meanfield`); only
labels, or Q when asked, come back. Sums run in a fixed order (a gather-based splat over
each vertex's pixels sorted by index; no float atomics), so results do not depend on
scheduling.

Everything runs under Numba's CUDA simulator too (``NUMBA_ENABLE_CUDASIM=1``), which is
how the tests check it on machines without a GPU. NVIDIA's ``numba-cuda`` is needed
(``pip install 'tseg[cuda]'``); :mod:`.device` checks for it and for a GPU before any
kernel module is imported, so the CPU path never needs a CUDA package.
"""
