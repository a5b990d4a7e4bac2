"""The shim: its configuration, its parts, and its life (catch up with the log, serve, stop)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
from dataclasses import dataclass

from cacheshim import persistence
from cacheshim.apply import Applier
from cacheshim.blocking import Blocker, unblock_record
from cacheshim.clientlimits import OutputLimits, startup_maxclients
from cacheshim.commands import load_all
from cacheshim.config.serverconfig import ServerConfig
from cacheshim.hub import Hub
from cacheshim.server.clock import wall_ms
from cacheshim.server.connection import Connection
from cacheshim.server.replica import Replica
from cacheshim.server.sessions import Session
from cacheshim.server.writer import Writer
from cacheshim.serverstate import ClientPause, ServerStats
from cacheshim.snapshot import bootstrap
from logsvc.client import LogClient

log = logging.getLogger("cacheshim.server")


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
    # CONFIG parameters set at startup (name, value), as redis-server takes --maxclients.
    server_settings: tuple[tuple[str, str], ...] = ()


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
        )
        self.log_reader_client = LogClient(local_first)
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
        self.server: asyncio.Server | None = None
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
        self.output_limits = OutputLimits()
        self.stats = ServerStats()
        self.client_pause = ClientPause()
        self.run_id = os.urandom(20).hex()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Restore the newest snapshot, replay the log after it up to the commit index seen
        now, then start serving."""
        target = await self._commit_index()
        # The newest usable snapshot, then the log after it up to target (issue 16).
        await bootstrap.recover(self.applier, self.log_reader_client, target, self._apply)
        self._tasks.append(asyncio.create_task(persistence.watch(self), name="store-watch"))
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
        if self.applier.blocked.owned_by(self.config.shim_id):
            # Clients of an earlier life of this shim, blocked in the applied state: no one
            # waits for them any more (cacheshim.blocking).
            await self.writer.submit(unblock_record(wall_ms(), every=True))
        self.blocking.serving = True
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: Connection(self), self.config.host, self.config.port, reuse_address=True
        )
        log.info(
            "shim %s serving on %s:%d after replaying %d records",
            self.config.shim_id, self.config.host, self.config.port, target,
        )  # fmt: skip

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        persistence.stop(self)
        for task in self._tasks:
            task.cancel()
        await self.log_writer_client.close()
        await self.log_reader_client.close()

    def new_session(self, addr: str, laddr: str) -> Session:
        session = Session(
            id=next(self._client_ids), addr=addr, laddr=laddr, created_ms=wall_ms(), shim=self,
            linearizable=self.config.linearizable_reads,
        )  # fmt: skip
        self.sessions[session.id] = session
        return session
