"""Reproduce librdkafka's crash in the Admin API's consumer-group offset fetch on a fresh broker.

librdkafka's ``rd_kafka_handle_OffsetFetch`` asks the client's consumer group to look up its
coordinator again when the broker answers ``NOT_COORDINATOR`` or ``COORDINATOR_NOT_AVAILABLE``
(``rd_kafka_cgrp_op(rk->rk_cgrp, ...)``).  An Admin client has no consumer group, ``rk_cgrp``
is NULL, and the process dies with SIGSEGV (``rd_kafka_cgrp_op`` <- ``rd_kafka_handle_OffsetFetch``
<- ``rd_kafka_ListConsumerGroupOffsetsResponse_parse``; confluentinc/librdkafka#5040).  A
freshly started broker gives those answers while it creates ``__consumer_offsets`` and loads
the group coordinator, so each round starts a new single-node broker and, at once, a few
processes that ask for the committed offsets of new groups every 10 ms for 20 s.

    .venv/bin/python scripts/repro/offset_fetch_segv.py --rounds 10

Prints each round's exit statuses (-11 is SIGSEGV) and keeps the directory of a round that
crashed (its core file, with ``ulimit -c unlimited``, gives the stack above in gdb).  ppg-mi
never calls this API: the lag monitor reads committed offsets with a consumer that never
joins its group (``observability/lag.py``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ppg_mi.config import Settings
from ppg_mi.local.kafka import LocalBroker, free_port

CLIENT = """
import sys, time
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
until = time.monotonic() + float(sys.argv[2])
n = 0
while time.monotonic() < until:
    n += 1
    try:
        admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(f"repro-{sys.argv[3]}-{n}")])
    except Exception:
        pass
    time.sleep(0.01)
"""


def one_round(index: int, processes: int, seconds: float, keep: Path) -> list[int]:
    workdir = Path(tempfile.mkdtemp(prefix=f"round{index}-", dir=keep))
    port = free_port()
    settings = Settings.from_env({}, kafka_local_heap="320m", kafka_local_port=port)
    broker = LocalBroker(settings, workdir / "broker", "127.0.0.1", port)
    broker.start()
    try:
        clients = [subprocess.Popen(["bash", "-c", 'ulimit -c unlimited; exec "$@"', "client",
                                     sys.executable, "-c", CLIENT, broker.bootstrap, str(seconds), str(k)],
                                    cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for k in range(processes)]
        codes = [c.wait(seconds + 60) for c in clients]
    finally:
        broker.stop(kill=True)
    if all(code == 0 for code in codes):
        shutil.rmtree(workdir, ignore_errors=True)
    return codes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="fresh brokers to start (default 10)")
    parser.add_argument("--processes", type=int, default=3, help="Admin clients per round (default 3)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each client asks (default 20)")
    parser.add_argument("--keep", type=Path, default=Path(tempfile.gettempdir()) / "ppg-mi-offset-fetch-repro",
                        help="where crashed rounds are kept")
    args = parser.parse_args()
    args.keep.mkdir(parents=True, exist_ok=True)
    crashed = 0
    started = time.monotonic()
    for index in range(args.rounds):
        codes = one_round(index, args.processes, args.seconds, args.keep)
        crashed += any(code == -11 for code in codes)
        print(f"round {index + 1}/{args.rounds}: exit statuses {codes}", flush=True)
    print(f"{crashed} of {args.rounds} rounds had a SIGSEGV ({time.monotonic() - started:.0f} s)")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
