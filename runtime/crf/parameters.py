"""The dense CRF's default parameters: one set, for the algorithm and the runtime's settings alike.

pydensecrf's example values (a Gaussian kernel of 3 pixels with weight 3, a bilateral kernel
of 80 pixels and 13 intensity levels with weight 10, 5 mean-field iterations). The defaults
of :class:`~tseg.runtime.crf.DenseCRF`, :func:`~tseg.runtime.crf.dense_crf`,
:func:`~tseg.runtime.crf.dense_crf_labels` and :class:`~tseg.runtime.segment.refine.CrfParams`
(what ``tseg-infer --crf`` uses without a crf.json) are these names.

No Numba here: the runtime reads them without importing the algorithm.
"""

ITERATIONS = 5
GAUSSIAN_SXY = 3.0
GAUSSIAN_COMPAT = 3.0
BILATERAL_SXY = 80.0
BILATERAL_SRGB = 13.0
BILATERAL_COMPAT = 10.0

DEVICES = ("cpu", "cuda")
"""Where the CRF runs: ``cuda`` needs NVIDIA's numba-cuda (``pip install 'tseg[cuda]'``) and a GPU
(the runtime's settings add ``"auto"``: :mod:`tseg.runtime.segment.crf_device`)."""
