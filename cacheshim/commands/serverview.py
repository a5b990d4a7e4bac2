"""What a command may see of the server around it: the connection it arrived on (`Session`)
and that connection's shim (`ShimView`).

The server (`cacheshim.server`) provides both; command modules depend on these protocols
only, never on the server's modules, so the import graph runs one way: server -> commands.
A read gets `ctx.session`; inside apply there is no connection and `ctx.session` is None.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol, TypeAlias

from cacheshim.blocking import Blocker
from cacheshim.config.serverconfig import ServerConfig
from cacheshim.hub import Hub
from cacheshim.protocol.resp import Reply
from cacheshim.serverstate import ClientPause, ServerStats
from cacheshim.types.keyspace import Keyspace

if TYPE_CHECKING:
    from cacheshim.acl.log import AclLog
    from cacheshim.acl.state import Users
    from cacheshim.scripting.state import ScriptingState
    from cacheshim.tracking import ClientTracking, Tracking


class ShimSettings(Protocol):
    """The shim's start-up settings (`serve` flags)."""

    @property
    def shim_id(self) -> str: ...
    @property
    def zone(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def local_log_address(self) -> str: ...
    @property
    def linearizable_reads(self) -> bool: ...
    @property
    def aclfile(self) -> str: ...
    @property
    def max_staleness_ms(self) -> int: ...


class AppliedState(Protocol):
    """The shim's copy of the data, and how far into the log it is."""

    @property
    def applied_index(self) -> int: ...
    @property
    def keyspace(self) -> Keyspace: ...
    @property
    def acl(self) -> Users: ...
    @property
    def scripts(self) -> ScriptingState: ...


class ShimView(Protocol):
    """One shim, as INFO, CLIENT, CONFIG, MEMLOG and pub/sub commands read and change it."""

    @property
    def config(self) -> ShimSettings: ...
    @property
    def applier(self) -> AppliedState: ...
    @property
    def pubsub(self) -> Hub: ...
    @property
    def blocking(self) -> Blocker: ...
    @property
    def sessions(self) -> Mapping[int, Session]: ...
    @property
    def server_config(self) -> ServerConfig: ...
    @property
    def stats(self) -> ServerStats: ...
    @property
    def client_pause(self) -> ClientPause: ...
    @property
    def run_id(self) -> str: ...
    @property
    def caught_up_index(self) -> int: ...
    @property
    def log_leader(self) -> str: ...
    @property
    def log_commit_index(self) -> int: ...
    def log_silent_ms(self) -> int: ...
    @property
    def acl_log(self) -> AclLog: ...
    @property
    def tracking(self) -> Tracking: ...


class Session(Protocol):
    """One client connection's state, as CLIENT LIST and friends see and change it."""

    id: int
    addr: str
    laddr: str
    created_ms: int
    name: bytes
    db: int
    protocol: int
    in_multi: bool
    queued: list[list[bytes]]
    linearizable: bool
    last_command: str
    last_active_ms: int
    closing: bool
    reply_off: bool
    reply_skip_current: bool
    reply_skip_next: bool
    no_evict: bool
    fd: int
    # ACL: the user the connection runs as, whether it authenticated, and a cache of the
    # checks (valid while acl_generation is the users' generation; see cacheshim.acl.check).
    user: bytes
    authenticated: bool
    acl_generation: int
    acl_free: bool
    # Reply bytes written to the socket but not yet sent (CLIENT LIST's omem); None before
    # the connection is set up.
    output_bytes: Callable[[], int] | None
    # Closes the connection now (CLIENT KILL from another connection).
    kill: Callable[[], None] | None
    # Writes a reply value between replies (pub/sub messages).
    push: Callable[[Reply], None] | None
    # CLIENT TRACKING's state (cacheshim.tracking).
    tracking: ClientTracking

    @property
    def shim(self) -> ShimView: ...


class ConnectionView(Protocol):
    """A client connection, as the session commands (`cacheshim.commands.session`) change
    it: each method acts on the connection's own session, in state beyond `Session`'s
    fields (the encoder, the queued transaction, the watched keys)."""

    def set_protocol(self, protocol: int) -> None:
        """HELLO: speak RESP2 or RESP3 from the next reply on."""

    def exec_transaction(self) -> Reply | asyncio.Future[Reply]:
        """EXEC: the transaction's reply, or the future of it (a transaction that writes)."""

    def discard_transaction(self) -> None:
        """DISCARD: drop the queued commands and forget the WATCHes."""

    def watch_keys(self, keys: list[bytes]) -> None:
        """WATCH: each key counts from now, unless it is watched already."""

    def unwatch_keys(self) -> None:
        """UNWATCH: forget every watched key."""

    def reset_session(self) -> None:
        """RESET: the connection back in its initial state."""


# A session command, run by the connection itself (declared with `command(on_connection=)`):
# it answers a reply (or the future of one), or raises CommandError with Redis's text.
ConnectionHandler: TypeAlias = Callable[
    [ConnectionView, Session, list[bytes]], Reply | asyncio.Future[Reply]
]
