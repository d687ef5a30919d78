"""Errors a caller of the public API handles."""

from __future__ import annotations


class NotLeader(Exception):
    """This node is not the leader: ask ``leader`` (at ``address``) instead.

    ``leader`` is the id of the leader this node believes in, or None when it
    knows of none (an election is under way); ``address`` is that leader's
    ``host:port`` when the node knows the cluster's addresses.
    """

    def __init__(self, leader: int | None = None, address: str | None = None) -> None:
        self.leader = leader
        self.address = address
        if leader is None:
            message = "not the leader, and no leader is known yet"
        else:
            where = f" at {address}" if address else ""
            message = f"not the leader; the leader is node {leader}{where}"
        super().__init__(message)
