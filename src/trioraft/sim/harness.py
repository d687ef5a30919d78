"""The 6.824 tester (config.go) for trio: a cluster of peers on a simulated network.

``open_cluster`` is 6.824's ``make_config``; the methods keep config.go's
names (snake_case) and its constants, timings and failure messages, so a test
ported from test_test.go reads line for line like the original.  A failed check
raises :class:`TestFailure` with the same message the Go tester prints.

Two appliers drain the peers' apply channels, as in config.go: ``applier``
checks that every server applies the same command at each index, in order;
``applier_snap`` (``snapshot=True``) is strict about ``last_applied + 1``,
takes a snapshot every ``SNAPSHOT_INTERVAL`` entries by calling
``rf.snapshot()`` from the applier task itself (the classic re-entrancy test),
and ingests snapshots delivered on the channel.  An apply error aborts the
test at once, as Go's ``log.Fatalf`` does.

All timing is trio's, so a whole test runs in virtual time under
``trio.testing.MockClock``; every random choice comes from the cluster's seed.

Storage: each server keeps its state in a 6.824 ``Persister`` (copied at a
crash, as config.go does), or, when the cluster is given a ``storage_dir``,
in a :class:`~trioraft.storage.disk.DiskStorage` directory of its own under
it (a crash kills the peer, which closes its storage; the restart opens the
same directory again).
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
import random
import string
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from .. import codec
from ..core.apply import ApplyMsg
from ..core.config import RaftConfig
from ..peer import Raft, make
from ..persist import Persister
from ..storage.disk import DiskStorage
from .network import Network, open_network

RAFT_ELECTION_TIMEOUT = 1.0
"""6.824's RaftElectionTimeout: elections must complete within a second."""

SNAPSHOT_INTERVAL = 10
"""applier_snap snapshots after applying index i when (i + 1) % 10 == 0."""

TEST_TIME_LIMIT = 120.0


class TestFailure(AssertionError):
    """A 6.824 tester check failed (Go's t.Fatalf / log.Fatalf)."""

    __test__ = False  # not a pytest test class


Applier = Callable[[int, trio.MemoryReceiveChannel[ApplyMsg]], Any]


