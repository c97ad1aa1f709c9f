"""aeon's univariate MiniRocket transform, compiled to release the interpreter lock while it runs.

aeon compiles its kernel without ``nogil``: the thread that calls it holds the lock through the
whole parallel loop, about half of a batch's processing, and every other thread of the classifier
waits for it: the loop's main thread committing the transaction while its worker processes the next
batch (:mod:`ppg_mi.streaming.loop`), the threads that bound its calls, the metrics server.
This module compiles the *same* Python function of aeon's, with aeon's options plus
``nogil``, under a name of its own so numba's cache keeps the two compilations apart: the features
are aeon's, bit for bit (a unit test compares them).
"""

from __future__ import annotations

import types
from functools import lru_cache
from typing import Any, Callable

import numpy as np
from numba import config as numba_config
from numba import njit

from .threads import numba_threads


def _renamed(func: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``func`` under another name (its code, globals and defaults): numba names its cache files
    after a function's qualified name, so this compilation does not overwrite aeon's."""
    copy = types.FunctionType(func.__code__, func.__globals__, name, func.__defaults__, func.__closure__)
    copy.__qualname__ = name
    copy.__kwdefaults__ = func.__kwdefaults__
    return copy


@lru_cache(maxsize=1)
def kernel() -> Callable[..., np.ndarray]:
    """aeon's ``_static_transform_uni`` compiled with ``nogil`` (once, on first use; cached by numba)."""
    from aeon.transformations.collection.convolution_based import _minirocket

    aeon_kernel = _minirocket._static_transform_uni
    # njit implies nopython (and warns when given it)
    options = {**{k: v for k, v in aeon_kernel.targetoptions.items() if k != "nopython"}, "nogil": True, "cache": True}
    return njit(**options)(_renamed(aeon_kernel.py_func, "_static_transform_uni_nogil"))


def minirocket_features(rocket: Any, x: np.ndarray) -> np.ndarray:
    """The features ``rocket.transform(x)`` returns, computed without holding the interpreter lock
    when ``rocket`` is a fitted univariate aeon ``MiniRocket``; any other transformer, or
    multivariate input, goes through its own ``transform``."""
    from aeon.transformations.collection.convolution_based import MiniRocket

    x = np.asarray(x, dtype=np.float32)
    # too short a series is left to aeon too, for its error message
    if type(rocket) is not MiniRocket or x.ndim != 3 or x.shape[1] != 1 or x.shape[-1] < 9 \
            or not hasattr(rocket, "parameters"):
        return np.asarray(rocket.transform(x), dtype=np.float32)
    threads = int(getattr(rocket, "_n_jobs", 1))
    with numba_threads(threads if threads >= 1 else numba_config.NUMBA_NUM_THREADS):  # aeon: < 1 is every CPU
        return kernel()(np.ascontiguousarray(x[:, 0, :]), rocket.parameters, MiniRocket._indices)
