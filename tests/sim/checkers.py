"""Safety checkers: each raises Violation, naming the invariant, on the first breach."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from logsvc.raft.types import ConfChange, ConfChangeType, Entry, EntryType, NodeId


class Violation(Exception):
    def __init__(self, checker: str, detail: str) -> None:
        super().__init__(f"{checker}: {detail}")
        self.checker = checker
        self.detail = detail

    def __reduce__(self) -> tuple[type[Violation], tuple[str, str]]:
        return (Violation, (self.checker, self.detail))


@dataclass(frozen=True, slots=True)
class LogView:
    """A node's log as (first index, entries from there on), for cross-node checks."""

    node: NodeId
    first_index: int
    entries: Sequence[Entry]

    def get(self, index: int) -> Entry | None:
        pos = index - self.first_index
        if 0 <= pos < len(self.entries):
            return self.entries[pos]
        return None

    @property
    def last_index(self) -> int:
        return self.first_index + len(self.entries) - 1


@dataclass
class Checkers:
    # term -> the one node that led it
    leaders_by_term: dict[int, NodeId] = field(default_factory=dict)
    # index -> (term, data) of what any node published as committed there
    committed: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    committed_max: int = 0
    # index -> data of proposals a client was told are committed
    acknowledged: dict[int, bytes] = field(default_factory=dict)
    # node -> last index it published (contiguity of each node's commit stream)
    published_to: dict[NodeId, int] = field(default_factory=dict)
    # index -> data of the membership changes committed there
    conf_changes: dict[int, bytes] = field(default_factory=dict)

    # -- election safety (paper 5.2) ------------------------------------------------

    def on_leader(self, node: NodeId, term: int) -> None:
        other = self.leaders_by_term.setdefault(term, node)
        if other != node:
            raise Violation("election-safety", f"two leaders in term {term}: {other} and {node}")

    # -- state machine safety (5.4.3) ------------------------------------------------

    def on_restart(self, node: NodeId) -> None:
        self.published_to.pop(node, None)

    def on_boundary(self, node: NodeId, index: int) -> None:
        """The node restarted its log at a trim boundary: its stream resumes after it."""
        self.published_to[node] = index

    def on_publish(self, node: NodeId, entry: Entry) -> None:
        last = self.published_to.get(node)
        if last is not None and entry.index != last + 1:
            raise Violation(
                "commit-order", f"{node} published index {entry.index} right after {last}"
            )
        self.published_to[node] = entry.index
        seen = self.committed.setdefault(entry.index, (entry.term, entry.data))
        if seen != (entry.term, entry.data):
            raise Violation(
                "state-machine-safety",
                f"{node} committed {entry.term}/{entry.data!r} at index {entry.index}, "
                f"another node committed {seen[0]}/{seen[1]!r} there",
            )
        self.committed_max = max(self.committed_max, entry.index)
        if entry.type is EntryType.CONF_CHANGE:
            self.conf_changes[entry.index] = entry.data

    # -- membership changes ---------------------------------------------------------------

    def on_leader_membership(self, node: NodeId, term: int, voters: Sequence[NodeId]) -> None:
        if node not in voters:
            raise Violation(
                "leader-not-voter", f"{node} leads term {term} but its voters are {list(voters)}"
            )

    def check_membership_steps(self, voters: Sequence[NodeId]) -> None:
        """The committed membership changes, in log order, each change one server from the
        membership before it, and each entry's stated result is that change applied to it
        (a leader that proposed from a stale membership, or two changes at once, fails)."""
        members = (frozenset(voters), frozenset[NodeId]())
        for index in sorted(self.conf_changes):
            change, after = ConfChange.decode(self.conf_changes[index])
            want = _apply_change(members, change.type, change.node)
            got = (frozenset(after.voters), frozenset(after.learners))
            if want != got:
                raise Violation(
                    "membership-step",
                    f"index {index} ({change.describe()}) states voters {sorted(got[0])} "
                    f"learners {sorted(got[1])}, but from voters {sorted(members[0])} "
                    f"learners {sorted(members[1])} the change gives {sorted(want[0])} / "
                    f"{sorted(want[1])}",
                )
            members = got

    def on_acknowledged(self, index: int, data: bytes) -> None:
        seen = self.committed.get(index)
        if seen is None or seen[1] != data:
            raise Violation("acknowledged", f"index {index} acknowledged but not committed")
        self.acknowledged[index] = data

    # -- leader completeness (5.4.1) -------------------------------------------------

    def check_leader_completeness(self, leader: LogView, term: int) -> None:
        for index in range(max(leader.first_index, 1), self.committed_max + 1):
            want = self.committed.get(index)
            if want is None:
                continue
            have = leader.get(index)
            if have is None or (have.term, have.data) != want:
                shown = "nothing" if have is None else f"{have.term}/{have.data!r}"
                raise Violation(
                    "leader-completeness",
                    f"{leader.node} leads term {term} with {shown} at index {index}, "
                    f"but {want[0]}/{want[1]!r} was committed there",
                )

    # -- ReadIndex ---------------------------------------------------------------------

    def on_read_answer(self, node: NodeId, context: bytes, index: int, required: int) -> None:
        if index < required:
            raise Violation(
                "read-index",
                f"{node} answered read {context!r} with index {index}, but index {required} "
                "was committed before the request",
            )

    # -- log matching (5.3) and durability of acknowledged writes ----------------------

    def check_log_matching(self, logs: Iterable[LogView]) -> None:
        views = list(logs)
        for i, a in enumerate(views):
            for b in views[i + 1 :]:
                _check_pair(a, b)

    def check_acknowledged_durable(self, durable_logs: Sequence[LogView], quorum: int) -> None:
        """Every acknowledged write is in the synced log of a majority (what survives any
        crash), and no synced log holds something else at its index."""
        for index, data in self.acknowledged.items():
            holders = 0
            for log in durable_logs:
                if index < log.first_index:
                    holders += 1  # trimmed, which a node does only after applying it
                    continue
                have = log.get(index)
                if have is None:
                    continue
                if have.data != data:
                    raise Violation(
                        "acknowledged-durable",
                        f"{log.node} holds {have.data!r} at index {index}, "
                        f"acknowledged as {data!r}",
                    )
                holders += 1
            if holders < quorum:
                raise Violation(
                    "acknowledged-durable",
                    f"index {index} ({data!r}) was acknowledged but only {holders} synced "
                    f"logs hold it, fewer than a majority of {quorum}",
                )


