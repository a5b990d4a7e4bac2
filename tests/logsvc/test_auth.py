"""The attacks of issue 17, now refused, against real `logsvc serve` processes.

Before: one port served clients and peers in plaintext, and the cluster id (echoed in every
response header) was the only check. A forged peer APPEND at term+100 was committed and
applied, forged TIMEOUT_NOW messages caused elections, and an unauthenticated Trim to the
last index broke every new shim. Now peers talk mutual TLS on a port of their own, each
certificate checked against the node id it speaks for, and every client call needs an
identity with the right for it. The clusters here run with `memlog up`'s credentials
(logsvc/certs.py): a CA, a certificate per node, a shim's and an admin's.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from logsvc.auth import ClientCredentials, TLSFiles, hash_token
from logsvc.certs import Authority, LocalCredentials, ensure_local_credentials, write_pair
from logsvc.client import LogClient, LogClientError, TrimmedError
from logsvc.peerwire import (
    StreamRefused,
    client_ssl_context,
    encode_frame,
    open_stream,
    read_refusal,
)
from logsvc.raft import MessageType
from logsvc.v1 import log_pb2, log_pb2_grpc, peer_pb2, peer_pb2_grpc
from tests.logsvc.cluster import LOGSVC, REPO_ROOT, Cluster, RpcFailure, clean_env, free_ports
from tests.logsvc.conftest import Clusters

TIMEOUT_S = 10.0
# How long the cluster is watched for an effect a refused message could have had: several
# election timeouts (150-300 ms with the harness's timing) and many heartbeats.
WATCH_S = 2.0


@pytest.fixture
def tls_cluster(clusters: Clusters) -> Cluster:
    c = clusters(tls=True)
    c.start_all()
    return c


def pair(creds: LocalCredentials, name: str) -> tuple[bytes, bytes]:
    """(certificate, key) of one of memlog up's certificates ("shim", "admin", "node-a")."""
    return (creds.folder / f"{name}.crt").read_bytes(), (creds.folder / f"{name}.key").read_bytes()


def channel(
    address: str,
    ca: bytes | None,
    cert_key: tuple[bytes, bytes] | None = None,
    server_name: str = "",
) -> grpc.Channel:
    if ca is None:
        return grpc.insecure_channel(address)
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=cert_key[1] if cert_key else None,
        certificate_chain=cert_key[0] if cert_key else None,
    )
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.secure_channel(address, creds, options=options)


def forged_batch(
    c: Cluster, leader: str, to: str, kind: MessageType, term: int
) -> peer_pb2.MessageBatch:
    """What the probe of issue 17 sent: a message as if from the leader, at a far term;
    an APPEND carries an entry after the follower's last one."""
    last = c.status(to).raft_last_index
    message = peer_pb2.RaftMessage(type=int(kind), to=to, term=term)
    setattr(message, "from", leader)
    if kind is MessageType.APPEND:
        message.index = last
        message.log_term = c.status(to).header.term
        message.commit = last + 1
        message.entries.append(peer_pb2.RaftEntry(term=term, index=last + 1, data=b"injected"))
    return peer_pb2.MessageBatch(cluster_id="memlog", from_id=leader, messages=[message])


def deliver(ch: grpc.Channel, batch: peer_pb2.MessageBatch) -> RpcFailure | None:
    try:
        peer_pb2_grpc.PeerStub(ch).Deliver(iter([batch]), timeout=TIMEOUT_S)
    except grpc.RpcError as exc:
        return RpcFailure.of(exc)
    return None


def assert_undisturbed(c: Cluster, leader: str, term: int, last: int) -> None:
    """Same leader, same term, nothing appended, for WATCH_S."""
    deadline = time.monotonic() + WATCH_S
    while time.monotonic() < deadline:
        for node_id in c.nodes:
            st = c.status(node_id)
            assert st.header.term == term, f"{node_id} moved to term {st.header.term}"
            assert st.last_index == last, f"{node_id} has records up to {st.last_index}"
        assert c.agreed_leader() == leader
        time.sleep(0.1)


