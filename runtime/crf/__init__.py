"""Dense CRF post-processing (pydensecrf's model), in pure Python + Numba.

``dense_crf(probs, image)`` refines a softmax, ``labels_from_probs(probs, image)`` gives
its labels; ``labels_from_logits(logits, image)`` goes from a model's logits (any
resolution) to labels; ``dense_crf_labels(labels, image, num_classes=...)`` refines hard
labels; :class:`DenseCRF` builds the lattices of one
image once and runs (step-wise) inference for several unaries.

This package is the algorithm only. How the runtime applies it to a model's logits
(:class:`~tseg.runtime.segment.refine.CrfParams`, crf.json) lives in :mod:`tseg.runtime.segment.refine`,
the grid search in :mod:`tseg.runtime.infer.crf_tune`. The names below load on first use
(PEP 562), so the default parameters (:mod:`tseg.runtime.crf.parameters`) can be read
without the algorithm; using the algorithm imports Numba.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tseg.runtime.crf.checks import Compat, CrfTypeError
    from tseg.runtime.crf.dense import (
        DenseCRF,
        MeanField,
        dense_crf,
        dense_crf_labels,
        unary_from_labels,
        unary_from_probs,
    )
    from tseg.runtime.crf.logits import labels_from_logits, labels_from_probs

_HOMES = {
    "Compat": "checks",
    "CrfTypeError": "checks",
    "DenseCRF": "dense",
    "MeanField": "dense",
    "dense_crf": "dense",
    "dense_crf_labels": "dense",
    "labels_from_logits": "logits",
    "labels_from_probs": "logits",
    "unary_from_labels": "dense",
    "unary_from_probs": "dense",
}

__all__ = [
    "Compat",
    "CrfTypeError",
    "DenseCRF",
    "MeanField",
    "dense_crf",
    "dense_crf_labels",
    "labels_from_logits",
    "labels_from_probs",
    "unary_from_labels",
    "unary_from_probs",
]


def __getattr__(name: str) -> object:
    """Loads a public name from its module on first use."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
