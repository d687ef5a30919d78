"""Fault schedules as data: what ``trioraft simulate`` does to a cluster, and when.

A :class:`Schedule` is everything a simulated run depends on besides the code:
the seed (for the network's, the peers' and the client's random choices), the
cluster's size, how long the chaos lasts, the client's load, how often the
service snapshots, which Raft extensions the peers run (``pre_vote`` and
``check_quorum``, :class:`~trioraft.core.config.RaftConfig`'s flags: off unless
the schedule says ``true``), and a list of :class:`Fault` intervals.  It is
written and read as JSON (:func:`dump_schedule`, :func:`load_schedule`), so a
run can be saved and replayed in another process, byte for byte.

Each fault holds for an interval ``[at, at + for)`` of virtual seconds after
the chaos starts.  Faults may overlap, and each one is undone at its end
independently (a node crashed by two faults restarts when the later ends).
A fault that names ``"leader"`` instead of a node number picks whoever leads
when the fault starts (or, with no leader, a node drawn from the run's seed).

| kind | fields | while it holds |
|---|---|---|
| ``crash`` | ``node`` | the node is down; it restarts from its storage at the end |
| ``isolate`` | ``node`` | the node is cut off from every other (both directions) |
| ``deaf`` | ``node`` | the node's requests arrive, but replies to it and requests to it are lost |
| ``partition`` | ``side`` (a list of nodes) | no message crosses between ``side`` and the rest |
| ``one_way`` | ``from``, ``to`` | ``from``'s requests to ``to`` are lost (``to`` hears nothing) |
| ``unreliable`` | | labrpc's unreliable network: delays, and 10 % of requests and replies lost |
| ``long_reordering`` | | replies delayed 200-2200 ms with probability 2/3 |
| ``long_delays`` | | half the requests held back 200-2200 ms (stale requests arrive late) |
| ``duplicate`` | | every delivered request is delivered again, up to 200 ms later |

:func:`draw_schedule` draws the default schedule from a seed.

A deaf node can send but hears nothing: the others act on its requests, and it
never hears their answers.  A deaf leader's heartbeats hold its followers, so
without CheckQuorum nobody replaces it until the fault ends.  It counts as cut
off, like a crashed or isolated node.  :func:`draw_schedule` draws deaf nodes
only when an extension is on: with both off, a seed draws the same schedule as
before ``deaf`` existed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

SCHEDULE_VERSION: Final = 1

NodeRef = int | Literal["leader"]
"""A node number, or ``"leader"``: whoever leads when the fault starts."""

NODE_FAULTS: Final = ("crash", "isolate", "deaf")
NETWORK_FAULTS: Final = ("unreliable", "long_reordering", "long_delays", "duplicate")
EXTENSION_FLAGS: Final = ("pre_vote", "check_quorum")
"""The schedule's switches for RaftConfig's extensions (JSON keys, written only when true)."""

FAULT_KINDS: Final = (*NODE_FAULTS, "partition", "one_way", *NETWORK_FAULTS)

DEFAULT_CLIENT_INTERVAL: Final = 0.2
"""Seconds between two client commands in a drawn schedule."""

DEFAULT_SNAPSHOT_EVERY: Final = 10
"""A drawn schedule's service snapshots every this many applied entries."""

FAULT_GAP: Final = (0.5, 2.5)
"""Seconds between the starts of two drawn faults (uniform)."""

FAULT_LENGTH: Final = (0.5, 5.0)
"""How long a drawn fault holds (uniform seconds)."""


class ScheduleError(ValueError):
    """A schedule that cannot be run; the message names the field."""


