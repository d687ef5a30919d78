"""The model's messages: each kind's tag and field order, pinned.

The checker's hot path builds messages as positional tuples (for speed), and
fingerprints, the symmetry renaming (fields 2 and 3 are source and dest) and
the canonical order of the network bag (by kind first) all read them by
position.  These tests fail if a field moves, or if a named builder and the
class disagree.
"""

from __future__ import annotations

from trioraft.model.state import (
    APPEND_ENTRIES_REQUEST,
    APPEND_ENTRIES_RESPONSE,
    INSTALL_SNAPSHOT_REQUEST,
    INSTALL_SNAPSHOT_RESPONSE,
    MESSAGE_NAMES,
    PRE_VOTE_REQUEST,
    PRE_VOTE_RESPONSE,
    REQUEST_VOTE_REQUEST,
    REQUEST_VOTE_RESPONSE,
    TIMEOUT_NOW_REQUEST,
    TIMEOUT_NOW_RESPONSE,
    AppendEntriesRequest,
    AppendEntriesResponse,
    Entry,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    PreVoteRequest,
    PreVoteResponse,
    RequestVoteRequest,
    RequestVoteResponse,
    TimeoutNowRequest,
    TimeoutNowResponse,
    append_entries_request,
    append_entries_response,
    install_snapshot_request,
    install_snapshot_response,
    pre_vote_request,
    pre_vote_response,
    request_vote_request,
    request_vote_response,
    timeout_now_request,
    timeout_now_response,
)

HEAD = ("kind", "term", "source", "dest")


def test_every_message_type_keeps_its_field_order() -> None:
    assert RequestVoteRequest._fields == (*HEAD, "last_log_term", "last_log_index", "transfer")
    assert RequestVoteResponse._fields == (*HEAD, "vote_granted")
    assert AppendEntriesRequest._fields == (
        *HEAD, "prev_log_index", "prev_log_term", "entries", "leader_commit")  # fmt: skip
    assert AppendEntriesResponse._fields == (*HEAD, "success", "match_index", "prev_log_index")
    assert InstallSnapshotRequest._fields == (
        *HEAD, "last_included_index", "last_included_term", "data")  # fmt: skip
    assert InstallSnapshotResponse._fields == (*HEAD, "last_included_index")
    assert PreVoteRequest._fields == (*HEAD, "last_log_term", "last_log_index")
    assert PreVoteResponse._fields == (*HEAD, "vote_granted")
    assert TimeoutNowRequest._fields == HEAD
    assert TimeoutNowResponse._fields == HEAD


def test_kinds_are_distinct_ordered_and_named_for_the_trace() -> None:
    kinds = (
        REQUEST_VOTE_REQUEST,
        REQUEST_VOTE_RESPONSE,
        APPEND_ENTRIES_REQUEST,
        APPEND_ENTRIES_RESPONSE,
        INSTALL_SNAPSHOT_REQUEST,
        INSTALL_SNAPSHOT_RESPONSE,
        PRE_VOTE_REQUEST,
        PRE_VOTE_RESPONSE,
        TIMEOUT_NOW_REQUEST,
        TIMEOUT_NOW_RESPONSE,
    )
    assert kinds == tuple(range(10))  # MESSAGE_NAMES is indexed by kind
    assert [MESSAGE_NAMES[k] for k in kinds] == [
        "RequestVote", "RequestVoteReply", "AppendEntries", "AppendEntriesReply",
        "InstallSnapshot", "InstallSnapshotReply", "PreVote", "PreVoteReply",
        "TimeoutNow", "TimeoutNowReply"]  # fmt: skip


def test_named_builders_fill_in_the_kind_and_put_each_field_in_its_place() -> None:
    e = (Entry(1, 7),)
    built = [
        (request_vote_request(term=3, source=0, dest=1, last_log_term=2, last_log_index=5),
         RequestVoteRequest, REQUEST_VOTE_REQUEST, (3, 0, 1, 2, 5, False)),
        (request_vote_request(term=3, source=0, dest=1, last_log_term=2, last_log_index=5,
                              transfer=True),
         RequestVoteRequest, REQUEST_VOTE_REQUEST, (3, 0, 1, 2, 5, True)),
        (pre_vote_request(term=4, source=0, dest=1, last_log_term=2, last_log_index=5),
         PreVoteRequest, PRE_VOTE_REQUEST, (4, 0, 1, 2, 5)),
        (pre_vote_response(term=4, source=1, dest=0, vote_granted=True),
         PreVoteResponse, PRE_VOTE_RESPONSE, (4, 1, 0, True)),
        (timeout_now_request(term=3, source=0, dest=2),
         TimeoutNowRequest, TIMEOUT_NOW_REQUEST, (3, 0, 2)),
        (timeout_now_response(term=3, source=2, dest=0),
         TimeoutNowResponse, TIMEOUT_NOW_RESPONSE, (3, 2, 0)),
        (request_vote_response(term=3, source=1, dest=0, vote_granted=True),
         RequestVoteResponse, REQUEST_VOTE_RESPONSE, (3, 1, 0, True)),
        (append_entries_request(term=3, source=0, dest=2, prev_log_index=4, prev_log_term=2,
                                entries=e, leader_commit=1),
         AppendEntriesRequest, APPEND_ENTRIES_REQUEST, (3, 0, 2, 4, 2, e, 1)),
        (append_entries_response(term=3, source=2, dest=0, success=False, match_index=0,
                                 prev_log_index=4),
         AppendEntriesResponse, APPEND_ENTRIES_RESPONSE, (3, 2, 0, False, 0, 4)),
        (install_snapshot_request(term=3, source=0, dest=1, last_included_index=1,
                                  last_included_term=1, data=e),
         InstallSnapshotRequest, INSTALL_SNAPSHOT_REQUEST, (3, 0, 1, 1, 1, e)),
        (install_snapshot_response(term=3, source=1, dest=0, last_included_index=1),
         InstallSnapshotResponse, INSTALL_SNAPSHOT_RESPONSE, (3, 1, 0, 1)),
    ]  # fmt: skip
    for message, cls, kind, rest in built:
        assert type(message) is cls
        assert message == (kind, *rest)
        assert message.kind == kind and message.source == rest[1] and message.dest == rest[2]
