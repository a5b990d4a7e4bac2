"""Deliberately broken Raft cores: the simulator's checkers must catch every one of them.

Each variant changes one decision of `logsvc.raft.raft.Raft` through the hook that makes
it, so the test proves that the checkers bite on exactly that mistake.
"""

from __future__ import annotations

from collections.abc import Sequence

from logsvc.raft import quorum
from logsvc.raft.raft import Raft
from logsvc.raft.types import ConfChange, Entry, HardState, Message, MessageType


class FollowerAcksBeforePersist(Raft):
    """A follower acknowledges appended entries before they are synced."""

    def needs_persist_before_send(self, message: Message) -> bool:
        if message.type is MessageType.APPEND_RESPONSE:
            return False
        return super().needs_persist_before_send(message)


class VoteNotPersisted(Raft):
    """The vote is kept in memory only: a restarted node can vote twice in one term."""

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=None, commit=self.log.committed)


class LeaderCountsSelfBeforeSync(Raft):
    """The leader counts its own entries toward commit before its own sync finished."""

    def append_entries(self, entries: Sequence[Entry]) -> None:
        super().append_entries(entries)
        if self.progress[self.id].maybe_update(self.log.last_index()) and self.maybe_commit():
            self.on_leader_commit()


class CommitsPreviousTermByCounting(Raft):
    """The leader commits an entry of an earlier term once a majority holds it (Figure 8)."""

    def maybe_commit(self) -> bool:
        match = {v: pr.match for v, pr in self.progress.items()}
        index = quorum.committed_index(self.voters, match)
        if index > self.log.committed:
            self.log.commit_to(index)
            return True
        return False


class TwoMembershipChangesAtOnce(Raft):
    """The leader proposes a membership change while the previous one is not applied yet."""

    def propose_conf_change(self, change: ConfChange) -> int:
        self.pending_conf_index = 0
        return super().propose_conf_change(change)


VARIANTS: dict[str, type[Raft]] = {
    "correct": Raft,
    "follower-acks-before-persist": FollowerAcksBeforePersist,
    "vote-not-persisted": VoteNotPersisted,
    "leader-counts-self-before-sync": LeaderCountsSelfBeforeSync,
    "commits-previous-term": CommitsPreviousTermByCounting,
    "two-membership-changes-at-once": TwoMembershipChangesAtOnce,
}
