"""The extensions' actions that no message drives: Pre-Vote's lease, CheckQuorum,
leadership transfer and ReadIndex (thesis §4.2.3, §6.2, §3.10, §6.4).

The handlers of the extensions' messages (PreVote, TimeoutNow) sit in
:mod:`.actions` beside RequestVote's.  Time is not in the model, so the
conditions that depend on it are abstract: a lease may end, a leader may find
it lost its quorum and a transfer may be abandoned at any moment, and a
follower confirms a leader's waiting reads by being in the leader's term after
they began (what answering a heartbeat of their round proves).  spec/MODEL.md,
"The extensions", says which behaviours this over-approximates.
"""

from __future__ import annotations

from .actions import Sent, _bag_add, _ext_volatile_lost, _state_of, _with
from .mutants import READ_WITHOUT_ROUND
from .state import (
    CHECK_QUORUM,
    FOLLOWER,
    LEADER,
    NOBODY,
    READ_INDEX,
    TIMEOUT_NOW_REQUEST,
    TRANSFER,
    Read,
    State,
    TimeoutNowRequest,
)

_new = tuple.__new__


def expire_lease(state: State, i: int) -> State | None:
    """§4.2.3: the minimum election timeout passed since server ``i`` last heard its
    leader: it no longer withholds its vote (and its election timer may fire)."""
    s = state.servers[i]
    if not s.ext.lease:
        return None
    return _with(state, i, s._replace(ext=s.ext._replace(lease=False)))


def check_quorum(state: State, i: int) -> State | None:
    """§6.2: a leader that heard from no majority within an election timeout steps
    down (in its term).  Abstract: any leader may find it lost its quorum."""
    s = state.servers[i]
    if s.role != LEADER or not s.ext.options & CHECK_QUORUM:
        return None
    return _with(
        state,
        i,
        s._replace(
            role=FOLLOWER,
            next_index=(),
            match_index=(),
            leader_log=(),
            ext=_ext_volatile_lost(s.ext),
        ),
    )


# --------------------------------------------------------------------- leadership transfer


def transfer_leadership(state: State, i: int, j: int) -> State | None:
    """§3.10: leader ``i`` starts handing leadership to server ``j``: it takes no client
    request until the transfer ends.  A transfer under way to another server is
    re-targeted (the implementation allows it): the TimeoutNow it may have sent is
    stale from now on (``abandoned``)."""
    s = state.servers[i]
    if s.role != LEADER or not s.ext.options & TRANSFER or s.ext.transfer_to == j:
        return None
    if j == i or not 0 <= j < len(state.servers):
        return None
    ext = s.ext
    ext = ext._replace(transfer_to=j, abandoned=ext.abandoned or ext.transfer_to != NOBODY)
    return _with(state, i, s._replace(ext=ext))


def timeout_now_sent(state: State, i: int) -> Sent[TimeoutNowRequest] | None:
    """§3.10: the target's matchIndex has reached the leader's last index: tell it to
    stand at once."""
    s = state.servers[i]
    j = s.ext.transfer_to
    if s.role != LEADER or j == NOBODY or s.match_index[j] < len(s.log):
        return None
    m = _new(TimeoutNowRequest, (TIMEOUT_NOW_REQUEST, s.current_term, i, j))
    return _new(
        State,
        (state.servers, _bag_add(state.network, m), state.committed, state.restarts, state.stood),
    ), m


def timeout_now(state: State, i: int) -> State | None:
    """:func:`timeout_now_sent`'s next state."""
    return _state_of(timeout_now_sent(state, i))


def abandon_transfer(state: State, i: int) -> State | None:
    """§3.10: no election ended the transfer within an election timeout: the leader
    takes client requests again."""
    s = state.servers[i]
    if s.role != LEADER or s.ext.transfer_to == NOBODY:
        return None
    return _with(state, i, s._replace(ext=s.ext._replace(transfer_to=NOBODY, abandoned=True)))


# --------------------------------------------------------------------- ReadIndex


def read_index(state: State, i: int) -> State | None:
    """§6.4: leader ``i`` takes a read; it waits for a round of confirmations that
    starts now.  (History: the highest index known committed anywhere now, which
    the read must see.)"""
    s = state.servers[i]
    if s.role != LEADER or not s.ext.options & READ_INDEX:
        return None
    floor = max((record[0] for record in state.committed), default=0)
    read = Read(floor, 1 << i)
    return _with(state, i, s._replace(ext=s.ext._replace(reads=(*s.ext.reads, read))))


def ack_read(state: State, i: int, j: int, count: int | None = None) -> State | None:
    """§6.4: server ``j`` answers a message leader ``i`` built after its waiting reads
    began, in the leader's term: it confirms them all; or, with ``count``, the first
    ``count`` of them (the trace validator: reads that began after the message was
    built are not confirmed by it)."""
    s = state.servers[i]
    if s.role != LEADER or not s.ext.reads or j == i or not 0 <= j < len(state.servers):
        return None
    if state.servers[j].current_term != s.current_term:
        return None
    bit = 1 << j
    confirms = s.ext.reads if count is None else s.ext.reads[:count]
    if all(read.acks & bit for read in confirms):
        return None
    reads = tuple(
        Read(read.floor, read.acks | bit) if k < len(confirms) else read
        for k, read in enumerate(s.ext.reads)
    )
    return _with(state, i, s._replace(ext=s.ext._replace(reads=reads)))


def _confirmed(state: State, read: Read, mutant: str | None) -> bool:
    return mutant == READ_WITHOUT_ROUND or 2 * read.acks.bit_count() > len(state.servers)


def servable(state: State, i: int, *, mutant: str | None = None) -> bool:
    """Can leader ``i`` serve a waiting read now (see :func:`serve_read`)?"""
    s = state.servers[i]
    if s.role != LEADER or not s.ext.reads:
        return False
    commit = s.commit_index
    if not commit or s.log[commit - 1].term != s.current_term:
        return False
    return any(_confirmed(state, read, mutant) for read in s.ext.reads)


def serve_read(
    state: State, i: int, *, mutant: str | None = None, count: int | None = None
) -> State | None:
    """§6.4: an entry of the leader's term is committed (step 1) and a majority, the
    leader included, confirmed it still leads since the read began (steps 2-3):
    every such read is served at commitIndex; or, with ``count``, every such read
    among the first ``count`` waiting (the trace validator: one per ``read_served``)."""
    if not servable(state, i, mutant=mutant):
        return None
    s = state.servers[i]
    reads = s.ext.reads
    first = len(reads) if count is None else count
    confirmed = [read for read in reads[:first] if _confirmed(state, read, mutant)]
    if not confirmed:
        return None
    waiting = tuple(
        read for k, read in enumerate(reads) if k >= first or not _confirmed(state, read, mutant)
    )
    # History: only a read served below its floor is kept (ReadIndexLinearizable).
    stale = tuple((read.floor, s.commit_index) for read in confirmed if s.commit_index < read.floor)
    ext = s.ext._replace(reads=waiting, stale_reads=(*s.ext.stale_reads, *stale))
    return _with(state, i, s._replace(ext=ext))
