"""The `cacheshim` command: serve Redis clients in front of a logsvc cluster.

Every flag can also be set by an environment variable: CACHESHIM_ plus the flag's name in
capitals with dashes as underscores (--listen -> CACHESHIM_LISTEN).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cacheshim.server.tls import TLS_STARTUP_SETTINGS
from logsvc.auth import AuthConfigError, ClientCredentials
from logsvc.cli import add_client_credentials, add_env_flag, client_credentials, run_event_loop
from logsvc.client import LogClient, LogClientError

if TYPE_CHECKING:
    from cacheshim.server import ShimConfig

ENV_PREFIX = "CACHESHIM_"
# CONFIG parameters that are also `serve` flags, with an example value for --help.
STARTUP_SETTINGS = {
    "maxclients": "10000",
    "client-output-buffer-limit": "'normal 0 0 0 pubsub 32mb 8mb 60'",
    # TLS for RESP (cacheshim.server.tls); CONFIG SET may change all but tls-port.
    **TLS_STARTUP_SETTINGS,
}
# How long to keep asking the log nodes for their zones before reading from the first one.
ZONE_LOOKUP_S = 30.0
ZONE_RETRY_S = 0.5

log = logging.getLogger("cacheshim.cli")


def _add(parser: argparse.ArgumentParser, flag: str, **kwargs: object) -> None:
    add_env_flag(parser, ENV_PREFIX, flag, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cacheshim", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run one shim")
    _add(
        serve,
        "--listen",
        default="127.0.0.1:6379",
        help="HOST:PORT for Redis clients; --tls-port listens on the same HOST; port 0 turns "
        "the plaintext port off (as Redis's `port 0`)",
    )
    _add(serve, "--log", required=True, help="logsvc node addresses, comma separated")
    _add(
        serve,
        "--local-log",
        default="",
        help="the zone-local log node (default: the one whose Status reports --zone, else the "
        "first of --log)",
    )
    _add(serve, "--shim-id", default="", help="this shim's name (default: host:port)")
    _add(serve, "--zone", default="", help="the zone this shim runs in")
    _add(serve, "--linearizable-reads", default="no", help="yes: every read waits for ReadIndex")
    _add(serve, "--write-timeout-s", type=float, default=10.0, help="give up on a write after")
    _add(
        serve,
        "--max-staleness-ms",
        type=int,
        default=0,
        help="refuse local reads (MASTERDOWN) once the shim has heard nothing from the log "
        "for this long; 0: serve them however stale (docs/availability.md)",
    )
    _add(serve, "--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    _add(
        serve,
        "--aclfile",
        default="",
        help="Redis's aclfile: its users seed the ACL users while the log holds none; ACL LOAD "
        "and ACL SAVE use it",
    )
    # The shim's credentials for the log nodes (it needs the append, read and snapshot rights).
    add_client_credentials(serve, ENV_PREFIX, "--log-")
    # CONFIG parameters the shim enforces, settable at startup as redis-server takes them.
    for name, example in STARTUP_SETTINGS.items():
        how = f"{name} {example}" if name.startswith("tls-") else f"CONFIG SET {name} {example}"
        _add(serve, f"--{name}", default="", help=f"Redis's {name} ({how})")
    return parser


def startup_settings(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    """The CONFIG parameters given as flags, each validated as CONFIG SET validates it;
    SystemExit(2) with Redis's reason for a value Redis would refuse."""
    from cacheshim.config.serverconfig import ServerConfig
    from cacheshim.protocol.errors import CommandError

    settings: list[tuple[str, str]] = []
    for name in STARTUP_SETTINGS:
        value = str(getattr(args, name.replace("-", "_")))
        if not value:
            continue
        try:
            ServerConfig().set_many([(name.encode(), value.encode())], startup=True)
        except CommandError as exc:
            reason = exc.message.partition(" - ")[2] or exc.message
            print(f"cacheshim serve: --{name} {value!r}: {reason}", file=sys.stderr)
            raise SystemExit(2) from None
        settings.append((name, value))
    return tuple(settings)


