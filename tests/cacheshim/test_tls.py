"""TLS for RESP: real shims and redis-server 7.0 with the same tls-* settings, reached by
redis-cli --tls and redis-py ssl=True (RESP2 and RESP3); client certificates checked as Redis
checks them; bad settings stop the shim with Redis's own words. Certificates are made for
the module by the openssl command (tests/tlscerts.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from cacheshim.config.serverconfig import (
    NO_TLS_LISTENER,
    TLS_FIXED,
    TLS_RELOADABLE,
    ServerConfig,
)
from cacheshim.protocol import fastreads
from cacheshim.protocol.errors import CommandError
from cacheshim.server import Connection, Shim, ShimConfig
from cacheshim.server import connection as connection_module
from cacheshim.server.tls import (
    BAD_PROTOCOLS,
    NO_CA,
    NO_CERT_FILE,
    NO_CIPHERSUITES,
    NO_KEY_FILE,
    PROTOCOLS_GAP,
    TlsConfigError,
    TlsSettings,
    protocol_range,
    server_context,
)
from tests.cacheshim.harness import (
    Memlog,
    RedisServer,
    compare,
    free_port,
    wait_until,
)
from tests.tlscerts import SERVER_EXTENSIONS, Pki, make_pki, sign

MODES = ("yes", "optional", "no")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def server_flags(pki: Pki, auth_clients: str) -> list[str]:
    return [
        "--tls-cert-file", str(pki.server_cert),
        "--tls-key-file", str(pki.server_key),
        "--tls-ca-cert-file", str(pki.ca_cert),
        "--tls-auth-clients", auth_clients,
    ]  # fmt: skip


def tls_client(
    port: int, pki: Pki, cert: str = "ours", protocol: int = 2, timeout_s: float = 15
) -> redis.Redis:
    """A redis-py client over TLS that trusts the test CA and shows `cert`: "ours" (signed
    by that CA), "other" (signed by another CA) or "none"."""
    files = {
        "ours": (str(pki.client_cert), str(pki.client_key)),
        "other": (str(pki.other_client_cert), str(pki.other_client_key)),
        "none": (None, None),
    }[cert]
    return redis.Redis(
        port=port,
        protocol=protocol,
        ssl=True,
        ssl_ca_certs=str(pki.ca_cert),
        ssl_certfile=files[0],
        ssl_keyfile=files[1],
        socket_timeout=timeout_s,
    )


def answers_tls_ping(port: int, pki: Pki) -> bool:
    try:
        return bool(tls_client(port, pki, timeout_s=2).ping())
    except (redis.ConnectionError, redis.TimeoutError, ssl.SSLError, OSError):
        return False


@dataclass
class TlsShims:
    memlog: Memlog
    # auth mode -> TLS port; the "yes" shim also has a plaintext port, the others none.
    tls_ports: dict[str, int]
    plain_port: int


@pytest.fixture(scope="module")
def shims(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[TlsShims]:
    """One log cluster; a shim per tls-auth-clients mode. The "yes" one keeps its
    plaintext port beside TLS; the others run with port 0 (TLS only)."""
    yes_tls = free_port()
    memlog = Memlog(
        tmp_path_factory.mktemp("memlog-tls"),
        shims=1,
        shim_args=["--tls-port", str(yes_tls), *server_flags(pki, "yes")],
    )
    try:
        memlog.start()
        ports = {"yes": yes_tls}
        assert memlog.cluster is not None
        # The "optional" shim reads its own copy of the server certificate and key
        # (test_renewed_certificate_files_serve_new_connections replaces them).
        own = memlog.root / "optional-tls"
        own.mkdir()
        shutil.copy(pki.server_cert, own / "server.crt")
        shutil.copy(pki.server_key, own / "server.key")
        for i, mode in enumerate(("optional", "no"), start=2):
            port = free_port()
            flags = server_flags(pki, mode)
            if mode == "optional":
                flags[1], flags[3] = str(own / "server.crt"), str(own / "server.key")
            argv = [
                sys.executable, "-m", "cacheshim.cli", "serve",
                "--listen", "127.0.0.1:0", "--tls-port", str(port),
                "--log", ",".join(memlog.cluster.addresses()),
                "--shim-id", f"shim-{i}", *flags,
            ]  # fmt: skip
            log_file = open(memlog.root / f"shim-{i}.log", "ab")  # noqa: SIM115
            proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)
            log_file.close()
            memlog.shim_procs.append(proc)  # stopped with the rest by memlog.stop()
            memlog.shim_ports.append(port)
            wait_until(
                lambda p=port, pr=proc: answers_tls_ping(p, pki) or pr.poll() is not None,  # type: ignore[misc]
                60,
                f"TLS-only shim {i}",
            )
            assert proc.poll() is None, memlog.log_tail(f"shim-{i}.log")
            ports[mode] = port
        yield TlsShims(memlog, ports, memlog.shim_ports[0])
    finally:
        memlog.stop()


@dataclass
class Oracle:
    server: RedisServer
    tls_port: int


@pytest.fixture(scope="module")
def oracles(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[dict[str, Oracle]]:
    """redis-server with the same TLS settings, one per tls-auth-clients mode."""
    started: dict[str, Oracle] = {}
    try:
        for mode in MODES:
            port = free_port()
            server = RedisServer(tmp_path_factory.mktemp(f"redis-tls-{mode}"))
            started[mode] = Oracle(server, port)
            server.start(["--tls-port", str(port), *server_flags(pki, mode)])
        yield started
    finally:
        for oracle in started.values():
            oracle.server.stop()


def flush(*conns: redis.Redis) -> None:
    for conn in conns:
        conn.flushall()


# -- clients over TLS ----------------------------------------------------------------------


def redis_cli(port: int, pki: Pki, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["redis-cli", "-p", str(port), "--tls", "--cacert", str(pki.ca_cert),
         "--cert", str(pki.client_cert), "--key", str(pki.client_key), *command],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_redis_cli_over_tls_matches_redis_server(
    shims: TlsShims, oracles: dict[str, Oracle], pki: Pki
) -> None:
    ours, theirs = shims.tls_ports["yes"], oracles["yes"].tls_port
    flush(tls_client(ours, pki), tls_client(theirs, pki))
    for command in (
        ["SET", "greeting", "hello"],
        ["GET", "greeting"],
        ["APPEND", "greeting", " world"],
        ["GET", "greeting"],
        ["INCR", "n"],
        ["GET", "missing"],
        ["HSET", "h", "a", "1"],
        ["GET", "h"],
        ["CONFIG", "GET", "tls-auth-clients"],
    ):
        got, want = redis_cli(ours, pki, *command), redis_cli(theirs, pki, *command)
        assert (got.returncode, got.stdout) == (want.returncode, want.stdout), command


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_over_tls_matches_redis_server(
    shims: TlsShims, oracles: dict[str, Oracle], pki: Pki, protocol: int
) -> None:
    ours = tls_client(shims.tls_ports["yes"], pki, protocol=protocol)
    theirs = tls_client(oracles["yes"].tls_port, pki, protocol=protocol)
    flush(ours, theirs)
    compare(
        theirs,
        ours,
        [
            ["SET", "k", "v"],
            ["GET", "k"],
            ["GET", "nothing"],
            ["SET", "big", "x" * 100_000],  # several TLS records each way
            ["STRLEN", "big"],
            ["GET", "big"],
            ["RPUSH", "l", "a", "b"],
            ["GET", "l"],
            ["LRANGE", "l", "0", "-1"],
            ["HSET", "h", "f", "1"],
            ["HGETALL", "h"],  # a map in RESP3
            ["CLIENT", "SETNAME", "tls-client"],
            ["CLIENT", "GETNAME"],
        ],
    )
    # A pipeline of GETs (the fast path) with writes among them, in order.
    for conn in (ours, theirs):
        conn.mset({f"key:{i}": f"value:{i}" for i in range(200)})
    pipes = [conn.pipeline(transaction=False) for conn in (ours, theirs)]
    for pipe in pipes:
        for i in range(300):
            pipe.get(f"key:{i}")
            if i % 50 == 0:
                pipe.incr("counter")
    got, want = pipes[0].execute(), pipes[1].execute()
    assert got == want


def connects(port: int, pki: Pki, cert: str) -> str:
    """ "ok" if a client showing `cert` can run a command over TLS, else "refused"."""
    conn = tls_client(port, pki, cert=cert, timeout_s=5)
    try:
        return "ok" if conn.ping() else "no pong"
    except (redis.ConnectionError, redis.TimeoutError, ssl.SSLError, OSError):
        return "refused"
    finally:
        conn.close()


# What each tls-auth-clients mode lets in (Redis's documented behaviour, and checked against
# redis-server below): yes wants a certificate of a trusted CA; optional wants one only if
# shown; no never asks (the other CA's certificate is then never even sent).
ADMITTED = {
    ("yes", "ours"): "ok",
    ("yes", "other"): "refused",
    ("yes", "none"): "refused",
    ("optional", "ours"): "ok",
    ("optional", "other"): "refused",
    ("optional", "none"): "ok",
    ("no", "ours"): "ok",
    ("no", "other"): "ok",
    ("no", "none"): "ok",
}


@pytest.mark.parametrize(("mode", "cert"), list(ADMITTED))
def test_client_certificates_are_checked_as_redis_checks_them(
    shims: TlsShims, oracles: dict[str, Oracle], pki: Pki, mode: str, cert: str
) -> None:
    theirs = connects(oracles[mode].tls_port, pki, cert)
    ours = connects(shims.tls_ports[mode], pki, cert)
    assert theirs == ADMITTED[(mode, cert)]
    assert ours == theirs
    # A refused client leaves the shim serving everyone else.
    assert connects(shims.tls_ports[mode], pki, "ours") == "ok"


def test_redis_cli_with_a_certificate_of_another_ca_is_refused(shims: TlsShims, pki: Pki) -> None:
    run = subprocess.run(
        ["redis-cli", "-p", str(shims.tls_ports["yes"]), "--tls", "--cacert", str(pki.ca_cert),
         "--cert", str(pki.other_client_cert), "--key", str(pki.other_client_key), "PING"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert "PONG" not in run.stdout
    assert redis_cli(shims.tls_ports["yes"], pki, "PING").stdout == "PONG\n"


def test_a_client_that_trusts_another_ca_refuses_the_shim(shims: TlsShims, pki: Pki) -> None:
    conn = redis.Redis(
        port=shims.tls_ports["no"], ssl=True, ssl_ca_certs=str(pki.other_ca_cert), socket_timeout=5
    )
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        conn.ping()


def test_the_plaintext_port_still_serves_beside_tls(shims: TlsShims, pki: Pki) -> None:
    plain = redis.Redis(port=shims.plain_port, socket_timeout=15)
    secure = tls_client(shims.tls_ports["yes"], pki)
    plain.set("both", "ways")
    assert secure.get("both") == b"ways"
    assert plain.config_get("port") == {"port": str(shims.plain_port)}
    assert secure.config_get("tls-port") == {"tls-port": str(shims.tls_ports["yes"])}
    # A plaintext client on the TLS port gets no RESP answer.
    with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
        redis.Redis(port=shims.tls_ports["yes"], socket_timeout=5).ping()


def test_port_0_turns_the_plaintext_port_off(shims: TlsShims, pki: Pki) -> None:
    conn = tls_client(shims.tls_ports["optional"], pki)
    assert conn.config_get("port") == {"port": "0"}
    assert conn.config_get("tls-auth-clients") == {"tls-auth-clients": "optional"}
    # The log is shared: a write through one shim is read through another.
    conn.set("from-optional", "1")
    other = tls_client(shims.tls_ports["no"], pki)
    wait_until(lambda: other.get("from-optional") == b"1", 15, "the write on the other shim")


def test_tls_settings_read_back(shims: TlsShims, pki: Pki) -> None:
    conn = tls_client(shims.tls_ports["yes"], pki)
    settings = conn.config_get("tls-*")
    assert settings["tls-cert-file"] == str(pki.server_cert)
    assert settings["tls-key-file"] == str(pki.server_key)
    assert settings["tls-ca-cert-file"] == str(pki.ca_cert)
    assert settings["tls-auth-clients"] == "yes"
    assert settings["tls-port"] == str(shims.tls_ports["yes"])


def config_outcome(conn: redis.Redis, *args: str) -> tuple[str, object]:
    try:
        return ("ok", conn.execute_command("CONFIG", "SET", *args))  # type: ignore[no-untyped-call]
    except redis.ResponseError as exc:
        return ("err", str(exc))


def test_config_set_rebuilds_the_tls_context_as_redis_does(
    shims: TlsShims, oracles: dict[str, Oracle], pki: Pki
) -> None:
    ports = {"memlog": shims.tls_ports["yes"], "redis": oracles["yes"].tls_port}
    conns = {who: tls_client(port, pki) for who, port in ports.items()}
    try:
        for who, port in ports.items():
            assert connects(port, pki, "none") == "refused", who
        outcomes = {who: config_outcome(c, "tls-auth-clients", "no") for who, c in conns.items()}
        assert outcomes["memlog"] == outcomes["redis"] == ("ok", b"OK")
        for who, port in ports.items():  # new connections: no certificate asked for
            assert connects(port, pki, "none") == "ok", who
            assert connects(port, pki, "other") == "ok", who
        # A value that makes no context: Redis's error, and nothing changes.
        for args in (("tls-protocols", "TLSv1.4"), ("tls-ciphers", "bogus"),
                     ("tls-auth-clients", "yes", "tls-ca-cert-file", "/nonexistent")):  # fmt: skip
            outcomes = {who: config_outcome(c, *args) for who, c in conns.items()}
            assert outcomes["memlog"] == outcomes["redis"], args
            assert "Unable to update TLS configuration" in str(outcomes["memlog"][1])
        for who, conn in conns.items():
            assert conn.config_get("tls-auth-clients") == {"tls-auth-clients": "no"}, who
            assert conn.config_get("tls-ca-cert-file") == {"tls-ca-cert-file": str(pki.ca_cert)}
    finally:
        for conn in conns.values():
            conn.config_set("tls-auth-clients", "yes")
    for who, port in ports.items():
        assert connects(port, pki, "none") == "refused", who
    # tls-port and the settings of links the shim does not have stay fixed.
    for name, value in (("tls-port", "0"), ("TLS-Session-Caching", "no"), ("tls-cluster", "no")):
        got = config_outcome(conns["memlog"], name, value)
        assert got == (
            "err",
            f"CONFIG SET failed (possibly related to argument '{name}') - {TLS_FIXED}",
        )
    conns["memlog"].config_set("maxclients", "5000")  # other settings still change


def test_renewed_certificate_files_serve_new_connections(shims: TlsShims, pki: Pki) -> None:
    """The "optional" shim reads its own copy of the server certificate: replace it as a
    Kubernetes Secret update does (the files swapped whole), and new connections get the
    new certificate while an open one goes on."""
    port = shims.tls_ports["optional"]
    before = tls_client(port, pki)
    assert before.ping()
    folder = pki.ca_cert.parent
    renewed = sign(folder, "ca", "renewed", "localhost", SERVER_EXTENSIONS)
    wanted = ssl.PEM_cert_to_DER_cert(renewed.read_text())
    assert served_certificate(port, pki) != wanted
    own = shims.memlog.root / "optional-tls"
    for name in ("server.key", "server.crt"):  # each file replaced in one step
        source = folder / ("renewed" + Path(name).suffix)
        shutil.copy(source, own / f"{name}.new")
        os.replace(own / f"{name}.new", own / name)
    wait_until(lambda: served_certificate(port, pki) == wanted, 60, "the renewed certificate")
    assert before.ping()  # the open connection keeps its session


def served_certificate(port: int, pki: Pki) -> bytes:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


# -- settings that cannot work: the shim does not start, and says why as Redis says it ----------


def serve_exits(*flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cacheshim.cli", "serve", "--log", "127.0.0.1:1", *flags],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def redis_refuses(*flags: str) -> str:
    """What redis-server logs when it will not start with these settings."""
    run = subprocess.run(
        ["redis-server", "--port", "0", "--bind", "127.0.0.1", "--save", "", *flags],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert run.returncode != 0, run.stdout
    return run.stdout + run.stderr


def bad_settings(pki: Pki) -> list[tuple[list[str], str]]:
    cert, key, ca = str(pki.server_cert), str(pki.server_key), str(pki.ca_cert)
    return [
        (["--tls-key-file", key, "--tls-ca-cert-file", ca], NO_CERT_FILE),
        (["--tls-cert-file", cert, "--tls-ca-cert-file", ca], NO_KEY_FILE),
        (["--tls-cert-file", cert, "--tls-key-file", key], NO_CA),
        (["--tls-cert-file", cert, "--tls-key-file", key, "--tls-auth-clients", "optional"], NO_CA),
        ([*server_flags(pki, "yes"), "--tls-protocols", "TLSv1.4"], BAD_PROTOCOLS),
        ([*server_flags(pki, "yes"), "--tls-ciphers", "bogus"],
         "Failed to configure ciphers: bogus"),
        (["--tls-cert-file", "/nonexistent.crt", "--tls-key-file", key, "--tls-ca-cert-file", ca],
         "Failed to load certificate: /nonexistent.crt: "),
        (["--tls-cert-file", cert, "--tls-key-file", str(pki.client_key),
          "--tls-ca-cert-file", ca], f"Failed to load private key: {pki.client_key}: "),
        (["--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", "/nonexistent"],
         "Failed to configure CA certificate(s) file/directory: "),
    ]  # fmt: skip


def test_bad_tls_settings_stop_the_shim_with_redis_words(pki: Pki) -> None:
    for flags, reason in bad_settings(pki):
        port = str(free_port())
        run = serve_exits("--listen", "127.0.0.1:0", "--tls-port", port, *flags)
        assert run.returncode == 2, (flags, run.stderr)
        assert f"cacheshim serve: {reason}" in run.stderr, (flags, run.stderr)
        assert "Failed to configure TLS. Check logs for more info." in run.stderr
        said = redis_refuses("--tls-port", port, *flags)
        assert reason in said, (flags, said)


def test_what_python_cannot_do_is_refused_not_ignored(pki: Pki) -> None:
    port = str(free_port())
    run = serve_exits("--tls-port", port, *server_flags(pki, "yes"), "--tls-ciphersuites", "x")
    assert run.returncode == 2 and NO_CIPHERSUITES in run.stderr, run.stderr
    gap = "TLSv1 TLSv1.3"
    run = serve_exits("--tls-port", port, *server_flags(pki, "yes"), "--tls-protocols", gap)
    assert run.returncode == 2 and PROTOCOLS_GAP % gap in run.stderr, run.stderr
    run = serve_exits("--listen", "127.0.0.1:0")
    assert run.returncode == 2 and "--tls-port must be set" in run.stderr, run.stderr


def test_tls_protocols_are_a_range() -> None:
    assert protocol_range("") == (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
    assert protocol_range("TLSv1.3") == (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3)
    assert protocol_range("tlsv1.3 TLSv1.2") == (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
    assert protocol_range("TLSv1 TLSv1.1 TLSv1.2") == (
        ssl.TLSVersion.TLSv1,
        ssl.TLSVersion.TLSv1_2,
    )
    for bad in ("TLSv1.4", "SSLv3 TLSv1.2"):
        with pytest.raises(TlsConfigError, match="Invalid tls-protocols"):
            protocol_range(bad)
    with pytest.raises(TlsConfigError, match="gap"):
        protocol_range("TLSv1.1 TLSv1.3")


# -- in one process: the GET fast path answers over TLS, and tls-protocols is enforced --------


def settings(pki: Pki, **changes: object) -> TlsSettings:
    values: dict[str, object] = {
        "port": 1, "cert_file": str(pki.server_cert), "key_file": str(pki.server_key),
        "key_file_pass": "", "ca_cert_file": str(pki.ca_cert), "ca_cert_dir": "",
        "auth_clients": "yes", "protocols": "", "ciphers": "", "ciphersuites": "",
        "prefer_server_ciphers": False,
    }  # fmt: skip
    values.update(changes)
    return TlsSettings(**values)  # type: ignore[arg-type]


def offline_shim() -> Shim:
    """A shim that is never started (no log is reached): its Connections serve its keyspace."""
    return Shim(ShimConfig("127.0.0.1", 0, ("127.0.0.1:1",), "127.0.0.1:1", "offline"))


def test_the_get_fast_path_answers_over_tls(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[int] = []
    real = fastreads.serve_reads

    def counting(*args: Any) -> tuple[int, bytes, int, str]:
        result = real(*args)
        served.append(result[2])
        return result

    monkeypatch.setattr(connection_module, "serve_reads", counting)

    async def run() -> list[bytes | None]:
        shim = offline_shim()
        shim.applier.keyspace.dbs[0].data[b"k"] = b"v"
        context = server_context(settings(pki))
        server = await asyncio.get_running_loop().create_server(
            lambda: Connection(shim), "127.0.0.1", 0, ssl=context
        )
        port = server.sockets[0].getsockname()[1]
        conn = redis.asyncio.Redis(
            port=port, ssl=True, ssl_ca_certs=str(pki.ca_cert),
            ssl_certfile=str(pki.client_cert), ssl_keyfile=str(pki.client_key),
        )  # fmt: skip
        try:
            pipe = conn.pipeline(transaction=False)
            for key in (b"k", b"nothing", b"k"):
                pipe.get(key)
            return list(await pipe.execute())
        finally:
            await conn.aclose()
            server.close()
            await shim.log_writer_client.close()
            await shim.log_reader_client.close()

    assert asyncio.run(run()) == [b"v", None, b"v"]
    assert sum(served) == 3, served


def test_tls_protocols_refuse_an_older_client(pki: Pki) -> None:
    async def handshake(protocols: str, client_max: ssl.TLSVersion) -> str:
        shim = offline_shim()
        context = server_context(settings(pki, protocols=protocols, auth_clients="no"))
        server = await asyncio.get_running_loop().create_server(
            lambda: Connection(shim), "127.0.0.1", 0, ssl=context
        )
        port = server.sockets[0].getsockname()[1]
        client = ssl.create_default_context(cafile=str(pki.ca_cert))
        client.maximum_version = client_max
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
            writer.write(b"PING\r\n")
            answer = await asyncio.wait_for(reader.readline(), 10)
            writer.close()
            return answer.decode().strip()
        except (ssl.SSLError, ConnectionError):
            return "refused"
        finally:
            server.close()
            await shim.log_writer_client.close()
            await shim.log_reader_client.close()

    assert asyncio.run(handshake("TLSv1.3", ssl.TLSVersion.TLSv1_3)) == "+PONG"
    assert asyncio.run(handshake("TLSv1.3", ssl.TLSVersion.TLSv1_2)) == "refused"
    assert asyncio.run(handshake("TLSv1.2", ssl.TLSVersion.TLSv1_2)) == "+PONG"


def test_config_set_of_tls_needs_a_listener_but_startup_sets_them() -> None:
    config = ServerConfig()
    names = [n for n in ServerConfig.names() if n.startswith("tls-")]
    assert len(names) >= 15
    for name in names:
        reason = NO_TLS_LISTENER if name in TLS_RELOADABLE else TLS_FIXED
        with pytest.raises(CommandError) as caught:
            config.set_many([(name.encode(), b"x")])
        assert caught.value.message.endswith(reason), name
    config.set_many([(b"tls-port", b"6380"), (b"tls-auth-clients", b"optional")], startup=True)
    assert config.get("tls-port") == "6380" and config.get("tls-auth-clients") == "optional"