def test_the_client_port_never_takes_a_raft_message(tls_cluster: Cluster) -> None:
    c = tls_cluster
    assert c.tls is not None
    leader = c.leader()
    follower = next(i for i in c.nodes if i != leader)
    term, last = c.status(leader).header.term, c.status(leader).last_index
    batch = forged_batch(c, leader, follower, MessageType.APPEND, term + 100)
    # Even with the admin's certificate: the Peer service is not served there.
    ch = channel(c.address(follower), c.tls.ca.read_bytes(), pair(c.tls, "admin"))
    failure = deliver(ch, batch)
    assert failure is not None and failure.code is grpc.StatusCode.UNIMPLEMENTED, failure
    assert_undisturbed(c, leader, term, last)


@pytest.mark.parametrize("kind", [MessageType.APPEND, MessageType.TIMEOUT_NOW])
def test_forged_peer_messages_are_refused_on_the_peer_port(
    tls_cluster: Cluster, tmp_path: Path, kind: MessageType
) -> None:
    c = tls_cluster
    assert c.tls is not None
    leader = c.leader()
    follower = next(i for i in c.nodes if i != leader)
    term, last = c.status(leader).header.term, c.status(leader).last_index
    batch = forged_batch(c, leader, follower, kind, term + 100)
    ca = c.tls.ca.read_bytes()
    target = c.nodes[follower].peer_address
    stranger = Authority.create("another cluster's CA")
    foreign = stranger.issue(leader, dns_names=[leader, "localhost"], ip_addresses=["127.0.0.1"])
    attempts = {
        # Plaintext to a TLS port: no handshake, no call.
        "plaintext": (channel(target, None), grpc.StatusCode.UNAVAILABLE),
        # TLS without a client certificate: the peer port requires one.
        "no certificate": (channel(target, ca, None, follower), grpc.StatusCode.UNAVAILABLE),
        # A certificate that names the leader, from another CA.
        "another CA": (channel(target, ca, foreign, follower), grpc.StatusCode.UNAVAILABLE),
        # A good certificate of this CA, but not the leader's: the shim's, another node's.
        "the shim's": (
            channel(target, ca, pair(c.tls, "shim"), follower),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        "another node's": (
            channel(target, ca, pair(c.tls, f"node-{follower}"), follower),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
    }
    for what, (ch, code) in attempts.items():
        failure = deliver(ch, batch)
        assert failure is not None and failure.code is code, (what, failure)
        if code is grpc.StatusCode.PERMISSION_DENIED:
            assert f"may not speak for {leader!r}" in failure.details, failure
    assert_undisturbed(c, leader, term, last)


def framed(
    target: str, server_name: str, batch: peer_pb2.MessageBatch, tls: TLSFiles | None
) -> str:
    """Send a batch on a framed Raft stream (logsvc/peerwire.py): how the stream ended."""

    async def go() -> str:
        ctx = client_ssl_context(tls) if tls is not None else None
        try:
            reader, writer = await asyncio.wait_for(
                open_stream(target, server_name, ctx), TIMEOUT_S
            )
        except (OSError, ssl.SSLError, TimeoutError, StreamRefused) as exc:
            return f"no stream: {type(exc).__name__} {exc}"
        try:
            writer.write(encode_frame(batch))
            return await asyncio.wait_for(read_refusal(reader), TIMEOUT_S)
        finally:
            writer.close()

    return asyncio.run(go())


@pytest.mark.parametrize("kind", [MessageType.APPEND, MessageType.TIMEOUT_NOW])
def test_forged_peer_messages_are_refused_on_the_framed_stream(
    tls_cluster: Cluster, tmp_path: Path, kind: MessageType
) -> None:
    """The same attacks on the framed Raft stream of the peer port."""
    c = tls_cluster
    assert c.tls is not None
    leader = c.leader()
    follower = next(i for i in c.nodes if i != leader)
    term, last = c.status(leader).header.term, c.status(leader).last_index
    batch = forged_batch(c, leader, follower, kind, term + 100)
    target = c.nodes[follower].peer_address
    folder = c.tls.folder
    stranger = Authority.create("another cluster's CA")
    cert, key = stranger.issue(leader, dns_names=[leader, "localhost"], ip_addresses=["127.0.0.1"])
    write_pair(tmp_path, "foreign", cert, key)

    def files(name: str, ca: Path = folder / "ca.crt") -> TLSFiles:
        return TLSFiles(folder / f"{name}.crt", folder / f"{name}.key", ca)

    attempts = {
        "plaintext": (None, "the stream ended"),
        "another CA": (
            TLSFiles(tmp_path / "foreign.crt", tmp_path / "foreign.key", folder / "ca.crt"),
            "the stream ended",
        ),
        "the shim's": (files("shim"), "PERMISSION_DENIED: a peer certificate for"),
        "another node's": (files(f"node-{follower}"), "PERMISSION_DENIED: a peer certificate"),
    }
    for what, (tls, expected) in attempts.items():
        ended = framed(target, follower, batch, tls)
        assert ended.startswith(expected) or ended.startswith("no stream"), (what, ended)
        if expected.startswith("PERMISSION_DENIED"):
            assert f"may not speak for {leader!r}" in ended, (what, ended)
    assert_undisturbed(c, leader, term, last)


def test_a_node_with_another_clusters_certificate_is_refused(tls_cluster: Cluster) -> None:
    c = tls_cluster
    creds = c.tls
    assert creds is not None
    c.leader()
    # Node c restarts holding a certificate with its own name, from a CA the others do not
    # trust (and it trusts only that CA). It has data, so it does not wait for its peers.
    c.stop("c")
    stranger_dir = c.tmp_path / "stranger"
    stranger = Authority.create("another cluster's CA")
    cert, key = stranger.issue("c", dns_names=["c", "localhost"], ip_addresses=["127.0.0.1"])
    write_pair(stranger_dir, "node-c", cert, key)
    (stranger_dir / "ca.crt").write_bytes(stranger.cert_pem())
    (stranger_dir / "tokens").write_text(f"watcher read sha256:{hash_token('look')}\n")
    node_args = creds.node_args
    creds_c = [
        "--tls-cert", str(stranger_dir / "node-c.crt"),
        "--tls-key", str(stranger_dir / "node-c.key"),
        "--tls-ca", str(stranger_dir / "ca.crt"),
        "--tokens", str(stranger_dir / "tokens"),
    ]  # fmt: skip
    c.tls = None
    c.extra_args = tuple(creds_c)
    try:
        c.start("c")
    finally:
        c.tls, c.extra_args = creds, ()
    assert node_args("a")  # a and b keep theirs
    c.leader(among=["a", "b"])

    async def append() -> int:
        async with LogClient(c.addresses[:2], credentials=c.client_credentials()) as client:
            return (await client.append([b"only a and b"])).last_index

    last = asyncio.run(append())
    c.wait_last_index(last, ids=["a", "b"])
    # c never hears from the leader: its certificate is refused and it refuses theirs.
    watcher = ClientCredentials(ca=stranger.cert_pem(), token="look", server_name="c")

    async def status_of_c() -> log_pb2.StatusResponse:
        async with LogClient([c.address("c")], credentials=watcher) as client:
            return await client.status(c.address("c"))

    c.wait_until(lambda: asyncio.run(status_of_c()), 30, "node c answers Status")
    deadline = time.monotonic() + WATCH_S
    while time.monotonic() < deadline:
        st = asyncio.run(status_of_c())
        # (a and b may change leaders meanwhile on a loaded machine: c knows neither)
        assert st.header.leader_id not in ("a", "b") and st.last_index < last, st
        time.sleep(0.1)
    assert c.agreed_leader(["a", "b"]) in ("a", "b")


def test_clients_need_a_certificate_of_the_ca_and_its_rights(tls_cluster: Cluster) -> None:
    c = tls_cluster
    creds = c.tls
    assert creds is not None
    ca = creds.ca.read_bytes()
    leader = c.leader()
    last = c.status(leader).last_index
    address = c.address(leader)
    stranger = Authority.create("another cluster's CA")
    trim = log_pb2.TrimRequest(before_index=last + 1, force=True)

    def trim_with(ch: grpc.Channel) -> RpcFailure:
        try:
            log_pb2_grpc.LogStub(ch).Trim(trim, timeout=TIMEOUT_S)
        except grpc.RpcError as exc:
            return RpcFailure.of(exc)
        raise AssertionError("Trim was accepted")

    # No certificate, or one of another CA: the handshake fails, no call is made.
    assert trim_with(channel(address, ca)).code is grpc.StatusCode.UNAVAILABLE
    foreign = stranger.issue("memlog-admin", dns_names=["memlog-admin"])
    assert trim_with(channel(address, ca, foreign)).code is grpc.StatusCode.UNAVAILABLE
    # Plaintext to the TLS port.
    assert trim_with(channel(address, None)).code is grpc.StatusCode.UNAVAILABLE
    # The shim's certificate holds append, read and snapshot: not trim.
    refused = trim_with(channel(address, ca, pair(creds, "shim")))
    assert refused.code is grpc.StatusCode.PERMISSION_DENIED, refused
    assert "memlog-shim (certificate) may not call Trim" in refused.details, refused
    assert "'trim' right" in refused.details, refused
    # A node's own certificate is of the CA, but not a client in --client-certs.
    unknown = trim_with(channel(address, ca, pair(creds, f"node-{leader}")))
    assert unknown.code is grpc.StatusCode.UNAUTHENTICATED, unknown
    assert c.status(leader).first_index <= 1

    # The normal path: the shim appends and reads, the admin trims.
    async def shim_and_admin() -> tuple[int, list[bytes], int]:
        shim = ClientCredentials.from_files(
            ca=str(creds.ca), cert=str(creds.shim_cert), key=str(creds.shim_key)
        )
        async with LogClient(c.addresses, credentials=shim) as client:
            first_index = (await client.append([b"one"])).first_index
            for record in (b"two", b"three"):  # a batch each: trim keeps whole batches
                last = (await client.append([record])).last_index
            await asyncio.to_thread(c.wait_last_index, last)
            seen = [p async for _, p in client.read(first_index, follow=False)]
        async with LogClient(c.addresses, credentials=c.client_credentials()) as admin:
            first = await admin.trim(last, force=True)
        return last, seen, first

    last, seen, first = asyncio.run(shim_and_admin())
    assert seen == [b"one", b"two", b"three"]
    assert first == last - 1  # "one" is gone; the batch of "two" stays


def token_node(
    clusters: Clusters, tmp_path: Path
) -> tuple[Cluster, LocalCredentials, dict[str, str]]:
    """One node with TLS and bearer tokens (no client certificates asked for)."""
    creds = ensure_local_credentials(tmp_path / "tls", ("a",))
    tokens = {"writer": "append,read", "ops": "trim", "reader": "read", "boss": "admin"}
    secrets: dict[str, str] = {}
    lines = []
    for name, rights in tokens.items():
        made = subprocess.run(
            [*LOGSVC, "token", "--name", name, "--rights", rights],
            capture_output=True, cwd=REPO_ROOT, env=clean_env(), check=True,
        )  # fmt: skip
        secrets[name] = made.stdout.decode().strip()
        lines.append(made.stderr.decode().partition("--tokens file: ")[2].strip())
    (tmp_path / "tokens").write_text("\n".join(lines) + "\n")
    c = clusters(
        ids=("a",),
        extra_args=(
            "--tls-cert", str(creds.node_cert("a")), "--tls-key", str(creds.node_key("a")),
            "--tls-ca", str(creds.ca), "--tokens", str(tmp_path / "tokens"),
        ),
    )  # fmt: skip
    return c, creds, secrets


def test_tokens_carry_rights(clusters: Clusters, tmp_path: Path) -> None:
    c, creds, tokens = token_node(clusters, tmp_path)
    for node_id in c.nodes:
        c.start(node_id)
    ca = str(creds.ca)

    def client(token: str | None) -> LogClient:
        creds = ClientCredentials.from_files(ca=ca, token=token)
        return LogClient(c.addresses, credentials=creds, timeout_s=TIMEOUT_S)

    async def run() -> None:
        # The node answers once it is up; the writer's append proves it.
        async with client(tokens["writer"]) as writer:
            for record in (b"a", b"b", b"c"):  # one batch each: trim keeps whole batches
                result = await writer.append([record])
            records = [p async for _, p in writer.read(1, follow=False)]
            assert records == [b"a", b"b", b"c"]
        # No token: UNAUTHENTICATED; a wrong one too; a token without trim: PERMISSION_DENIED.
        for token, code, words in [
            (None, grpc.StatusCode.UNAUTHENTICATED, "requires credentials"),
            ("not-a-token", grpc.StatusCode.UNAUTHENTICATED, "not one this node knows"),
            (tokens["writer"], grpc.StatusCode.PERMISSION_DENIED, "writer (token) may not call"),
            (tokens["reader"], grpc.StatusCode.PERMISSION_DENIED, "'trim' right"),
        ]:
            async with client(token) as nobody:
                with pytest.raises(LogClientError) as caught:
                    await nobody.trim(result.last_index, force=True)
            assert caught.value.code is code, (token, caught.value)
            assert words in str(caught.value), caught.value
        # The reader may not append; the ops token may trim, and admin may do anything.
        async with client(tokens["reader"]) as reader:
            with pytest.raises(LogClientError) as caught:
                await reader.append([b"nope"])
            assert caught.value.code is grpc.StatusCode.PERMISSION_DENIED, caught.value
        async with client(tokens["ops"]) as ops:
            await ops.trim(result.last_index, force=True)
        async with client(tokens["reader"]) as reader:
            with pytest.raises(TrimmedError) as trimmed:
                _ = [r async for r in reader.read(1, follow=False)]
            # The batch of the newest trimmed record (2) stays.
            assert trimmed.value.first_index == 2
        async with client(tokens["boss"]) as boss:
            assert (await boss.append([b"d"])).first_index == result.last_index + 1

    asyncio.run(run())
    # The CLI tools take the same credentials from flags or LOGSVC_* variables.
    env = {"LOGSVC_TLS_CA": ca, "LOGSVC_TOKEN": tokens["reader"]}
    out = c.cli("tail", "--addr", c.addr, "--from", "2", env=env).stdout.decode()
    assert out.splitlines() == ["2\tb", "3\tc", "4\td"]
    refused = c.cli("trim", "--addr", c.addr, "--before", "4", env=env, check=False)
    assert refused.returncode == 1
    assert b"PERMISSION_DENIED" in refused.stderr or b"may not call Trim" in refused.stderr


def serve_argv(tmp_path: Path, listen: str, *extra: str) -> list[str]:
    return [
        *LOGSVC, "serve", "--id", "a", "--listen", listen, "--peers", f"a={listen}",
        "--data-dir", str(tmp_path / "data"), *extra,
    ]  # fmt: skip


def test_serve_without_credentials_stays_on_loopback(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    refused = subprocess.run(
        serve_argv(tmp_path, f"0.0.0.0:{port}"),
        capture_output=True, cwd=REPO_ROOT, env=clean_env(), timeout=30,
    )  # fmt: skip
    assert refused.returncode == 2, refused
    err = refused.stderr.decode()
    assert "--listen 0.0.0.0:" in err and "no TLS is configured" in err and "--insecure" in err
    # A partial TLS configuration is refused, not half applied.
    partial = subprocess.run(
        serve_argv(tmp_path, f"127.0.0.1:{port}", "--tls-cert", "x.crt"),
        capture_output=True, cwd=REPO_ROOT, env=clean_env(), timeout=30,
    )  # fmt: skip
    assert partial.returncode == 2
    assert b"--tls-cert, --tls-key and --tls-ca go together" in partial.stderr
    # --insecure: it serves, with a warning line.
    log_path = tmp_path / "insecure.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            serve_argv(tmp_path, f"0.0.0.0:{port}", "--insecure"),
            stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=clean_env(),
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "serving clients on" not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        text = log_path.read_text()
        assert "WARNING" in text and "WITHOUT TLS or authentication" in text, text
    finally:
        proc.terminate()
        proc.wait(30)
    # On loopback without credentials it says so.
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            serve_argv(tmp_path, f"127.0.0.1:{port}"),
            stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=clean_env(),
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "serving clients on" not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        assert "no credentials configured: listening on loopback only" in log_path.read_text()
    finally:
        proc.terminate()
        proc.wait(30)