def check_listeners(args: argparse.Namespace) -> None:
    """At least one port to serve on, and TLS settings that make a working context;
    SystemExit(2) with the reason (Redis's words where it has them) otherwise."""
    from cacheshim.config.serverconfig import ServerConfig
    from cacheshim.server.tls import FAILED, TlsConfigError, context_for

    config = ServerConfig()
    config.set_many([(n.encode(), v.encode()) for n, v in startup_settings(args)], startup=True)
    port = str(args.listen).rpartition(":")[2]
    if port == "0" and not config.int_value("tls-port"):
        print(
            "cacheshim serve: --listen with port 0 turns the plaintext port off, so --tls-port "
            "must be set (or the shim would serve no one)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    try:
        context_for(config)
    except TlsConfigError as exc:
        print(f"cacheshim serve: {exc}\ncacheshim serve: {FAILED}", file=sys.stderr)
        raise SystemExit(2) from None


async def zone_local_log(
    addresses: Sequence[str],
    zone: str,
    timeout_s: float = ZONE_LOOKUP_S,
    credentials: ClientCredentials | None = None,
) -> str:
    """The log node whose Status reports `zone`, else the first of `addresses`.

    On Kubernetes a pod learns its zone from its node's topology label (downward API) but
    not which log pod shares that zone; each log node reports its own zone in Status. Nodes
    that do not answer are asked again until `timeout_s`; once all have answered and none
    is in `zone` (or time is up) the first address is used: reads then cross zones.
    """
    if not zone:
        return addresses[0]
    deadline = time.monotonic() + timeout_s
    everyone = False
    async with LogClient(
        list(addresses), attempt_timeout_s=min(3.0, timeout_s), credentials=credentials
    ) as client:
        while True:
            answers = await asyncio.gather(
                *(client.status(a) for a in addresses), return_exceptions=True
            )
            for address, answer in zip(addresses, answers, strict=True):
                if isinstance(answer, BaseException):
                    if not isinstance(answer, LogClientError):
                        raise answer
                elif answer.zone == zone:
                    log.info("zone %s: reading the log from %s", zone, address)
                    return address
            everyone = not any(isinstance(a, BaseException) for a in answers)
            if everyone or time.monotonic() >= deadline:
                break
            await asyncio.sleep(ZONE_RETRY_S)
    if everyone:
        log.warning("no log node is in zone %r: reading the log from %s", zone, addresses[0])
    else:
        log.warning(
            "no log node of zone %r answered within %gs: reading the log from %s",
            zone, timeout_s, addresses[0],
        )  # fmt: skip
    return addresses[0]


async def local_log_address(args: argparse.Namespace, addresses: Sequence[str]) -> str:
    """--local-log when given, else the log node in --zone (see zone_local_log)."""
    return str(args.local_log) or await zone_local_log(
        addresses, str(args.zone), credentials=client_credentials(args, "log_")
    )


def log_addresses(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(a.strip() for a in str(args.log).split(",") if a.strip())


def config_from_args(args: argparse.Namespace, local_log: str) -> ShimConfig:
    """The shim's configuration from `serve` flags; `local_log` is the zone-local log node."""
    from cacheshim.server import ShimConfig

    host, _, port = str(args.listen).rpartition(":")
    return ShimConfig(
        host=host or "127.0.0.1",
        port=int(port),
        log_addresses=log_addresses(args),
        local_log_address=local_log,
        shim_id=str(args.shim_id) or f"{socket.gethostname()}:{_served_port(args, port)}",
        zone=str(args.zone),
        linearizable_reads=str(args.linearizable_reads).lower() in ("yes", "true", "1", "on"),
        write_timeout_s=float(args.write_timeout_s),
        max_staleness_ms=int(args.max_staleness_ms),
        server_settings=startup_settings(args),
        aclfile=os.path.abspath(str(args.aclfile)) if args.aclfile else "",
        log_credentials=client_credentials(args, "log_"),
    )


def _served_port(args: argparse.Namespace, port: str) -> str:
    """The plaintext port, or the TLS port when the plaintext one is off."""
    return str(args.tls_port) if port == "0" and str(args.tls_port) else port


async def serve(args: argparse.Namespace) -> None:
    from cacheshim.server import Shim

    addresses = log_addresses(args)
    config = config_from_args(args, await local_log_address(args, addresses))
    shim = Shim(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(shim.start())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if starting.done():
        starting.result()
        await stopped
    else:
        starting.cancel()
    await shim.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=str(args.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not str(args.log).strip():
        print("cacheshim serve: --log needs at least one address", file=sys.stderr)
        return 2
    startup_settings(args)  # refuse a bad value before anything starts
    if int(args.max_staleness_ms) < 0:
        print("cacheshim serve: --max-staleness-ms must be 0 (off) or more", file=sys.stderr)
        return 2
    try:
        client_credentials(args, "log_")
    except AuthConfigError as exc:
        print(f"cacheshim serve: {exc}", file=sys.stderr)
        return 2
    check_listeners(args)
    run_event_loop(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