@dataclass(frozen=True)
class Fault:
    """One fault, holding for ``length`` virtual seconds from ``at``."""

    kind: str
    at: float
    length: float
    node: NodeRef | None = None  # crash, isolate, deaf
    side: tuple[NodeRef, ...] = ()  # partition
    source: NodeRef | None = None  # one_way: whose requests are lost ...
    target: NodeRef | None = None  # ... on the way to whom

    @property
    def end(self) -> float:
        return self.at + self.length

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "at": self.at, "for": self.length}
        if self.kind in NODE_FAULTS:
            out["node"] = self.node
        elif self.kind == "partition":
            out["side"] = list(self.side)
        elif self.kind == "one_way":
            out["from"] = self.source
            out["to"] = self.target
        return out

    def named(self) -> tuple[NodeRef, ...]:
        """The nodes the fault names, in order (none for a network fault)."""
        if self.kind in NODE_FAULTS:
            return (self.node,) if self.node is not None else ()
        if self.kind == "partition":
            return self.side
        if self.kind == "one_way" and self.source is not None and self.target is not None:
            return (self.source, self.target)
        return ()

    @property
    def cut_off(self) -> int:
        """How many nodes it cuts off from the rest (a crash, an isolation, a deaf
        node, a partition)."""
        if self.kind == "partition":
            return len(self.side)
        return 1 if self.kind in NODE_FAULTS else 0

    def describe(self, nodes: Sequence[NodeRef] | None = None) -> str:
        """E.g. ``crash leader`` or ``one_way 1->2`` (for summaries); ``nodes``: the
        nodes it named as resolved when it started, instead of as written."""
        nodes = self.named() if nodes is None else nodes
        if self.kind == "partition":
            return "partition " + ",".join(map(str, nodes)) + " | rest"
        if self.kind == "one_way":
            return f"one_way {nodes[0]}->{nodes[1]}"
        return f"{self.kind} {nodes[0]}" if nodes else self.kind


@dataclass(frozen=True)
class Schedule:
    """Everything a simulated run depends on (see the module's docstring)."""

    seed: int
    nodes: int
    duration: float
    faults: tuple[Fault, ...] = ()
    unreliable: bool = False  # the whole chaos phase on labrpc's unreliable network
    client_interval: float = DEFAULT_CLIENT_INTERVAL
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY  # 0: the service never snapshots
    pre_vote: bool = False  # RaftConfig.pre_vote for every peer
    check_quorum: bool = False  # RaftConfig.check_quorum for every peer
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        check_schedule(self)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": SCHEDULE_VERSION,
            "seed": self.seed,
            "nodes": self.nodes,
            "duration": self.duration,
            "unreliable": self.unreliable,
            "client_interval": self.client_interval,
            "snapshot_every": self.snapshot_every,
        }
        # The extensions only when on: a schedule without them reads and writes
        # as it did before they existed.
        for flag in EXTENSION_FLAGS:
            if getattr(self, flag):
                out[flag] = True
        out["faults"] = [f.to_json() for f in self.faults]
        return out

    @property
    def extensions(self) -> tuple[str, ...]:
        """The extensions on, e.g. ``("pre_vote", "check_quorum")``."""
        return tuple(flag for flag in EXTENSION_FLAGS if getattr(self, flag))


# ------------------------------------------------------------------ checks


def check_schedule(s: Schedule) -> None:
    """Raise :class:`ScheduleError` naming the field if ``s`` cannot be run."""
    if not isinstance(s.seed, int) or isinstance(s.seed, bool) or s.seed < 0:
        raise ScheduleError(f"seed: must be a whole number >= 0, got {s.seed!r}")
    if not isinstance(s.nodes, int) or isinstance(s.nodes, bool) or s.nodes < 1:
        raise ScheduleError(f"nodes: must be at least 1, got {s.nodes!r}")
    _positive("duration", s.duration)
    _positive("client_interval", s.client_interval)
    if not isinstance(s.snapshot_every, int) or s.snapshot_every < 0:
        raise ScheduleError(
            f"snapshot_every: must be a whole number >= 0, got {s.snapshot_every!r}"
        )
    for flag in ("unreliable", *EXTENSION_FLAGS):
        _flag(flag, getattr(s, flag))
    for k, f in enumerate(s.faults):
        _check_fault(f, s.nodes, f"faults[{k}]")


def _flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ScheduleError(f"{name}: must be true or false, got {value!r}")


def _positive(name: str, value: object) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not 0 < value < float("inf"):  # type: ignore[operator]
        raise ScheduleError(f"{name}: must be a positive number of seconds, got {value!r}")


