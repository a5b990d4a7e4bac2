"""Membership changes on real processes: a node joins as a learner, is promoted, an old
voter leaves, another dies, and the log keeps committing without losing an acknowledged
record (issue 21; docs/decisions/0007-membership-changes.md)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from logsvc.client import AppendOutcomeUnknown, LogClient
from tests.logsvc.cluster import Cluster

BOOTSTRAP = ("a", "b", "c")


@dataclass
class JoiningCluster(Cluster):
    """a, b, c bootstrap the cluster; any other node starts with `serve --join`, knowing
    the bootstrap members and itself."""

    def serve_args(self, node_id: str) -> list[str]:
        args = super().serve_args(node_id)
        members = BOOTSTRAP if node_id in BOOTSTRAP else (*BOOTSTRAP, node_id)
        at = args.index("--peers") + 1
        args[at] = ",".join(
            f"{n.id}={n.address}/{n.peer_port}" for n in self.nodes.values() if n.id in members
        )
        if node_id not in BOOTSTRAP:
            args.append("--join")
        return args


@dataclass
class Writer:
    acked: dict[bytes, int] = field(default_factory=dict)  # payload -> record index
    unknown: set[bytes] = field(default_factory=set)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, addresses: list[str]) -> None:
        async with LogClient(
            addresses, producer_id="membership", timeout_s=15, attempt_timeout_s=1.5
        ) as client:
            i = 0
            while not self.stop.is_set():
                payload = f"m-{i}".encode()
                i += 1
                try:
                    result = await client.append([payload])
                except AppendOutcomeUnknown:
                    self.unknown.add(payload)
                    continue
                self.acked[payload] = result.first_index

    async def more(self, count: int, timeout: float, what: str) -> None:
        """Wait until count more appends are acknowledged."""
        target = len(self.acked) + count
        deadline = time.monotonic() + timeout
        while len(self.acked) < target:
            assert time.monotonic() < deadline, (
                f"only {len(self.acked)} of {target} appends acknowledged {what} "
                f"(unknown: {len(self.unknown)})"
            )
            await asyncio.sleep(0.01)


def members(c: Cluster, addr: str) -> dict[str, str]:
    out = json.loads(c.cli("member", "list", "--addr", addr).stdout)
    return {m["id"]: m["role"] for m in out["members"]}


def test_add_promote_remove_and_kill_keep_the_log_committing(tmp_path: Path) -> None:
    c = JoiningCluster(tmp_path, ("a", "b", "c", "d"))
    try:
        for node_id in BOOTSTRAP:
            c.start(node_id)
        for node_id in BOOTSTRAP:
            c.wait_serving(node_id)
        c.leader(among=list(BOOTSTRAP))
        c.start("d")
        c.wait_serving("d")
        old = ",".join(c.address(n) for n in BOOTSTRAP)
        assert members(c, old) == {"a": "voter", "b": "voter", "c": "voter"}
        d = c.nodes["d"]
        writer = Writer()
        steps: list[str] = []

        async def change(*args: str) -> dict[str, str]:
            out = await asyncio.to_thread(
                c.cli, "member", *args, "--addr", c.addr, "--timeout-s", "30", timeout=60.0
            )
            return {m["id"]: m["role"] for m in json.loads(out.stdout)["members"]}

        async def go() -> None:
            task = asyncio.create_task(writer.run(c.addresses))
            try:
                await writer.more(25, 20, "before any change")
                after = await change(
                    "add", "d", "--address", d.address, "--peer-address", d.peer_address
                )
                assert after == {"a": "voter", "b": "voter", "c": "voter", "d": "learner"}
                steps.append("d added as a learner")
                await writer.more(25, 20, "with d a learner")
                after = await change("promote", "d")
                assert after["d"] == "voter", after
                steps.append("d promoted")
                await writer.more(25, 20, "with four voters")
                # A restarted member finds its membership again (from the log it replays).
                c.kill("d")
                c.start("d")
                await asyncio.to_thread(c.wait_serving, "d")
                assert (await asyncio.to_thread(members, c, d.address))["d"] == "voter"
                steps.append("d restarted")
                await writer.more(25, 20, "after d restarted")
                # Remove the leader itself: it hands over and steps down.
                leader = await asyncio.to_thread(c.leader, 30.0, list(c.nodes))
                after = await change("remove", leader)
                assert leader not in after and len(after) == 3, after
                steps.append(f"{leader} (the leader) removed")
                c.stop(leader)
                await writer.more(25, 20, f"after removing {leader}")
                # Kill another old voter: two of the three voters left still commit.
                victim = next(n for n in BOOTSTRAP if n != leader)
                c.kill(victim)
                steps.append(f"{victim} killed")
                await writer.more(25, 30, f"after killing {victim}")
            finally:
                writer.stop.set()
                await asyncio.wait_for(task, 30)

        asyncio.run(go())
        survivors = c.live()
        assert "d" in survivors and len(survivors) == 2, (survivors, steps)
        top = max(writer.acked.values())
        c.wait_last_index(top, survivors)
        for node_id in survivors:
            log = dict(c.read_all(node_id))
            wrong = {p: i for p, i in writer.acked.items() if log.get(i) != p}
            assert not wrong, f"{node_id}: acknowledged records missing: {wrong}"
            assert sorted(log) == list(range(1, len(log) + 1)), f"{node_id}: holes"
        listed = members(c, c.address("d"))
        assert listed["d"] == "voter" and len(listed) == 3, listed
        print(f"{steps}; acked {len(writer.acked)}, unknown {len(writer.unknown)}")
    finally:
        c.close()
