"""A fast differential check of command handlers: each command runs through apply's `run` on
an in-process keyspace (as every shim runs it, with a record time and index) and on a real
redis-server, and the RESP bytes must be equal. It skips the log and the network, so a
randomized test can afford thousands of commands; the tests that go through a real memlog
deployment cover the rest of the path."""

from __future__ import annotations

from collections.abc import Sequence

from cacheshim.apply import run
from cacheshim.commands import Ctx, load_all
from cacheshim.protocol.resp import encode
from cacheshim.types.keyspace import Keyspace
from tests.cacheshim.rawresp import RawConnection

Arg = bytes | str | int


class ApplyDiff:
    """A keyspace applied in-process beside a redis-server connection (flushed at start)."""

    def __init__(self, port: int, protocol: int = 2) -> None:
        load_all()
        self.oracle = RawConnection(port, protocol)
        self.oracle.call("FLUSHALL")
        self.protocol = protocol
        self.keyspace = Keyspace()
        self.index = 0

    def apply(self, args: Sequence[Arg]) -> bytes:
        self.index += 1
        ctx = Ctx(self.keyspace, 0, 1_700_000_000_000 + self.index, index=self.index)
        argv = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        return encode(run(ctx, argv), self.protocol)

    def check(self, *args: Arg) -> bytes:
        """Run one command on both sides; its replies must be the same bytes."""
        want = self.oracle.call(*args)
        got = self.apply(args)
        assert got == want, f"{list(args)!r}: redis-server sent {want!r}, apply gave {got!r}"
        return got

    def check_all(self, commands: Sequence[Sequence[Arg]]) -> None:
        for args in commands:
            self.check(*args)

    def close(self) -> None:
        self.oracle.close()
