"""Self-signed TLS certificates: ``make run``'s HTTPS port, and a first ``make up``.

A certificate is made with the ``openssl`` command line only when its folder holds none or
the one there expires within ``RENEW_BEFORE_S``: a real certificate put in its place is
never touched. The names are certbot's, so its files can be copied in as they are.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: The certificate, followed by any intermediates.
CERTIFICATE_NAME = "fullchain.pem"
#: Its private key (mode 0600).
KEY_NAME = "privkey.pem"
#: A generated certificate is valid this long (renewed at the next start after that).
VALID_DAYS = 30
#: A certificate expiring within this is replaced by a new self-signed one.
RENEW_BEFORE_S = 86400
#: Names a generated certificate is valid for.
LOCAL_HOSTNAMES = ("localhost",)
LOCAL_ADDRESSES = ("127.0.0.1", "::1")


class TlsError(RuntimeError):
    """A certificate cannot be made."""


@dataclass(frozen=True)
class CertificatePair:
    """The files nginx is given as ``ssl_certificate`` and ``ssl_certificate_key``."""

    certificate: Path
    key: Path


def certificate_pair(folder: Path) -> CertificatePair:
    """Where the certificate and key of ``folder`` are (whether they exist or not)."""
    return CertificatePair(folder / CERTIFICATE_NAME, folder / KEY_NAME)


def ensure_self_signed(
    folder: Path,
    hostnames: Sequence[str] = LOCAL_HOSTNAMES,
    addresses: Sequence[str] = LOCAL_ADDRESSES,
    days: int = VALID_DAYS,
) -> tuple[CertificatePair, bool]:
    """The pair in ``folder``, made (P-256, self-signed, for ``hostnames`` and ``addresses``)
    when absent or about to expire; also whether it was made now."""
    pair = certificate_pair(folder)
    if pair.certificate.is_file() and pair.key.is_file() and not expires_soon(pair.certificate):
        return pair, False
    openssl = _openssl()
    folder.mkdir(parents=True, exist_ok=True)
    san = ",".join([f"DNS:{name}" for name in hostnames] + [f"IP:{address}" for address in addresses])
    with tempfile.TemporaryDirectory(dir=folder, prefix=".new-") as scratch:
        cert, key = Path(scratch) / CERTIFICATE_NAME, Path(scratch) / KEY_NAME
        result = subprocess.run(
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                str(days),
                "-subj",
                f"/CN={hostnames[0] if hostnames else 'localhost'}",
                "-addext",
                f"subjectAltName={san}",
                "-addext",
                "extendedKeyUsage=serverAuth",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise TlsError(f"openssl could not make a certificate: {result.stderr.strip()[-500:]}")
        key.chmod(0o600)
        os.replace(key, pair.key)
        os.replace(cert, pair.certificate)
    return pair, True


def expires_soon(certificate: Path, within_s: int = RENEW_BEFORE_S) -> bool:
    """The certificate expires within ``within_s`` seconds (or cannot be read)."""
    result = subprocess.run(
        [_openssl(), "x509", "-checkend", str(within_s), "-noout", "-in", str(certificate)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return result.returncode != 0


def _openssl() -> str:
    found = shutil.which("openssl") or ("/usr/bin/openssl" if Path("/usr/bin/openssl").is_file() else None)
    if found is None:
        raise TlsError("openssl is not installed (make install installs it)")
    return found
