"""The precisions tseg-export writes besides FP32: FP16 (:mod:`tseg.export.fp16`) and INT8 (:mod:`tseg.export.int8`)."""

from __future__ import annotations

from tseg.export.fp16 import convert_fp16
from tseg.export.int8 import (
    CALIB_METHODS,
    CPU_INT8,
    DEFAULT_CALIB_METHOD,
    DEFAULT_KEEP_FLOAT,
    TENSORRT_INT8,
    Int8Settings,
    quantize_int8,
)

__all__ = [
    "CALIB_METHODS",
    "CPU_INT8",
    "DEFAULT_CALIB_METHOD",
    "DEFAULT_KEEP_FLOAT",
    "TENSORRT_INT8",
    "Int8Settings",
    "convert_fp16",
    "quantize_int8",
]
