"""Render the repository's ``nginx.conf`` template for the local stack or for compose.

The template uses ``{{ name }}`` placeholders because ``$`` belongs to nginx.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
from dataclasses import dataclass
from pathlib import Path

from batchgate.programs import REPO
from batchgate.settings import Settings

TEMPLATE = REPO / "nginx.conf"

#: A replica that does not accept a connection within this is skipped for the next one.
CONNECT_TIMEOUT_S = 2
#: Added to ``max_wait_s`` for nginx's read timeout: a long-poll ends in the API first.
READ_TIMEOUT_MARGIN_S = 45
#: Server-sent event streams stay open this long without an event.
SSE_READ_TIMEOUT_S = 3600
#: Failed attempts within ``FAIL_TIMEOUT_S`` after which a replica is skipped for that long.
#: Short: a replica that died is back within a second or two under supervisor, and API-wide
#: 503s (Redis down) count too, so a long timeout would keep healthy replicas out.
MAX_FAILS = 3
FAIL_TIMEOUT_S = 5
#: The port the API listens on inside its compose containers.
COMPOSE_API_PORT = 8000
#: ``deploy.replicas`` of the compose ``api`` service.
COMPOSE_API_REPLICAS = 3

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_UNSAFE_IN_PATH = re.compile(r'["\\$\n{};]')


class TemplateError(ValueError):
    """The template and the values given for it do not match."""


@dataclass(frozen=True)
class NginxLayout:
    """Where nginx listens, where the replicas are and where it writes its files."""

    listen: str
    #: ``host:port`` of each replica (a compose service name resolves to all its replicas).
    upstreams: tuple[str, ...]
    #: How many replicas a request may be tried on.
    upstream_tries: int
    run_dir: str
    error_log: str
    access_log: str
    #: ``user`` directive, needed only when nginx's master runs as root.
    user_directive: str = ""


def local_layout(settings: Settings, run_dir: Path) -> NginxLayout:
    """The local stack: loopback only, replicas from ``api_ports``, logs in ``run_dir``."""
    run_dir = run_dir.resolve()
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::", "") else settings.api_host
    return NginxLayout(
        listen=f"127.0.0.1:{settings.nginx_port}",
        upstreams=tuple(f"{host}:{port}" for port in settings.api_ports),
        upstream_tries=len(settings.api_ports),
        run_dir=str(run_dir),
        error_log="stderr",
        access_log=str(run_dir / "logs" / "nginx-access.log"),
        user_directive=_root_user_directive(),
    )


def compose_layout(settings: Settings, run_dir: Path, api_host: str = "api") -> NginxLayout:
    """Compose: all interfaces, the ``api`` service (resolved to every replica), logs to stdio."""
    return NginxLayout(
        listen=f"0.0.0.0:{settings.nginx_port}",
        upstreams=(f"{api_host}:{COMPOSE_API_PORT}",),
        upstream_tries=COMPOSE_API_REPLICAS,
        run_dir=str(run_dir),
        error_log="stderr",
        access_log="/dev/stdout",
    )


def render_nginx(settings: Settings, layout: NginxLayout, template: str | None = None) -> str:
    """The complete nginx config for ``layout`` with limits from ``settings``."""
    for path in (layout.run_dir, layout.error_log, layout.access_log):
        if _UNSAFE_IN_PATH.search(path):
            raise TemplateError(f"nginx cannot be given the path {path!r}")
    servers = "\n".join(
        f"        server {address} max_fails={MAX_FAILS} fail_timeout={FAIL_TIMEOUT_S}s;"
        for address in layout.upstreams
    )
    values = {
        "user_directive": layout.user_directive,
        "run_dir": layout.run_dir,
        "error_log": layout.error_log,
        "access_log": layout.access_log,
        "upstream_servers": servers,
        "upstream_tries": str(layout.upstream_tries),
        "listen": layout.listen,
        "client_max_body_size": str(settings.max_body_bytes),
        "max_body_bytes": str(settings.max_body_bytes),
        "connect_timeout": str(CONNECT_TIMEOUT_S),
        "read_timeout": str(read_timeout_s(settings)),
        "sse_read_timeout": str(SSE_READ_TIMEOUT_S),
    }
    text = TEMPLATE.read_text() if template is None else template
    return fill(text, values)


def read_timeout_s(settings: Settings) -> int:
    """nginx's upstream read timeout: the longest long-poll plus a margin, in whole seconds."""
    return int(settings.max_wait_s + 0.999) + READ_TIMEOUT_MARGIN_S


def fill(template: str, values: dict[str, str]) -> str:
    """Replace every ``{{ name }}``; a placeholder without a value or a value never used fails."""
    used: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise TemplateError(f"nginx template placeholder {{{{ {name} }}}} has no value")
        used.add(name)
        return values[name]

    text = _PLACEHOLDER.sub(replace, template)
    unused = set(values) - used
    if unused:
        raise TemplateError(f"nginx template lacks placeholders for {sorted(unused)}")
    return text


def _root_user_directive() -> str:
    """As root, nginx's workers would become ``nobody``, who cannot enter a private run folder."""
    if os.geteuid() != 0:
        return ""
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    return f"user {user} {group};"
