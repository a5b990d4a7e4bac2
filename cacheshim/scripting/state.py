"""The scripting state apply keeps beside the keyspace: the script cache (SCRIPT LOAD, EVAL)
and the function libraries (FUNCTION LOAD). It changes only inside apply (records in log order), so
every shim holds the same one at the same index; the snapshot carries it (`dump`/`load`).

The compiled Lua functions are a cache of it, rebuilt on demand from the bodies (a
restored shim compiles its scripts on first use and reloads its libraries at once)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cacheshim.protocol.errors import ProtocolError
from cacheshim.protocol.resp import split_inline_args
from cacheshim.scripting.engine import INVALID_NAME, LuaEngine, ScriptError, valid_name

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


@dataclass(frozen=True, slots=True)
class Function:
    name: str
    library: str
    fn: Any  # the Lua function
    flags: frozenset[str]
    description: bytes | None


@dataclass(frozen=True, slots=True)
class Library:
    name: str
    code: bytes
    functions: dict[str, Function]


def parse_library_shebang(code: bytes) -> tuple[str, bytes]:
    """A library's name (from `#!lua name=<name>`) and the body Lua compiles (the shebang
    line blanked, so line numbers are the code's). Raises ScriptError with Redis's texts."""
    if not code.startswith(b"#!"):
        raise ScriptError("ERR Missing library metadata")
    end = code.find(b"\n")
    line = code[2:] if end < 0 else code[2:end]
    # The engine is what comes before the first space; the rest split as Redis splits it
    # (sdssplitargs: quotes work).
    engine_bytes, _, rest = line.partition(b" ")
    try:
        words = [engine_bytes, *split_inline_args(rest)]
    except ProtocolError:
        raise ScriptError("ERR Invalid library metadata") from None
    engine = engine_bytes.decode("utf-8", "surrogateescape")
    if engine.lower() != "lua":
        raise ScriptError(f"ERR Engine '{engine}' not found")
    name: str | None = None
    for word in words[1:]:
        text = word.decode("utf-8", "surrogateescape")
        if not text.startswith("name="):
            raise ScriptError(f"ERR Invalid metadata value given: {text}")
        if name is not None:
            raise ScriptError("ERR Invalid metadata value, name argument was given multiple times")
        name = text[5:]
    if name is None:
        raise ScriptError("ERR Library name was not given")
    if not valid_name(name):
        raise ScriptError(INVALID_NAME)
    return name, (b"" if end < 0 else code[end:])


class ScriptingState:
    """The script cache (sha -> script, in the order they were added) and the Lua engine
    that runs them."""

    def __init__(self, runner: Callable[[Ctx, list[bytes]], Reply]) -> None:
        self._runner = runner
        self.scripts: dict[str, Script] = {}
        self._engine: LuaEngine | None = None
        self._compiled: dict[str, Any] = {}
        # Function libraries by name, and their functions by lower-case name (one namespace,
        # case-insensitive as in Redis).
        self.libraries: dict[str, Library] = {}
        self.functions: dict[str, Function] = {}

    @property
    def engine(self) -> LuaEngine:
        if self._engine is None:
            self._engine = LuaEngine(self._runner)
        return self._engine

    @property
    def running(self) -> bool:
        """Whether a script runs now (a command handler called by redis.call sees it)."""
        return self._engine is not None and self._engine.running

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

    # -- functions ---------------------------------------------------------------------------

    def load_library(self, code: bytes, replace: bool) -> str:
        """FUNCTION LOAD: the library's name; raises ScriptError (nothing changes then)."""
        name, body = parse_library_shebang(code)
        old = self.libraries.get(name)
        if old is not None and not replace:
            raise ScriptError(f"ERR Library '{name}' already exists")
        registered = self.engine.load_library(body)
        if not registered:
            raise ScriptError("ERR No functions registered")
        for function in registered:
            existing = self.functions.get(function.name.lower())
            if existing is not None and existing.library != name:
                raise ScriptError(f"ERR Function {function.name} already exists")
        if old is not None:
            self.delete_library(name)
        functions = {
            r.name: Function(r.name, name, r.fn, r.flags, r.description) for r in registered
        }
        self.libraries[name] = Library(name, code, functions)
        self.functions.update((f.lower(), function) for f, function in functions.items())
        return name

    def delete_library(self, name: str) -> bool:
        library = self.libraries.pop(name, None)
        if library is None:
            return False
        for function in library.functions:
            del self.functions[function.lower()]
        return True

    def flush_functions(self) -> None:
        self.libraries.clear()
        self.functions.clear()

    def call_function(
        self, ctx: Ctx, function: Function, keys: list[bytes], argv: list[bytes], readonly: bool
    ) -> Reply:
        return self.engine.call(
            function.fn, ctx, keys, argv, readonly, function.name, as_function=True
        )

    # -- the snapshot ------------------------------------------------------------------------

    def dump_libraries(self) -> list[bytes]:
        """The libraries' code, in load order (the snapshot's part)."""
        return [library.code for library in self.libraries.values()]

    def load_libraries(self, codes: list[bytes]) -> None:
        self.flush_functions()
        for code in codes:
            try:
                self.load_library(code, replace=True)
            except ScriptError:
                continue

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
