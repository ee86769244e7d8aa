"""Dense CRF post-processing (pydensecrf's model), in pure Python + Numba.

``dense_crf(probs, image)`` refines a softmax; ``dense_crf_labels(labels, image,
num_classes=...)`` refines hard labels; :class:`DenseCRF` builds the lattices of one
image once and runs (step-wise) inference for several unaries.

This package is the algorithm only. How the runtime applies it to a model's logits
(:class:`~tseg.runtime.refine.CrfParams`, crf.json) lives in :mod:`tseg.runtime.refine`,
the grid search in :mod:`tseg.runtime.crf_tune`; importing this package imports Numba.
"""

from tseg.runtime.crf.checks import Compat, CrfTypeError
from tseg.runtime.crf.dense import (
    DenseCRF,
    MeanField,
    dense_crf,
    dense_crf_labels,
    unary_from_labels,
    unary_from_probs,
)

__all__ = [
    "Compat",
    "CrfTypeError",
    "DenseCRF",
    "MeanField",
    "dense_crf",
    "dense_crf_labels",
    "unary_from_labels",
    "unary_from_probs",
]
