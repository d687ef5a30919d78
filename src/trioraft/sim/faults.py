"""Carries out a schedule's faults on a running :class:`~trioraft.sim.harness.Cluster`.

Every fault is counted while it holds, so overlapping faults compose: a node is
down while any crash holds it, and a link from i to j works only when both are
up and no isolation, partition or one-way fault blocks it, and neither is deaf.
A deaf node's requests still arrive (its end to j stays enabled, but loses
replies); requests to it are lost.  After every change the injector sets each
client end (i's end to j carries i's requests to j and their replies) and the
harness's ``connected`` flags to match.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from .harness import Cluster
from .schedule import NETWORK_FAULTS, Fault, NodeRef


class FaultInjector:
    """Starts and ends faults; ``heal()`` ends them all."""

    def __init__(self, cfg: Cluster, leader: Callable[[], int | None]) -> None:
        self.cfg = cfg
        self._leader = leader  # whoever leads now (None: nobody)
        self.crashed: Counter[int] = Counter()
        self.blocked: Counter[tuple[int, int]] = Counter()  # (from, to): i's requests to j lost
        self.isolated: Counter[int] = Counter()
        self.deaf: Counter[int] = Counter()  # hears nothing; what it sends arrives
        self.network: Counter[str] = Counter()
        self._resolved: dict[int, tuple[int, ...]] = {}  # id(fault) -> the nodes it named

    def resolve(self, ref: NodeRef | None) -> int:
        """A node reference: a number, or whoever leads now (else a node from the seed)."""
        if ref == "leader":
            leader = self._leader()
            return leader if leader is not None else self.cfg.rng.randrange(self.cfg.n)
        assert isinstance(ref, int)
        return ref

    def begin(self, fault: Fault) -> tuple[int, ...]:
        """Start ``fault``; returns the nodes it named (resolved)."""
        kind = fault.kind
        nodes: tuple[int, ...]
        if kind == "crash":
            nodes = (self.resolve(fault.node),)
            self.crashed[nodes[0]] += 1
            if self.crashed[nodes[0]] == 1:
                self.cfg.crash1(nodes[0])
        elif kind == "isolate":
            nodes = (self.resolve(fault.node),)
            self.isolated[nodes[0]] += 1
        elif kind == "deaf":
            nodes = (self.resolve(fault.node),)
            self.deaf[nodes[0]] += 1
        elif kind == "partition":
            nodes = tuple(sorted({self.resolve(n) for n in fault.side}))
            for a, b in self._crossing(nodes):
                self.blocked[a, b] += 1
        elif kind == "one_way":
            nodes = (self.resolve(fault.source), self.resolve(fault.target))
            self.blocked[nodes] += 1
        else:
            assert kind in NETWORK_FAULTS
            nodes = ()
            self.network[kind] += 1
        self._resolved[id(fault)] = nodes
        self._update()
        return nodes

    def end(self, fault: Fault) -> None:
        """End ``fault`` (started by :meth:`begin`)."""
        nodes = self._resolved.pop(id(fault))
        kind = fault.kind
        if kind == "crash":
            self.crashed[nodes[0]] -= 1
            if self.crashed[nodes[0]] == 0:
                self.cfg.start1(nodes[0])
        elif kind == "isolate":
            self.isolated[nodes[0]] -= 1
        elif kind == "deaf":
            self.deaf[nodes[0]] -= 1
        elif kind == "partition":
            for a, b in self._crossing(nodes):
                self.blocked[a, b] -= 1
        elif kind == "one_way":
            self.blocked[nodes[0], nodes[1]] -= 1
        else:
            self.network[kind] -= 1
        self._update()

    def heal(self) -> None:
        """Every fault stops: everyone up and connected, a reliable network."""
        for i in range(self.cfg.n):
            if self.crashed[i] > 0:
                self.cfg.start1(i)
        self.crashed.clear()
        self.blocked.clear()
        self.isolated.clear()
        self.deaf.clear()
        self.network.clear()
        self._resolved.clear()
        self._update()

    def up(self, i: int) -> bool:
        return self.crashed[i] == 0

    def link(self, i: int, j: int) -> bool:
        """Whether i's requests reach j and their replies come back (i is not deaf)."""
        return i == j or (self.arrives(i, j) and self.deaf[i] == 0)

    def arrives(self, i: int, j: int) -> bool:
        """Whether i's requests reach j (their replies are lost if i is deaf)."""
        return i == j or (
            self.crashed[i] == 0
            and self.crashed[j] == 0
            and self.isolated[i] == 0
            and self.isolated[j] == 0
            and self.deaf[j] == 0
            and self.blocked[i, j] == 0
        )

    def can_lead(self, i: int) -> bool:
        """Whether i is up and reaches, and hears from, a majority (itself included)."""
        if not self.up(i):
            return False
        both = sum(1 for j in range(self.cfg.n) if self.link(i, j) and self.link(j, i))
        return 2 * both > self.cfg.n

    def _crossing(self, side: tuple[int, ...]) -> list[tuple[int, int]]:
        rest = [j for j in range(self.cfg.n) if j not in side]
        return [(a, b) for a in side for b in rest] + [(b, a) for a in side for b in rest]

    def _update(self) -> None:
        cfg = self.cfg
        net = cfg.net
        net.set_reliable(self.network["unreliable"] == 0 and not self.chaos_unreliable)
        net.set_long_reordering(self.network["long_reordering"] > 0)
        net.set_delay_requests(self.network["long_delays"] > 0)
        net.set_duplicate(self.network["duplicate"] > 0)
        for i in range(cfg.n):
            cfg.connected[i] = self.up(i) and self.isolated[i] == 0
            for j in range(cfg.n):
                if cfg.endnames[i][j]:
                    net.enable(cfg.endnames[i][j], self.arrives(i, j))
                    net.set_replies_lost(cfg.endnames[i][j], self.deaf[i] > 0)

    chaos_unreliable = False
    """The whole chaos phase is unreliable (``--unreliable``); ``heal`` clears it."""
