"""The C reader of plain log records (`cacheshim._records.plain_args`) against its Python
twin (`apply.plain_args_py`), and apply's result with and without it.

Randomized tests print their seed; set RECORDS_SEED to replay one."""

from __future__ import annotations

import os
import random

import pytest

from cacheshim import apply as apply_module
from cacheshim.apply import Applier, plain_args_py
from cacheshim.commands import load_all
from cacheshim.server.writer import encode_command_record, record_for
from cacheshim.v1 import record_pb2

load_all()

try:
    from cacheshim._records import plain_args as plain_args_native  # type: ignore[import-not-found]
except ImportError:  # MEMLOG_PURE_PYTHON=1
    plain_args_native = None


def test_the_extension_is_built() -> None:
    """Without it apply silently takes the general path for every record (slower, same
    results); only an install told to go without C (MEMLOG_PURE_PYTHON=1) may lack it."""
    assert plain_args_native is not None or os.environ.get("MEMLOG_PURE_PYTHON") == "1"


def seeded(name: str) -> random.Random:
    seed = int(os.environ.get("RECORDS_SEED", random.randrange(1 << 32)))
    print(f"{name}: RECORDS_SEED={seed}")
    return random.Random(seed)


def random_args(rng: random.Random) -> list[bytes]:
    name = rng.choice([b"SET", b"incr", b"LPUSH", b"HSET", b"ZADD", b"DEL", b""])
    return [name] + [
        bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 3, 20, 200])))
        for _ in range(rng.randrange(4))
    ]


def random_record(rng: random.Random) -> bytes:
    """A record as the shim writes it, or with the fields a transaction, an unblock, a
    chunk, watched keys or a foreign writer would add."""
    if rng.random() < 0.3:
        return encode_command_record(
            rng.randrange(20), rng.randrange(-5, 2**45), f"shim-{rng.randrange(3)}",
            rng.randrange(2**40), random_args(rng), rng.choice([None, b"", b"alice"]),
        )  # fmt: skip
    record = record_for(rng.randrange(20), [random_args(rng)], transaction=False)
    record.shim_id, record.proposal_id = "s", rng.randrange(2**64)
    extra = rng.randrange(10)
    if extra == 0:
        record.transaction = True
    elif extra == 1:
        record.commands.add().args.append(b"PING")
    elif extra == 2:
        record.unblock_proposal_id = 7
    elif extra == 3:
        record.watched.add(db=0, key=b"k")
    elif extra == 4:
        record.chunk.part = 1
    elif extra == 5:
        record.user = b"bob"
    elif extra == 6:
        del record.commands[:]
    return record.SerializeToString()


