"""TLS for RESP: the server's `ssl.SSLContext` from Redis 7.0's tls-* settings.

The shim takes the same settings redis-server takes (as `cacheshim serve` flags, read back by
CONFIG GET), and fails to start with Redis's own words when they do not make a working
context. While it runs, the context is rebuilt for new connections (open ones keep theirs)
when CONFIG SET changes a setting of it, as in Redis (a failure leaves the old one and says
"Unable to update TLS configuration"), and when the certificate, key or CA files change on
disk (cert-manager renewing a Kubernetes Secret): `TlsListener`. `tls-port` stays fixed.

What Python's ssl module cannot do is refused rather than ignored: TLS 1.3 cipher suites
(`tls-ciphersuites`; OpenSSL's defaults apply) and a `tls-protocols` list with a gap in it
(Python sets a lowest and a highest version, not a set).

The asyncio SSL transport hands the protocol the decrypted bytes, so a TLS connection is an
ordinary `Connection`: the parser, the GET fast path and the output limits see plain RESP.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cacheshim.config.serverconfig import ServerConfig

log = logging.getLogger("cacheshim.server")

# How often the shim looks at its certificate, key and CA files for a renewal.
TLS_FILES_CHECK_S: Final = 5.0

# The tls-* parameters `cacheshim serve` takes as flags, with an example for --help.
TLS_STARTUP_SETTINGS: Final = {
    "tls-port": "6380",
    "tls-cert-file": "/etc/memlog/tls/tls.crt",
    "tls-key-file": "/etc/memlog/tls/tls.key",
    "tls-key-file-pass": "secret",
    "tls-ca-cert-file": "/etc/memlog/tls/ca.crt",
    "tls-ca-cert-dir": "/etc/ssl/certs",
    "tls-auth-clients": "yes|no|optional",
    "tls-protocols": "'TLSv1.2 TLSv1.3'",
    "tls-ciphers": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "tls-ciphersuites": "''",
    "tls-prefer-server-ciphers": "no",
}

# Redis's startup messages (tls.c), then ours for what Python cannot do.
FAILED: Final = "Failed to configure TLS. Check logs for more info."
NO_CERT_FILE: Final = "No tls-cert-file configured!"
NO_KEY_FILE: Final = "No tls-key-file configured!"
NO_CA: Final = (
    "Either tls-ca-cert-file or tls-ca-cert-dir must be specified when tls-cluster, "
    "tls-replication or tls-auth-clients are enabled!"
)
BAD_PROTOCOLS: Final = (
    "Invalid tls-protocols specified. Use a combination of 'TLSv1', 'TLSv1.1', 'TLSv1.2' "
    "and 'TLSv1.3'."
)
LOAD_CERT_FAILED: Final = "Failed to load certificate: %s: %s"
LOAD_KEY_FAILED: Final = "Failed to load private key: %s: %s"
LOAD_CA_FAILED: Final = "Failed to configure CA certificate(s) file/directory: %s"
CIPHERS_FAILED: Final = "Failed to configure ciphers: %s"
PROTOCOLS_GAP: Final = (
    "memlog: tls-protocols %r leaves a gap between versions; the shim can only set a lowest "
    "and a highest version (list every version between them)"
)
NO_CIPHERSUITES: Final = (
    "memlog: tls-ciphersuites cannot be set (Python's ssl module does not choose TLS 1.3 "
    "suites; OpenSSL's defaults apply): leave it empty, or limit tls-protocols to TLSv1.2 "
    "and choose with tls-ciphers"
)

_VERSIONS: Final = {
    "tlsv1": ssl.TLSVersion.TLSv1,
    "tlsv1.1": ssl.TLSVersion.TLSv1_1,
    "tlsv1.2": ssl.TLSVersion.TLSv1_2,
    "tlsv1.3": ssl.TLSVersion.TLSv1_3,
}
_ORDER: Final = list(_VERSIONS)
# What an empty tls-protocols means, in Redis as here.
_DEFAULT_PROTOCOLS: Final = "TLSv1.2 TLSv1.3"


class TlsConfigError(ValueError):
    """The tls-* settings do not make a working server context; the message says why."""


@dataclass(frozen=True, slots=True)
class TlsSettings:
    port: int
    cert_file: str
    key_file: str
    key_file_pass: str
    ca_cert_file: str
    ca_cert_dir: str
    auth_clients: str  # yes, no or optional
    protocols: str
    ciphers: str
    ciphersuites: str
    prefer_server_ciphers: bool

    @classmethod
    def from_config(cls, config: ServerConfig) -> TlsSettings:
        return cls.from_values(config.values)

    @classmethod
    def from_values(cls, values: Mapping[str, str]) -> TlsSettings:
        """From CONFIG parameters by canonical name."""

        def value(name: str) -> str:
            return values.get(name) or ""

        return cls(
            port=int(value("tls-port") or 0),
            cert_file=value("tls-cert-file"),
            key_file=value("tls-key-file"),
            key_file_pass=value("tls-key-file-pass"),
            ca_cert_file=value("tls-ca-cert-file"),
            ca_cert_dir=value("tls-ca-cert-dir"),
            auth_clients=value("tls-auth-clients") or "yes",
            protocols=value("tls-protocols"),
            ciphers=value("tls-ciphers"),
            ciphersuites=value("tls-ciphersuites"),
            prefer_server_ciphers=value("tls-prefer-server-ciphers") == "yes",
        )


def protocol_range(protocols: str) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    """The lowest and highest version of a tls-protocols value (empty: TLSv1.2 TLSv1.3)."""
    words = (protocols or _DEFAULT_PROTOCOLS).lower().split()
    if not words or any(w not in _VERSIONS for w in words):
        raise TlsConfigError(BAD_PROTOCOLS)
    positions = sorted({_ORDER.index(w) for w in words})
    if positions != list(range(positions[0], positions[-1] + 1)):
        raise TlsConfigError(PROTOCOLS_GAP % protocols)
    return _VERSIONS[_ORDER[positions[0]]], _VERSIONS[_ORDER[positions[-1]]]


def _reason(exc: Exception) -> str:
    return str(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """The context of the TLS listener, or TlsConfigError with what is wrong (checked in
    the order redis-server checks it)."""
    if not settings.cert_file:
        raise TlsConfigError(NO_CERT_FILE)
    if not settings.key_file:
        raise TlsConfigError(NO_KEY_FILE)
    if settings.auth_clients != "no" and not (settings.ca_cert_file or settings.ca_cert_dir):
        raise TlsConfigError(NO_CA)
    if settings.ciphersuites:
        raise TlsConfigError(NO_CIPHERSUITES)
    lowest, highest = protocol_range(settings.protocols)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.minimum_version = lowest
        context.maximum_version = highest
    except (ValueError, ssl.SSLError) as exc:
        raise TlsConfigError(f"{BAD_PROTOCOLS} ({exc})") from None
    _check_cert_file(settings.cert_file)
    try:
        context.load_cert_chain(
            settings.cert_file, settings.key_file, password=settings.key_file_pass or None
        )
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(LOAD_KEY_FAILED % (settings.key_file, _reason(exc))) from None
    if settings.ca_cert_file or settings.ca_cert_dir:
        try:
            context.load_verify_locations(
                cafile=settings.ca_cert_file or None, capath=settings.ca_cert_dir or None
            )
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(LOAD_CA_FAILED % _reason(exc)) from None
    if settings.ciphers:
        try:
            context.set_ciphers(settings.ciphers)
        except ssl.SSLError:
            raise TlsConfigError(CIPHERS_FAILED % settings.ciphers) from None
    if settings.prefer_server_ciphers:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    context.verify_mode = {
        "yes": ssl.CERT_REQUIRED,
        "optional": ssl.CERT_OPTIONAL,
        "no": ssl.CERT_NONE,
    }[settings.auth_clients]
    return context


def _check_cert_file(path: str) -> None:
    """The certificate file can be read and holds a PEM certificate (load_cert_chain reads
    it with the key and cannot say which of the two it could not use)."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as exc:
        raise TlsConfigError(LOAD_CERT_FAILED % (path, _reason(exc))) from None
    if b"-----BEGIN CERTIFICATE-----" not in text:
        raise TlsConfigError(LOAD_CERT_FAILED % (path, "no PEM certificate in the file"))


