"""Cost of a dashboard refresh with a full state: ``python -m ppg_mi.dashboard.bench``.

Fills the state with ``--records`` predictions (50,000 by default, the default
``PPG_MI_DASHBOARD_MAX_RECORDS``), then runs the real page script through Streamlit's
``AppTest`` several times and reports the server time of one refresh (the whole script,
i.e. more than the live fragment alone) and of the live fragment as the page measures it.
It then streams ``--extra`` more distinct predictions through the same state and reports
the process's resident memory before and after: the ring keeps it flat.  No broker is
needed: the reader thread is not started.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import psutil

from ..streaming.codec import Prediction


def _predictions(start: int, n: int, seed: int) -> list[Prediction]:
    rng = np.random.default_rng(seed)
    base = time.time_ns() // 1000 - (start + n) * 1000
    out = []
    for i in range(start, start + n):
        true = int(rng.integers(0, 2))
        pred = true if rng.random() < 0.9 else 1 - true
        score = float(rng.random())
        t = base + i * 1000
        out.append(Prediction(f"bench-{i}", ("Normal", "MI")[pred], {"Normal": 1 - score, "MI": score},
                              f"bench-v{i // 20000}", ("Normal", "MI")[true], i % 4, t - 60_000, t - 30_000, t))
    return out


def run(records: int = 50_000, extra: int = 100_000, repeats: int = 7) -> dict[str, float]:
    os.environ.update({"PPG_MI_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "PPG_MI_METRICS_PORT": "0",
                       "PPG_MI_DASHBOARD_MAX_RECORDS": str(records), "PPG_MI_LOG_LEVEL": "WARNING"})
    from streamlit.testing.v1 import AppTest

    from ..config import Settings
    from . import APP_SCRIPT
    from . import runtime as dashboard_runtime

    runtime = dashboard_runtime.shared(Settings.from_env(), start_reader=False)
    for chunk in range(0, records, 10_000):
        runtime.store.add_many(_predictions(chunk, min(10_000, records - chunk), chunk), time.time())
    newest = runtime.store.frame()["record_id"].iloc[-1]
    wave = np.sin(np.linspace(0, 60, 2000)).astype(np.float32)
    runtime.raw.put(newest, wave * 100, 125.0)
    runtime.filtered.put(newest, wave, 125.0)

    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=120)
    at.run()  # first run: imports and Streamlit's own warm-up, not a refresh
    script_s, fragment_ms = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        at.run()
        script_s.append(time.perf_counter() - started)
        caption = next(c.value for c in at.caption if "page computed in" in c.value)
        fragment_ms.append(float(caption.rsplit("in ", 1)[1].split(" ms")[0]))
    assert not at.exception, at.exception

    process = psutil.Process()
    rss_full = process.memory_info().rss
    for chunk in range(records, records + extra, 10_000):
        runtime.store.add_many(_predictions(chunk, 10_000, chunk), time.time())
    at.run()
    rss_after = process.memory_info().rss
    dashboard_runtime.stop_all()
    return {
        "records_in_state": len(runtime.store),
        "refresh_script_median_s": round(statistics.median(script_s), 3),
        "refresh_script_max_s": round(max(script_s), 3),
        "live_fragment_median_ms": statistics.median(fragment_ms),
        "rss_mb_at_full_state": round(rss_full / 2**20, 1),
        f"rss_mb_after_{extra}_more": round(rss_after / 2**20, 1),
        "evicted": runtime.store.evicted,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--extra", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(json.dumps(run(args.records, args.extra, args.repeats), indent=2))


if __name__ == "__main__":
    main()
