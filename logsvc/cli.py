"""The `logsvc` command: serve a node, append, tail, status, trim, read-index.

Every flag can also be set by an environment variable: LOGSVC_ plus the flag's name in
capitals with dashes as underscores (--data-dir -> LOGSVC_DATA_DIR). A flag on the command
line wins over the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import secrets
import sys
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from logsvc.auth import (
    RIGHTS,
    AuthConfigError,
    ClientCredentials,
    check_exposure,
    hash_token,
    parse_rights,
    server_auth,
    tls_files,
)
from logsvc.client import (
    LogClient,
    LogClientError,
    get_snapshot,
    list_snapshots,
    put_snapshot,
)
from logsvc.config import ConfigError, NodeConfig, parse_peer_addresses, parse_peers
from logsvc.logformat import configure_logging
from logsvc.v1 import log_pb2

ENV_PREFIX = "LOGSVC_"


def env_name(prefix: str, flag: str) -> str:
    return prefix + flag.lstrip("-").replace("-", "_").upper()


def add_env_flag(parser: argparse.ArgumentParser, prefix: str, flag: str, **kwargs: object) -> None:
    """Add a flag whose default comes from its environment variable (prefix + NAME)."""
    env = env_name(prefix, flag)
    help_text = str(kwargs.pop("help", ""))
    required = bool(kwargs.pop("required", False))
    if env in os.environ:
        value = os.environ[env]
        if kwargs.get("action") == "store_true":
            kwargs["default"] = value.strip().lower() in ("1", "true", "yes", "on")
        else:
            kwargs["default"] = value
        required = False
    parser.add_argument(
        flag,
        required=required,
        help=f"{help_text} [env {env}]",
        **kwargs,  # type: ignore[arg-type]
    )


def _add(parser: argparse.ArgumentParser, flag: str, **kwargs: object) -> None:
    add_env_flag(parser, ENV_PREFIX, flag, **kwargs)


def add_client_credentials(
    parser: argparse.ArgumentParser, env_prefix: str = ENV_PREFIX, flag_prefix: str = "--"
) -> None:
    """The flags of a log client's credentials (ClientCredentials), each also settable by
    its environment variable: `--tls-ca` (LOGSVC_TLS_CA) here, `--log-tls-ca`
    (CACHESHIM_LOG_TLS_CA) in cacheshim."""

    def add(name: str, help_text: str) -> None:
        add_env_flag(parser, env_prefix, flag_prefix + name, default=None, help=help_text)

    add("tls-ca", "the CA (PEM) that signs the log nodes: talk TLS")
    add("tls-cert", "a client certificate (PEM) to show the log nodes")
    add("tls-key", "its private key (PEM)")
    add("token-file", "a file holding a bearer token for the log nodes")
    add("token", "a bearer token (visible in ps: prefer the file or the environment)")
    add("tls-server-name", "check the nodes' certificates against this name, not the host")


def client_credentials(args: argparse.Namespace, dest_prefix: str = "") -> ClientCredentials | None:
    """The credentials the flags of add_client_credentials give (None: plaintext, no token)."""

    def get(name: str) -> str | None:
        value = getattr(args, dest_prefix + name)
        return str(value) if value else None

    return ClientCredentials.from_files(
        ca=get("tls_ca"),
        cert=get("tls_cert"),
        key=get("tls_key"),
        token=get("token"),
        token_file=get("token_file"),
        server_name=get("tls_server_name"),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="logsvc", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run one log node")
    _add(serve, "--id", required=True, help="this node's id (one of --peers)")
    _add(
        serve,
        "--join",
        action="store_true",
        help="join a running cluster: start as no member, with an empty data directory, and "
        "wait for `logsvc member add` (--peers: this node and the members to reach)",
    )
    _add(serve, "--zone", default="", help="the zone this node runs in")
    _add(
        serve,
        "--listen",
        required=True,
        help="HOST:PORT to serve clients on (the Log API); a non-loopback address needs TLS "
        "or --insecure",
    )
    _add(
        serve,
        "--peers",
        required=True,
        help="every node: ID=HOST:PORT/PEER_PORT,... (its client address, and its peer port "
        "on the same host, or /HOST:PORT); a single node needs no peer port",
    )
    _add(
        serve,
        "--peer-listen",
        default="",
        help="HOST:PORT to serve peers on (default: this node's peer address in --peers)",
    )
    _add(
        serve,
        "--health-listen",
        default="",
        help="HOST:PORT serving only gRPC health, in plaintext, for probes (default: none)",
    )
    _add(
        serve,
        "--metrics-listen",
        default="",
        help="HOST:PORT serving /metrics over HTTP for Prometheus (default: none)",
    )
    _add(serve, "--tls-cert", default=None, help="this node's certificate (PEM), both ports")
    _add(serve, "--tls-key", default=None, help="its private key (PEM)")
    _add(
        serve,
        "--tls-ca",
        default=None,
        help="the CA (PEM) that signs every node and client certificate; with the three "
        "--tls-* flags, peers speak mutual TLS and clients TLS",
    )
    _add(
        serve,
        "--tokens",
        default=None,
        help="file of bearer tokens: NAME RIGHTS sha256:HEX per line (logsvc token)",
    )
    _add(
        serve,
        "--client-certs",
        default=None,
        help="file of NAME RIGHTS lines: client certificates (CN or DNS name NAME) are then "
        "required on the client port and get RIGHTS",
    )
    _add(
        serve,
        "--insecure",
        action="store_true",
        help="allow a non-loopback address without TLS (anyone who reaches it may do anything)",
    )
    _add(serve, "--data-dir", required=True, help="folder for this node's RocksDB")
    _add(serve, "--cluster-id", default="memlog", help="refuse peers of another cluster")
    _add(serve, "--tick-ms", type=int, default=20, help="Raft tick")
    _add(serve, "--election-ticks", type=int, default=15, help="election timeout in ticks")
    _add(serve, "--heartbeat-ticks", type=int, default=3, help="heartbeat interval in ticks")
    _add(serve, "--record-bytes-max", type=int, default=1 << 20, help="largest record")
    _add(serve, "--append-records-max", type=int, default=100_000, help="records per append")
    _add(
        serve,
        "--append-request-bytes-max",
        type=int,
        default=4 << 20,
        help="bytes of records per append (one Append, or one AppendStream request)",
    )
    _add(
        serve,
        "--pending-appends-max",
        type=int,
        default=16_384,
        help="appends waiting to commit on the leader before new ones get RESOURCE_EXHAUSTED",
    )
    _add(
        serve,
        "--pending-bytes-max",
        type=int,
        default=128 << 20,
        help="bytes of records waiting to commit before new appends get RESOURCE_EXHAUSTED",
    )
    _add(
        serve,
        "--stream-appends-max",
        type=int,
        default=4096,
        help="appends in flight on one AppendStream before new ones get RESOURCE_EXHAUSTED",
    )
    _add(serve, "--append-timeout-s", type=float, default=5.0, help="commit wait per append")
    _add(
        serve,
        "--commit-hold-ms",
        type=float,
        default=2.0,
        help="hold a commit-only append to a follower this long for the next append (0: off)",
    )
    _add(
        serve,
        "--window-entries",
        type=int,
        default=10_000,
        help="newest log entries kept in memory; older ones are read from disk when needed",
    )
    _add(
        serve,
        "--window-bytes",
        type=int,
        default=64 << 20,
        help="bytes of the newest log entries kept in memory (the smaller limit wins)",
    )
    _add(
        serve,
        "--read-cache-bytes",
        type=int,
        default=16 << 20,
        help="cache of older entries read from disk for lagging followers",
    )
    _add(serve, "--snapshot-retain", type=int, default=2, help="durable snapshots kept")
    _add(
        serve,
        "--snapshot-timeout-s",
        type=float,
        default=60.0,
        help="how long a snapshot put may take to reach a majority",
    )
    _add(
        serve,
        "--snapshot-bytes-per-s",
        type=int,
        default=32 << 20,
        help="write a received snapshot at most this fast (0: no limit)",
    )
    _add(
        serve,
        "--trim-interval-s",
        type=float,
        default=10.0,
        help="the leader trims below the newest snapshot this often (0: never by itself)",
    )
    _add(
        serve,
        "--trim-keep-entries",
        type=int,
        default=100_000,
        help="automatic trim keeps at least this many of the newest records",
    )
    _add(
        serve,
        "--trim-keep-seconds",
        type=float,
        default=600.0,
        help="automatic trim keeps every record appended within this many seconds",
    )
    _add(serve, "--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    _add(serve, "--log-format", default="text", help="text, or json: one JSON object per line")

    append = sub.add_parser("append", help="append records (arguments, or lines of stdin)")
    _add(append, "--addr", required=True, help="node addresses, comma separated")
    _add(append, "--producer-id", default=None, help="dedup identity (default: random)")
    _add(append, "--timeout-s", type=float, default=30.0, help="give up after this long")
    append.add_argument("records", nargs="*", help="records; none: read lines from stdin")

    tail = sub.add_parser("tail", help="print each committed record, one line each")
    _add(tail, "--addr", required=True, help="node address(es), comma separated")
    _add(tail, "--from", dest="from_index", type=int, default=1, help="first index")
    _add(tail, "--follow", action="store_true", help="keep tailing new records")
    _add(
        tail,
        "--format",
        choices=TAIL_FORMATS,
        default="text",
        help="text: INDEX<TAB>PAYLOAD with \\, control and non-ASCII bytes as \\xNN escapes "
        "(one record per line, whatever it holds); json: one JSON object per line with the "
        "payload in base64; raw: the payload's bytes as stored (a newline in it breaks lines)",
    )

    status = sub.add_parser("status", help="print a node's status as JSON")
    _add(status, "--addr", required=True, help="node address")

    trim = sub.add_parser("trim", help="drop the records before an index, on every node")
    _add(trim, "--addr", required=True, help="node addresses, comma separated")
    _add(trim, "--before", type=int, required=True, help="first index to keep")
    _add(
        trim,
        "--force",
        action="store_true",
        help="trim even above the newest durable snapshot (records no snapshot covers)",
    )

    snapshot = sub.add_parser("snapshot", help="store, fetch or list snapshots")
    snap_sub = snapshot.add_subparsers(dest="snapshot_command", required=True)
    put = snap_sub.add_parser("put", help="store FILE as the snapshot covering --index")
    _add(put, "--addr", required=True, help="node addresses, comma separated")
    _add(put, "--index", type=int, required=True, help="last record index it covers")
    put.add_argument("file", help="the snapshot's bytes")
    get = snap_sub.add_parser("get", help="write a durable snapshot's bytes to FILE")
    _add(get, "--addr", required=True, help="node address(es): asked in turn")
    _add(get, "--index", type=int, default=0, help="its index (default 0: the newest)")
    get.add_argument("file", help="where to write it ('-': stdout)")
    listing = snap_sub.add_parser("list", help="print the durable snapshots as JSON")
    _add(listing, "--addr", required=True, help="node address")

    member = sub.add_parser(
        "member", help="list, add, promote or remove log nodes (one change at a time)"
    )
    member_sub = member.add_subparsers(dest="member_command", required=True)
    m_list = member_sub.add_parser("list", help="print the members as JSON")
    m_add = member_sub.add_parser(
        "add", help="add a node as a learner (start it first with `serve --join`)"
    )
    m_add.add_argument("id", help="the new node's id")
    _add(m_add, "--address", required=True, help="its client address, HOST:PORT")
    _add(m_add, "--peer-address", required=True, help="its peer address, HOST:PORT")
    m_promote = member_sub.add_parser(
        "promote", help="make a learner a voter (waits until it has caught up)"
    )
    m_promote.add_argument("id", help="the learner's id")
    m_remove = member_sub.add_parser("remove", help="remove a voter or a learner")
    m_remove.add_argument("id", help="the node's id")
    for m_parser in (m_list, m_add, m_promote, m_remove):
        _add(m_parser, "--addr", required=True, help="node addresses, comma separated")
        add_client_credentials(m_parser)
    for m_parser in (m_add, m_promote, m_remove):
        _add(
            m_parser,
            "--timeout-s",
            type=float,
            default=30.0,
            help="retry while nothing was done (no leader, a change pending) for this long",
        )

    for client_parser in (append, tail, status, trim, put, get, listing):
        add_client_credentials(client_parser)

    token = sub.add_parser(
        "token", help="make a bearer token: prints it, and its line for --tokens on stderr"
    )
    token.add_argument("--name", required=True, help="who holds it (in logs and refusals)")
    token.add_argument("--rights", required=True, help=f"comma separated: {', '.join(RIGHTS)}")

    up = sub.add_parser("up", help="run a local three-zone cluster (zones a, b, c)")
    _add(up, "--data", default="./memlog-data", help="folder for all nodes' data and logs")
    _add(up, "--base-port", type=int, default=7001, help="zone a's port; b and c follow")

    read_index = sub.add_parser("read-index", help="print a quorum-confirmed commit index")
    _add(read_index, "--addr", required=True, help="node address")
    add_client_credentials(read_index)
    for retrying in (tail, read_index):
        _add(
            retrying,
            "--timeout-s",
            type=float,
            default=30.0,
            help="give up after this long with no node answering (tail: without --follow)",
        )
    return parser


def config_from_args(args: argparse.Namespace) -> NodeConfig:
    return NodeConfig(
        id=args.id,
        zone=args.zone,
        listen=args.listen,
        peers=parse_peers(args.peers),
        peer_addresses=parse_peer_addresses(args.peers),
        peer_listen=args.peer_listen,
        health_listen=args.health_listen,
        metrics_listen=args.metrics_listen,
        auth=server_auth(
            tls_files(args.tls_cert, args.tls_key, args.tls_ca), args.tokens, args.client_certs
        ),
        data_dir=Path(args.data_dir),
        cluster_id=args.cluster_id,
        tick_ms=int(args.tick_ms),
        election_ticks=int(args.election_ticks),
        heartbeat_ticks=int(args.heartbeat_ticks),
        record_bytes_max=int(args.record_bytes_max),
        append_records_max=int(args.append_records_max),
        append_request_bytes_max=int(args.append_request_bytes_max),
        pending_appends_max=int(args.pending_appends_max),
        pending_bytes_max=int(args.pending_bytes_max),
        stream_appends_max=int(args.stream_appends_max),
        append_timeout_s=float(args.append_timeout_s),
        commit_hold_ms=float(args.commit_hold_ms),
        window_entries=int(args.window_entries),
        window_bytes=int(args.window_bytes),
        read_cache_bytes=int(args.read_cache_bytes),
        snapshot_retain=int(args.snapshot_retain),
        snapshot_timeout_s=float(args.snapshot_timeout_s),
        snapshot_bytes_per_s=int(args.snapshot_bytes_per_s),
        trim_interval_s=float(args.trim_interval_s),
        trim_keep_entries=int(args.trim_keep_entries),
        trim_keep_seconds=float(args.trim_keep_seconds),
        join=bool(args.join),
    )


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed (it is a dependency; the fallback is asyncio's)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def _addresses(text: str) -> list[str]:
    return [a.strip() for a in text.split(",") if a.strip()]


async def _append(args: argparse.Namespace) -> int:
    async with LogClient(
        _addresses(args.addr),
        producer_id=args.producer_id,
        timeout_s=float(args.timeout_s),
        credentials=client_credentials(args),
    ) as client:
        if args.records:
            if "" in args.records:
                raise LogClientError(
                    f"argument {args.records.index('') + 1} is an empty record; nothing was "
                    "appended"
                )
            for record in args.records:
                result = await client.append([record.encode()])
                print(result.first_index, flush=True)
            return 0
        # Lines of stdin: whatever has arrived goes into one append, in order.
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def reader() -> None:
            for line in sys.stdin.buffer:
                loop.call_soon_threadsafe(queue.put_nowait, line.rstrip(b"\n"))
            loop.call_soon_threadsafe(queue.put_nowait, None)

        threading.Thread(target=reader, daemon=True).start()
        done = False
        lines = 0
        while not done:
            batch = [await queue.get()]
            while not queue.empty() and len(batch) < 1000:
                batch.append(queue.get_nowait())
            if batch[-1] is None:
                done = True
            records = [r for r in batch if r is not None]
            blank = records.index(b"") if b"" in records else -1
            if blank >= 0:  # the lines before it are appended; it and those after, not
                done, records = True, records[:blank]
            lines += len(records)
            if records:
                result = await client.append(records)
                for index in range(result.first_index, result.last_index + 1):
                    print(index)
                sys.stdout.flush()
            if blank >= 0:
                raise LogClientError(
                    f"line {lines + 1} of stdin is empty: it and the lines "
                    "after it were not appended"
                )
        return 0


TAIL_FORMATS = ("text", "json", "raw")


def escape_bytes(payload: bytes) -> bytes:
    """Printable ASCII as is; backslash, control and non-ASCII bytes as \\xNN (reversible,
    and never a newline or a tab, so INDEX<TAB>PAYLOAD stays one line per record)."""
    return b"".join(
        bytes((b,)) if 0x20 <= b < 0x7F and b != 0x5C else b"\\x%02x" % b for b in payload
    )


def tail_line(index: int, payload: bytes, fmt: str) -> bytes:
    if fmt == "json":
        encoded = base64.b64encode(payload).decode()
        return json.dumps({"index": index, "payload_base64": encoded}).encode() + b"\n"
    body = payload if fmt == "raw" else escape_bytes(payload)
    return b"%d\t%s\n" % (index, body)


def _retrying_client(args: argparse.Namespace) -> LogClient:
    timeout_s = float(args.timeout_s)
    if timeout_s <= 0:
        raise LogClientError(f"--timeout-s must be positive, not {args.timeout_s}")
    return LogClient(
        _addresses(args.addr),
        timeout_s=timeout_s,
        attempt_timeout_s=min(3.0, timeout_s),
        credentials=client_credentials(args),
    )


async def _tail(args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    async with _retrying_client(args) as client:
        async for index, payload in client.read(int(args.from_index), follow=args.follow):
            out.write(tail_line(index, payload, str(args.format)))
            out.flush()
    return 0


async def _status(args: argparse.Namespace) -> int:
    async with LogClient(_addresses(args.addr), credentials=client_credentials(args)) as client:
        st = await client.status(_addresses(args.addr)[0])
    from google.protobuf import json_format  # only here: not in every process's start

    print(json.dumps(json_format.MessageToDict(st, always_print_fields_with_no_presence=True)))
    return 0


async def _trim(args: argparse.Namespace) -> int:
    async with LogClient(_addresses(args.addr), credentials=client_credentials(args)) as client:
        print(await client.trim(int(args.before), force=bool(args.force)))
    return 0


async def _snapshot(args: argparse.Namespace) -> int:
    async with LogClient(_addresses(args.addr), credentials=client_credentials(args)) as client:
        if args.snapshot_command == "put":
            response = await put_snapshot(client, int(args.index), Path(args.file))
            print(json.dumps(_snapshot_json(response.snapshot, response.stored_on)))
        elif args.snapshot_command == "get":
            info, data = await get_snapshot(client, int(args.index))
            if args.file == "-":
                sys.stdout.buffer.write(data)
                sys.stdout.flush()
            else:
                Path(args.file).write_bytes(data)
                print(json.dumps(_snapshot_json(info)))
        else:
            listing = await list_snapshots(client, _addresses(args.addr)[0])
            print(json.dumps([_snapshot_json(s) for s in listing.snapshots]))
    return 0


def _snapshot_json(
    info: log_pb2.SnapshotInfo, stored_on: Sequence[str] | None = None
) -> dict[str, object]:
    out: dict[str, object] = {
        "index": info.index,
        "term": info.term,
        "size_bytes": info.size_bytes,
        "sha256": info.sha256.hex(),
        "created_at_ms": info.created_at_ms,
        "stored_here": info.stored_here,
    }
    if stored_on is not None:
        out["stored_on"] = list(stored_on)
    return out


async def _member(args: argparse.Namespace) -> int:
    async with LogClient(_addresses(args.addr), credentials=client_credentials(args)) as client:
        command = args.member_command
        if command == "list":
            response = await client.member_list()
        elif command == "add":
            request = log_pb2.MemberAddRequest(
                id=args.id, address=args.address, peer_address=args.peer_address
            )
            response = await client.member_change("MemberAdd", request, float(args.timeout_s))
        else:
            method = "MemberPromote" if command == "promote" else "MemberRemove"
            response = await client.member_change(
                method,
                log_pb2.MemberChangeRequest(id=args.id),
                float(args.timeout_s),
                retry_behind=command == "promote",
            )
    members = [
        {
            "id": m.id,
            "role": "voter" if m.voter else "learner",
            "address": m.address,
            "peer_address": m.peer_address,
            "match_index": m.match_index,
        }
        for m in response.members
    ]
    print(json.dumps({"conf_index": response.conf_index, "members": members}))
    return 0


async def _read_index(args: argparse.Namespace) -> int:
    async with _retrying_client(args) as client:
        print(await client.read_index(_addresses(args.addr)[0]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        try:
            configure_logging(str(args.log_level), str(args.log_format))
        except ValueError as exc:
            print(f"logsvc serve: {exc}", file=sys.stderr)
            return 2
        from logsvc.server import serve

        try:
            config = config_from_args(args)
            config.validate()
            listening = [("--listen", config.listen)]
            if config.peer_listen_address():
                listening.append(("--peer-listen", config.peer_listen_address()))
            warnings = check_exposure(listening, config.auth, bool(args.insecure))
        except (ConfigError, AuthConfigError) as exc:
            print(f"logsvc serve: {exc}", file=sys.stderr)
            return 2
        for warning in warnings:
            logging.getLogger("logsvc.server").warning("%s", warning)
        if not config.auth.enabled:
            logging.getLogger("logsvc.server").info(
                "no credentials configured: listening on loopback only (%s)",
                ", ".join(a for _, a in listening),
            )
        run_event_loop(serve(config))
        return 0
    if args.command == "up":
        from logsvc.local import up

        return up(Path(args.data), int(args.base_port))
    if args.command == "token":
        try:
            rights = parse_rights(args.rights, "--rights")
        except AuthConfigError as exc:
            print(f"logsvc token: {exc}", file=sys.stderr)
            return 2
        secret = secrets.token_urlsafe(32)
        print(secret)
        print(
            f"add to the --tokens file: {args.name} {','.join(sorted(rights))} "
            f"sha256:{hash_token(secret)}",
            file=sys.stderr,
        )
        return 0
    commands = {
        "append": _append,
        "tail": _tail,
        "status": _status,
        "trim": _trim,
        "snapshot": _snapshot,
        "read-index": _read_index,
        "member": _member,
    }
    try:
        return asyncio.run(commands[args.command](args))
    except (LogClientError, AuthConfigError) as exc:
        print(f"logsvc {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
