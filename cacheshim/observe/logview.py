"""What a shim knows of the log around it, for INFO's ``# Replication``, the metrics and
/readyz: each log node's last Status (asked once a second), the highest commit index any
of them reported, and how far this shim's applied index is behind it, in records and in
time (staleness: how long since this shim had applied everything it knew committed)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from logsvc.client import LogClient

log = logging.getLogger("cacheshim.observe")

POLL_S = 1.0


@dataclass
class NodeView:
    address: str
    up: bool = False
    zone: str = ""
    role: str = ""
    term: int = 0
    commit_index: int = 0
    last_index: int = 0
    error: str = ""


@dataclass
class LogView:
    nodes: dict[str, NodeView] = field(default_factory=dict)
    commit_index: int = 0
    leader_changes: int = 0
    leader: str = ""
    # monotonic time when this shim was last seen having applied all it knew committed.
    caught_up_at: float = field(default_factory=time.monotonic)

    def observe(self, applied_index: int, now: float) -> None:
        if applied_index >= self.commit_index:
            self.caught_up_at = now

    def lag_records(self, applied_index: int) -> int:
        return max(0, self.commit_index - applied_index)

    def staleness_s(self, applied_index: int, now: float) -> float:
        if applied_index >= self.commit_index:
            return 0.0
        return max(0.0, now - self.caught_up_at)

    def lines(self, applied_index: int) -> list[tuple[str, object]]:
        """INFO's memlog fields of ``# Replication``."""
        now = time.monotonic()
        out: list[tuple[str, object]] = [("memlog_log_nodes", len(self.nodes))]
        for i, node in enumerate(self.nodes.values()):
            state = "up" if node.up else "down"
            out.append(
                (
                    f"memlog_log_node{i}",
                    f"address={node.address},zone={node.zone},role={node.role or '?'},"
                    f"term={node.term},commit_index={node.commit_index},"
                    f"last_index={node.last_index},status={state}",
                )
            )
        out += [
            ("memlog_log_leader", self.leader),
            ("memlog_applied_index", applied_index),
            ("memlog_commit_index", max(self.commit_index, applied_index)),
            ("memlog_lag_records", self.lag_records(applied_index)),
            ("memlog_staleness_ms", int(self.staleness_s(applied_index, now) * 1000)),
        ]
        return out

    async def poll_once(self, client: LogClient, applied_index: int) -> None:
        for address in client.addresses:
            node = self.nodes.get(address)
            if node is None:
                node = self.nodes[address] = NodeView(address)
            try:
                status = await client.status(address)
            except Exception as exc:  # a node down or unreachable: said in INFO and metrics
                node.up, node.error = False, str(exc)
                continue
            node.up, node.error = True, ""
            node.zone, node.role = status.zone, status.role
            node.term = status.header.term
            node.commit_index, node.last_index = status.commit_index, status.last_index
            self.commit_index = max(self.commit_index, status.commit_index)
            leader = status.header.leader_address
            if leader and leader != self.leader:
                if self.leader:
                    self.leader_changes += 1
                self.leader = leader
        self.observe(applied_index, time.monotonic())


async def watch_log(view: LogView, client: LogClient, applied: Callable[[], int]) -> None:
    """Poll every node's Status once a second, for the shim's life."""
    while True:
        try:
            await view.poll_once(client, applied())
        except Exception:  # never let the view die: it is only a view
            log.exception("polling the log nodes' status failed")
        await asyncio.sleep(POLL_S)
