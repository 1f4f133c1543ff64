"""What nginx's HTTPS port offers, seen from a client: the TLS versions it accepts, the
protocol it negotiates (ALPN), and whole requests over HTTP/2 (curl)."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import warnings
from collections.abc import Mapping


def handshake(port: int, maximum: ssl.TLSVersion, host: str = "127.0.0.1") -> tuple[str, str | None]:
    """TLS up to ``maximum`` (down to TLS 1.0: the client would take anything old); returns
    (version, ALPN protocol) or raises ``ssl.SSLError`` when the server refuses."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # self-signed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1 is deprecated: that is the point
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = maximum
    # OpenSSL 3 refuses TLS < 1.2 at its default security level on the client side too: lower
    # it, so that a failure is the server's refusal.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return str(tls.version()), tls.selected_alpn_protocol()


def curl_available() -> bool:
    return shutil.which("curl") is not None


def curl_http2(
    method: str, url: str, body: object = None, headers: Mapping[str, str] | None = None
) -> tuple[str, int, dict[str, str], object]:
    """One request over HTTP/2 (TLS, certificate not checked); (HTTP version, status, headers,
    JSON body). curl is the client because the test environment has no HTTP/2 library."""
    argv = ["curl", "-sS", "-k", "--http2", "--noproxy", "*", "-X", method, "-D", "-", "--max-time", "40"]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    if body is not None:
        argv += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    result = subprocess.run([*argv, url], capture_output=True, text=True, timeout=60, check=True)
    # text mode: curl's CRLFs arrive as newlines.
    head, _, payload = result.stdout.partition("\n\n")
    status_line, *lines = head.splitlines()
    version, status = status_line.split()[:2]
    found = {}
    for line in lines:
        name, _, value = line.partition(":")
        found[name.strip().lower()] = value.strip()
    try:
        decoded: object = json.loads(payload)
    except ValueError:
        decoded = payload
    return version, int(status), found, decoded
