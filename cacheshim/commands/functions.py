"""Redis 7.0 Functions: FUNCTION LOAD/DELETE/FLUSH/LIST/DUMP/RESTORE/STATS/KILL/HELP, FCALL and
FCALL_RO (Redis's `functions.c`), run by the Lua engine of `cacheshim.scripting`.

The libraries are replicated state like the script cache: FUNCTION LOAD, DELETE, FLUSH and
RESTORE are records, applied by every shim, and the snapshot carries the libraries' code.
FCALL is logged unless the call cannot write (an unknown function, answered at once, or one
registered with the `no-writes` flag: a read); FCALL_RO is a read.

FUNCTION DUMP's payload is Redis's: each library as an RDB function record (opcode 245 and
the code as an RDB string), then the RDB version (2 bytes) and a CRC64 (8 bytes), so a
payload moves between memlog and redis-server 7.0 either way.
"""

from __future__ import annotations

import io
import struct
import time
from typing import Final

from cacheshim.commands import Ctx, command, container
from cacheshim.commands.args import parse_int
from cacheshim.commands.connection import help_reply
from cacheshim.commands.scripting import (
    NUMKEYS_NEGATIVE,
    NUMKEYS_TOO_MANY,
    _scripts,
    kill_running,
    sender_deleted,
)
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError, text_from_bytes
from cacheshim.protocol.resp import OK, Error, Reply, SetReply, Status
from cacheshim.scripting.engine import ScriptError
from cacheshim.scripting.state import Function, ScriptingState, parse_library_shebang
from cacheshim.snapshot import rdb
from cacheshim.snapshot.crc64 import crc64
from cacheshim.types import glob

FUNCTION_NOT_FOUND: Final = "ERR Function not found"
BAD_NUMKEYS: Final = "ERR Bad number of keys provided"
WRITE_WITH_RO: Final = "ERR Can not execute a script with write flag using *_ro command."
LIBRARY_NOT_FOUND: Final = "ERR Library not found"
FLUSH_MODE: Final = "ERR FUNCTION FLUSH only supports SYNC|ASYNC option"
BAD_PAYLOAD: Final = "ERR DUMP payload version or checksum are wrong"

_FCALL_FLAGS: Final = "noscript stale skip_monitor no_mandatory_keys movablekeys"


def _function(scripts: object, name: bytes) -> Function | None:
    assert isinstance(scripts, ScriptingState)
    return scripts.functions.get(text_from_bytes(name).lower())


def fcall_runs_locally(scripts: object, args: list[bytes]) -> bool:
    """FCALL: an unknown function (its error at once) or one that cannot write: a read."""
    function = _function(scripts, args[1])
    return function is None or "no-writes" in function.flags


def _fcall(ctx: Ctx, args: list[bytes], readonly: bool) -> Reply:
    if (refused := sender_deleted(ctx, "fcall_ro" if readonly else "fcall")) is not None:
        return refused
    function = _function(_scripts(ctx), args[0])
    if function is None:
        return Error(FUNCTION_NOT_FOUND)
    try:
        numkeys = parse_int(args[1])
    except CommandError:
        return Error(BAD_NUMKEYS)
    if numkeys < 0:
        return Error(NUMKEYS_NEGATIVE)
    if numkeys > len(args) - 2:
        return Error(NUMKEYS_TOO_MANY)
    cannot_write = "no-writes" in function.flags
    if readonly and not cannot_write:
        return Error(WRITE_WITH_RO)
    keys, argv = args[2 : 2 + numkeys], args[2 + numkeys :]
    local = ctx.index == 0
    return _scripts(ctx).call_function(ctx, function, keys, argv, readonly or local or cannot_write)


@command(
    "fcall", -3, _FCALL_FLAGS, (0, 0, 0), "slow scripting", "scripting", "7.0.0",
    "Calls a function of a loaded library", "Depends on the function that is executed.",
    key_flags="RW access update", logged=True, local_when=fcall_runs_locally,
)  # fmt: skip
def fcall(ctx: Ctx, args: list[bytes]) -> Reply:
    return _fcall(ctx, args, readonly=False)


@command(
    "fcall_ro", -3, "readonly " + _FCALL_FLAGS, (0, 0, 0), "slow scripting", "scripting",
    "7.0.0", "Calls a function that may not write",
    "Depends on the function that is executed.",
    key_flags="RO access",
)  # fmt: skip
def fcall_ro(ctx: Ctx, args: list[bytes]) -> Reply:
    return _fcall(ctx, args, readonly=True)


# -- FUNCTION ---------------------------------------------------------------------------------

