"""A local cluster of real ``trioraft serve`` processes on 127.0.0.1.

For tests, benches and trying the service out: ``with LocalCluster(directory)
as cluster: cluster.start_all()`` starts three nodes (certificates made in
``directory/certs``), and every process it started is killed when the block
ends, whatever happened inside; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from ..certs import make_certs

HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (bound together, so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


class LocalCluster:
    """``n`` nodes of the key-value service, each a ``trioraft serve`` process."""

    def __init__(
        self, directory: Path, n: int = 3, *, tls: bool = True, extra: list[str] | None = None
    ) -> None:
        self.directory = directory
        self.n = n
        self.tls = tls
        self.extra = extra or []
        self.addresses = [f"{HOST}:{port}" for port in free_ports(n)]
        self.cluster = ",".join(self.addresses)
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * n
        self.traces: list[Path] = []
        self.incarnations = [0] * n
        if tls:
            make_certs(directory / "certs", n)

    @property
    def security(self) -> list[str]:
        return ["--certs", str(self.directory / "certs")] if self.tls else ["--insecure"]

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for i in range(self.n):
            self.kill(i)

    # ------------------------------------------------------------ processes

    def start(self, i: int, *, trace: bool = True) -> None:
        """Start (or restart) node ``i``; a restart gets a trace file of its own."""
        assert self.processes[i] is None, f"node {i} is running"
        self.incarnations[i] += 1
        command = [
            sys.executable,
            "-m",
            "trioraft",
            "serve",
            "--id",
            str(i),
            "--cluster",
            self.cluster,
            "--data",
            str(self.directory / f"data-{i}"),
            *self.security,
            *self.extra,
        ]
        if trace:
            path = self.directory / f"trace-{i}-{self.incarnations[i]}.ndjson"
            self.traces.append(path)
            command += ["--trace", str(path)]
        log = open(self.directory / f"node-{i}.log", "ab")  # noqa: SIM115 (the child owns it)
        self.processes[i] = subprocess.Popen(command, stdout=log, stderr=log)
        log.close()

    def start_all(self, *, trace: bool = True) -> None:
        for i in range(self.n):
            self.start(i, trace=trace)

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        process = self.processes[i]
        if process is None:
            return
        self.processes[i] = None
        if process.poll() is None:
            process.send_signal(sig)
            process.send_signal(signal.SIGCONT)  # a paused process dies only once resumed
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def pause(self, i: int) -> None:
        """SIGSTOP node ``i``: it keeps its sockets and wakes (``resume``) believing
        what it believed, as a node does after a long pause or a partition."""
        process = self.processes[i]
        assert process is not None, f"node {i} is not running"
        process.send_signal(signal.SIGSTOP)

    def resume(self, i: int) -> None:
        process = self.processes[i]
        assert process is not None, f"node {i} is not running"
        process.send_signal(signal.SIGCONT)

    def log(self, i: int) -> str:
        path = self.directory / f"node-{i}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------ the command line

    def cli(
        self, *args: str, stdin: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trioraft", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def kv(
        self, *args: str, stdin: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return self.cli(
            "kv", "--cluster", self.cluster, *self.security, *args, stdin=stdin, timeout=timeout
        )

    def status(self) -> list[dict[str, Any]]:
        done = self.cli("status", "--cluster", self.cluster, *self.security, "--json", timeout=30)
        rows: list[dict[str, Any]] = json.loads(done.stdout) if done.stdout.strip() else []
        return rows

    def wait_for_leader(self, timeout: float = 20) -> int:
        """The node that leads, once every running node agrees on it."""
        # wall-clock ok: real processes on the real clock (a test or bench harness)
        deadline = time.monotonic() + timeout  # wall-clock ok
        while time.monotonic() < deadline:  # wall-clock ok
            rows = [r for r in self.status() if r["reachable"]]
            leaders: set[int] = {r["id"] for r in rows if r["role"] == "leader"}
            believed = {r["leader"] for r in rows}
            if len(leaders) == 1 and believed == leaders:
                return leaders.pop()
            time.sleep(0.2)  # wall-clock ok: polling other processes
        raise TimeoutError(f"no leader within {timeout} s: {self.status()}")
