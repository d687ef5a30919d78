"""open_node: three nodes in one process over TCP on 127.0.0.1, real clock.

Each test runs its own ``trio.run`` (real sockets and TLS); every wait is bounded.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

import trioraft
from trioraft.certs import make_certs
from trioraft.kv.local import free_ports


class Counter:
    """A state machine: adds each command to a total; apply returns the new total."""

    def __init__(self) -> None:
        self.total = 0
        self.applied: list[int] = []

    def apply(self, command: Any, index: int) -> Any:
        self.total += command
        self.applied.append(index)
        return self.total

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(self.total)

    def restore(self, data: bytes) -> None:
        self.total = msgspec.msgpack.decode(data)


def configs(tmp_path: Path, n: int = 3, **options: Any) -> list[trioraft.NodeConfig]:
    make_certs(tmp_path / "certs", n)
    cluster = [f"127.0.0.1:{port}" for port in free_ports(n)]
    return [
        trioraft.NodeConfig(
            id=i,
            cluster=cluster,
            data_dir=tmp_path / f"data-{i}",
            tls=trioraft.TLSFiles(
                ca=tmp_path / "certs" / "ca.pem",
                cert=tmp_path / "certs" / f"node-{i}.pem",
                key=tmp_path / "certs" / f"node-{i}.key",
            ),
            **options,
        )
        for i in range(n)
    ]


@contextlib.asynccontextmanager
async def running(
    cfgs: list[trioraft.NodeConfig], machines: list[Counter]
) -> AsyncIterator[list[trioraft.Node]]:
    async with contextlib.AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(trioraft.open_node(c, m))
            for c, m in zip(cfgs, machines, strict=True)
        ]
        yield nodes


async def leader_of(nodes: list[trioraft.Node], timeout: float = 10) -> trioraft.Node:
    with trio.fail_after(timeout):
        while True:
            leaders = [n for n in nodes if n.status().role == "leader"]
            if len(leaders) == 1 and all(n.status().leader == leaders[0].id for n in nodes):
                return leaders[0]
            await trio.sleep(0.05)


def run(main: Callable[[], Any]) -> None:
    trio.run(main)  # the real clock: real sockets


def test_propose_returns_apply_s_result_and_followers_name_the_leader(tmp_path: Path) -> None:
    cfgs = configs(tmp_path)
    machines = [Counter() for _ in cfgs]

    async def main() -> None:
        async with running(cfgs, machines) as nodes:
            leader = await leader_of(nodes)
            assert await leader.propose(5) == 5
            assert await leader.propose(7) == 12
            follower = next(n for n in nodes if n is not leader)
            with pytest.raises(trioraft.NotLeader) as refused:
                await follower.propose(1)
            assert refused.value.leader == leader.id
            assert refused.value.address == cfgs[leader.id].cluster[leader.id]
            with pytest.raises(trioraft.NotLeader):
                await follower.read_barrier()
            await leader.read_barrier()
            assert machines[leader.id].total == 12
            with pytest.raises(TypeError):
                await leader.propose((1, 2))
            status = leader.status()
            assert (status.role, status.leader, status.id) == ("leader", leader.id, leader.id)
            assert status.last_applied == status.commit_index >= 3  # a no-op, then 2 commands
            with trio.fail_after(5):
                while any(m.total != 12 for m in machines):
                    await trio.sleep(0.02)

    run(main)


async def run_node(
    config: trioraft.NodeConfig,
    machine: Counter,
    *,
    task_status: trio.TaskStatus[tuple[trioraft.Node, trio.CancelScope]],
) -> None:
    """A node in a task of its own: cancel the scope it reports to stop it."""
    with trio.CancelScope() as scope:
        async with trioraft.open_node(config, machine) as node:
            task_status.started((node, scope))
            await trio.sleep_forever()


def test_a_new_leader_takes_over_and_the_old_one_catches_up(tmp_path: Path) -> None:
    cfgs = configs(tmp_path)
    machines = [Counter() for _ in cfgs]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            pairs = zip(cfgs, machines, strict=True)
            started = [await nursery.start(run_node, c, m) for c, m in pairs]
            nodes = [node for node, _ in started]
            leader = await leader_of(nodes)
            assert await leader.propose(1) == 1
            started[leader.id][1].cancel()  # the leader stops
            rest = [n for n in nodes if n is not leader]
            new = await leader_of(rest)
            assert await new.propose(2) == 3
            # the old leader comes back from its data directory and catches up
            old = Counter()
            await nursery.start(run_node, cfgs[leader.id], old)
            with trio.fail_after(10):
                while old.total != 3:
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()

    run(main)


def test_snapshots_are_taken_past_the_log_size_and_restored_at_start(tmp_path: Path) -> None:
    cfgs = configs(tmp_path, snapshot_log_bytes=2000)
    machines = [Counter() for _ in cfgs]

    async def main() -> None:
        async with running(cfgs, machines) as nodes:
            leader = await leader_of(nodes)
            for _ in range(300):
                await leader.propose(1)
            with trio.fail_after(10):
                while any(m.total != 300 for m in machines):
                    await trio.sleep(0.02)
        # restarted, each node's machine starts from its snapshot, not from index 1
        again = [Counter() for _ in cfgs]
        async with running(cfgs, again) as nodes:
            restored = [m.total for m in again]
            assert all(0 < total <= 300 for total in restored), restored
            assert all(not m.applied or m.applied[0] > 1 for m in again)
            leader = await leader_of(nodes)
            assert await leader.propose(1) == 301

    run(main)
    assert any(p.name.endswith(".snap") for p in (tmp_path / "data-0").iterdir())


def test_node_config_and_open_node_check_their_arguments(tmp_path: Path) -> None:
    good = configs(tmp_path, 2)[0]
    make = trioraft.NodeConfig
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"id": 2}, ValueError, "NodeConfig.id 2 is not an index"),
        ({"id": -1}, ValueError, "NodeConfig.id must be at least 0"),
        ({"cluster": "a:1,b:2"}, TypeError, "list of host:port"),
        ({"cluster": ["nope"]}, ValueError, r"NodeConfig.cluster\[0\] must be host:port"),
        ({"tls": None}, ValueError, "insecure=True"),
        ({"insecure": True}, ValueError, "exclusive"),
        ({"snapshot_log_bytes": 0}, ValueError, "snapshot_log_bytes"),
    ]
    fields = {f: getattr(good, f) for f in ("id", "cluster", "data_dir", "tls")}
    for change, error, message in cases:
        with pytest.raises(error, match=message):
            make(**{**fields, **change})
    wrong_cert = make(**{**fields, "id": 1})  # node 1's config holding node 0's files

    async def main() -> None:
        with pytest.raises(ValueError, match="is not node 1's certificate"):
            async with trioraft.open_node(wrong_cert, Counter()):
                pass
        with pytest.raises(TypeError, match="state_machine"):
            async with trioraft.open_node(good, object()):  # type: ignore[arg-type]
                pass

    run(main)
    assert not (tmp_path / "data-1").exists(), "nothing was created for a refused node"