container(
    "function", -2, "slow", "scripting", "7.0.0",
    "Holds the subcommands for server-side function libraries.",
)  # fmt: skip


@command(
    "load", -3, "write denyoom noscript", (0, 0, 0), "write slow scripting", "scripting",
    "7.0.0", "Create a function with the given arguments (name, code, description)",
    "O(1) (considering compilation time is redundant)", container="function",
    tips="request_policy:all_shards response_policy:all_succeeded",
)  # fmt: skip
def function_load(ctx: Ctx, args: list[bytes]) -> Reply:
    replace = False
    i = 0
    while i < len(args) - 1:
        if args[i].upper() != b"REPLACE":
            raise CommandError(f"ERR Unknown option given: {text_from_bytes(args[i])}")
        replace = True
        i += 1
    if i != len(args) - 1:
        raise CommandError("ERR Function code is missing")
    try:
        return _scripts(ctx).load_library(args[i], replace).encode()
    except ScriptError as exc:
        return Error(exc.message)


@command(
    "delete", 3, "write noscript", (0, 0, 0), "write slow scripting", "scripting", "7.0.0",
    "Delete a function by name", container="function",
    tips="request_policy:all_shards response_policy:all_succeeded",
)  # fmt: skip
def function_delete(ctx: Ctx, args: list[bytes]) -> Reply:
    if not _scripts(ctx).delete_library(text_from_bytes(args[0])):
        raise CommandError(LIBRARY_NOT_FOUND)
    return OK


@command(
    "flush", -2, "write noscript", (0, 0, 0), "write slow scripting", "scripting", "7.0.0",
    "Deleting all functions", "O(N) where N is the number of functions deleted",
    container="function", tips="request_policy:all_shards response_policy:all_succeeded",
)  # fmt: skip
def function_flush(ctx: Ctx, args: list[bytes]) -> Reply:
    if len(args) > 1:
        raise CommandError(
            "ERR unknown subcommand or wrong number of arguments for 'FLUSH'. Try FUNCTION HELP."
        )
    if args and args[0].upper() not in (b"SYNC", b"ASYNC"):
        raise CommandError(FLUSH_MODE)
    _scripts(ctx).flush_functions()
    return OK


@command(
    "list", -2, "noscript", (0, 0, 0), "slow scripting", "scripting", "7.0.0",
    "List information about all the functions", "O(N) where N is the number of functions",
    container="function", tips="nondeterministic_output_order",
)  # fmt: skip
def function_list(ctx: Ctx, args: list[bytes]) -> Reply:
    pattern: bytes | None = None
    with_code = False
    i = 0
    while i < len(args):
        option = args[i].upper()
        if option == b"WITHCODE" and not with_code:
            with_code = True
        elif option == b"LIBRARYNAME" and pattern is None:
            if i + 1 >= len(args):
                raise CommandError("ERR library name argument was not given")
            i += 1
            pattern = args[i]
        else:
            raise CommandError(f"ERR Unknown argument {text_from_bytes(args[i])}")
        i += 1
    out: list[Reply] = []
    for library in _scripts(ctx).libraries.values():
        if pattern is not None and not glob.match(pattern, library.name.encode()):
            continue
        functions: list[Reply] = [
            {
                b"name": f.name.encode(),
                b"description": f.description,
                b"flags": SetReply([Status(flag) for flag in sorted(f.flags)]),
            }
            for f in library.functions.values()
        ]
        entry: dict[Reply, Reply] = {
            b"library_name": library.name.encode(),
            b"engine": b"LUA",
            b"functions": functions,
        }
        if with_code:
            entry[b"library_code"] = library.code
        out.append(entry)
    return out


@command(
    "dump", 2, "noscript", (0, 0, 0), "slow scripting", "scripting", "7.0.0",
    "Dump all functions into a serialized binary payload",
    "O(N) where N is the number of functions", container="function",
)  # fmt: skip
def function_dump(ctx: Ctx, args: list[bytes]) -> Reply:
    return dump_payload(_scripts(ctx).dump_libraries())


def dump_payload(codes: list[bytes]) -> bytes:
    body = b"".join(bytes((rdb.OP_FUNCTION2,)) + rdb.encode_string(code) for code in codes)
    body += struct.pack("<H", rdb.RDB_VERSION)
    return body + struct.pack("<Q", crc64(0, body))