def _check_fault(f: Fault, nodes: int, where: str) -> None:
    if f.kind not in FAULT_KINDS:
        raise ScheduleError(
            f"{where}.kind: unknown fault {f.kind!r}; one of {', '.join(FAULT_KINDS)}"
        )
    ok = isinstance(f.at, int | float) and not isinstance(f.at, bool) and 0 <= f.at < float("inf")
    if not ok:
        raise ScheduleError(f"{where}.at: must be a number of seconds >= 0, got {f.at!r}")
    _positive(f"{where}.for", f.length)
    refs: list[tuple[str, object]] = []
    if f.kind in NODE_FAULTS:
        refs.append(("node", f.node))
    elif f.kind == "partition":
        if not f.side:
            raise ScheduleError(f"{where}.side: a partition needs at least one node on its side")
        refs.extend((f"side[{k}]", n) for k, n in enumerate(f.side))
    elif f.kind == "one_way":
        refs.extend((("from", f.source), ("to", f.target)))
    for name, ref in refs:
        if ref == "leader":
            continue
        if not isinstance(ref, int) or isinstance(ref, bool) or not 0 <= ref < nodes:
            raise ScheduleError(
                f'{where}.{name}: must be a node number 0-{nodes - 1} or "leader", got {ref!r}'
            )


# ------------------------------------------------------------------ JSON


def dump_schedule(s: Schedule) -> str:
    """The schedule as JSON text (one fault per line, for reading and diffing)."""
    head = {k: v for k, v in s.to_json().items() if k != "faults"}
    lines = [json.dumps(f.to_json()) for f in s.faults]
    body = ",\n    ".join(lines)
    text = json.dumps(head)[:-1] + ', "faults": [' + (f"\n    {body}\n  " if lines else "") + "]}"
    return text + "\n"


