"""Deployment figures (the deployment issue): prints them; asserts nothing.

Three `trioraft serve` processes on 127.0.0.1 with mutual TLS, and the same
measures for PySyncObj 0.3.17 (three processes, loopback) run by this script
when it is installed (`pip install pysyncobj==0.3.17`).  PySyncObj does not
fsync and pickles on the wire; it has no separate client, so its load runs
inside node 0's process and is forwarded to the leader.

(a) burst throughput: CLIENTS clients each putting their share of N keys in
    batches of WINDOW requests (one batch in flight per client), TLS on, with
    fsync and without [targets: 50,000 and 100,000 ops/s]; PySyncObj: N
    asynchronous sets, with its batching and without;
(b) one client, sequential puts, TLS and fsync on: p50 and p99 [target p50 under
    3 ms]; PySyncObj: synchronous sets;
(c) failover: a client putting continuously; the leader is killed with
    SIGKILL; the time until a put is acknowledged again, over RUNS kills
    [target: median under 0.8 s, max under 2 s].

Usage: python bench/bench_deploy.py [--ops 100000] [--clients 8] [--window 2048]
       [--sequential 1000] [--failovers 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from _common import ROOT, percentile
from trioraft.kv.client import KVClient, Unavailable
from trioraft.kv.local import LocalCluster, free_ports
from trioraft.net.tls import TLSFiles
from trioraft.net.transport import NetConfig

HERE = Path(__file__).resolve().parent


def client_net(cluster: LocalCluster) -> NetConfig:
    certs = cluster.directory / "certs"
    files = TLSFiles(ca=certs / "ca.pem", cert=certs / "client.pem", key=certs / "client.key")
    return NetConfig(tls=files)


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix=".bench-deploy-", dir=ROOT))


# ---------------------------------------------------------------- trioraft


def trioraft_burst(ops: int, clients: int, window: int, fsync: bool) -> float:
    directory = scratch()
    try:
        extra = ["--quiet"] + ([] if fsync else ["--no-fsync"])
        with LocalCluster(directory, extra=extra) as cluster:
            cluster.start_all(trace=False)
            cluster.wait_for_leader()
            net = client_net(cluster)
            share = ops // clients

            async def one(c: int) -> None:
                async with KVClient(cluster.addresses, net, window=window) as kv:
                    requests = [("put", f"c{c}k{k}", f"v{k}") for k in range(share)]
                    replies = await kv.batch(requests)
                    assert all(r.status == "ok" for r in replies)

            async def main() -> float:
                t0 = time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for c in range(clients):
                        nursery.start_soon(one, c)
                return share * clients / (time.perf_counter() - t0)

            result: float = trio.run(main)
            return result
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def trioraft_sequential(count: int) -> tuple[float, float]:
    directory = scratch()
    try:
        with LocalCluster(directory, extra=["--quiet"]) as cluster:
            cluster.start_all(trace=False)
            cluster.wait_for_leader()
            net = client_net(cluster)
            times: list[float] = []

            async def main() -> None:
                async with KVClient(cluster.addresses, net) as kv:
                    await kv.put("warm", "up")
                    for k in range(count):
                        t0 = time.perf_counter()
                        await kv.put(f"k{k}", f"v{k}")
                        times.append(time.perf_counter() - t0)

            trio.run(main)
            return statistics.median(times) * 1000, percentile(times, 0.99) * 1000
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def trioraft_failover(kills: int) -> list[float]:
    directory = scratch()
    gaps: list[float] = []
    try:
        with LocalCluster(directory, extra=["--quiet"]) as cluster:
            cluster.start_all(trace=False)
            net = client_net(cluster)
            for _ in range(kills):
                leader = cluster.wait_for_leader()
                gaps.append(_one_failover(cluster, net, leader))
                cluster.start(leader, trace=False)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return gaps


def _one_failover(cluster: LocalCluster, net: NetConfig, leader: int) -> float:
    async def main() -> float:
        async with KVClient(cluster.addresses, net, rpc_timeout=1.0, timeout=30) as kv:
            for k in range(20):  # the client knows the leader and is busy
                await kv.put(f"warm{k}", "x")
            killed = trio.current_time()
            await trio.to_thread.run_sync(cluster.kill, leader)
            while True:
                try:
                    await kv.put("after", "x")
                except Unavailable:
                    continue
                return trio.current_time() - killed

    result: float = trio.run(main)
    return result


# ---------------------------------------------------------------- PySyncObj


def pysyncobj_available() -> bool:
    try:
        import pysyncobj  # noqa: F401
    except ImportError:
        return False
    return True


def pysyncobj_run(workload: str, count: int, batching: bool) -> dict[str, Any]:
    """Three PySyncObj processes; the one that leads runs ``workload`` and prints
    its figures (see ``_pysyncobj_node.py``).  Every process is killed after."""
    ports = ",".join(map(str, free_ports(3)))
    script = str(HERE / "_pysyncobj_node.py")
    flags = ([] if batching else ["--no-batch"]) + ["--load", workload, str(count)]
    nodes = [
        subprocess.Popen(
            [sys.executable, script, str(i), ports, *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # its own tracebacks and warnings
            text=True,
        )
        for i in range(3)
    ]
    try:
        deadline = time.monotonic() + 300
        with selectors.DefaultSelector() as selector:
            for node in nodes:
                assert node.stdout is not None
                selector.register(node.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    line = key.fileobj.readline()  # type: ignore[union-attr]
                    if line.strip():
                        result: dict[str, Any] = json.loads(line)
                        return result
                    selector.unregister(key.fileobj)  # that node exited
                if not selector.get_map():
                    break
        return {"error": "no PySyncObj node reported (no leader, or every node exited)"}
    finally:
        for node in nodes:
            node.kill()
            node.wait(timeout=10)


# ---------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--window", type=int, default=2048)
    parser.add_argument("--sequential", type=int, default=1000)
    parser.add_argument("--failovers", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    have_pysyncobj = pysyncobj_available()
    if not have_pysyncobj:
        print("(PySyncObj not installed: pip install pysyncobj==0.3.17 to compare)")

    for fsync in (True, False):
        rates = [
            trioraft_burst(args.ops, args.clients, args.window, fsync) for _ in range(args.runs)
        ]
        target = "50,000" if fsync else "100,000"
        print(
            f"(a) burst, TLS on, fsync {'on ' if fsync else 'off'}: trioraft median "
            f"{statistics.median(rates):,.0f} ops/s (min {min(rates):,.0f}, max {max(rates):,.0f}; "
            f"{args.clients} clients, batches of {args.window})  [target >= {target}]"
        )
    if have_pysyncobj:
        for batching in (True, False):
            results = [pysyncobj_run("burst", args.ops, batching) for _ in range(args.runs)]
            rates = [r.get("ops_per_s", 0.0) for r in results]
            problems = "; ".join(
                r["error"] if "error" in r else f"{r['failed']} failed, {r['lost']} unanswered"
                for r in results
                if r.get("error") or r.get("failed") or r.get("lost")
            )
            print(
                f"(a) burst, PySyncObj 0.3.17 {'with' if batching else 'without'} batching "
                f"(no fsync, no TLS, load on the leader): median "
                f"{statistics.median(rates):,.0f} ops/s acknowledged"
                + (f" (runs with sets not acknowledged: {problems})" if problems else "")
            )

    p50s, p99s = zip(*(trioraft_sequential(args.sequential) for _ in range(args.runs)), strict=True)
    print(
        f"(b) one client, sequential puts, TLS and fsync on: trioraft p50 "
        f"{statistics.median(p50s):.2f} ms, p99 {statistics.median(p99s):.2f} ms  "
        "[target p50 < 3 ms]"
    )
    if have_pysyncobj:
        for batching in (True, False):
            result = pysyncobj_run("sequential", min(args.sequential, 300), batching)
            print(
                f"(b) PySyncObj 0.3.17 synchronous sets, {'with' if batching else 'without'} "
                f"batching: "
                + (
                    result["error"]
                    if "error" in result
                    else f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms"
                )
            )

    gaps = trioraft_failover(args.failovers)
    print(
        f"(c) failover after SIGKILL of the leader, {len(gaps)} kills: until a put is "
        f"acknowledged again: median {statistics.median(gaps):.3f} s, p90 "
        f"{percentile(gaps, 0.9):.3f} s, max {max(gaps):.3f} s  [target median < 0.8, max < 2]"
    )


if __name__ == "__main__":
    main()
