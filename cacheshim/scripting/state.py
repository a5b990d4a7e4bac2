"""The scripting state apply keeps beside the keyspace: the script cache (SCRIPT LOAD, EVAL)
and, later, the function libraries. It changes only inside apply (records in log order), so
every shim holds the same one at the same index; the snapshot carries it (`dump`/`load`).

The compiled Lua functions are a cache of it, rebuilt on demand from the bodies."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cacheshim.scripting.engine import LuaEngine, ScriptError

if TYPE_CHECKING:
    from cacheshim.commands import Ctx
    from cacheshim.protocol.resp import Reply

SHEBANG_FLAGS = ("no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys")


@dataclass(frozen=True, slots=True)
class Script:
    body: bytes
    # The shebang's flags; None without a shebang (an old-style script: it may write).
    flags: frozenset[str] | None

    @property
    def may_write(self) -> bool:
        return self.flags is None or "no-writes" not in self.flags


def sha1hex(body: bytes) -> str:
    return hashlib.sha1(body).hexdigest()


def parse_shebang(body: bytes) -> tuple[frozenset[str] | None, bytes]:
    """The flags of a script's `#!lua flags=...` line (None without one) and the body Lua
    compiles: the shebang line blanked, so line numbers stay those of the script. Raises
    ScriptError with Redis's texts."""
    if not body.startswith(b"#!"):
        return None, body
    end = body.find(b"\n")
    if end < 0:
        raise ScriptError("ERR Invalid script shebang")
    words = body[2:end].split(b" ")
    if words[0] != b"lua":
        raise ScriptError(
            "ERR Unexpected engine in script shebang: "
            + body[: 2 + len(words[0])].decode("utf-8", "surrogateescape")
        )
    flags: set[str] = set()
    for word in words[1:]:
        if not word:
            continue
        if not word.startswith(b"flags="):
            raise ScriptError(
                "ERR Unknown lua shebang option: " + word.decode("utf-8", "surrogateescape")
            )
        for flag in word[6:].split(b","):
            if not flag:
                continue
            name = flag.decode("utf-8", "surrogateescape")
            if name not in SHEBANG_FLAGS:
                raise ScriptError("ERR Unexpected flag in script shebang: " + name)
            flags.add(name)
    return frozenset(flags), body[end:]


class ScriptingState:
    """The script cache (sha -> script, in the order they were added) and the Lua engine
    that runs them."""

    def __init__(self, runner: Callable[[Ctx, list[bytes]], Reply]) -> None:
        self._runner = runner
        self.scripts: dict[str, Script] = {}
        self._engine: LuaEngine | None = None
        self._compiled: dict[str, Any] = {}

    @property
    def engine(self) -> LuaEngine:
        if self._engine is None:
            self._engine = LuaEngine(self._runner)
        return self._engine

    def add(self, body: bytes) -> str:
        """Compile and cache a script (EVAL, SCRIPT LOAD): its sha. Raises ScriptError."""
        sha = sha1hex(body)
        if sha in self.scripts:
            return sha
        flags, source = parse_shebang(body)
        try:
            self._compiled[sha] = self.engine.compile(source, b"@user_script")
        except ScriptError as exc:
            raise ScriptError("ERR Error compiling script (new function): " + exc.message) from None
        self.scripts[sha] = Script(body, flags)
        return sha

    def get(self, sha: str) -> Script | None:
        return self.scripts.get(sha.lower())

    def run(
        self, ctx: Ctx, sha: str, keys: list[bytes], argv: list[bytes], readonly: bool
    ) -> Reply:
        sha = sha.lower()
        fn = self._compiled.get(sha)
        if fn is None:  # restored from a snapshot: compile on first use
            script = self.scripts[sha]
            fn = self._compiled[sha] = self.engine.compile(
                parse_shebang(script.body)[1], b"@user_script"
            )
        return self.engine.call(fn, ctx, keys, argv, readonly, sha)

    def flush(self) -> None:
        self.scripts.clear()
        self._compiled.clear()

    # -- the snapshot ------------------------------------------------------------------------

    def dump(self) -> list[bytes]:
        """The script bodies, in cache order (the snapshot's part)."""
        return [script.body for script in self.scripts.values()]

    def load(self, bodies: list[bytes]) -> None:
        self.flush()
        for body in bodies:
            try:
                flags, _ = parse_shebang(body)
            except ScriptError:
                continue
            self.scripts[sha1hex(body)] = Script(body, flags)