def load_schedule(text: str, source: str = "<schedule>") -> Schedule:
    """Read a schedule written by :func:`dump_schedule` (or by hand).

    Raises :class:`ScheduleError` naming ``source`` and the field at fault.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScheduleError(f"{source}:{exc.lineno}: not JSON: {exc.msg}") from None
    try:
        return schedule_from_json(data)
    except ScheduleError as exc:
        raise ScheduleError(f"{source}: {exc}") from None


def schedule_from_json(data: object) -> Schedule:
    if not isinstance(data, dict):
        raise ScheduleError("a schedule is a JSON object")
    known = {"version", "seed", "nodes", "duration", "unreliable", "client_interval",
             "snapshot_every", "faults", *EXTENSION_FLAGS}  # fmt: skip
    for key in data:
        if key not in known:
            raise ScheduleError(f"{key}: unknown field")
    if data.get("version") != SCHEDULE_VERSION:
        raise ScheduleError(f"version: expected {SCHEDULE_VERSION}, got {data.get('version')!r}")
    for key in ("seed", "nodes", "duration"):
        if key not in data:
            raise ScheduleError(f"{key}: missing")
    faults = data.get("faults", [])
    if not isinstance(faults, list):
        raise ScheduleError("faults: must be a list")
    flags = {name: data.get(name, False) for name in ("unreliable", *EXTENSION_FLAGS)}
    for name, value in flags.items():
        _flag(name, value)
    return Schedule(
        seed=data["seed"],
        nodes=data["nodes"],
        duration=data["duration"],
        **flags,
        client_interval=data.get("client_interval", DEFAULT_CLIENT_INTERVAL),
        snapshot_every=data.get("snapshot_every", DEFAULT_SNAPSHOT_EVERY),
        faults=tuple(_fault_from_json(f, f"faults[{k}]") for k, f in enumerate(faults)),
    )


def _fault_from_json(data: object, where: str) -> Fault:
    if not isinstance(data, dict):
        raise ScheduleError(f"{where}: a fault is a JSON object")
    kind = data.get("kind")
    allowed = {"kind", "at", "for"} | {
        "crash": {"node"},
        "isolate": {"node"},
        "deaf": {"node"},
        "partition": {"side"},
        "one_way": {"from", "to"},
    }.get(str(kind), set())
    for key in data:
        if key not in allowed:
            raise ScheduleError(f"{where}.{key}: unknown field for a {kind!r} fault")
    for key in allowed:
        if key not in data:
            raise ScheduleError(f"{where}.{key}: missing")
    side = data.get("side", [])
    if not isinstance(side, list):
        raise ScheduleError(f"{where}.side: must be a list of nodes")
    return Fault(
        kind=str(kind),
        at=data["at"],
        length=data["for"],
        node=data.get("node"),
        side=tuple(side),
        source=data.get("from"),
        target=data.get("to"),
    )


# ------------------------------------------------------------------ drawing


def draw_schedule(
    seed: int,
    nodes: int,
    duration: float,
    *,
    unreliable: bool = False,
    client_interval: float = DEFAULT_CLIENT_INTERVAL,
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
    pre_vote: bool = False,
    check_quorum: bool = False,
) -> Schedule:
    """The default schedule for ``seed``: a fault every 0.5-2.5 s, each holding 0.5-5 s.

    Crashes, isolations and partitions (most of them of the leader) never cut
    more than a minority off at once; the rest are
    one-way links and periods of unreliable, reordering, slow-failing or
    duplicating network.  So the cluster can always make progress, and the
    run measures how fast it does.

    With ``pre_vote`` or ``check_quorum`` the peers run those extensions, and
    deaf nodes (most of them the leader) are drawn too, counted in the
    minority.  With both off, the same seed draws the same schedule as before
    they existed.
    """
    rng = random.Random(f"trioraft-schedule-{seed}")
    max_down = (nodes - 1) // 2
    kinds: tuple[str, ...] = ("crash", "isolate", "partition", "one_way", "network")
    weights: tuple[int, ...] = (4, 3, 2, 2, 3)
    if pre_vote or check_quorum:
        kinds, weights = (*kinds, "deaf"), (*weights, 2)
    faults: list[Fault] = []
    t = 0.0
    while True:
        t += rng.uniform(*FAULT_GAP)
        if t >= duration:
            break
        length = round(min(rng.uniform(*FAULT_LENGTH), duration - t), 3)
        if length <= 0:
            break  # (rounded to the millisecond, as the schedule stores it)
        down = sum(f.cut_off for f in faults if f.at <= t < f.end)
        kind = rng.choices(kinds, weights=weights)[0]
        if kind in ("crash", "isolate", "deaf", "partition") and down >= max_down:
            kind = "one_way" if nodes > 1 else "network"
        fault = _draw_fault(rng, kind, nodes, max_down - down, t, length)
        if fault is not None:
            faults.append(fault)
    return Schedule(
        seed=seed,
        nodes=nodes,
        duration=duration,
        faults=tuple(faults),
        unreliable=unreliable,
        client_interval=client_interval,
        snapshot_every=snapshot_every,
        pre_vote=pre_vote,
        check_quorum=check_quorum,
    )


def _draw_fault(
    rng: random.Random, kind: str, nodes: int, room: int, at: float, length: float
) -> Fault | None:
    """One fault of ``kind``; a partition cuts off at most ``room`` nodes."""
    at = round(at, 3)

    def node() -> NodeRef:
        return "leader" if rng.random() < 0.6 else rng.randrange(nodes)

    if kind in NODE_FAULTS:
        return Fault(kind, at, length, node=node())
    if kind == "partition":
        if room < 1:
            return None
        # A minority cut off from the majority, with the leader in it 60 % of the time
        # (else the leader is most likely on the majority side).
        size = rng.randint(1, room)
        side: list[NodeRef] = rng.sample(range(nodes), size)
        if rng.random() < 0.6:
            side[0] = "leader"
        return Fault(kind, at, length, side=tuple(side))
    if kind == "one_way":
        if nodes < 2:
            return None
        a, b = rng.sample(range(nodes), 2)
        source: NodeRef = "leader" if rng.random() < 0.5 else a
        return Fault(kind, at, length, source=source, target=b)
    return Fault(rng.choice(NETWORK_FAULTS), at, length)