def _check_pair(a: LogView, b: LogView) -> None:
    lo = max(a.first_index, b.first_index)
    hi = min(a.last_index, b.last_index)
    # The highest index where both logs have an entry of the same term...
    top = hi
    while top >= lo:
        ea, eb = a.get(top), b.get(top)
        if ea is not None and eb is not None and ea.term == eb.term:
            break
        top -= 1
    # ...and everything up to it must be identical (paper 5.3, Log Matching).
    for index in range(lo, top + 1):
        ea, eb = a.get(index), b.get(index)
        if ea != eb:
            raise Violation(
                "log-matching",
                f"{a.node} and {b.node} agree on term {a.get(top)!r} at index {top} "
                f"but differ at index {index}: {ea!r} vs {eb!r}",
            )


def _apply_change(
    members: tuple[frozenset[NodeId], frozenset[NodeId]], kind: ConfChangeType, node: NodeId
) -> tuple[frozenset[NodeId], frozenset[NodeId]]:
    voters, learners = set(members[0]), set(members[1])
    if kind is ConfChangeType.ADD_LEARNER and node not in voters | learners:
        learners.add(node)
    elif kind is ConfChangeType.PROMOTE and node in learners:
        learners.discard(node)
        voters.add(node)
    elif kind is ConfChangeType.REMOVE and node in voters | learners:
        voters.discard(node)
        learners.discard(node)
    else:
        return frozenset({"<invalid change>"}), frozenset()
    return frozenset(voters), frozenset(learners)
