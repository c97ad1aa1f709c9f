"""Pure arithmetic of the benchmark: percentiles, sustained rates, CPU over a window."""

from __future__ import annotations

from bisect import bisect_left
from typing import Sequence

import numpy as np


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
    """``{"p50": ..., "p95": ..., "p99": ...}`` (linear interpolation); empty input gives NaN."""
    if len(values) == 0:
        return {f"p{q:g}": float("nan") for q in qs}
    arr = np.asarray(values, dtype=float)
    return {f"p{q:g}": float(np.percentile(arr, q)) for q in qs}


def completions(timestamps: Sequence[float]) -> list[tuple[float, int]]:
    """(time, records) per distinct completion time, in time order.

    A stage stamps a whole micro-batch with one time, so completions come in steps.
    """
    steps: dict[float, int] = {}
    for t in timestamps:
        steps[t] = steps.get(t, 0) + 1
    return sorted(steps.items())


def steady_window(timestamps: Sequence[float], trim: float = 0.1) -> tuple[float, float, int]:
    """(start, end, records completed after start up to end) of the middle of a run.

    Start-up (consumers joining, caches warming) and the tail (the last partial batches)
    are not the sustained rate, so the window runs from the first completion step that
    reaches ``trim`` of the records to the last step that stays within ``1 - trim``.
    The records of the step at ``start`` are not counted: their work began before it.
    """
    steps = completions(timestamps)
    if len(steps) < 2:
        raise ValueError("a rate needs at least two distinct completion times")
    total = sum(n for _, n in steps)
    cumulative = []
    running = 0
    for _, n in steps:
        running += n
        cumulative.append(running)
    first = next(i for i, c in enumerate(cumulative) if c >= trim * total)
    last = max((i for i, c in enumerate(cumulative) if c <= (1 - trim) * total), default=len(steps) - 1)
    if last <= first:
        first, last = 0, len(steps) - 1
    inside = cumulative[last] - cumulative[first]
    return steps[first][0], steps[last][0], inside


def sustained_rate(timestamps: Sequence[float], trim: float = 0.1) -> float:
    """Records per second over the steady window of completion ``timestamps`` (seconds)."""
    lo, hi, inside = steady_window(timestamps, trim)
    return inside / (hi - lo)


def value_at(samples: Sequence[tuple[float, float]], t: float) -> float:
    """Linear interpolation of a (time, cumulative value) series at ``t``, clamped at the ends."""
    if not samples:
        raise ValueError("no samples")
    times = [s[0] for s in samples]
    i = bisect_left(times, t)
    if i == 0:
        return samples[0][1]
    if i >= len(samples):
        return samples[-1][1]
    (t0, v0), (t1, v1) = samples[i - 1], samples[i]
    if t1 == t0:
        return v1
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def delta_between(samples: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """Growth of a cumulative series (e.g. CPU seconds) between ``start`` and ``end``."""
    return value_at(samples, end) - value_at(samples, start)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or not denominator > 0:
        return None
    return numerator / denominator
