"""`memlog tail`: the log's records as the Redis commands they carry, one per line.

Each line is `INDEX<TAB>COMMAND`, the command written as redis-cli would echo it (an argument
with spaces, quotes or unprintable bytes in double quotes with C escapes). A transaction's
commands share its index, between MULTI and EXEC; a record that is not a shim record says
so. `--format json` prints one object per record with every field of the record.
"""

from __future__ import annotations

import base64
import json

from google.protobuf.message import DecodeError

from cacheshim.v1 import record_pb2
from logsvc.auth import ClientCredentials

_ESCAPES = {ord("\n"): b"\\n", ord("\r"): b"\\r", ord("\t"): b"\\t", 7: b"\\a", 8: b"\\b"}
_ESCAPES |= {ord('"'): b'\\"', ord("\\"): b"\\\\"}


def quote_arg(arg: bytes) -> str:
    """arg as is when it is plain printable ASCII, else double-quoted with escapes."""
    if arg and all(0x21 <= b < 0x7F and b not in b"\"'\\" for b in arg):
        return arg.decode()
    body = b"".join(
        _ESCAPES.get(b) or (bytes((b,)) if 0x20 <= b < 0x7F else b"\\x%02x" % b) for b in arg
    )
    return '"' + body.decode() + '"'


def command_text(args: list[bytes]) -> str:
    return " ".join(quote_arg(a) for a in args) if args else "(a command with no arguments)"


def decode(payload: bytes) -> record_pb2.Record | None:
    try:
        return record_pb2.Record.FromString(payload)
    except DecodeError:
        return None


def text_lines(index: int, payload: bytes) -> list[str]:
    record = decode(payload)
    if record is None or not record.commands:
        return [f"{index}\t(not a shim record: {len(payload)} bytes)"]
    commands = [command_text(list(c.args)) for c in record.commands]
    if record.db:
        commands.insert(0, f"SELECT {record.db}")
    if record.transaction:
        commands = ["MULTI", *commands, "EXEC"]
    return [f"{index}\t{c}" for c in commands]


def json_line(index: int, payload: bytes) -> str:
    record = decode(payload)
    if record is None:
        obj: dict[str, object] = {
            "index": index,
            "error": "not a shim record",
            "payload_base64": base64.b64encode(payload).decode(),
        }
    else:
        obj = {
            "index": index,
            "db": record.db,
            "time_ms": record.time_ms,
            "shim_id": record.shim_id,
            "proposal_id": record.proposal_id,
            "transaction": record.transaction,
            "commands": [
                [a.decode("utf-8", "backslashreplace") for a in c.args] for c in record.commands
            ],
            "watched": [
                {"db": w.db, "key": w.key.decode("utf-8", "backslashreplace")}
                for w in record.watched
            ],
            "watch_index": record.watch_index,
            # The exact bytes: the text above replaces what is not UTF-8.
            "payload_base64": base64.b64encode(payload).decode(),
        }
    return json.dumps(obj)


async def tail(
    addresses: list[str],
    from_index: int,
    follow: bool,
    fmt: str,
    credentials: ClientCredentials | None = None,
    timeout_s: float = 30.0,
) -> int:
    """Print the records from `from_index`; without `follow`, give up (LogClientError) when no
    node has served the read for `timeout_s`."""
    from logsvc.client import LogClient

    attempt_s = min(3.0, timeout_s)
    async with LogClient(
        addresses, credentials=credentials, timeout_s=timeout_s, attempt_timeout_s=attempt_s
    ) as client:
        async for index, payload in client.read(from_index, follow=follow):
            lines = [json_line(index, payload)] if fmt == "json" else text_lines(index, payload)
            print("\n".join(lines), flush=True)
    return 0
