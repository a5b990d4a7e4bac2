"""Throwaway certificate authorities and certificates for tests and benchmarks, made with the
`openssl` command line (Debian has it; no Python package is needed).

`make_pki(folder)` writes a CA, a server certificate for 127.0.0.1/localhost, a client
certificate signed by the same CA, and a second, unrelated CA with a client certificate of its
own (the "wrong" certificate a server must refuse). EC P-256 keys: quick to make.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "2"


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    # Signed by another CA: the server must not trust it.
    other_ca_cert: Path
    other_client_cert: Path
    other_client_key: Path


def openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise RuntimeError("the openssl command is missing: apt-get install openssl")
    return found


def _run(*args: str, cwd: Path) -> None:
    result = subprocess.run([openssl(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{result.stderr}")


def _new_key_and_request(folder: Path, name: str, subject: str) -> None:
    _run(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
        cwd=folder,
    )  # fmt: skip


def make_ca(folder: Path, name: str, common_name: str) -> Path:
    _run(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", DAYS,
        "-subj", f"/CN={common_name}",
        cwd=folder,
    )  # fmt: skip
    return folder / f"{name}.crt"


def sign(folder: Path, ca: str, name: str, common_name: str, extensions: str) -> Path:
    """A key and a certificate `name` signed by CA `ca`, with these X.509v3 extensions."""
    _new_key_and_request(folder, name, f"/CN={common_name}")
    (folder / f"{name}.ext").write_text(extensions)
    _run(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.crt", "-days", DAYS, "-extfile", f"{name}.ext",
        cwd=folder,
    )  # fmt: skip
    return folder / f"{name}.crt"


SERVER_EXTENSIONS = "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
CLIENT_EXTENSIONS = "extendedKeyUsage=clientAuth\n"


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    make_ca(folder, "ca", "memlog test CA")
    sign(folder, "ca", "server", "localhost", SERVER_EXTENSIONS)
    sign(folder, "ca", "client", "memlog test client", CLIENT_EXTENSIONS)
    make_ca(folder, "other-ca", "some other CA")
    sign(folder, "other-ca", "other-client", "memlog test client", CLIENT_EXTENSIONS)
    return Pki(
        ca_cert=folder / "ca.crt",
        server_cert=folder / "server.crt",
        server_key=folder / "server.key",
        client_cert=folder / "client.crt",
        client_key=folder / "client.key",
        other_ca_cert=folder / "other-ca.crt",
        other_client_cert=folder / "other-client.crt",
        other_client_key=folder / "other-client.key",
    )