def context_for(config: ServerConfig) -> ssl.SSLContext | None:
    """The TLS listener's context when tls-port is set, else None."""
    settings = TlsSettings.from_config(config)
    return server_context(settings) if settings.port else None


class ReloadableContext(ssl.SSLContext):
    """The context the TLS listener is given: each new connection is wrapped by the context
    current at that moment (asyncio's and uvloop's SSL transports call `wrap_bio`), so a
    swap applies to new connections while open ones keep what they negotiated."""

    current: ssl.SSLContext

    def __new__(cls, current: ssl.SSLContext) -> ReloadableContext:
        self = super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)
        self.current = current
        return self

    def __init__(self, current: ssl.SSLContext) -> None:
        pass  # set in __new__ (SSLContext is made there)

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return self.current.wrap_bio(incoming, outgoing, server_side, server_hostname, session)


FileStamp = tuple[int, int, int] | None


def file_stamps(settings: TlsSettings) -> tuple[FileStamp, ...]:
    """What identifies the current content of each file the context was made from: a
    Kubernetes Secret update swaps a symlink, so the followed file's inode changes."""
    stamps: list[FileStamp] = []
    for path in (settings.cert_file, settings.key_file, settings.ca_cert_file,
                 settings.ca_cert_dir):  # fmt: skip
        try:
            st = os.stat(path) if path else None
        except OSError:
            st = None
        stamps.append(None if st is None else (st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(stamps)


class TlsListener:
    """The TLS listener's settings and context, rebuilt by CONFIG SET or renewed files."""

    def __init__(self, config: ServerConfig) -> None:
        self.settings = TlsSettings.from_config(config)
        self.context = ReloadableContext(server_context(self.settings))
        self._stamps = file_stamps(self.settings)

    def reload(self, values: Mapping[str, str]) -> None:
        """CONFIG SET: the context from these values, for new connections; ValueError (and
        the reason in the log, as Redis logs it) when they do not make one."""
        settings = TlsSettings.from_values(values)
        try:
            context = server_context(settings)
        except TlsConfigError as exc:
            log.warning("Failed to update TLS configuration: %s", exc)
            raise ValueError(str(exc)) from None
        self.context.current = context
        self.settings = settings
        self._stamps = file_stamps(settings)

    def reload_if_changed(self) -> bool:
        """Rebuild the context when a file it was made from changed; a file caught half
        written (a key that does not match yet) keeps the old context until the next change."""
        stamps = file_stamps(self.settings)
        if stamps == self._stamps:
            return False
        self._stamps = stamps
        try:
            context = server_context(self.settings)
        except TlsConfigError as exc:
            log.warning("TLS files changed, but the old context stays: %s", exc)
            return False
        self.context.current = context
        log.info("TLS: reloaded %s for new connections", self.settings.cert_file)
        return True
