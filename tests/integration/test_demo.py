"""`ppg-mi demo`, the README's first command, as a user runs it (against the session broker)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ppg_mi.config import Settings

RECORDS = 24


def _logs(tmp_path: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                     for p in sorted((tmp_path / "cache" / "demo-logs").glob("*.log")))


def test_demo_classifies_every_record_and_reconciles_each_stage(
        served_settings: Settings, tmp_path: Path) -> None:
    # a configured broker means the demo starts none; its logs go to this test's cache dir; metrics
    # port 0: each process binds a free one itself
    settings = served_settings.replace(cache_dir=str(tmp_path / "cache"), metrics_port=0)
    demo = subprocess.Popen(
        [sys.executable, "-m", "ppg_mi", "demo", "--records", str(RECORDS), "--rate", "0",
         "--no-dashboard", "--exit-when-done"],
        env={**os.environ, **settings.as_env()}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = demo.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        demo.send_signal(signal.SIGINT)  # the demo stops its child processes on Ctrl-C
        out, _ = demo.communicate(timeout=30)
        raise AssertionError(f"the demo did not finish within 240 s:\n{out}")
    assert demo.returncode == 0, f"{out}\n{_logs(tmp_path)}"
    assert "serving model" in out and "training" not in out, "the store's model is served, none trained"
    assert f"{RECORDS}/{RECORDS} recordings classified" in out, out
    for stage in ("filter", "classifier"):
        assert f"{stage}: in {RECORDS} = out {RECORDS} + dead letters 0" in out, out


def test_demo_stops_cleanly_on_ctrl_c_even_as_a_background_job(served_settings: Settings, tmp_path: Path) -> None:
    """SIGINT to the demo's process group, as Ctrl-C sends it, with SIGINT ignored at start as a shell
    leaves it for a background job: every process stops and the demo exits 0, reporting no failure."""
    settings = served_settings.replace(cache_dir=str(tmp_path / "cache"), metrics_port=0)
    demo = subprocess.Popen(
        [sys.executable, "-m", "ppg_mi", "demo", "--records", str(RECORDS), "--rate", "0", "--no-dashboard"],
        env={**os.environ, **settings.as_env()}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    lines: list[str] = []
    try:
        for line in demo.stdout:
            lines.append(line)
            if "the services keep running" in line:
                os.killpg(demo.pid, signal.SIGINT)
                break
        out = "".join(lines) + demo.communicate(timeout=60)[0]
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    assert "the services keep running" in out, f"{out}\n{_logs(tmp_path)}"
    assert demo.returncode == 0 and "stopping" in out and "exited with" not in out, f"{out}\n{_logs(tmp_path)}"
