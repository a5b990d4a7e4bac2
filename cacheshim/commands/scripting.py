"""EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT (Redis's `eval.c`), run by the Lua engine of
`cacheshim.scripting`.

Where a script runs: EVAL and EVALSHA are logged (`logged=True`): a script that may write
is one record and runs inside apply on every shim, with the record's time and index-seeded
randomness (docs/decisions/0004-lua.md). `local_when` sends the calls that cannot write to
the read path instead: a script whose shebang says `no-writes`, and an EVALSHA of a script
this shim does not hold (NOSCRIPT at once, without a round trip through the log). EVAL_RO
and EVALSHA_RO are reads. A script run locally (ctx.index == 0) refuses writes, and is not
added to the script cache (which changes only through the log, so that every shim holds the
same one): EVALSHA finds a script after an EVAL or SCRIPT LOAD that went through the log.
"""

from __future__ import annotations

from typing import Final

from cacheshim.commands import Ctx, command, container
from cacheshim.commands.args import parse_int
from cacheshim.commands.connection import help_reply
from cacheshim.protocol import errors
from cacheshim.protocol.errors import CommandError, text_from_bytes
from cacheshim.protocol.resp import OK, Error, Reply
from cacheshim.scripting.engine import ScriptError
from cacheshim.scripting.state import ScriptingState, parse_shebang, sha1hex

NOSCRIPT: Final = "NOSCRIPT No matching script. Please use EVAL."
NUMKEYS_NEGATIVE: Final = "ERR Number of keys can't be negative"
NUMKEYS_TOO_MANY: Final = "ERR Number of keys can't be greater than number of args"
FLUSH_MODE: Final = "ERR SCRIPT FLUSH only support SYNC|ASYNC option"

_EVAL_FLAGS: Final = "noscript stale skip_monitor no_mandatory_keys movablekeys"

# The commands that run a script: their records carry the sender's ACL user (Record.user),
# against whose rules the script's commands are checked at apply.
RUNS_SCRIPTS: Final = frozenset(("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"))


def runs_script(args: list[bytes]) -> bool:
    return args[0].lower().decode("utf-8", "surrogateescape") in RUNS_SCRIPTS


def sender_deleted(ctx: Ctx, name: str) -> Reply | None:
    """Inside apply: the ACL user who sent this script was deleted before its record came
    (Redis closes a deleted user's connections, so a command of theirs not yet run never
    runs): the script is refused as dispatch refuses a deleted user's command, on every
    shim alike. None: it runs (its calls checked against the user's rules as of now)."""
    if ctx.index == 0 or ctx.user is None or ctx.acl is None or ctx.acl.get(ctx.user):
        return None
    from cacheshim.acl.check import NOPERM_COMMAND  # (cacheshim.acl imports the commands)

    return Error(NOPERM_COMMAND % name)


