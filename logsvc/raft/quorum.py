"""Majority arithmetic: the committed index of a set of match indexes, and vote tallies."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

from logsvc.raft.types import NodeId


class VoteResult(enum.IntEnum):
    PENDING = 0
    WON = 1
    LOST = 2


def quorum_size(voters: Sequence[NodeId]) -> int:
    return len(voters) // 2 + 1


def committed_index(voters: Sequence[NodeId], match: Mapping[NodeId, int]) -> int:
    """The largest index that a majority of voters have acknowledged."""
    acked = sorted((match.get(v, 0) for v in voters), reverse=True)
    return acked[quorum_size(voters) - 1]


def vote_result(voters: Sequence[NodeId], votes: Mapping[NodeId, bool]) -> VoteResult:
    granted = sum(1 for v in voters if votes.get(v) is True)
    missing = sum(1 for v in voters if v not in votes)
    needed = quorum_size(voters)
    if granted >= needed:
        return VoteResult.WON
    if granted + missing >= needed:
        return VoteResult.PENDING
    return VoteResult.LOST


def has_quorum(voters: Sequence[NodeId], members: Mapping[NodeId, bool]) -> bool:
    return sum(1 for v in voters if members.get(v)) >= quorum_size(voters)
