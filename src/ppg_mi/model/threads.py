"""How many threads a fitted model's transform uses, and how many CPUs a process may use.

aeon's convolution transforms run their kernels in a numba ``prange`` over the recordings of a
batch, with the thread count they were fitted with (``n_jobs``, 1 in training so that
selection measures one thread).  A classifier serving batches can use more: the count is set on
the loaded estimator, not stored in the checkpoint.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from numba import config as numba_config
from numba import get_num_threads, set_num_threads
from sklearn.base import BaseEstimator


def _estimators(obj: Any, seen: set[int]) -> Iterator[BaseEstimator]:
    """Every estimator reachable from ``obj``: pipeline steps and fitted attributes (``rocket_``) alike."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, BaseEstimator):
        yield obj
        for value in vars(obj).values():
            yield from _estimators(value, seen)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _estimators(value, seen)
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _estimators(value, seen)


def set_transform_threads(estimator: Any, threads: int) -> int:
    """Run every parallel transform inside ``estimator`` on ``threads`` threads; returns how many
    transforms were set (0: the model has none that runs in parallel).

    aeon resolves ``n_jobs`` into ``_n_jobs`` when it fits and reads only the latter when it
    transforms, so both are set.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    count = 0
    for est in _estimators(estimator, set()):
        if hasattr(est, "_n_jobs"):
            est._n_jobs = threads
            if hasattr(est, "n_jobs"):
                est.n_jobs = threads
            count += 1
    return count


@contextmanager
def numba_threads(threads: int) -> Iterator[None]:
    """Run the numba ``prange`` loops called inside on ``threads`` threads (capped by numba's pool),
    as aeon's transforms do with their ``_n_jobs``; the previous count is restored after."""
    previous = get_num_threads()
    set_num_threads(max(1, min(int(threads), numba_config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        set_num_threads(previous)


def usable_cpus(cgroup_root: str | Path = "/sys/fs/cgroup") -> int:
    """The CPUs this process may use: its CPU affinity, capped by its cgroup's CPU quota (a pod's
    CPU limit), rounded up; at least 1."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_cpu_quota(Path(cgroup_root))
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota - 1e-9)))
    return max(1, cpus)


def _cgroup_cpu_quota(root: Path) -> float | None:
    """CPUs of quota per period: cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``; None when unlimited
    or unreadable."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


__all__ = ["set_transform_threads", "usable_cpus"]
