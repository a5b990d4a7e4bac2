"""The `cacheshim` command: serve Redis clients in front of a logsvc cluster.

Every flag can also be set by an environment variable: CACHESHIM_ plus the flag's name in
capitals with dashes as underscores (--listen -> CACHESHIM_LISTEN).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Sequence

from logsvc.cli import add_env_flag, run_event_loop

ENV_PREFIX = "CACHESHIM_"


def _add(parser: argparse.ArgumentParser, flag: str, **kwargs: object) -> None:
    add_env_flag(parser, ENV_PREFIX, flag, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cacheshim", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run one shim")
    _add(serve, "--listen", default="127.0.0.1:6379", help="HOST:PORT for Redis clients")
    _add(serve, "--log", required=True, help="logsvc node addresses, comma separated")
    _add(serve, "--local-log", default="", help="the zone-local log node (default: first)")
    _add(serve, "--shim-id", default="", help="this shim's name (default: host:port)")
    _add(serve, "--zone", default="", help="the zone this shim runs in")
    _add(serve, "--linearizable-reads", default="no", help="yes: every read waits for ReadIndex")
    _add(serve, "--write-timeout-s", type=float, default=10.0, help="give up on a write after")
    _add(serve, "--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    return parser


async def serve(args: argparse.Namespace) -> None:
    from cacheshim.server import Shim, ShimConfig

    host, _, port = str(args.listen).rpartition(":")
    addresses = tuple(a.strip() for a in str(args.log).split(",") if a.strip())
    config = ShimConfig(
        host=host or "127.0.0.1",
        port=int(port),
        log_addresses=addresses,
        local_log_address=str(args.local_log) or addresses[0],
        shim_id=str(args.shim_id) or f"{socket.gethostname()}:{port}",
        zone=str(args.zone),
        linearizable_reads=str(args.linearizable_reads).lower() in ("yes", "true", "1", "on"),
        write_timeout_s=float(args.write_timeout_s),
    )
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
    run_event_loop(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