def payload_codes(payload: bytes) -> list[bytes]:
    """The libraries' code in a FUNCTION DUMP payload (Redis's or ours); CommandError with
    Redis's texts for a payload that is damaged or from a newer RDB version."""
    if len(payload) < 10:
        raise CommandError(BAD_PAYLOAD)
    version = struct.unpack("<H", payload[-10:-8])[0]
    if version > rdb.RDB_VERSION or struct.unpack("<Q", payload[-8:])[0] != crc64(0, payload[:-8]):
        raise CommandError(BAD_PAYLOAD)
    body = payload[:-10]
    source = rdb._Source(io.BytesIO(body), len(body) + 1)
    codes: list[bytes] = []
    try:
        while source.offset + source.position < len(body):
            if source.byte() != rdb.OP_FUNCTION2:
                raise CommandError("ERR given type is not a function")
            codes.append(source.string())
    except (rdb.RdbError, IndexError, ValueError):
        raise CommandError("ERR payload is not a valid function dump") from None
    return codes


@command(
    "restore", -3, "write denyoom noscript", (0, 0, 0), "write slow scripting", "scripting",
    "7.0.0", "Restore all the functions on the given payload",
    "O(N) where N is the number of functions on the payload", container="function",
    tips="request_policy:all_shards response_policy:all_succeeded",
)  # fmt: skip
def function_restore(ctx: Ctx, args: list[bytes]) -> Reply:
    policy = b"APPEND"
    if len(args) > 2:
        raise CommandError(
            "ERR unknown subcommand or wrong number of arguments for 'restore'. Try FUNCTION HELP."
        )
    if len(args) == 2:
        policy = args[1].upper()
        if policy not in (b"FLUSH", b"APPEND", b"REPLACE"):
            raise CommandError(
                "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE."
            )
    codes = payload_codes(args[0])
    scripts = _scripts(ctx)
    if policy == b"APPEND":
        for code in codes:
            try:
                name, _ = parse_library_shebang(code)
            except ScriptError:
                continue  # its own error comes from loading it below
            if name in scripts.libraries:
                return Error(f"ERR Library {name} already exists")
    saved = scripts.dump_libraries()
    if policy == b"FLUSH":
        scripts.flush_functions()
    try:
        for code in codes:
            name = scripts.load_library(code, replace=policy == b"REPLACE")
            del name
    except ScriptError as exc:
        scripts.load_libraries(saved)  # all or nothing, as in Redis
        return Error(exc.message)
    return OK


@command(
    "stats", 2, "noscript allow_busy", (0, 0, 0), "slow scripting", "scripting", "7.0.0",
    "Return information about the function currently running (name, description, duration)",
    container="function",
    tips="nondeterministic_output request_policy:all_shards response_policy:special",
)  # fmt: skip
def function_stats(ctx: Ctx, args: list[bytes]) -> Reply:
    scripts = _scripts(ctx)
    engines: Reply = {
        b"LUA": {
            b"libraries_count": len(scripts.libraries),
            b"functions_count": len(scripts.functions),
        }
    }
    running = scripts.on_thread
    current: Reply = None
    if running is not None:
        if running.is_eval:  # (as Redis: STATS describes functions only)
            raise CommandError(errors.BUSY_EVAL)
        current = {
            b"name": running.args[1],
            b"command": list(running.args),
            b"duration_ms": int((time.monotonic() - running.started_s) * 1000),
        }
    return {b"running_script": current, b"engines": engines}


@command(
    "kill", 2, "noscript allow_busy", (0, 0, 0), "slow scripting", "scripting", "7.0.0",
    "Stops the running function if it has not written and runs on this shim only.",
    container="function",
    tips="request_policy:all_shards response_policy:one_succeeded",
)  # fmt: skip
def function_kill(ctx: Ctx, args: list[bytes]) -> Reply:
    return kill_running(ctx, is_eval=False)


@command(
    "help", 2, "loading stale", (0, 0, 0), "slow scripting", "scripting", "7.0.0",
    "Lists the FUNCTION subcommands.", container="function",
)  # fmt: skip
def function_help(ctx: Ctx, args: list[bytes]) -> Reply:
    return help_reply(
        [
            "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "LOAD [REPLACE] <library code>",
            "    Load a library (through the log); REPLACE lets it replace one of its name.",
            "DELETE <library name>",
            "    Delete a library and its functions.",
            "LIST [LIBRARYNAME <pattern>] [WITHCODE]",
            "    The libraries and their functions, with their code if asked.",
            "FLUSH [ASYNC|SYNC]",
            "    Delete every library.",
            "DUMP",
            "    Every library as one payload (Redis's format).",
            "RESTORE <payload> [FLUSH|APPEND|REPLACE]",
            "    Load the libraries of a payload.",
            "STATS",
            "    The running function, if any, and the engine's counts.",
            "KILL",
            "    Stop the running function (one that cannot write: FCALL_RO, no-writes).",
            "HELP",
            "    This text.",
        ]
    )