class Cluster:
    """6.824's ``config``: n peers, their persisters, and the tester's view of what they applied."""

    __test__ = False

    def __init__(
        self,
        net: Network,
        nursery: trio.Nursery,
        n: int,
        *,
        snapshot: bool,
        seed: int,
        raft_config: RaftConfig | None,
        storage_dir: str | None = None,
        snapshot_interval: int = SNAPSHOT_INTERVAL,
    ) -> None:
        self.net = net
        self.storage_dir = storage_dir  # None: Persisters; else a DiskStorage per server
        self.n = n
        self.rng = random.Random(seed)
        self._nursery = nursery
        self._raft_config = raft_config or RaftConfig()
        self.rafts: list[Raft | None] = [None] * n
        self.apply_err: list[str] = [""] * n
        self.connected = [False] * n
        self.saved: list[Persister | DiskStorage | None] = [None] * n
        self.endnames: list[list[str]] = [[""] * n for _ in range(n)]
        self.logs: list[dict[int, Any]] = [{} for _ in range(n)]
        self.last_applied = [0] * n
        self._applier_scopes: list[trio.CancelScope | None] = [None] * n
        self.snapshot = snapshot
        self.snapshot_interval = snapshot_interval  # applier_snap's, in entries
        # With no-ops on election (Raft §8), command indexes have gaps where
        # no-ops sit: the appliers then check that indexes only increase.
        self.gaps = self._raft_config.noop_on_election
        self.finished = False
        self.start = trio.current_time()
        self.t0 = self.start
        self.rpcs0 = 0
        self.cmds0 = 0
        self.bytes0 = 0
        self.max_index = 0
        self.max_index0 = 0

    # ------------------------------------------------------------------ lifecycle

    def crash1(self, i: int) -> None:
        """Shut down a Raft server but save its persistent state."""
        self.disconnect(i)
        self.net.delete_server(self._server_name(i))  # disable client connections to the server
        # A fresh persister, in case the old instance goes on updating the
        # old one; copy the state so the next incarnation reads it.  (A killed
        # peer closes its DiskStorage: it writes nothing more.)
        saved = self.saved[i]
        if isinstance(saved, Persister):
            self.saved[i] = saved.copy()
        rf = self.rafts[i]
        if rf is not None:
            rf.kill()
            self.rafts[i] = None
        scope = self._applier_scopes[i]
        if scope is not None:
            scope.cancel()
            self._applier_scopes[i] = None
        saved = self.saved[i]
        if isinstance(saved, Persister):
            fresh = Persister()
            fresh.save(saved.read_raft_state(), saved.read_snapshot() or None)
            self.saved[i] = fresh

    def start1(self, i: int, applier: Applier | None = None) -> None:
        """Start or re-start a Raft server (a live one is crashed first)."""
        self.crash1(i)
        # A fresh set of outgoing end names, so the old crashed instance's
        # ends do not work.
        for j in range(self.n):
            self.endnames[i][j] = _random_name(self.rng)
        ends = []
        for j in range(self.n):
            end = self.net.make_end(self.endnames[i][j])
            self.net.connect(self.endnames[i][j], self._server_name(j))
            ends.append(end)

        self.last_applied[i] = 0
        own_applier = applier is None or applier in (self.applier, self.applier_snap)
        saved: Persister | DiskStorage
        previous = self.saved[i]
        if self.storage_dir is not None:
            if isinstance(previous, DiskStorage):
                previous.close()  # (its peer's kill() closed it already, if it ran)
            directory = os.path.join(self.storage_dir, f"server-{i}")
            self.saved[i] = saved = DiskStorage(directory, create=True)
        elif previous is not None:
            assert isinstance(previous, Persister)
            self.saved[i] = saved = previous.copy()
        else:
            self.saved[i] = saved = Persister()
        snap = saved.read_snapshot()
        # The tester's own appliers understand the tester's own snapshots
        # (mimic a KV server); a custom applier restores its own state.
        if snap and own_applier:
            error = self.ingest_snap(i, snap, -1)
            if error:
                raise TestFailure(error)

        send, receive = trio.open_memory_channel[ApplyMsg](0)
        config = dataclasses.replace(self._raft_config, seed=self.rng.getrandbits(32))
        rf = make(ends, i, saved, send, nursery=self._nursery, config=config)
        self.rafts[i] = rf
        scope = trio.CancelScope()
        self._applier_scopes[i] = scope
        chosen = applier or (self.applier_snap if self.snapshot else self.applier)
        self._nursery.start_soon(self._run_applier, scope, chosen, i, receive)
        self.net.add_server(self._server_name(i), rf)

    async def _run_applier(
        self,
        scope: trio.CancelScope,
        applier: Applier,
        i: int,
        receive: trio.MemoryReceiveChannel[ApplyMsg],
    ) -> None:
        with scope:
            await applier(i, receive)

    def cleanup(self) -> None:
        self.finished = True
        for i, rf in enumerate(self.rafts):
            if rf is not None:
                rf.kill()
            scope = self._applier_scopes[i]
            if scope is not None:
                scope.cancel()
        self.net.cleanup()

    def check_timeout(self) -> None:
        # Enforce a two minute (virtual or real) limit on how long a test runs.
        if trio.current_time() - self.start > TEST_TIME_LIMIT:
            raise TestFailure("test took longer than 120 seconds")

    # ------------------------------------------------------------------ network

    def connect(self, i: int) -> None:
        """Attach server i to the net."""
        self.connected[i] = True
        for j in range(self.n):
            if self.connected[j]:
                self.net.enable(self.endnames[i][j], True)  # outgoing
                self.net.enable(self.endnames[j][i], True)  # incoming

    def disconnect(self, i: int) -> None:
        """Detach server i from the net."""
        self.connected[i] = False
        for j in range(self.n):
            if self.endnames[i][j]:
                self.net.enable(self.endnames[i][j], False)
            if self.endnames[j][i]:
                self.net.enable(self.endnames[j][i], False)

    def deafen(self, i: int, deaf: bool = True) -> None:
        """One-way partition of connected server i: what it sends arrives, but it
        hears nothing (replies to it and requests to it are lost)."""
        for j in range(self.n):
            if j != i and self.endnames[i][j]:
                self.net.set_replies_lost(self.endnames[i][j], deaf)
            if j != i and self.endnames[j][i]:
                self.net.enable(self.endnames[j][i], not deaf and self.connected[j])

    def setunreliable(self, unreliable: bool) -> None:
        self.net.set_reliable(not unreliable)

    def setlongreordering(self, longrel: bool) -> None:
        self.net.set_long_reordering(longrel)

    def rpc_count(self, server: int) -> int:
        return self.net.get_count(self._server_name(server))

    def rpc_total(self) -> int:
        return self.net.get_total_count()

    def bytes_total(self) -> int:
        return self.net.get_total_bytes()

    def log_size(self) -> int:
        """The largest raft state (not snapshot) any server has persisted."""
        return max((p.raft_state_size() for p in self.saved if p is not None), default=0)

    @staticmethod
    def _server_name(i: int) -> str:
        return str(i)

    # ------------------------------------------------------------------ appliers

    def check_logs(self, i: int, m: ApplyMsg) -> tuple[str, bool]:
        err = ""
        v = m.command
        for j, log in enumerate(self.logs):
            if m.command_index in log and log[m.command_index] != v:
                old = log[m.command_index]
                # Some server has already committed a different value for this entry!
                err = f"commit index={m.command_index} server={i} {v!r} != server={j} {old!r}"
        prevok = (m.command_index - 1) in self.logs[i] or (
            self.gaps and m.command_index > max(self.logs[i], default=0)
        )
        self.logs[i][m.command_index] = v
        if m.command_index > self.max_index:
            self.max_index = m.command_index
        return err, prevok

    async def applier(self, i: int, receive: trio.MemoryReceiveChannel[ApplyMsg]) -> None:
        """Check that a server's applied commands agree with the others'."""
        async for m in receive:
            if not m.command_valid:
                continue  # ignore other types of ApplyMsg
            err, prevok = self.check_logs(i, m)
            if m.command_index > 1 and not prevok:
                err = f"server {i} apply out of order {m.command_index}"
            if err:
                self.apply_err[i] = err
                raise TestFailure(f"apply error: {err}")

    async def applier_snap(self, i: int, receive: trio.MemoryReceiveChannel[ApplyMsg]) -> None:
        """Periodically snapshot Raft state, and check what is applied."""
        async for m in receive:
            err = ""
            if m.snapshot_valid:
                err = self.ingest_snap(i, m.snapshot, m.snapshot_index)
            elif m.command_valid:
                expected = self.last_applied[i] + 1
                if m.command_index < expected or (m.command_index > expected and not self.gaps):
                    err = (
                        f"server {i} apply out of order, expected index "
                        f"{self.last_applied[i] + 1}, got {m.command_index}"
                    )
                if not err:
                    err, prevok = self.check_logs(i, m)
                    if m.command_index > 1 and not prevok:
                        err = f"server {i} apply out of order {m.command_index}"
                self.last_applied[i] = m.command_index
                if not err and (m.command_index + 1) % self.snapshot_interval == 0:
                    xlog = [self.logs[i].get(j) for j in range(m.command_index + 1)]
                    rf = self.rafts[i]
                    if rf is not None:
                        rf.snapshot(m.command_index, codec.encode([m.command_index, xlog]))
            if err:
                self.apply_err[i] = err
                raise TestFailure(f"apply error: {err}")

    def ingest_snap(self, i: int, snapshot: bytes, index: int) -> str:
        """Replace server i's view of its log with a snapshot's contents (mimic a KV server)."""
        if not snapshot:
            return f"server {i}: nil snapshot"
        try:
            last_included_index, xlog = codec.decode(
                snapshot, tuple[int, list[Any]], what="snapshot"
            )
        except codec.CodecError as exc:
            return f"server {i}: snapshot decode error: {exc}"
        if index != -1 and index != last_included_index:
            return f"server {i} snapshot doesn't match m.SnapshotIndex"
        self.logs[i] = {j: xlog[j] for j in range(1, len(xlog))}
        self.last_applied[i] = last_included_index
        return ""

    # ------------------------------------------------------------------ checks

    async def check_one_leader(self) -> int:
        """Check that one of the connected servers thinks it is the leader."""
        for _ in range(10):
            ms = 450 + self.rng.randrange(100)
            await trio.sleep(ms / 1000)
            leaders: dict[int, list[int]] = {}
            for i, rf in enumerate(self.rafts):
                if self.connected[i] and rf is not None:
                    term, leader = rf.get_state()
                    if leader:
                        leaders.setdefault(term, []).append(i)
            last_term_with_leader = -1
            for term, who in leaders.items():
                if len(who) > 1:
                    raise TestFailure(f"term {term} has {len(who)} (>1) leaders")
                last_term_with_leader = max(last_term_with_leader, term)
            if leaders:
                return leaders[last_term_with_leader][0]
        raise TestFailure("expected one leader, got none")

    def check_terms(self) -> int:
        """Check that everyone agrees on the term."""
        term = -1
        for i, rf in enumerate(self.rafts):
            if self.connected[i] and rf is not None:
                xterm, _ = rf.get_state()
                if term == -1:
                    term = xterm
                elif term != xterm:
                    raise TestFailure("servers disagree on term")
        return term

    def check_no_leader(self) -> None:
        """Check that none of the connected servers thinks it is the leader."""
        for i, rf in enumerate(self.rafts):
            if self.connected[i] and rf is not None:
                _, is_leader = rf.get_state()
                if is_leader:
                    raise TestFailure(
                        f"expected no leader among connected servers, but {i} claims to be leader"
                    )

    def n_committed(self, index: int) -> tuple[int, Any]:
        """How many servers think a log entry is committed?"""
        count = 0
        cmd: Any = None
        for i in range(self.n):
            if self.apply_err[i]:
                raise TestFailure(self.apply_err[i])
            if index in self.logs[i]:
                cmd1 = self.logs[i][index]
                if count > 0 and cmd != cmd1:
                    raise TestFailure(
                        f"committed values do not match: index {index}, {cmd!r}, {cmd1!r}"
                    )
                count += 1
                cmd = cmd1
        return count, cmd

    async def wait(self, index: int, n: int, start_term: int) -> Any:
        """Wait for at least n servers to commit, but don't wait forever."""
        to = 0.010
        for _ in range(30):
            nd, _ = self.n_committed(index)
            if nd >= n:
                break
            await trio.sleep(to)
            if to < 1.0:
                to *= 2
            if start_term > -1:
                for rf in self.rafts:
                    if rf is not None:
                        t, _ = rf.get_state()
                        if t > start_term:
                            # someone has moved on; can no longer guarantee that we'll "win"
                            return -1
        nd, cmd = self.n_committed(index)
        if nd < n:
            raise TestFailure(f"only {nd} decided for index {index}; wanted {n}")
        return cmd

    async def one(self, cmd: Any, expected_servers: int, retry: bool) -> int:
        """Do a complete agreement; returns the index.

        It might choose the wrong leader initially and have to re-submit after
        giving up; it entirely gives up after about 10 seconds.  If retry is
        true, it may submit the command multiple times, in case a leader fails
        just after Start(); if false, it checks Start() only once, so the
        tester can test for duplicate entries.
        """
        t0 = trio.current_time()
        starts = 0
        while trio.current_time() - t0 < 10 and not self.finished:
            # try all the servers, maybe one is the leader.
            index = -1
            for _ in range(self.n):
                starts = (starts + 1) % self.n
                rf = self.rafts[starts] if self.connected[starts] else None
                if rf is not None:
                    index1, _, ok = rf.start(cmd)
                    if ok:
                        index = index1
                        break
            if index != -1:
                # somebody claimed to be the leader and to have submitted our
                # command; wait a while for agreement.
                t1 = trio.current_time()
                while trio.current_time() - t1 < 2:
                    nd, cmd1 = self.n_committed(index)
                    if nd > 0 and nd >= expected_servers and cmd1 == cmd:
                        return index  # and it was the command we submitted.
                    await trio.sleep(0.020)
                if not retry:
                    raise TestFailure(f"one({cmd!r}) failed to reach agreement")
            else:
                await trio.sleep(0.050)
        if not self.finished:
            raise TestFailure(f"one({cmd!r}) failed to reach agreement")
        return -1

    # ------------------------------------------------------------------ reporting

    def begin(self, description: str) -> None:
        """Start a test; print the test message, e.g. "Test (2B): RPC counts aren't too high"."""
        print(f"{description} ...")
        self.t0 = trio.current_time()
        self.rpcs0 = self.rpc_total()
        self.bytes0 = self.bytes_total()
        self.cmds0 = 0
        self.max_index0 = self.max_index

    def end(self) -> None:
        """End a test: check the time limit and print the Passed line with its figures."""
        self.check_timeout()
        t = trio.current_time() - self.t0
        npeers = self.n
        nrpc = self.rpc_total() - self.rpcs0
        nbytes = self.bytes_total() - self.bytes0
        ncmds = self.max_index - self.max_index0
        print("  ... Passed --", f"{t:4.1f}  {npeers} {nrpc:4d} {nbytes:7d} {ncmds:4d}")


