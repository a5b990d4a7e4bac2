"""A throwaway certificate authority and the certificates of a local cluster.

`memlog up` calls `ensure_local_credentials` on first start: a CA, one certificate per log
node (its node id as a DNS name, plus localhost and 127.0.0.1, usable as server and as
client, so the same one serves the client port and authenticates the node to its peers),
one client certificate for the shims (append, read, snapshot) and one for an operator's
tools (admin), with the --client-certs file that grants those rights. Private keys are
files of mode 0600. Nothing here is for production: there, certificates come from your own CA
(cert-manager in deploy/overlays/tls).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 3650


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True,
    crl_sign=True, encipher_only=False, decipher_only=False,
)  # fmt: skip


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True, slots=True)
class Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, common_name: str) -> Authority:
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_CA_KEY_USAGE, critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def issue(
        self,
        common_name: str,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
    ) -> tuple[bytes, bytes]:
        """A certificate (PEM) and its key (PEM) for `common_name`, good as server and client."""
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def write_pair(folder: Path, name: str, cert_pem: bytes, key_pem: bytes) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert_pem)
    _write_private(key_path, key_pem)
    return cert_path, key_path


@dataclass(frozen=True, slots=True)
class LocalCredentials:
    """Where `ensure_local_credentials` put everything (all under one folder)."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.crt"

    def node_cert(self, node_id: str) -> Path:
        return self.folder / f"node-{node_id}.crt"

    def node_key(self, node_id: str) -> Path:
        return self.folder / f"node-{node_id}.key"

    @property
    def shim_cert(self) -> Path:
        return self.folder / "shim.crt"

    @property
    def shim_key(self) -> Path:
        return self.folder / "shim.key"

    @property
    def admin_cert(self) -> Path:
        return self.folder / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.folder / "admin.key"

    @property
    def clients(self) -> Path:
        """Client certificate names and their rights (--client-certs)."""
        return self.folder / "client-certs"

    def node_args(self, node_id: str) -> list[str]:
        """The `logsvc serve` flags of one node."""
        return [
            "--tls-cert", str(self.node_cert(node_id)),
            "--tls-key", str(self.node_key(node_id)),
            "--tls-ca", str(self.ca),
            "--client-certs", str(self.clients),
        ]  # fmt: skip

    def shim_args(self) -> list[str]:
        """The `cacheshim serve` (and snapshotter) flags of the shims' credential."""
        return [
            "--log-tls-ca", str(self.ca),
            "--log-tls-cert", str(self.shim_cert),
            "--log-tls-key", str(self.shim_key),
        ]  # fmt: skip

    def admin_env(self) -> dict[str, str]:
        """The environment that lets the `logsvc` tools (status, tail, trim) and the `memlog`
        tools (tail, snapshot, export, restore) in as admin."""
        files = {"TLS_CA": self.ca, "TLS_CERT": self.admin_cert, "TLS_KEY": self.admin_key}
        env = {f"LOGSVC_{name}": str(path) for name, path in files.items()}
        env.update({f"MEMLOG_LOG_{name}": str(path) for name, path in files.items()})
        return env


SHIM_CLIENT_NAME = "memlog-shim"
ADMIN_CLIENT_NAME = "memlog-admin"


def ensure_local_credentials(folder: Path, node_ids: Sequence[str]) -> LocalCredentials:
    """Make the CA and certificates under `folder` unless they are there already (kept
    across restarts, so a restarted `memlog up` keeps trusting its own nodes)."""
    creds = LocalCredentials(folder)
    if creds.ca.exists() and all(creds.node_cert(n).exists() for n in node_ids):
        return creds
    folder.mkdir(parents=True, exist_ok=True)
    authority = Authority.create(f"memlog local CA {secrets.token_hex(4)}")
    for node_id in node_ids:
        cert, key = authority.issue(
            node_id, dns_names=[node_id, "localhost"], ip_addresses=["127.0.0.1"]
        )
        write_pair(folder, f"node-{node_id}", cert, key)
    for name, file_name in ((SHIM_CLIENT_NAME, "shim"), (ADMIN_CLIENT_NAME, "admin")):
        cert, key = authority.issue(name, dns_names=[name])
        write_pair(folder, file_name, cert, key)
    creds.clients.write_text(
        "# NAME RIGHTS: a client certificate whose CN or DNS name is NAME gets RIGHTS.\n"
        f"{SHIM_CLIENT_NAME} append,read,snapshot\n"
        f"{ADMIN_CLIENT_NAME} admin\n"
    )
    # The CA last: its presence says the folder is complete.
    creds.ca.write_bytes(authority.cert_pem())
    return creds
