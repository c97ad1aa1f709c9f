"""Exactly once under crashes, restarts, rebalances, a broker restart and fencing (#4).

Every test runs the real services as OS processes against a real broker, streams input
with a paced producer that keeps sending until the fault and the recovery are over (so
the fault lands mid-stream whatever the machine's speed), and then checks the
``read_committed`` output: every sent record id exactly once, no other id.  Rates are
low (a few hundred records per test) so each test stays within about a minute.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ppg_mi.config import Settings
from ppg_mi.streaming.topics import ensure_topics

from ..helpers import (PacedProducer, ServiceProcess, assert_exactly_once, endless_raw, own_broker,
                       synthetic_raw, wait_for)

#: faulthandler: a crash of a service prints its Python stack into the service's log
SERVICE_ENV = {"PYTHONFAULTHANDLER": "1"}


@pytest.fixture
def settings(served_settings: Settings) -> Settings:
    # small batches: many transactions per test, so a fault lands between and inside them
    return served_settings.replace(batch_max_records=16)


def start(settings: Settings, role: str, name: str, log_dir: Path) -> ServiceProcess:
    return ServiceProcess(settings, role, log_dir=log_dir, name=name, env=SERVICE_ENV)


def consumed(service: ServiceProcess) -> float:
    return service.metric("ppg_mi_records_consumed_total")


def stop_all(*services: ServiceProcess) -> None:
    for s in services:
        s.close()


@pytest.mark.parametrize("victim", ["filter", "classifier"])
def test_kill_9_mid_stream_then_restart_loses_and_doubles_nothing(
        settings: Settings, tmp_path: Path, victim: str) -> None:
    role = "filter" if victim == "filter" else "classify"
    filt = start(settings, "filter", "filter-a", tmp_path)
    clf = start(settings, "classify", "classifier-a", tmp_path)
    try:
        filt.wait_ready()
        clf.wait_ready()
        producer = PacedProducer(settings, endless_raw(f"kill-{victim}"), rate=50)
        target = filt if victim == "filter" else clf
        done_at_kill = wait_for(lambda: consumed(target) >= 30 and consumed(target), 90,
                                what=f"the {victim} to commit some records")
        target.kill()  # SIGKILL: an open transaction, produced but uncommitted records, no goodbye
        assert producer.running, "the kill must land mid-stream"
        # the same instance id: init_transactions aborts what the dead process left open
        restarted = start(settings, role, target.name, tmp_path)
        if victim == "filter":
            filt = restarted
        else:
            clf = restarted
        wait_for(lambda: consumed(restarted) >= 30, 90, what=f"the restarted {victim} to commit records")
        producer.stop()
        ids = producer.join()
        assert_exactly_once(settings, settings.topic_filtered, ids)
        assert_exactly_once(settings, settings.topic_predictions, ids)
        print(f"\n{victim} killed after committing {done_at_kill:.0f} records; {len(ids)} sent in all")
    finally:
        stop_all(filt, clf)


def test_classifier_scaled_1_3_1_mid_stream(settings: Settings, tmp_path: Path) -> None:
    filt = start(settings, "filter", "filter-s", tmp_path)
    c1 = start(settings, "classify", "classifier-1", tmp_path)
    extra: list[ServiceProcess] = []
    try:
        filt.wait_ready()
        c1.wait_ready()
        producer = PacedProducer(settings, endless_raw("scale"), rate=30)
        wait_for(lambda: consumed(c1) > 0, 90, what="classifier-1 to commit")
        # scale up to 3, as `kubectl scale --replicas=3` would, while records flow
        extra = [start(settings, "classify", f"classifier-{i}", tmp_path) for i in (2, 3)]
        for c in extra:
            c.wait_ready()
        group = [c1, *extra]
        # each of the three owns one of the 3 partitions and commits from it
        wait_for(lambda: all(c.metric("ppg_mi_assigned_partitions") == 1 for c in group), 60,
                 what="the 3 partitions spread over 3 classifiers")
        before = [consumed(c) for c in group]
        wait_for(lambda: all(consumed(c) > b for c, b in zip(group, before)), 60,
                 what="every classifier to commit records from its partition")
        shared = [consumed(c) for c in group]
        # scale back down to 1: SIGTERM, graceful, exit 0; their partitions return to classifier-1
        for c in extra:
            assert c.terminate(timeout=10) == 0, c.log()
        wait_for(lambda: c1.metric("ppg_mi_assigned_partitions") == 3, 60,
                 what="classifier-1 to own every partition again")
        after = consumed(c1)
        wait_for(lambda: consumed(c1) > after, 60, what="classifier-1 alone to go on committing")
        assert producer.running, "scaling up and down must happen mid-stream"
        producer.stop()
        ids = producer.join()
        assert_exactly_once(settings, settings.topic_predictions, ids)
        print(f"\ncommitted per classifier once 3 ran: {shared}; {len(ids)} sent in all")
    finally:
        stop_all(filt, c1, *extra)


def test_sigterm_mid_stream_exits_0_within_10_s_and_resumes(settings: Settings, tmp_path: Path) -> None:
    filt = start(settings, "filter", "filter-t", tmp_path)
    clf = start(settings, "classify", "classifier-t", tmp_path)
    try:
        filt.wait_ready()
        clf.wait_ready()
        producer = PacedProducer(settings, endless_raw("term"), rate=40)
        wait_for(lambda: consumed(clf) >= 20, 90, what="the classifier to commit some records")
        # SIGTERM while records flow: finish or abort the open transaction, leave the group, exit 0
        assert clf.terminate(timeout=10) == 0, clf.log()
        assert filt.terminate(timeout=10) == 0, filt.log()
        assert producer.running, "the shutdown must happen mid-stream"
        for s in (filt, clf):
            log = s.log()
            assert '"stage stopped"' in log and '"partitions revoked"' in log, log
        filt = start(settings, "filter", "filter-t", tmp_path)
        clf = start(settings, "classify", "classifier-t", tmp_path)
        wait_for(lambda: consumed(clf) >= 20, 90, what="the restarted classifier to commit records")
        producer.stop()
        ids = producer.join()
        assert_exactly_once(settings, settings.topic_filtered, ids)
        assert_exactly_once(settings, settings.topic_predictions, ids)
    finally:
        stop_all(filt, clf)


def test_sigint_exits_0(settings: Settings, tmp_path: Path) -> None:
    import signal

    filt = start(settings, "filter", "filter-i", tmp_path)
    try:
        filt.wait_ready()
        wait_for(lambda: filt.metric("ppg_mi_assigned_partitions") == 3, 60, what="the filter to join")
        filt.proc.send_signal(signal.SIGINT)
        assert filt.proc.wait(10) == 0, filt.log()
        assert '"signal": "SIGINT"' in filt.log()
    finally:
        stop_all(filt)


#: log lines of the loop's recovery from a failed transactional call (loop.py)
RECOVERY_LINES = ('"transaction failed; aborting and rewinding"',
                  '"transactional call stuck beyond its timeout; replacing the producer"',
                  '"producer failed fatally; replacing the producer"')


def failed_transactions(service: ServiceProcess) -> float:
    return sum(service.metric("ppg_mi_transactions_total", outcome=o) for o in ("aborted", "stuck"))


def test_broker_restart_mid_stream_services_recover(settings: Settings, tmp_path: Path) -> None:
    """The same processes carry on after the broker comes back: no supervisor restarts them.

    The broker stops while the filter holds a transaction provably open (its outputs delivered,
    its offsets not yet sent: the test fault PPG_MI_FAULT_HOLD_TRANSACTION_FILE), and comes back
    only once the filter's next transactional call has failed: the recovery path runs every time,
    not only when the restart happens to land on a call (#18 item 12)."""
    broker = own_broker(tmp_path)
    hold = tmp_path / "hold-transaction"
    try:
        own = settings.replace(kafka_bootstrap_servers=broker.bootstrap)
        ensure_topics(own)
        filt = ServiceProcess(own, "filter", log_dir=tmp_path, name="filter-b",
                              env={**SERVICE_ENV, "PPG_MI_FAULT_HOLD_TRANSACTION_FILE": str(hold)})
        clf = start(own, "classify", "classifier-b", tmp_path)
        producer = None
        try:
            filt.wait_ready()
            clf.wait_ready()
            producer = PacedProducer(own, endless_raw("broker"), rate=30)
            wait_for(lambda: consumed(clf) >= 20, 90, what="the classifier to commit some records")
            assert failed_transactions(filt) == 0
            hold.touch()  # the filter holds its next transaction open ...
            wait_for(lambda: hold.with_name(hold.name + ".held").exists(), 60,
                     what="the filter to hold a transaction open")
            broker.stop()  # ... while the whole cluster goes away
            hold.unlink()  # the filter goes on: send_offsets_to_transaction meets no broker

            def recovery_began() -> bool:
                log = filt.log_path.read_text(errors="replace")
                return any(line in log for line in RECOVERY_LINES)

            wait_for(recovery_began, 60, what="the filter's transactional call to fail")
            broker.start()  # ... and comes back on the same storage
            before = {s.name: consumed(s) for s in (filt, clf)}

            def both_committed_since_restart() -> bool:
                for s in (filt, clf):
                    assert s.proc.poll() is None, f"{s.name} exited {s.proc.returncode}:\n{s.log()[-3000:]}"
                return all(consumed(s) - before[s.name] >= 20 for s in (filt, clf))

            wait_for(both_committed_since_restart, 180, what="both stages to commit after the restart")
            producer.stop()
            ids = producer.join()
            # raw first: a record missing there was lost by the broker or the producer, not a stage
            assert_exactly_once(own, own.topic_raw, ids)
            assert_exactly_once(own, own.topic_filtered, ids)
            assert_exactly_once(own, own.topic_predictions, ids)
            assert failed_transactions(filt) >= 1, "the held transaction failed and was ended (aborted or stuck)"
            replaced = sum(s.log_path.read_text(errors="replace").count("replacing the producer") for s in (filt, clf))
            print(f"\nbroker restarted mid-stream; {len(ids)} sent; the filter's failed transactions: "
                  f"{failed_transactions(filt):.0f}; producers replaced in-process: {replaced}")
        finally:
            if producer is not None:
                producer.stop()
            stop_all(filt, clf)
    except BaseException:
        broker.stop()  # the storage stays in pytest's tmp dir (the last three sessions are kept)
        print(f"\nbroker storage kept for inspection: {broker.state_dir}")
        raise
    broker.destroy()


def test_fenced_process_exits_non_zero_and_its_successor_finishes(settings: Settings, tmp_path: Path) -> None:
    records = synthetic_raw(120, "fence", samples=settings.samples_per_record)
    ids = [k.decode() for k, _ in records]
    old = start(settings, "filter", "filter-same-id", tmp_path)
    new = None
    try:
        wait_for(lambda: old.metric("ppg_mi_assigned_partitions") == 3, 90, what="the first filter to join")
        # a second process with the same transactional id (e.g. a zombie's replacement) fences the first
        new = start(settings, "filter", "filter-same-id", tmp_path)
        wait_for(lambda: new.metric("ppg_mi_assigned_partitions") >= 1, 90, what="the second filter to join")
        producer = PacedProducer(settings, records, rate=60)
        wait_for(lambda: old.proc.poll() is not None, 90, what="the fenced filter to exit")
        assert old.proc.returncode != 0
        assert "fenced: another process took over this transactional id" in old.log()
        producer.join()
        assert_exactly_once(settings, settings.topic_filtered, ids)
        assert new.proc.poll() is None
    finally:
        stop_all(old, *([new] if new else []))


def test_sigterm_during_model_load_exits_0(settings: Settings, tmp_path: Path) -> None:
    """A pod stopped while it starts (scale-down during a rollout) exits 0 at once, nothing in flight."""
    clf = start(settings, "classify", "classifier-early", tmp_path)
    try:
        # the endpoints come up before the model loads; stop the process as soon as they answer
        wait_for(lambda: '"endpoints ready"' in clf.log(), 60, interval=0.05, what="the classifier's endpoints")
        assert clf.terminate(timeout=10) == 0, clf.log()
        assert '"shutdown requested"' in clf.log()
    finally:
        stop_all(clf)
