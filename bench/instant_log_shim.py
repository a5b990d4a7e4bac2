"""A shim whose log is instant: the shim's own ceiling, for bench/shim_redis_benchmark.py.

    .venv/bin/python bench/instant_log_shim.py --port 6400

Runs the real shim (cacheshim.server: RESP, command table, Writer, apply, replies) with its
LogClient replaced by `InstantLog`, an in-process list that "commits" an Append at the next
turn of the event loop: no gRPC, no Raft, no disk. Whatever SET rate redis-benchmark gets
from it is the most any log could let this shim reach, since the shim's own work per write
(parse, record, apply, reply) stays. Not durable and not for use: a measuring stick.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cacheshim.server.shim
from cacheshim.cli import main as shim_main
from logsvc.client import AppendResult
from logsvc.v1 import log_pb2


class _NoSnapshots:
    """The snapshot calls a starting shim makes (cacheshim/snapshot/bootstrap.py): the
    instant log holds none, so the shim replays from index 1."""

    async def ListSnapshots(
        self, request: log_pb2.ListSnapshotsRequest, timeout: float | None = None
    ) -> log_pb2.ListSnapshotsResponse:
        return log_pb2.ListSnapshotsResponse()


class InstantLog:
    """The part of LogClient the shim uses, over one list shared by the shim's clients."""

    records: ClassVar[list[bytes]] = []
    appended: ClassVar[asyncio.Event | None] = None
    attempt_timeout_s: ClassVar[float] = 1.0

    def __init__(self, addresses: Sequence[str], **_: object) -> None:
        self.addresses = list(addresses)

    def stub(self, address: str) -> _NoSnapshots:
        return _NoSnapshots()

    @classmethod
    def _event(cls) -> asyncio.Event:
        if cls.appended is None:
            cls.appended = asyncio.Event()
        return cls.appended

    async def append(
        self,
        records: Sequence[bytes],
        if_last_index: int | None = None,
        timeout_s: float | None = None,
    ) -> AppendResult:
        await asyncio.sleep(0)  # the answer comes in a later turn, as a real one would
        first = len(InstantLog.records) + 1
        InstantLog.records.extend(records)
        self._event().set()
        return AppendResult(first, len(InstantLog.records), False)

    async def read(
        self,
        from_index: int,
        follow: bool = False,
        address: str | None = None,
        batch_records_max: int = 0,
        prefer: str | None = None,
        on_header: Callable[[log_pb2.ResponseHeader], None] | None = None,
    ) -> AsyncIterator[tuple[int, bytes]]:
        index = from_index
        while True:
            while index <= len(InstantLog.records):
                yield index, InstantLog.records[index - 1]
                index += 1
            if not follow:
                return
            event = self._event()
            event.clear()
            await event.wait()

    async def status(self, address: str) -> log_pb2.StatusResponse:
        return log_pb2.StatusResponse(commit_index=len(InstantLog.records))

    async def read_index(self, address: str | None = None) -> int:
        return len(InstantLog.records)

    @property
    def read_from(self) -> str | None:
        return self.addresses[0]

    async def close(self) -> None:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    cacheshim.server.shim.LogClient = InstantLog  # type: ignore[misc,assignment]
    return shim_main(
        ["serve", "--listen", f"127.0.0.1:{args.port}", "--log", "instant:1",
         "--local-log", "instant:1", "--shim-id", "instant"]
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
