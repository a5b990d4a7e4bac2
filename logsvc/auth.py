"""Who may talk to a node, and what they may do.

Two ports, two kinds of caller:

- The peer port serves only the Peer service (Raft messages, probes, snapshot transfer).
  With credentials configured it is mutual TLS: a peer shows a certificate of the cluster's
  CA that names its node id as a DNS name (subjectAltName) or common name, and every
  message it sends must come from that id (`peer_names`, checked by PeerServicer).
- The client port serves the Log service. With credentials configured, every call carries
  an identity, and the identity's rights are checked per method (`METHOD_RIGHTS`):
  a bearer token (`authorization: Bearer TOKEN` metadata; `--tokens FILE` holds SHA-256
  hashes of the tokens, compared in constant time), or, when `--client-certs FILE` is
  given, a client certificate of the CA (required on the port then), whose CN or DNS
  name the file maps to rights.

Rights: `append`, `read`, `snapshot` (store a snapshot: what a snapshotter needs besides
read), `trim`, and `admin`, which holds every right (membership changes need it; listing
the members needs `read`). Without credentials configured (no TLS, no tokens), nobody is
checked: the node then listens on loopback only unless told `--insecure` (see check_exposure).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from logsvc.errors import LogError

RIGHTS = ("append", "read", "snapshot", "trim", "admin")
ADMIN = "admin"
# The right each Log method needs; a method not listed needs admin.
METHOD_RIGHTS: Mapping[str, str] = {
    "Append": "append",
    "AppendStream": "append",
    "Read": "read",
    "ReadIndex": "read",
    "Status": "read",
    "GetSnapshot": "read",
    "ListSnapshots": "read",
    "PutSnapshot": "snapshot",
    "Trim": "trim",
    "MemberList": "read",
}
BEARER = "bearer "
AUTHORIZATION_KEY = "authorization"


class Unauthenticated(LogError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(LogError):
    code = grpc.StatusCode.PERMISSION_DENIED


class AuthConfigError(ValueError):
    pass


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_rights(text: str, where: str) -> frozenset[str]:
    rights = frozenset(r.strip() for r in text.split(",") if r.strip())
    unknown = sorted(rights - set(RIGHTS))
    if unknown or not rights:
        raise AuthConfigError(
            f"{where}: rights {text!r} are not a comma-separated list of {', '.join(RIGHTS)}"
        )
    return rights


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    rights: frozenset[str]
    via: str  # "token" or "certificate"

    def may(self, right: str) -> bool:
        return ADMIN in self.rights or right in self.rights


def _lines(path: Path) -> Iterable[tuple[int, list[str]]]:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if words:
            yield number, words


def load_tokens(path: Path) -> dict[bytes, Identity]:
    """`NAME RIGHTS sha256:HEX` per line -> {digest: identity}."""
    tokens: dict[bytes, Identity] = {}
    for number, words in _lines(path):
        where = f"{path}:{number}"
        if len(words) != 3 or not words[2].startswith("sha256:"):
            raise AuthConfigError(f"{where}: expected NAME RIGHTS sha256:HEX (logsvc token)")
        try:
            digest = bytes.fromhex(words[2][len("sha256:") :])
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise AuthConfigError(f"{where}: {words[2]!r} is not a SHA-256 in hex")
        tokens[digest] = Identity(words[0], parse_rights(words[1], where), "token")
    return tokens


def load_client_certs(path: Path) -> dict[str, Identity]:
    """`NAME RIGHTS` per line -> {name: identity} (NAME: a certificate's CN or DNS name)."""
    names: dict[str, Identity] = {}
    for number, words in _lines(path):
        where = f"{path}:{number}"
        if len(words) != 2:
            raise AuthConfigError(f"{where}: expected NAME RIGHTS")
        names[words[0]] = Identity(words[0], parse_rights(words[1], where), "certificate")
    return names


def cert_names(context: grpc.aio.ServicerContext[Any, Any]) -> list[str]:
    """The DNS names and common name of the verified certificate the caller showed."""
    auth = context.auth_context()
    out: list[str] = []
    for key in ("x509_subject_alternative_name", "x509_common_name"):
        out += [v.decode() if isinstance(v, bytes) else str(v) for v in auth.get(key, ())]
    return out


@dataclass(frozen=True, slots=True)
class TLSFiles:
    cert: Path
    key: Path
    ca: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        try:
            return self.cert.read_bytes(), self.key.read_bytes(), self.ca.read_bytes()
        except OSError as exc:
            raise AuthConfigError(f"cannot read a TLS file: {exc}") from None


def tls_files(
    cert: str | None, key: str | None, ca: str | None, flag: str = "--tls"
) -> TLSFiles | None:
    """All three or none: a partial TLS configuration is refused, never half-applied."""
    given = [v for v in (cert, key, ca) if v]
    if not given:
        return None
    if len(given) != 3:
        raise AuthConfigError(
            f"{flag}-cert, {flag}-key and {flag}-ca go together (a node needs its certificate, "
            "its key and the CA that signs its peers and clients)"
        )
    assert cert and key and ca
    return TLSFiles(Path(cert), Path(key), Path(ca))


@dataclass(frozen=True, slots=True)
class ServerAuth:
    """A node's credentials: TLS for both ports, and who may call the client port."""

    tls: TLSFiles | None = None
    tokens: dict[bytes, Identity] = field(default_factory=dict)
    client_certs: dict[str, Identity] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.tls is not None

    def peer_credentials(self) -> grpc.ServerCredentials | None:
        if self.tls is None:
            return None
        cert, key, ca = self.tls.read()
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=True
        )

    def client_credentials(self) -> grpc.ServerCredentials | None:
        if self.tls is None:
            return None
        cert, key, ca = self.tls.read()
        # gRPC either requires a client certificate or does not ask for one at all.
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=bool(self.client_certs)
        )

    def peer_channel_credentials(self) -> grpc.ChannelCredentials | None:
        if self.tls is None:
            return None
        cert, key, ca = self.tls.read()
        return grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )

    def identify(self, context: grpc.aio.ServicerContext[Any, Any]) -> Identity:
        """The caller's identity; Unauthenticated when it has none this node knows."""
        token = ""
        for key, value in context.invocation_metadata() or ():
            if key == AUTHORIZATION_KEY:
                text = value.decode() if isinstance(value, bytes) else value
                if text[: len(BEARER)].lower() == BEARER:
                    token = text[len(BEARER) :].strip()
        if token:
            digest = hashlib.sha256(token.encode()).digest()
            found: Identity | None = None
            # Every stored digest is compared, in constant time each, so how long the check
            # takes says nothing about which (or whether any) token came close.
            for stored, identity in self.tokens.items():
                if hmac.compare_digest(stored, digest):
                    found = identity
            if found is None:
                raise Unauthenticated("the bearer token is not one this node knows")
            return found
        for name in cert_names(context):
            holder = self.client_certs.get(name)
            if holder is not None:
                return holder
        if self.client_certs and cert_names(context):
            names = ", ".join(cert_names(context))
            raise Unauthenticated(
                f"the client certificate ({names}) is not in this node's --client-certs"
            )
        raise Unauthenticated(
            "this node requires credentials: a bearer token (authorization metadata) or a "
            "client certificate"
        )

    def authorize(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Raise Unauthenticated or PermissionDenied unless the caller may call `method`."""
        if not self.enabled:
            return
        identity = self.identify(context)
        right = METHOD_RIGHTS.get(method, ADMIN)
        if not identity.may(right):
            raise PermissionDenied(
                f"{identity.name} ({identity.via}) may not call {method}: it needs the "
                f"{right!r} right and holds {', '.join(sorted(identity.rights))}"
            )


def server_auth(tls: TLSFiles | None, tokens: str | None, client_certs: str | None) -> ServerAuth:
    if (client_certs or tokens) and tls is None:
        raise AuthConfigError(
            "--client-certs and --tokens need TLS (--tls-cert, --tls-key, --tls-ca): a token "
            "sent in the clear is anyone's"
        )
    if tls is not None and not (client_certs or tokens):
        raise AuthConfigError(
            "with TLS every client call needs an identity: give --client-certs or --tokens "
            "(or both), or no client could call this node"
        )
    return ServerAuth(
        tls=tls,
        tokens=load_tokens(Path(tokens)) if tokens else {},
        client_certs=load_client_certs(Path(client_certs)) if client_certs else {},
    )


def is_loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(
    addresses: Sequence[tuple[str, str]], auth: ServerAuth, insecure: bool
) -> list[str]:
    """Refuse (AuthConfigError) a non-loopback listen address without TLS unless `insecure`;
    the warnings to log otherwise. `addresses`: (flag, HOST:PORT) pairs."""
    exposed = [(flag, a) for flag, a in addresses if not is_loopback(a)]
    if auth.tls is not None or not exposed:
        return []
    where = ", ".join(f"{flag} {a}" for flag, a in exposed)
    if not insecure:
        raise AuthConfigError(
            f"{where} is not a loopback address and no TLS is configured: anyone who can "
            "reach it could append, trim or speak Raft. Give --tls-cert, --tls-key and "
            "--tls-ca (and --tokens or --client-certs), or --insecure to serve in the clear"
        )
    return [f"--insecure: serving {where} WITHOUT TLS or authentication"]


# -- the client side ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """How a LogClient proves who it is: TLS (the CA that signs the nodes), optionally a
    client certificate, optionally a bearer token. `server_name` overrides the name the
    nodes' certificates are checked against (default: the host of each address)."""

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    token: str = ""
    server_name: str = ""

    @classmethod
    def from_files(
        cls,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        token: str | None = None,
        token_file: str | None = None,
        server_name: str | None = None,
    ) -> ClientCredentials | None:
        """None when nothing is given (a plaintext channel, no token)."""
        if bool(cert) != bool(key):
            raise AuthConfigError("a client certificate and its key go together")
        if cert and not ca:
            raise AuthConfigError("a client certificate needs the CA of the nodes (tls-ca)")
        if token and token_file:
            raise AuthConfigError("give a token or a token file, not both")
        if (token or token_file) and not ca:
            raise AuthConfigError(
                "a token needs TLS (the CA of the nodes, tls-ca): it would travel in the clear"
            )
        if token_file:
            try:
                token = Path(token_file).read_text().strip()
            except OSError as exc:
                raise AuthConfigError(f"cannot read the token file: {exc}") from None
        if not (ca or token):
            return None
        try:
            return cls(
                ca=Path(ca).read_bytes() if ca else None,
                cert=Path(cert).read_bytes() if cert else None,
                key=Path(key).read_bytes() if key else None,
                token=token or "",
                server_name=server_name or "",
            )
        except OSError as exc:
            raise AuthConfigError(f"cannot read a TLS file: {exc}") from None

    @classmethod
    def from_env(cls, prefix: str = "LOGSVC_") -> ClientCredentials | None:
        env = os.environ
        return cls.from_files(
            ca=env.get(prefix + "TLS_CA"),
            cert=env.get(prefix + "TLS_CERT"),
            key=env.get(prefix + "TLS_KEY"),
            token=env.get(prefix + "TOKEN"),
            token_file=env.get(prefix + "TOKEN_FILE"),
            server_name=env.get(prefix + "TLS_SERVER_NAME"),
        )


# gRPC bounds each connection attempt by max(grpc.min_reconnect_backoff_ms, 100 ms) (the
# channels here set 50 ms so that a restarted node is found again at once). A plaintext
# connect on a LAN fits; a TLS handshake on a busy host may not, and then no attempt ever
# succeeds. TLS channels keep the fast retries but give an attempt this long.
TLS_CONNECT_TIMEOUT_MS = 5000


def tls_options(options: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    kept = [(k, v) for k, v in options if k != "grpc.min_reconnect_backoff_ms"]
    return [*kept, ("grpc.min_reconnect_backoff_ms", TLS_CONNECT_TIMEOUT_MS)]


def client_channel(
    address: str,
    credentials: ClientCredentials | None,
    options: Sequence[tuple[str, Any]],
) -> grpc.aio.Channel:
    if credentials is None or credentials.ca is None:
        return grpc.aio.insecure_channel(address, options=list(options))
    creds = grpc.ssl_channel_credentials(
        root_certificates=credentials.ca,
        private_key=credentials.key,
        certificate_chain=credentials.cert,
    )
    if credentials.token:
        # `authorization: Bearer TOKEN` on every call (gRPC sends call credentials only
        # over TLS, which is why a token needs the CA).
        creds = grpc.composite_channel_credentials(
            creds, grpc.access_token_call_credentials(credentials.token)
        )
    opts = tls_options(options)
    if credentials.server_name:
        opts.append(("grpc.ssl_target_name_override", credentials.server_name))
    return grpc.aio.secure_channel(address, creds, options=opts)


def peer_names(context: grpc.aio.ServicerContext[Any, Any]) -> frozenset[str] | None:
    """The names a peer's verified certificate carries; None on a plaintext connection."""
    auth = context.auth_context()
    if auth.get("transport_security_type") != [b"ssl"]:
        return None
    return frozenset(cert_names(context))
