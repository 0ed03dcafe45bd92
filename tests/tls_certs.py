"""Throwaway certificate authorities and certificates they signed, made by ``openssl`` (the
command-line tool, as an operator would), for tests of TLS endpoints: the HTTP server
(:func:`make_certs`) and the secured Kafka broker (``tests/kafka_secured.py``)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: An unencrypted EC P-256 key for each new certificate.
EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


@dataclass(frozen=True)
class Certs:
    """PEM files: the CA's certificate, and the server's certificate and key."""

    ca: Path
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    assert binary is not None, "openssl missing: apt-get install openssl"
    out = subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def make_ca(directory: Path, name: str) -> Path:
    """A CA valid for two days: ``<name>.pem`` and ``<name>.key`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", *EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
        "-subj", f"/CN=driftwatch test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.pem"


def make_signed(directory: Path, name: str, ca: str, subject: str, ext: str) -> Path:
    """A certificate ``<name>.pem`` (key ``<name>.key``) for ``subject``, signed by the CA
    ``ca`` of :func:`make_ca`, with the X.509 extensions ``ext`` (``openssl -extfile`` lines)."""
    _openssl(
        "req", "-new", *EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
        cwd=directory,
    )  # fmt: skip
    (directory / f"{name}.ext").write_text(ext, encoding="utf-8")
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.pem"


def make_certs(directory: Path, ip: str = "127.0.0.1") -> Certs:
    """A CA and a server certificate it signed, for ``ip`` (as the subject alternative name,
    which clients check, and the common name)."""
    make_ca(directory, "ca")
    make_signed(
        directory,
        "server",
        "ca",
        f"/CN={ip}",
        f"subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    return Certs(directory / "ca.pem", directory / "server.pem", directory / "server.key")