def damaged(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        pick = rng.randrange(4)
        at = rng.randrange(len(out) + 1)
        if pick == 0 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif pick == 1:
            del out[at:]
        elif pick == 2:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
        else:  # a field the schema does not know, or one of its own again
            out += rng.choice([b"\x68\x01", b"\x08\x03", b"\x2a\x03\x0a\x01x", b"\x30\x01"])
    return bytes(out)


def test_the_c_reader_agrees_with_its_python_twin() -> None:
    if plain_args_native is None:
        pytest.skip("installed with MEMLOG_PURE_PYTHON=1: no C extension")
    rng = seeded("plain_args")
    plain = stepped_aside = 0
    for _ in range(2500):
        payload = random_record(rng)
        if rng.random() < 0.4:
            payload = damaged(rng, payload)
        try:
            record_pb2.Record.FromString(payload)
        except Exception:
            continue  # apply never asks about a record that does not decode
        want = plain_args_py(payload)
        got = plain_args_native(payload)
        # C may step aside (None) for encodings the shim never writes, never the reverse.
        assert got is None or got == want, payload
        plain += got is not None
        stepped_aside += got is None and want is not None
    assert plain > 600
    print(f"plain {plain}, left to the general path though plain {stepped_aside}")


def test_every_record_the_writer_makes_of_one_command_is_read_in_c() -> None:
    if plain_args_native is None:
        pytest.skip("installed with MEMLOG_PURE_PYTHON=1: no C extension")
    rng = seeded("writer records")
    for _ in range(500):
        args = random_args(rng)
        record = record_for(rng.randrange(16), [args], transaction=False)
        record.shim_id, record.proposal_id = "shim-1", rng.randrange(1, 2**64)
        if rng.random() < 0.5:
            record.user = b"alice"
        assert plain_args_native(record.SerializeToString()) == args
        big = encode_command_record(1, 5, "shim-1", 9, args, b"u")
        assert plain_args_native(big) == args


def test_apply_gives_the_same_replies_and_keyspace_with_and_without_the_c_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = seeded("apply")
    payloads = []
    for i in range(800):
        key = b"k%d" % rng.randrange(8)
        args = rng.choice([
            [b"SET", key, b"v%d" % i], [b"INCR", key], [b"LPUSH", key, b"x"],
            [b"HSET", key, b"f", b"v"], [b"ZADD", key, b"1", b"m%d" % i], [b"GET", key],
            [b"SET", key, b"v", b"PX", b"5"], [b"NOSUCH"], [b"SET", key],
        ])  # fmt: skip
        record = record_for(rng.choice([0, 0, 0, 1, 99]), [args], transaction=rng.random() < 0.1)
        record.shim_id, record.proposal_id, record.time_ms = "s", i + 1, 1000 + i
        payloads.append(record.SerializeToString())
        if rng.random() < 0.05:
            payloads.append(damaged(rng, payloads[-1]))

    def run_all() -> tuple[list[object], str]:
        applier = Applier()
        replies: list[object] = [applier.apply(i, p)[1] for i, p in enumerate(payloads, 1)]
        return replies, applier.keyspace.digest()

    with_c = run_all()
    monkeypatch.setattr(apply_module, "plain_args", lambda payload: None)
    assert run_all() == with_c


def test_the_c_record_writer_writes_what_the_python_one_writes() -> None:
    try:
        from cacheshim._records import encode_command_record as native
    except ImportError:
        pytest.skip("installed with MEMLOG_PURE_PYTHON=1: no C extension")
    rng = seeded("encode_command_record")
    for _ in range(1000):
        fields = (
            rng.choice([0, 1, 15, 2**32 - 1]),
            rng.choice([0, 1, -1, -(2**63), 2**63 - 1, rng.randrange(-(2**40), 2**45)]),
            rng.choice(["", "shim-1", "zone-é"]),
            rng.choice([0, 1, 2**64 - 1, rng.randrange(2**40)]),
            random_args(rng),
            rng.choice([None, b"", b"alice", b"x" * 300]),
        )
        data = native(*fields)
        assert data == encode_command_record(*fields), fields
        assert plain_args_native is None or plain_args_native(data) == fields[4]


def test_the_python_record_writer_writes_what_protobuf_writes() -> None:
    """`writer.encode_command_record` (the C encoder's specification) against protobuf's own
    serialization of the same Record, as `record_for` and `Writer.submit` build it."""
    rng = seeded("encode_command_record against protobuf")
    for _ in range(1000):
        db = rng.choice([0, 1, 15, rng.randrange(2**31)])
        time_ms = rng.choice([0, 1, -1, -(2**63), 2**63 - 1, rng.randrange(-(2**40), 2**45)])
        shim_id = rng.choice(["", "shim-1", "zone-é"])
        proposal_id = rng.choice([0, 1, 2**64 - 1, rng.randrange(2**40)])
        args = random_args(rng)
        user = rng.choice([None, b"", b"alice", b"x" * 300])
        record = record_pb2.Record(db=db, time_ms=time_ms, transaction=False)
        record.commands.add().args.extend(args)
        record.shim_id, record.proposal_id = shim_id, proposal_id
        if user is not None:
            record.user = user
        fields = (db, time_ms, shim_id, proposal_id, args, user)
        assert encode_command_record(*fields) == record.SerializeToString(), fields


def test_the_writer_sends_the_same_bytes_with_either_encoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`Writer.submit_command` encodes with `writer.encode_record` (C when built); with the
    Python twin put in its place, every record it queues is byte for byte the same."""
    import asyncio

    from cacheshim.server import writer as writer_module

    rng = seeded("Writer.submit_command")
    commands = [
        (rng.choice([0, 3]), random_args(rng), rng.choice([None, b"alice"])) for _ in range(300)
    ]
    monkeypatch.setattr(writer_module, "wall_ms", lambda: 1_700_000_000_123)

    def queued(encoder: object) -> list[bytes]:
        monkeypatch.setattr(writer_module, "encode_record", encoder)

        async def go() -> list[bytes]:
            writer = writer_module.Writer(None, "shim-é", timeout_s=5)  # type: ignore[arg-type]
            for db, args, user in commands:
                writer.submit_command(db, args, origin=1, user=user)
            return [write.data for write in writer._queue]

        return asyncio.run(go())

    native = writer_module.encode_record
    python = queued(writer_module.encode_command_record)
    assert len(python) == len(commands)
    assert queued(native) == python
    assert [plain_args_py(data) for data in python] == [args for _, args, _ in commands]
