"""Dense CRF post-processing (pydensecrf's model), in pure Python + Numba.

``dense_crf(probs, image)`` refines a softmax; ``dense_crf_labels(labels, image,
num_classes=...)`` refines hard labels; :class:`DenseCRF` builds the lattices of one
image once and runs (step-wise) inference for several unaries.
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
