"""The pieces of the log's authentication that need no process: --peers with peer ports,
the files of tokens and client certificates, rights, and which addresses need TLS."""

from __future__ import annotations

from pathlib import Path

import pytest

from logsvc.auth import (
    AuthConfigError,
    ClientCredentials,
    ServerAuth,
    check_exposure,
    hash_token,
    is_loopback,
    load_client_certs,
    load_tokens,
    parse_rights,
    server_auth,
    tls_files,
)
from logsvc.config import ConfigError, NodeConfig, parse_peer_addresses, parse_peers


def test_peers_give_a_client_and_a_peer_address() -> None:
    text = "a=10.0.0.1:7001/7002,b=h.example:7001/10.0.0.9:9000,c=h3:7001"
    assert parse_peers(text) == {"a": "10.0.0.1:7001", "b": "h.example:7001", "c": "h3:7001"}
    assert parse_peer_addresses(text) == {"a": "10.0.0.1:7002", "b": "10.0.0.9:9000"}
    for bad in ("a=h:1/", "a=h:1/x", "a=h", "a=h:1,a=h:2/3"):
        with pytest.raises(ConfigError):
            parse_peers(bad)


def test_a_cluster_needs_every_peer_port(tmp_path: Path) -> None:
    def config(peers: str) -> NodeConfig:
        return NodeConfig(
            id="a",
            listen="127.0.0.1:1",
            peers=parse_peers(peers),
            peer_addresses=parse_peer_addresses(peers),
            data_dir=tmp_path,
        )

    config("a=127.0.0.1:1").validate()  # one node alone has no peers
    config("a=127.0.0.1:1/2,b=127.0.0.1:3/4,c=127.0.0.1:5/6").validate()
    with pytest.raises(ConfigError, match="no peer address for c"):
        config("a=127.0.0.1:1/2,b=127.0.0.1:3/4,c=127.0.0.1:5").validate()
    with pytest.raises(ConfigError, match="same client and peer address"):
        config("a=127.0.0.1:1/2,b=127.0.0.1:3/127.0.0.1:3,c=127.0.0.1:5/6").validate()


def test_token_and_client_files(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# comment\nops trim,read sha256:{hash_token('s3cret')}  # the ops\n")
    loaded = load_tokens(tokens)
    (identity,) = loaded.values()
    assert identity.name == "ops" and identity.may("trim") and not identity.may("append")
    tokens.write_text("ops trim s3cret\n")
    with pytest.raises(AuthConfigError, match="tokens:1: expected NAME RIGHTS sha256:HEX"):
        load_tokens(tokens)
    certs = tmp_path / "clients"
    certs.write_text("memlog-shim append,read\nroot admin\n")
    loaded_certs = load_client_certs(certs)
    assert loaded_certs["root"].may("trim") and not loaded_certs["memlog-shim"].may("trim")
    certs.write_text("memlog-shim append,write\n")
    with pytest.raises(AuthConfigError, match="clients:1: rights 'append,write'"):
        load_client_certs(certs)
    with pytest.raises(AuthConfigError):
        parse_rights("", "--rights")


def test_what_needs_tls() -> None:
    assert is_loopback("127.0.0.1:7001") and is_loopback("[::1]:7001")
    assert is_loopback("localhost:7001")
    assert not is_loopback("0.0.0.0:7001") and not is_loopback("10.1.2.3:7001")
    plain = ServerAuth()
    assert check_exposure([("--listen", "127.0.0.1:1")], plain, insecure=False) == []
    with pytest.raises(AuthConfigError, match=r"--peer-listen 0\.0\.0\.0:2 is not a loopback"):
        check_exposure([("--peer-listen", "0.0.0.0:2")], plain, insecure=False)
    warned = check_exposure([("--listen", "0.0.0.0:1")], plain, insecure=True)
    assert warned and "WITHOUT TLS" in warned[0]
    with pytest.raises(AuthConfigError, match="go together"):
        tls_files("c", None, "ca")
    with pytest.raises(AuthConfigError, match="need TLS"):
        server_auth(None, "tokens", None)
    # TLS alone would refuse every call: refused at start instead.
    with pytest.raises(AuthConfigError, match="needs an identity"):
        server_auth(tls_files("c", "k", "ca"), None, None)


def test_a_token_never_travels_in_the_clear() -> None:
    with pytest.raises(AuthConfigError, match="a token needs TLS"):
        ClientCredentials.from_files(token="t")
    with pytest.raises(AuthConfigError, match="certificate and its key go together"):
        ClientCredentials.from_files(ca="x", cert="c")
    assert ClientCredentials.from_files() is None
