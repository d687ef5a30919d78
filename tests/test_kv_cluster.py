"""Three ``trioraft serve`` processes on 127.0.0.1 with mutual TLS: the key-value
service through a ``kill -9`` of its leader.

These run real processes on the real clock; every process is killed at the end
and every wait is bounded.
"""

from __future__ import annotations

import functools
import random
import selectors
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from trioraft import lincheck
from trioraft.kv.client import KVClient, Unavailable
from trioraft.kv.local import LocalCluster
from trioraft.kv.machine import GET, PUT
from trioraft.net.tls import TLSFiles
from trioraft.net.transport import NetConfig

PUTS = 2000


def _read_lines(process: subprocess.Popen[str], count: int, timeout: float) -> list[str]:
    """Up to ``count`` lines of the process's stdout, within ``timeout`` seconds."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while len(lines) < count and time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
    return lines


def test_acknowledged_puts_survive_kill_9_of_the_leader_mid_batch(tmp_path: Path) -> None:
    with LocalCluster(tmp_path) as cluster:
        cluster.start_all()
        leader = cluster.wait_for_leader()
        puts = "".join(f"put key{k} value{k}\n" for k in range(PUTS))
        batch = subprocess.Popen(
            [sys.executable, "-m", "trioraft", "kv", "--cluster", cluster.cluster,
             *cluster.security, "--window", "50", "batch"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert batch.stdin is not None
            batch.stdin.write(puts)
            batch.stdin.close()
            acknowledged = _read_lines(batch, 300, timeout=60)
            assert len(acknowledged) == 300, "the batch makes progress"
            cluster.kill(leader)  # kill -9, mid-batch
            time.sleep(1.0)
            cluster.start(leader)  # back from its data directory, with a new trace file
            acknowledged += _read_lines(batch, PUTS - 300, timeout=120)
            assert batch.wait(timeout=30) == 0, batch.stderr.read() if batch.stderr else ""
        finally:
            if batch.poll() is None:
                batch.kill()
                batch.wait(timeout=10)
        assert acknowledged == ["OK"] * PUTS
        # every acknowledged put is readable, through any leader
        gets = cluster.kv("batch", stdin="".join(f"get key{k}\n" for k in range(PUTS)))
        assert gets.returncode == 0, gets.stderr
        assert gets.stdout.splitlines() == [f"value{k}" for k in range(PUTS)]
        # all three reach the same last-applied index, each write applied once
        deadline = time.monotonic() + 30
        while True:
            rows = cluster.status()
            applied = {r.get("last_applied") for r in rows}
            if len(rows) == 3 and all(r["reachable"] for r in rows) and len(applied) == 1:
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.2)
        assert {r["writes"] for r in rows} == {PUTS}, f"a put applied twice or lost: {rows}"
        cluster.close()
        assert len(cluster.traces) == 4
        validated = cluster.cli("validate", "--cluster", *map(str, cluster.traces), timeout=300)
        assert validated.returncode == 0, validated.stdout + validated.stderr


def test_kv_reports_absent_keys_and_bad_requests(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, tls=False) as cluster:
        cluster.start_all()
        cluster.wait_for_leader()
        assert cluster.kv("put", "a", "hello", "world").stdout == "OK\n"
        assert cluster.kv("get", "a").stdout == "hello world\n"
        missing = cluster.kv("get", "nothing")
        assert missing.returncode == 1 and "not found" in missing.stderr
        assert cluster.kv("del", "a").returncode == 0
        assert cluster.kv("get", "a").returncode == 1
        bad = cluster.kv("batch", stdin="put a 1\nfrobnicate b\n")
        assert bad.returncode == 2 and "<stdin>:2: not a request" in bad.stderr
        assert "Traceback" not in bad.stderr
        assert cluster.kv("get", "a").returncode == 1, "nothing of a refused batch was sent"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--id", "5"], "--id 5 is not an index"),
        (["--certs", "/nonexistent"], "not a directory"),
    ],
)
def test_serve_refuses_bad_arguments_with_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    base = {"--id": "0", "--cluster": "127.0.0.1:1,127.0.0.1:2", "--data": str(tmp_path / "d")}
    words = [w for k, v in base.items() if k not in args for w in (k, v)]
    if "--certs" not in args:
        words.append("--insecure")
    done = subprocess.run(
        [sys.executable, "-m", "trioraft", "serve", *words, *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


CLIENTS = 5
KEYS = ("a", "b", "c")


def test_concurrent_clients_are_linearizable_through_a_leader_kill(tmp_path: Path) -> None:
    """Five clients put and get three keys while the leader is killed and restarted,
    then while the next leader is paused (SIGSTOP) and resumed; the history they
    observed (call and return times, outputs) has a linearization.
    A put that never got its answer stays pending: it may or may not have happened."""
    certs = tmp_path / "certs"
    history: list[lincheck.Operation] = []
    killed: list[float] = []

    async def client(c: int, cluster: LocalCluster, stop: trio.Event) -> None:
        net = NetConfig(tls=TLSFiles(certs / "ca.pem", certs / "client.pem", certs / "client.key"))
        rng = random.Random(c)
        n = 0
        async with KVClient(cluster.addresses, net, timeout=5.0, rpc_timeout=0.5) as kv:
            while not stop.is_set():
                key, op = rng.choice(KEYS), rng.choice((PUT, GET))
                n += 1
                value = f"{c}.{n}" if op == PUT else None
                call = trio.current_time()
                try:
                    output = await kv.get(key) if op == GET else await kv.put(key, str(value))
                except Unavailable:
                    history.append(lincheck.Operation(c, op, key, value, None, call, None))
                    return  # this client's later operations would not be concurrent with it
                history.append(
                    lincheck.Operation(c, op, key, value, output, call, trio.current_time())
                )

    with LocalCluster(tmp_path) as cluster:
        cluster.start_all(trace=False)
        leader = cluster.wait_for_leader()

        async def main() -> None:
            stop = trio.Event()
            with trio.fail_after(90):
                async with trio.open_nursery() as nursery:
                    for c in range(CLIENTS):
                        nursery.start_soon(client, c, cluster, stop)
                    await trio.sleep(1.5)
                    killed.append(trio.current_time())
                    await trio.to_thread.run_sync(cluster.kill, leader)
                    await trio.sleep(1.0)
                    restart = functools.partial(cluster.start, leader, trace=False)
                    await trio.to_thread.run_sync(restart)
                    await trio.sleep(1.5)
                    # a leader that sleeps through its deposition and wakes believing it
                    # leads must not answer a read from its own state
                    paused = await trio.to_thread.run_sync(cluster.wait_for_leader)
                    cluster.pause(paused)
                    await trio.sleep(1.5)
                    cluster.resume(paused)
                    await trio.sleep(1.5)
                    stop.set()

        trio.run(main)

    done = [o for o in history if o.ret is not None]
    assert sum(o.ret < killed[0] for o in done) > 50, "progress before the kill"
    assert sum(o.call > killed[0] + 1.0 for o in done) > 50, "progress after the failover"
    result = lincheck.check(history)
    assert result.ok, result.explain()
    assert sum(o.op == GET and o.output is not None for o in history) > 20, "reads saw writes"
