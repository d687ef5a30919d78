"""One PySyncObj 0.3.17 node for bench/bench_deploy.py (run as a subprocess).

Usage: python bench/_pysyncobj_node.py ID PORT0,PORT1,PORT2 [--no-batch] [--load WORKLOAD N]

A replicated dict with ``set(key, value)``.  With ``--load`` (given to every
node), the node that leads once the cluster has a leader runs the measurement
and prints one JSON line; the others print nothing.  PySyncObj has no separate
client, and a call made on a follower is forwarded to the leader: running the
load on the leader is the most favourable place for it.  ``burst``: N
asynchronous sets, timed until every callback ran (or WAIT seconds passed),
counting the sets that failed; ``sequential``: N synchronous sets, each timed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated

WAIT = 120.0  # seconds a burst may take before what is left is counted as lost


class KV(SyncObj):  # type: ignore[misc]
    def __init__(self, me: str, others: list[str], conf: SyncObjConf) -> None:
        super().__init__(me, others, conf=conf)
        self.data: dict[str, str] = {}

    @replicated  # type: ignore[misc]
    def set(self, key: str, value: str) -> None:
        self.data[key] = value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("id", type=int)
    parser.add_argument("ports")
    parser.add_argument("--no-batch", action="store_true")
    parser.add_argument("--load", nargs=2, metavar=("WORKLOAD", "N"))
    args = parser.parse_args()
    ports = [int(p) for p in args.ports.split(",")]
    addresses = [f"127.0.0.1:{p}" for p in ports]
    conf = SyncObjConf(appendEntriesUseBatch=not args.no_batch, dynamicMembershipChange=False)
    node = KV(addresses[args.id], [a for k, a in enumerate(addresses) if k != args.id], conf)
    if args.load is None:
        while True:
            time.sleep(3600)
    deadline = time.monotonic() + 30
    while node._getLeader() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)
    if not node._isLeader():
        while True:  # a follower: the leader measures
            time.sleep(3600)
    workload, count = args.load[0], int(args.load[1])
    if workload == "burst":
        done = threading.Event()
        left = [count]
        failed = [0]
        lock = threading.Lock()

        def callback(result: object, error: object) -> None:
            with lock:
                left[0] -= 1
                if error != FAIL_REASON.SUCCESS:
                    failed[0] += 1
                if left[0] == 0:
                    done.set()

        t0 = time.perf_counter()
        for k in range(count):
            node.set(f"key{k}", f"value{k}", callback=callback)
        done.wait(WAIT)
        elapsed = time.perf_counter() - t0
        with lock:
            acknowledged = count - left[0] - failed[0]
            report = {"ops_per_s": acknowledged / elapsed, "failed": failed[0], "lost": left[0]}
        print(json.dumps(report))
    else:
        times = []
        for k in range(count):
            t0 = time.perf_counter()
            node.set(f"key{k}", f"value{k}", sync=True, timeout=10)
            times.append(time.perf_counter() - t0)
        times.sort()
        print(
            json.dumps(
                {
                    "p50_ms": statistics.median(times) * 1000,
                    "p99_ms": times[int(0.99 * (len(times) - 1))] * 1000,
                }
            )
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