def split_keys(args: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """KEYS and ARGV of EVAL-like arguments (script-or-name numkeys key... arg...)."""
    numkeys = parse_int(args[1])
    if numkeys < 0:
        raise CommandError(NUMKEYS_NEGATIVE)
    if numkeys > len(args) - 2:
        raise CommandError(NUMKEYS_TOO_MANY)
    return args[2 : 2 + numkeys], args[2 + numkeys :]


def _scripts(ctx: Ctx) -> ScriptingState:
    scripts = ctx.scripts
    if scripts is None:
        raise CommandError("ERR scripting is not available here")
    return scripts


def eval_runs_locally(scripts: object, args: list[bytes]) -> bool:
    """EVAL: whether this call cannot write (a `no-writes` shebang), so it runs as a read."""
    try:
        flags, _ = parse_shebang(args[1])
    except ScriptError:
        return True  # the error, at once
    return flags is not None and "no-writes" in flags


def evalsha_runs_locally(scripts: object, args: list[bytes]) -> bool:
    """EVALSHA: a script this shim does not hold (NOSCRIPT at once) or one that cannot write."""
    assert isinstance(scripts, ScriptingState)
    script = scripts.get(text_from_bytes(args[1]))
    return script is None or not script.may_write


def _eval(ctx: Ctx, args: list[bytes], readonly: bool) -> Reply:
    if (refused := sender_deleted(ctx, "eval_ro" if readonly else "eval")) is not None:
        return refused
    body = args[0]
    keys, argv = split_keys(args)
    scripts = _scripts(ctx)
    local = ctx.index == 0
    try:
        if local:
            sha = sha1hex(body)
            if scripts.get(sha) is None:
                fn = scripts.compile_local(sha, body)
                return scripts.engine.call(fn, ctx, keys, argv, True, sha)
        else:
            sha = scripts.add(body)
    except ScriptError as exc:
        return Error(exc.message)
    script = scripts.get(sha)
    assert script is not None
    return scripts.run(ctx, sha, keys, argv, readonly or local or not script.may_write)


def _evalsha(ctx: Ctx, args: list[bytes], readonly: bool) -> Reply:
    if (refused := sender_deleted(ctx, "evalsha_ro" if readonly else "evalsha")) is not None:
        return refused
    sha = text_from_bytes(args[0])
    scripts = _scripts(ctx)
    script = scripts.get(sha) if len(sha) == 40 else None
    if script is None:
        return Error(NOSCRIPT)
    keys, argv = split_keys(args)
    local = ctx.index == 0
    return scripts.run(ctx, sha, keys, argv, readonly or local or not script.may_write)


@command(
    "eval", -3, _EVAL_FLAGS, (0, 0, 0), "slow scripting", "scripting", "2.6.0",
    "Runs a Lua script given in full, on every shim if it may write",
    "Depends on the script that is executed.",
    key_flags="RW access update", logged=True, local_when=eval_runs_locally,
)  # fmt: skip
def eval_(ctx: Ctx, args: list[bytes]) -> Reply:
    return _eval(ctx, args, readonly=False)


@command(
    "evalsha", -3, _EVAL_FLAGS, (0, 0, 0), "slow scripting", "scripting", "2.6.0",
    "Runs a cached Lua script named by its SHA1 digest", "Depends on the script that is executed.",
    key_flags="RW access update", logged=True, local_when=evalsha_runs_locally,
)  # fmt: skip
def evalsha(ctx: Ctx, args: list[bytes]) -> Reply:
    return _evalsha(ctx, args, readonly=False)


@command(
    "eval_ro", -3, "readonly " + _EVAL_FLAGS, (0, 0, 0), "slow scripting", "scripting",
    "7.0.0", "Runs a Lua script given in full that may not write, on this shim",
    "Depends on the script that is executed.", key_flags="RO access",
)  # fmt: skip
def eval_ro(ctx: Ctx, args: list[bytes]) -> Reply:
    return _eval(ctx, args, readonly=True)


@command(
    "evalsha_ro", -3, "readonly " + _EVAL_FLAGS, (0, 0, 0), "slow scripting", "scripting",
    "7.0.0", "Runs a cached Lua script that may not write, on this shim",
    "Depends on the script that is executed.", key_flags="RO access",
)  # fmt: skip
def evalsha_ro(ctx: Ctx, args: list[bytes]) -> Reply:
    return _evalsha(ctx, args, readonly=True)


# -- SCRIPT ----------------------------------------------------------------------------------

container("script", -2, "slow", "scripting", "2.6.0", "Holds the subcommands for the script cache.")


@command(
    "load", 3, "noscript stale", (0, 0, 0), "slow scripting", "scripting", "2.6.0",
    "Load the specified Lua script into the script cache.", "O(N) with N being the length in "
    "bytes of the script body.", container="script", logged=True,
    tips="request_policy:all_nodes response_policy:all_succeeded",
)  # fmt: skip
def script_load(ctx: Ctx, args: list[bytes]) -> Reply:
    try:
        return _scripts(ctx).add(args[0]).encode()
    except ScriptError as exc:
        return Error(exc.message)


@command(
    "exists", -3, "noscript", (0, 0, 0), "slow scripting", "scripting", "2.6.0",
    "Check existence of scripts in the script cache.",
    "O(N) with N being the number of scripts to check (so checking a single script is an "
    "O(1) operation).", container="script",
    tips="request_policy:all_shards response_policy:agg_logical_and",
)  # fmt: skip
def script_exists(ctx: Ctx, args: list[bytes]) -> Reply:
    scripts = _scripts(ctx)
    return [int(scripts.get(text_from_bytes(sha)) is not None) for sha in args]


@command(
    "flush", -2, "noscript", (0, 0, 0), "slow scripting", "scripting", "2.6.0",
    "Remove all the scripts from the script cache.",
    "O(N) with N being the number of scripts in cache", container="script", logged=True,
    tips="request_policy:all_nodes response_policy:all_succeeded",
)  # fmt: skip
def script_flush(ctx: Ctx, args: list[bytes]) -> Reply:
    if len(args) > 1 or (args and args[0].upper() not in (b"SYNC", b"ASYNC")):
        raise CommandError(FLUSH_MODE)
    _scripts(ctx).flush()
    return OK


@command(
    "kill", 2, "noscript allow_busy", (0, 0, 0), "slow scripting", "scripting", "2.6.0",
    "Stops the running script if it has not written and runs on this shim only.",
    container="script",
    tips="request_policy:all_shards response_policy:one_succeeded",
)  # fmt: skip
def script_kill(ctx: Ctx, args: list[bytes]) -> Reply:
    return kill_running(ctx, is_eval=True)


def kill_running(ctx: Ctx, is_eval: bool) -> Reply:
    """SCRIPT KILL (is_eval) and FUNCTION KILL: ask the call running on the script thread
    to end, in Redis's order of refusals. Only a call that cannot change the other shims'
    state may end: a local one (EVAL_RO, a no-writes script or function) that has not
    written; a record's script runs on every shim and ends alike on each (its budget)."""
    scripts = _scripts(ctx)
    running = scripts.on_thread
    if running is None:
        raise CommandError(errors.NOT_BUSY)
    if scripts.engine.dirty():
        raise CommandError(errors.UNKILLABLE_WROTE)
    if is_eval and not running.is_eval:
        raise CommandError(errors.BUSY_FUNCTION)
    if not is_eval and running.is_eval:
        raise CommandError(errors.BUSY_EVAL)
    if running.at_apply:
        raise CommandError(errors.UNKILLABLE_AT_APPLY)
    scripts.engine.kill_requested = True
    return OK


@command(
    "debug", 3, "noscript", (0, 0, 0), "slow scripting", "scripting", "3.2.0",
    "Set the debug mode for executed scripts.", container="script",
)  # fmt: skip
def script_debug(ctx: Ctx, args: list[bytes]) -> Reply:
    mode = args[0].lower()
    if mode == b"no":
        return OK
    if mode in (b"yes", b"sync"):
        raise CommandError("ERR memlog has no Lua debugger (SCRIPT DEBUG NO is the only mode)")
    raise CommandError("ERR Use SCRIPT DEBUG YES/SYNC/NO")


@command(
    "help", 2, "loading stale", (0, 0, 0), "slow scripting", "scripting", "5.0.0",
    "Lists the SCRIPT subcommands.", container="script",
)  # fmt: skip
def script_help(ctx: Ctx, args: list[bytes]) -> Reply:
    return help_reply(
        [
            "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "DEBUG NO",
            "    No debugger here: NO is the only mode.",
            "EXISTS <sha1> [<sha1> ...]",
            "    For each sha1, 1 if the script cache holds it, else 0.",
            "FLUSH [ASYNC|SYNC]",
            "    Empty the script cache (on every shim: it goes through the log).",
            "KILL",
            "    Stop the running script (one that cannot write: EVAL_RO, no-writes).",
            "LOAD <script>",
            "    Add a script to the cache (through the log) and answer its sha1.",
            "HELP",
            "    This text.",
        ]
    )
