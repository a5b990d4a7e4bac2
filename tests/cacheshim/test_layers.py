"""The shim's layers and its command table hold their shape: flags are checked when a command
is declared, session commands carry the handler the connection runs, a command is looked up
and checked once as it is read, and the lower layers never import the server."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cacheshim.commands import COMMANDS, Ctx, Flag, command, load_all
from cacheshim.protocol.resp import OK, Reply
from cacheshim.server.dispatch import check

CACHESHIM = Path(__file__).resolve().parents[2] / "cacheshim"
# Layers below the server: they may not import it (commands see it through serverview).
BELOW_SERVER = ("protocol", "types", "config", "commands", "apply.py", "blocking.py", "hub.py")


def _ok(ctx: Ctx, args: list[bytes]) -> Reply:
    return OK


def test_an_unknown_flag_fails_at_registration() -> None:
    # A misspelt "write" would otherwise be served from local memory as a read.
    with pytest.raises(ValueError, match="unknown flag 'wirte'"):
        command("memlog-flag-typo", 2, "wirte fast")(_ok)
    assert "memlog-flag-typo" not in COMMANDS


def test_every_declared_flag_is_a_flag_and_writes_follow_it() -> None:
    load_all()
    specs = [s for c in COMMANDS.values() for s in (c, *c.subcommands.values())]
    assert specs
    for spec in specs:
        assert all(isinstance(f, Flag) for f in spec.flags), spec.full_name
        assert spec.is_write == (spec.logged or Flag.WRITE in spec.flags), spec.full_name
    assert COMMANDS["set"].is_write and not COMMANDS["get"].is_write


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("part", BELOW_SERVER)
def test_layers_below_the_server_never_import_it(part: str) -> None:
    root = CACHESHIM / part
    files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
    assert files
    for file in files:
        server = {
            m
            for m in _imports(file)
            if m == "cacheshim.server" or m.startswith("cacheshim.server.")
        }
        assert not server, f"{file.relative_to(CACHESHIM.parent)} imports {sorted(server)}"


def test_session_commands_carry_the_handler_the_connection_runs() -> None:
    # A session command declared without one would reach its table handler, which only
    # answers inside EXEC ("cannot run inside MULTI/EXEC"); no other command has one.
    load_all()
    specs = [s for c in COMMANDS.values() for s in (c, *c.subcommands.values())]
    session = {
        s.full_name for s in specs if s.handler and s.handler.__module__.endswith(".session")
    }
    on_connection = {s.full_name for s in specs if s.on_connection is not None}
    assert session == on_connection
    assert {"hello", "select", "multi", "exec", "watch", "reset"} <= on_connection


def test_a_command_is_looked_up_and_checked_as_it_is_read() -> None:
    load_all()
    unknown = check([b"NOSUCH", b"a"])
    assert unknown.spec is None and unknown.error is not None and not unknown.plain_write
    short = check([b"SET", b"k"])
    assert short.error == "ERR wrong number of arguments for 'set' command"
    assert not short.plain_write
    assert check([b"set", b"k", b"v"]).plain_write
    assert not check([b"GET", b"k"]).plain_write
    assert not check([b"CONFIG", b"SET", b"maxclients", b"10"]).plain_write  # a subcommand
