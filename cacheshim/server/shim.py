"""The shim: its configuration, its parts, and its life (catch up with the log, serve, stop)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
from dataclasses import dataclass

from cacheshim import persistence
from cacheshim.acl.log import AclLog
from cacheshim.apply import Applier
from cacheshim.blocking import Blocker, unblock_record
from cacheshim.clientlimits import OutputLimits, startup_maxclients
from cacheshim.commands import load_all
from cacheshim.commands.acl import read_acl_file
from cacheshim.config.serverconfig import MAX_STALENESS, ServerConfig
from cacheshim.hub import Hub
from cacheshim.observe.logview import watch_log
from cacheshim.protocol.errors import CommandError
from cacheshim.server.busy import ScriptThread
from cacheshim.server.clock import wall_ms
from cacheshim.server.connection import Connection
from cacheshim.server.replica import Replica
from cacheshim.server.sessions import Session
from cacheshim.server.tls import TLS_FILES_CHECK_S, TlsListener
from cacheshim.server.writer import Writer
from cacheshim.serverstate import ClientPause, ServerStats, sample_rates
from cacheshim.snapshot import bootstrap
from cacheshim.tracking import Tracking
from logsvc.auth import ClientCredentials
from logsvc.client import LogClient

log = logging.getLogger("cacheshim.server")

# A client that has not finished its TLS handshake by then is dropped (asyncio's default is
# 60 s, which lets idle half-open connections pile up).
TLS_HANDSHAKE_TIMEOUT_S = 10.0
# How often a shim with tracking clients looks for keys due to expire (`_expire_for_tracking`).
EXPIRY_CHECK_S = 0.1


@dataclass(frozen=True, slots=True)
class ShimConfig:
    host: str
    port: int
    log_addresses: tuple[str, ...]
    # The zone-local log node the apply loop reads from (first choice).
    local_log_address: str
    shim_id: str
    zone: str = ""
    linearizable_reads: bool = False
    write_timeout_s: float = 10.0
    # Local reads are refused (MASTERDOWN) once the shim has not heard from the log for
    # longer than this (cacheshim.server.replica); 0: never, however stale.
    max_staleness_ms: int = 0
    # CONFIG parameters set at startup (name, value), as redis-server takes --maxclients.
    server_settings: tuple[tuple[str, str], ...] = ()
    # An ACL file (Redis's aclfile): seeds the users at bootstrap, read by ACL LOAD,
    # written by ACL SAVE. Empty: none.
    aclfile: str = ""
    # TLS and identity for the log nodes (None: plaintext, no identity).
    log_credentials: ClientCredentials | None = None


class Shim(Replica):
    """One shim: its log clients, writer, replica state, sessions and listening socket."""

    def __init__(self, config: ShimConfig) -> None:
        load_all()
        self.config = config
        self.pubsub = Hub()  # this shim's subscribers; PUBLISH records deliver to them
        self.applier = Applier(self.pubsub)
        local_first = [config.local_log_address] + [
            a for a in config.log_addresses if a != config.local_log_address
        ]
        self.log_writer_client = LogClient(
            list(config.log_addresses),
            producer_id=f"{config.shim_id}-{os.getpid()}-{wall_ms()}",
            timeout_s=config.write_timeout_s,
            credentials=config.log_credentials,
        )
        self.log_reader_client = LogClient(local_first, credentials=config.log_credentials)
        self.writer = Writer(
            self.log_writer_client,
            config.shim_id,
            config.write_timeout_s,
            committed=self._apply_committed,
        )
        # Clients waiting in BLPOP & co. (cacheshim.blocking), told about every applied record.
        self.blocking = Blocker(self.applier, self.writer)
        self.sessions: dict[int, Session] = {}
        self._client_ids = itertools.count(1)
        # wait_applied's callers: (index, ticket, future), a heap by index.
        self._index_waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._tickets = itertools.count()
        self.started_ms = wall_ms()
        self.read_rng = random.Random()
        # The plaintext listener (none when its port is 0) and the TLS one (tls-port).
        self.server: asyncio.Server | None = None
        self.tls_server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.caught_up_index = 0
        self.loading = False  # rebuilding after the log was trimmed past it (Replica)
        self.log_leader = ""
        self.log_commit_index = 0
        # CONFIG, INFO and CLIENT PAUSE state (local to this shim, never logged).
        self.server_config = ServerConfig.for_shim(config.host, config.port)
        self.server_config.set_many(
            [(name.encode(), value.encode()) for name, value in config.server_settings],
            startup=True,
        )
        maxclients = self.server_config.int_value("maxclients")
        self.server_config.values["maxclients"] = str(startup_maxclients(maxclients))
        self.server_config.values["aclfile"] = config.aclfile
        self.server_config.values[MAX_STALENESS] = str(config.max_staleness_ms)
        # The TLS listener's context (None without tls-port); CONFIG SET rebuilds it.
        self.tls: TlsListener | None = None
        if self.server_config.int_value("tls-port"):
            self.tls = TlsListener(self.server_config)
            self.server_config.tls_reload = self.tls.reload
        self.output_limits = OutputLimits()
        self.stats = ServerStats()
        self.client_pause = ClientPause()
        # Script calls that run long leave the event loop for this thread (server/busy.py).
        self.script_thread = ScriptThread(self.applier, self._busy_reply_threshold_ms)
        self.script_thread.on_start = self._hold_new_records
        self.script_thread.on_idle = self._release_records
        self.acl_log = AclLog()  # this shim's ACL refusals (ACL LOG), never logged
        # CLIENT TRACKING of this shim's clients, told of changes by apply (cacheshim.tracking).
        self.tracking = Tracking(self.sessions, self.pubsub, self._tracking_max_keys)
        self.run_id = os.urandom(20).hex()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Restore the newest snapshot, replay the log after it up to the commit index seen
        now, then start serving."""
        # INFO's rates and the event loop's heartbeat (/livez), from the start.
        self._tasks.append(asyncio.create_task(sample_rates(self.stats), name="stats-sampler"))
        target = await self._commit_index()
        # The newest usable snapshot, then the log after it up to target (issue 16).
        await bootstrap.recover(self.applier, self.log_reader_client, target, self._apply)
        self.applier.scripts.engine.offload = True  # long calls leave the loop from now on
        self._tasks.append(asyncio.create_task(persistence.watch(self), name="store-watch"))
        self._tasks.append(
            asyncio.create_task(
                watch_log(self.stats.log, self.log_reader_client, self._applied_index),
                name="log-view",
            )
        )
        self.writer.start()
        self._tasks.append(asyncio.create_task(self._apply_loop(), name="apply-loop"))
        while self.applier.applied_index < target:
            try:
                await self.wait_applied(target, timeout_s=1.0)
            except TimeoutError:
                # `memlog up` repeats this line (cacheshim/launcher.py looks for its words).
                log.info(
                    "catching up: applied %d of %d records", self.applier.applied_index, target
                )
        self.caught_up_index = target
        await self._seed_acl_users()
        if self.applier.blocked.owned_by(self.config.shim_id):
            # Clients of an earlier life of this shim, blocked in the applied state: no one
            # waits for them any more (cacheshim.blocking).
            await self.writer.submit(unblock_record(wall_ms(), every=True))
        self.blocking.serving = True
        self._tasks.append(asyncio.create_task(self._expire_for_tracking(), name="expiry"))
        loop = asyncio.get_running_loop()
        served: list[str] = []
        if self.config.port:
            self.server = await loop.create_server(
                lambda: Connection(self), self.config.host, self.config.port, reuse_address=True
            )
            served.append(f"{self.config.host}:{self.config.port}")
        if self.tls is not None:
            tls_port = self.server_config.int_value("tls-port")
            self.tls_server = await loop.create_server(
                lambda: Connection(self), self.config.host, tls_port, reuse_address=True,
                ssl=self.tls.context, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S,
            )  # fmt: skip
            served.append(f"{self.config.host}:{tls_port} (TLS)")
            self._tasks.append(asyncio.create_task(self._watch_tls_files(), name="tls-files"))
        log.info(
            "shim %s serving on %s after replaying %d records",
            self.config.shim_id, " and ".join(served), target,
        )  # fmt: skip

    async def _expire_for_tracking(self) -> None:
        """While clients of this shim track keys, keys whose time has come are removed soon
        (and their invalidations sent) even when no write comes: a MEMLOG EXPIRE record,
        at most one in flight, checked ten times a second (Redis's active expiry runs at
        hz 10). Without tracking clients, expired keys wait for the next record as before."""
        while True:
            await asyncio.sleep(EXPIRY_CHECK_S)
            due = self.applier.keyspace.next_expiry_ms()
            if not self.tracking.clients or due is None or due > wall_ms() or self.loading:
                continue
            try:
                await self.writer.submit_command(0, [b"MEMLOG", b"EXPIRE"], origin=None)
            except Exception as exc:  # the log refused it: try again at the next check
                log.debug("MEMLOG EXPIRE not applied: %s", exc)

    def _tracking_max_keys(self) -> int:
        return self.server_config.int_value("tracking-table-max-keys")

    def _busy_reply_threshold_ms(self) -> int:
        return int(self.server_config.values["busy-reply-threshold"])

    def _applied_index(self) -> int:
        return self.applier.applied_index

    def broken(self) -> str | None:
        """Why this shim cannot go on serving (a background task of its own ended), or None
        (/livez; each task is meant to run as long as the shim)."""
        for task in self._tasks:
            if task.done() and not task.cancelled():
                error = task.exception()
                return f"the shim's {task.get_name()} task ended" + (f": {error}" if error else "")
        return None

    def serving(self) -> bool:
        return (self.server is not None or self.tls_server is not None) and not self.loading

    async def _seed_acl_users(self) -> None:
        """--aclfile: while no ACL record is in the log (no SETUSER, DELUSER, LOAD or
        requirepass ever, no seed), propose the file's users as a MEMLOG ACLSEED record and
        wait for it, before serving. Apply loads a seed only if no ACL record came before it,
        so when several shims start at once the first seed in the log wins everywhere."""
        path = self.config.aclfile
        if not path or self.applier.acl.seeded:
            return
        try:
            text = read_acl_file(path)
        except CommandError as exc:
            raise RuntimeError(f"cannot load the ACL file: {exc.message}") from None
        reply = await self.writer.submit_command(
            0, [b"MEMLOG", b"ACLSEED", path.encode(), text], origin=None
        )
        log.info("ACL file %s: seed record applied (%r)", path, reply)

    async def _watch_tls_files(self) -> None:
        """Renewed certificate files (cert-manager, a Secret update) serve new connections
        without a restart."""
        assert self.tls is not None
        while True:
            await asyncio.sleep(TLS_FILES_CHECK_S)
            self.tls.reload_if_changed()

    async def stop(self) -> None:
        for server in (self.server, self.tls_server):
            if server is not None:
                server.close()
        persistence.stop(self)
        self.script_thread.close()
        for task in self._tasks:
            task.cancel()
        await self.log_writer_client.close()
        await self.log_reader_client.close()

    def new_session(self, addr: str, laddr: str) -> Session:
        session = Session(
            id=next(self._client_ids), addr=addr, laddr=laddr, created_ms=wall_ms(), shim=self,
            linearizable=self.config.linearizable_reads,
        )  # fmt: skip
        # As Redis's createClient: authenticated from the start when the default user
        # needs no password (a later requirepass does not log it out).
        default = self.applier.acl.default
        session.authenticated = default.nopass and default.enabled
        self.sessions[session.id] = session
        return session
