"""A killed stage's replacement (#18 items 7 and 12): how soon the output resumes, and exactly once.

In Kubernetes the filter and the classifier run as StatefulSets, so a killed pod's
replacement has the dead pod's name, hence its instance id and transactional id: its
``init_transactions`` aborts the transaction the dead process left open, so ``read_committed``
readers of the partitions it touched wait only for the dead member's session
(``PPG_MI_SESSION_TIMEOUT_MS``, 10 s) to end.  A replacement under a new name (a
Deployment, a process started elsewhere) still loses and doubles nothing; its readers wait
for the dead transaction's timeout (``transaction.timeout.ms``, 60 s) instead.

Each test runs the real services as OS processes against a real broker with a paced
producer running across the kill, and reads the victim's output topic as a downstream
reader would (``read_committed``), noting when each partition's records arrive.  The kill is made to leave an open transaction on every
output partition (:func:`leave_open_transaction`), so that every partition stalls until
that transaction is aborted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ppg_mi.config import Settings

from ..helpers import CommittedTail, PacedProducer, ServiceProcess, assert_exactly_once, endless_raw, wait_for

#: faulthandler: a crash of a service prints its Python stack into the service's log
SERVICE_ENV = {"PYTHONFAULTHANDLER": "1"}

#: Bound on "replacement Ready → every output partition has new committed records" under the
#: same name.  The replacement aborts the dead transaction at once (same transactional id); what
#: remains is the dead member's session (PPG_MI_SESSION_TIMEOUT_MS, 10 s, counted from before the
#: kill) and a rebalance.  Measured on this 2-core machine (docs/reliability.md): 0.9-5 s; 25-28 s
#: with the former 30 s session; 55 s under a new name (the dead transaction's 60 s timeout).
RESUME_BOUND_S = 15.0

ROLE = {"filter": "filter", "classifier": "classify"}


@pytest.fixture
def settings(served_settings: Settings) -> Settings:
    # small batches: many transactions, so the kill lands inside one
    return served_settings.replace(batch_max_records=16)


def start(settings: Settings, victim: str, name: str, log_dir: Path) -> ServiceProcess:
    return ServiceProcess(settings, ROLE[victim], log_dir=log_dir, name=name, env=SERVICE_ENV)


def consumed(service: ServiceProcess) -> float:
    return service.metric("ppg_mi_records_consumed_total")


def output_topic(settings: Settings, victim: str) -> str:
    return settings.topic_filtered if victim == "filter" else settings.topic_predictions


#: What a process killed inside a transaction leaves behind, made certain: it opens a transaction
#: under the victim's transactional id, writes a record to every output partition and dies by
#: SIGKILL.  (A real kill lands between two transactions as often as inside one.)
OPEN_TRANSACTION_THEN_DIE = """
import os, signal, sys
from confluent_kafka import Producer
from ppg_mi.config import Settings
from ppg_mi.streaming.clients import transactional_producer_config
role, topic, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
producer = Producer(transactional_producer_config(Settings.from_env(), role))
producer.init_transactions(30)
producer.begin_transaction()
for partition in range(partitions):
    producer.produce(topic, key=b"never-committed", value=b"", partition=partition)
assert producer.flush(30) == 0
os.kill(os.getpid(), signal.SIGKILL)
"""


def leave_open_transaction(settings: Settings, victim: str, instance_id: str, topic: str) -> None:
    """An open transaction of ``victim``'s transactional id on every partition of ``topic``, owner dead."""
    env = {**os.environ, **settings.as_env(), "PPG_MI_INSTANCE_ID": instance_id}
    done = subprocess.run([sys.executable, "-c", OPEN_TRANSACTION_THEN_DIE, victim, topic,
                           str(settings.topic_partitions)], env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]


def owns_every_partition(service: ServiceProcess, settings: Settings) -> bool:
    return service.metric("ppg_mi_assigned_partitions") == settings.topic_partitions


def run_kill_and_replace(settings: Settings, tmp_path: Path, victim: str, replacement_name: str | None,
                         resume_within: float) -> dict[str, float]:
    """Kill -9 ``victim`` mid-stream, start its replacement (the same name unless given), check the output.

    Returns the seconds from the kill to the replacement's readiness and from its readiness to
    every output partition having new committed records.
    """
    filt = start(settings, "filter", f"filter-{victim}", tmp_path)
    clf = start(settings, "classifier", f"classifier-{victim}", tmp_path)
    services = [filt, clf]
    tail = producer = None
    try:
        filt.wait_ready()
        clf.wait_ready()
        wait_for(lambda: owns_every_partition(filt, settings) and owns_every_partition(clf, settings), 60,
                 what="both stages to own every partition")
        target = filt if victim == "filter" else clf
        tail = CommittedTail(settings, output_topic(settings, victim))
        producer = PacedProducer(settings, endless_raw(f"replace-{victim}-{replacement_name or 'same'}"), rate=50)
        wait_for(lambda: consumed(target) >= 40, 90, what=f"the {victim} to commit some records")
        target.kill()  # SIGKILL: maybe an open transaction, produced but uncommitted records, no goodbye
        killed_at = time.monotonic()
        leave_open_transaction(settings, victim, target.name, output_topic(settings, victim))
        replacement = start(settings, victim, replacement_name or target.name, tmp_path)
        services.append(replacement)
        replacement.wait_ready()
        ready_at = time.monotonic()
        everywhere = set(range(tail.partitions))
        wait_for(lambda: tail.partitions_since(ready_at) == everywhere, resume_within, interval=0.05,
                 what=f"committed output on every partition of {output_topic(settings, victim)} after the "
                      f"replacement {replacement.name} was ready")
        resumed_at = time.monotonic()
        figures = {"kill_to_ready_s": ready_at - killed_at, "ready_to_resumed_s": resumed_at - ready_at,
                   "ready_to_first_output_s": (tail.first_since(ready_at) or resumed_at) - ready_at}
        assert producer.running, "the kill and the recovery must happen mid-stream"
        wait_for(lambda: consumed(replacement) >= 30, 60, what="the replacement to go on committing")
        producer.stop()
        ids = producer.join()
        assert_exactly_once(settings, settings.topic_filtered, ids)
        assert_exactly_once(settings, settings.topic_predictions, ids)
        print(f"\n{victim} replaced by {replacement.name}: {figures}; {len(ids)} sent")
        return figures
    finally:
        if producer is not None:
            producer.stop()
        if tail is not None:
            tail.close()
        for s in services:
            s.close()


@pytest.mark.parametrize("victim", ["filter", "classifier"])
def test_replacement_under_the_same_name_resumes_within_seconds_exactly_once(
        settings: Settings, tmp_path: Path, victim: str) -> None:
    run_kill_and_replace(settings, tmp_path, victim, None, RESUME_BOUND_S)


def test_replacement_under_a_new_name_loses_and_doubles_nothing(settings: Settings, tmp_path: Path) -> None:
    """Nothing aborts the dead transaction here: its partitions wait for the transaction timeout."""
    deadline = settings.transaction_timeout_ms / 1000 + settings.session_timeout_ms / 1000 + 60
    run_kill_and_replace(settings, tmp_path, "classifier", "classifier-new-name", deadline)

