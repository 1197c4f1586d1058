# SPDX-License-Identifier: Apache-2.0
"""Array descriptors for grpo._C: (data pointer, shape, strides in elements, dtype code).

Zero-copy: the C++ side reads the caller's memory through the pointer and the strides, whatever
the layout (transposed, sliced, broadcast with stride 0). numpy strides are converted from bytes
to elements; torch strides already are elements.
"""
from __future__ import annotations

import numpy as np

from ._C import GrpoError

F32, F64, BF16, F16, I64, I32, U8 = range(7)

_NP_CODES = {
    np.dtype(np.float32): F32,
    np.dtype(np.float64): F64,
    np.dtype(np.float16): F16,
    np.dtype(np.int64): I64,
    np.dtype(np.int32): I32,
    np.dtype(np.uint8): U8,
    np.dtype(np.bool_): U8,
}


def np_desc(a: np.ndarray):
    """Descriptor of a numpy array (any strides; byte strides must be element multiples)."""
    code = _NP_CODES.get(a.dtype)
    if code is None:
        raise GrpoError(f"[grpo.bad_dtype] numpy dtype {a.dtype} is not supported here")
    item = a.dtype.itemsize
    if any(s % item for s in a.strides):
        a = np.ascontiguousarray(a)
    return (a.ctypes.data, a.shape, tuple(s // item for s in a.strides), code)


def as_np(x, dtype) -> np.ndarray:
    """x (numpy array, sequence or scalar) as a numpy array of `dtype` (no copy when it is one)."""
    return np.asarray(x, dtype=dtype)