def _random_name(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(20))


StorageDirFactory = Callable[[], str]
"""Makes a fresh directory for one cluster's DiskStorages."""

default_storage_dir: contextvars.ContextVar[StorageDirFactory | None] = contextvars.ContextVar(
    "trioraft_default_storage_dir", default=None
)
"""Where clusters opened without a ``storage_dir`` get one (``pytest --storage disk``)."""

TracerFactory = Callable[[int, int], Any]
"""Makes the tracer of a cluster from (number of peers, seed)."""

default_tracer: contextvars.ContextVar[TracerFactory | None] = contextvars.ContextVar(
    "trioraft_default_tracer", default=None
)
"""Where clusters opened without a ``tracer`` get one (the test suite records every run)."""


@asynccontextmanager
async def open_cluster(
    n: int,
    *,
    unreliable: bool = False,
    snapshot: bool = False,
    seed: int = 0,
    raft_config: RaftConfig | None = None,
    tracer: Any = None,
    storage_dir: str | os.PathLike[str] | None = None,
    snapshot_interval: int = SNAPSHOT_INTERVAL,
) -> AsyncIterator[Cluster]:
    """6.824's ``make_config``: start n connected peers; clean up on exit.

    An apply error in any peer's applier ends the test at once with a
    :class:`TestFailure`.  ``tracer`` (a :class:`~trioraft.trace.TraceRecorder`)
    records the run: every peer and the network report to it.  Without one,
    the factory in :data:`default_tracer` is asked for one, if it is set.
    ``storage_dir`` (an existing directory) gives each server a DiskStorage
    under it; without one, the factory in :data:`default_storage_dir` is asked,
    and without that the servers use Persisters.
    """
    if storage_dir is None:
        make_dir = default_storage_dir.get()
        if make_dir is not None:
            storage_dir = make_dir()
    if tracer is None:
        factory = default_tracer.get()
        if factory is not None:
            tracer = factory(n, seed)
    if tracer is not None:
        raft_config = dataclasses.replace(raft_config or RaftConfig(), tracer=tracer)
    try:
        async with (
            open_network(seed=seed, tracer=tracer) as net,
            trio.open_nursery() as nursery,
        ):
            net.set_reliable(not unreliable)
            net.set_long_delays(True)
            cfg = Cluster(
                net,
                nursery,
                n,
                snapshot=snapshot,
                seed=seed,
                raft_config=raft_config,
                storage_dir=None if storage_dir is None else os.fspath(storage_dir),
                snapshot_interval=snapshot_interval,
            )
            for i in range(n):
                cfg.start1(i)
            for i in range(n):
                cfg.connect(i)
            try:
                yield cfg
            finally:
                cfg.cleanup()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from None  # the one failure, not a group around it
        raise


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]
