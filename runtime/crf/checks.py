"""Argument checks for the CRF: each error says what was needed and what came."""

from __future__ import annotations

import math
import numbers

import numpy as np
from numpy.typing import ArrayLike

from tseg.runtime.crf.parallel import available_threads
from tseg.runtime.crf.parameters import DEVICES
from tseg.runtime.errors import TsegError, TsegTypeError
from tseg.runtime.images import check_image

Compat = float | ArrayLike
"""A compatibility: scalar (Potts), (C,) vector (diagonal) or (C, C) matrix."""

MAX_ENERGY = 1e6
"""Largest magnitude of a unary energy or a compatibility: logits stay far from
float32's overflow (an overflow would turn Q into NaN)."""
_FLOAT32_TINY = float(np.finfo(np.float32).tiny)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


CrfTypeError = TsegTypeError
"""An argument of the wrong type or dtype (a TypeError the CLI reports as TsegError): the
runtime's :class:`~tseg.runtime.errors.TsegTypeError`, under the name this package exports."""


def _describe(x: object) -> str:
    if isinstance(x, np.ndarray):
        return f"{x.dtype} array of shape {x.shape}"
    return type(x).__name__


def _need_array(name: str, x: object, need: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise CrfTypeError(f"{name}: need {need} numpy array, got {_describe(x)}")
    return x


def _value_range(name: str, x: np.ndarray) -> tuple[float, float]:
    """(min, max) of a non-empty real array, both finite (NaN propagates into them):
    two passes over the data and no temporary array."""
    low, high = float(x.min()), float(x.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise TsegError(f"{name}: need finite values, got NaN or inf")
    return low, high


def _check_magnitude(name: str, low: float, high: float) -> None:
    if max(-low, high) > MAX_ENERGY:
        raise TsegError(f"{name}: need values in [-{MAX_ENERGY:g}, {MAX_ENERGY:g}], "
                        f"got {max(-low, high):g} in magnitude")


def check_float_array(name: str, x: object, layout: str) -> np.ndarray:
    """A real floating (C, H, W) array with C, H, W >= 1 (values unchecked)."""
    x = _need_array(name, x, f"a float {layout}")
    if not np.issubdtype(x.dtype, np.floating):
        raise CrfTypeError(f"{name}: need a float dtype {layout}, got {_describe(x)}")
    if x.ndim != 3 or min(x.shape) < 1:
        raise TsegError(f"{name}: need shape {layout}, got {x.shape}")
    return x


def check_probs(probs: object, height: int | None = None, width: int | None = None, *,
                values: bool = True) -> np.ndarray:
    """(C, H, W) probabilities in [0, 1], matching the image's H, W when given.

    values: False leaves the values to the caller: mean field's first pixel pass checks
    them as it reads them (:class:`tseg.runtime.crf.state.MeanField`), so that a call
    does not read the whole array once more before it starts."""
    probs = check_float_array("probs", probs, "(C, H, W)")
    if height is not None:
        _check_size("probs", probs.shape, height, width)
    if values:
        check_probs_values(probs)
    return probs


def check_probs_values(probs: np.ndarray) -> None:
    """Raise unless every value of ``probs`` lies in [0, 1] (NaN does not)."""
    low, high = _value_range("probs", probs)
    if low < 0.0 or high > 1.0:
        raise TsegError(f"probs: need values in [0, 1], got [{low:g}, {high:g}]")


def check_unary(unary: object, height: int, width: int) -> np.ndarray:
    """(C, H, W) finite energies of magnitude at most MAX_ENERGY, matching the image's H, W."""
    unary = check_float_array("unary", unary, "(C, H, W)")
    _check_size("unary", unary.shape, height, width)
    _check_magnitude("unary", *_value_range("unary", unary))
    return unary


def _check_size(name: str, shape: tuple, height: int, width: int) -> None:
    if tuple(shape[1:]) != (height, width):
        raise TsegError(f"{name}: need shape (C, {height}, {width}) to match the image, "
                        f"got {tuple(shape)}")


def check_labels(labels: object, num_classes: int, unknown_label: int | None) -> np.ndarray:
    """(H, W) integer labels in [0, num_classes) or equal to ``unknown_label``."""
    labels = _need_array("labels", labels, "an (H, W) integer")
    if not np.issubdtype(labels.dtype, np.integer):
        raise CrfTypeError(f"labels: need an integer dtype (H, W), got {_describe(labels)}")
    if labels.ndim != 2 or min(labels.shape) < 1:
        raise TsegError(f"labels: need shape (H, W), got {labels.shape}")
    if unknown_label is not None and (isinstance(unknown_label, bool)
                                      or not isinstance(unknown_label, numbers.Integral)):
        raise CrfTypeError(f"unknown_label: need an int or None, got {_describe(unknown_label)}")
    bad = (labels < 0) | (labels >= num_classes)
    if unknown_label is not None:
        bad &= labels != unknown_label
    if bad.any():
        allowed = f"[0, {num_classes})" + ("" if unknown_label is None
                                           else f" or {unknown_label} (unknown)")
        raise TsegError(f"labels: need values in {allowed}, got {int(labels[bad][0])}")
    return labels


def check_num_classes(num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise CrfTypeError(f"num_classes: need an int, got {_describe(num_classes)}")
    if num_classes < 2:
        raise TsegError(f"num_classes: need >= 2, got {num_classes}")
    return int(num_classes)


def _real(name: str, value: object, need: str) -> float:
    """``value`` as a float (+-inf past float's range); bools and non-reals refused."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise CrfTypeError(f"{name}: need {need}, got {_describe(value)}")
    try:
        return float(value)
    except OverflowError:  # an int past 1e308
        return math.inf if value > 0 else -math.inf


def check_open_unit(name: str, value: object) -> float:
    value = _real(name, value, "a float")
    if not 0.0 < value < 1.0:
        raise TsegError(f"{name}: need a value in (0, 1), got {value}")
    return value


def check_positive(name: str, value: object) -> float:
    """A kernel width: finite, > 0 and a normal float32 (the lattice computes in float32)."""
    value = _real(name, value, "a positive float")
    if not (math.isfinite(value) and _FLOAT32_TINY <= value <= _FLOAT32_MAX):
        raise TsegError(f"{name}: need a finite value > 0 (from {_FLOAT32_TINY:.3g} to "
                        f"{_FLOAT32_MAX:.3g}), got {value}")
    return value


def check_iterations(iterations: object) -> int:
    if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral):
        raise CrfTypeError(f"iterations: need an int >= 0, got {_describe(iterations)}")
    if iterations < 0:
        raise TsegError(f"iterations: need an int >= 0, got {iterations}")
    return int(iterations)


def check_compat(name: str, compat: object, num_classes: int | None
                 ) -> tuple[np.ndarray, bool] | None:
    """Resolve a compatibility to the (C, C) float32 matrix subtracted from the logits.

    Returns (matrix, is_diagonal), or None when ``num_classes`` is None (shape
    unknown yet: only the type, rank and values are checked).
    """
    if isinstance(compat, numbers.Real) and not isinstance(compat, bool):
        compat = _real(name, compat, "a float")
        if not math.isfinite(compat):
            raise TsegError(f"{name}: need a finite value, got {compat}")
        if abs(compat) > MAX_ENERGY:
            raise TsegError(f"{name}: need a value in [-{MAX_ENERGY:g}, {MAX_ENERGY:g}], "
                            f"got {compat}")
        if num_classes is None:
            return None
        # Potts: pydensecrf adds w * K~Q, i.e. subtracts (-w * I) @ K~Q.
        return np.diag(np.full(num_classes, -compat, np.float32)), True
    if not isinstance(compat, (np.ndarray, list, tuple)):
        raise CrfTypeError(f"{name}: need a float, a (C,) or a (C, C) array, "
                           f"got {_describe(compat)}")
    try:
        array = np.asarray(compat)
    except (TypeError, ValueError) as exc:  # ragged nesting
        raise CrfTypeError(f"{name}: need real numbers, got {_describe(compat)}") from exc
    if array.dtype.kind not in "iuf":  # bool, complex, strings, objects
        raise CrfTypeError(f"{name}: need real numbers, got {_describe(array)}")
    if array.ndim not in (1, 2) or (array.ndim == 2 and array.shape[0] != array.shape[1]):
        raise TsegError(f"{name}: need a float, a (C,) or a (C, C) array, got shape "
                        f"{array.shape}")
    if array.size:
        _check_magnitude(name, *_value_range(name, array.astype(np.float64)))
    if num_classes is None:
        return None
    array = array.astype(np.float32)
    if array.shape[0] != num_classes:
        need = (num_classes,) if array.ndim == 1 else (num_classes, num_classes)
        raise TsegError(f"{name}: need shape {need} for {num_classes} classes, "
                        f"got {array.shape}")
    if array.ndim == 1:
        return np.diag(array), True
    matrix = np.float32(0.5) * (array + array.T)
    diagonal = not np.any(matrix - np.diag(np.diag(matrix)))
    return np.ascontiguousarray(matrix), diagonal


def check_threads(threads: object) -> int:
    """None (every core available) or an int >= 1."""
    if threads is None:
        return available_threads()
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral):
        raise CrfTypeError(f"threads: need an int >= 1 or None, got {_describe(threads)}")
    if threads < 1:
        raise TsegError(f"threads: need an int >= 1 or None, got {threads}")
    return int(threads)


def check_device(device: object) -> str:
    """'cpu' or 'cuda' (whether CUDA can run here is :mod:`tseg.runtime.crf.cuda.device`'s check)."""
    if not isinstance(device, str):
        raise CrfTypeError(f"device: need one of {', '.join(map(repr, DEVICES))}, got "
                           f"{_describe(device)}", parameter="device")
    if device not in DEVICES:
        raise TsegError(f"device: need one of {', '.join(map(repr, DEVICES))}, got {device!r}",
                        parameter="device")
    return device


def check_crf_settings(image: object, *, gaussian_sxy: object, gaussian_compat: object,
                       bilateral_sxy: object, bilateral_srgb: object,
                       bilateral_compat: object) -> tuple:
    """What a DenseCRF (on any device) checks before any work: the image, the kernel
    widths, the compatibilities' shapes (their class count is checked at inference).

    Returns:
        The (Gaussian, bilateral) compatibilities as copies (a scalar, or a float32
        array): a caller mutating its array later must not change the CRF.

    Raises:
        TsegError: naming the bad parameter.
    """
    check_image(image)
    for name, value in (("gaussian_sxy", gaussian_sxy), ("bilateral_sxy", bilateral_sxy),
                        ("bilateral_srgb", bilateral_srgb)):
        check_positive(name, value)
    check_compat("gaussian_compat", gaussian_compat, None)
    check_compat("bilateral_compat", bilateral_compat, None)
    return tuple(c if np.isscalar(c) else np.array(c, np.float32) for c in (gaussian_compat, bilateral_compat))
