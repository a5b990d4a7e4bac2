"""The replica's one path to apply: records from the Read stream and from this shim's own
committed Append both go through `Replica._receive`, so each is applied once, in log order,
whichever source brings it first. No log is involved: the records are handed in directly."""

from __future__ import annotations

import asyncio

import pytest

from cacheshim import server


def test_stream_and_own_append_apply_each_record_once_in_order() -> None:
    async def go() -> None:
        shim = server.Shim(
            server.ShimConfig("127.0.0.1", 0, ("127.0.0.1:1",), "127.0.0.1:1", "shim-t")
        )
        incr = server.record_for(0, [[b"INCR", b"n"]], transaction=False).SerializeToString()
        db = shim.applier.keyspace.dbs[0]

        shim._apply_committed(2, [incr, incr])  # record 1 not applied yet: left to the stream
        assert shim.applier.applied_index == 0
        shim._receive(1, incr)  # the stream
        assert (shim.applier.applied_index, db.data[b"n"]) == (1, b"1")
        # Our Append at 1..3, of which the stream brought 1 first: 2 and 3 are applied here.
        shim._apply_committed(1, [incr, incr, incr])
        assert (shim.applier.applied_index, db.data[b"n"]) == (3, b"3")
        for index in (1, 2, 3):  # the stream's copies: skipped
            shim._receive(index, incr)
        assert (shim.applier.applied_index, db.data[b"n"]) == (3, b"3")
        with pytest.raises(RuntimeError):  # a gap: the apply loop reads again from 4
            shim._receive(5, incr)
        assert shim.applier.applied_index == 3
        await shim.stop()

    asyncio.run(go())
