"""Limits measured inside this process: the codec, the filter function and the model alone."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from ..streaming.codec import Recording, decode_recording


def _cpu() -> float:
    # process-wide CPU (every thread: numba and BLAS pools included), not just this thread's
    return time.process_time()


def rate(fn: Callable[[np.ndarray], object], data: np.ndarray, batch: int, min_seconds: float) -> dict[str, float]:
    """Call ``fn`` on consecutive ``batch``-row slices of ``data`` for at least ``min_seconds``."""
    fn(data[:batch])  # warm caches and any lazy compilation outside the measurement
    n_rows = data.shape[0]
    done = 0
    start = 0
    wall0, cpu0 = time.perf_counter(), _cpu()
    while True:
        if start + batch > n_rows:
            start = 0
        fn(data[start:start + batch])
        start += batch
        done += batch
        wall = time.perf_counter() - wall0
        if wall >= min_seconds:
            break
    cpu = _cpu() - cpu0
    return {"records": done, "seconds": wall, "cpu_seconds": cpu,
            "records_per_s": done / wall, "records_per_cpu_s": done / cpu if cpu > 0 else float("nan")}


def batches(fn: Callable[[np.ndarray], object], data: np.ndarray, sizes: Sequence[int],
            min_seconds: float) -> dict[str, Any]:
    return {"batches": {str(b): rate(fn, data, b, min_seconds) for b in sizes}}


def codec_us(samples: np.ndarray, iterations: int) -> dict[str, float]:
    """Microseconds to encode and to decode one recording (best of three rounds, to shed noise)."""
    rec = Recording("bench-000000001", np.asarray(samples, dtype=np.float32), 125.0, "MI", 0, 1, 2)
    payload = rec.encode()

    def timed(fn: Callable[[], object]) -> float:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(iterations):
                fn()
            best = min(best, (time.perf_counter() - t0) / iterations * 1e6)
        return best

    encode = timed(rec.encode)
    decode = timed(lambda: decode_recording(payload))
    return {"encode_us": encode, "decode_us": decode, "encode_decode_us": encode + decode,
            "record_bytes": len(payload), "iterations": iterations}


def blas_limited(fn: Callable[[np.ndarray], object], threads: int) -> Callable[[np.ndarray], object]:
    """``fn`` run with the BLAS thread pools limited to ``threads`` (0: the library's default)."""
    from threadpoolctl import threadpool_limits

    def wrapped(x: np.ndarray) -> object:
        with threadpool_limits(threads or None, user_api="blas"):
            return fn(x)

    return wrapped


def profile_text(fn: Callable[[], object], repeat: int, depth_hint: int = 18) -> str:
    """A pyinstrument call tree of ``fn`` run ``repeat`` times (library frames collapsed)."""
    try:
        from pyinstrument import Profiler
    except ImportError:  # a test-extra dependency: the rest of the benchmark runs without it
        return "(pyinstrument is not installed: pip install pyinstrument for this profile)"

    profiler = Profiler(interval=0.001)
    profiler.start()
    for _ in range(repeat):
        fn()
    profiler.stop()
    text = profiler.output_text(unicode=True, color=False, show_all=False, short_mode=False)
    # the header banner is noise in a report: keep the tree
    body = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith(("_ ", "/"))]
    return "\n".join(body[:60])
