"""Render the repository's ``nginx.conf`` template for the local stack or for compose.

The template is Jinja2 (installed with Flask): ``{{ name }}`` placeholders (``$`` belongs to
nginx), and the lines between ``{% if name %}`` and ``{% endif %}`` kept only when the section
``name`` is on.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
import jinja2.meta

from batchgate.settings import Settings
from stack.programs import REPO
from stack.tls import certificate_pair

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
#: Where the compose nginx container finds its certificate (a read-only mount of ./certs).
COMPOSE_CERT_DIR = "/etc/batchgate/certs"

#: Markers on lines of their own leave no blank line; a value is inserted as it is (no HTML
#: escaping: this is nginx's syntax).
_JINJA = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)
_UNSAFE_IN_PATH = re.compile(r'["\\$\n{};]')


class TemplateError(ValueError):
    """The template and the values given for it do not match."""


@dataclass(frozen=True)
class Tls:
    """Where nginx serves HTTPS and the certificate (full chain) and key it serves."""

    listen: str
    certificate: str
    certificate_key: str


@dataclass(frozen=True)
class NginxLayout:
    """Where nginx listens, where the replicas are and where it writes its files."""

    #: Plain HTTP ``address:port``.
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
    #: HTTPS beside plain HTTP; None: plain HTTP only.
    tls: Tls | None = None
    #: Plain HTTP only redirects to HTTPS (and answers ``/health``); needs ``tls``.
    redirect_http: bool = False
    #: DNS server to look the API's name up at run time (compose: Docker's); empty = the
    #: ``upstreams`` are fixed addresses, resolved once, with kept-alive connections.
    resolver: str = ""


def local_layout(settings: Settings, run_dir: Path) -> NginxLayout:
    """The local stack: loopback only, replicas from ``api_ports``, logs in ``run_dir``; HTTPS
    on ``nginx_tls_port`` (unless 0) with the certificate in ``tls_dir(run_dir)``, beside HTTP."""
    run_dir = run_dir.resolve()
    host = "127.0.0.1" if settings.api.api_host in ("0.0.0.0", "::", "") else settings.api.api_host
    tls = None
    if settings.stack.nginx_tls_port:
        pair = certificate_pair(tls_dir(run_dir))
        tls = Tls(f"127.0.0.1:{settings.stack.nginx_tls_port}", str(pair.certificate), str(pair.key))
    return NginxLayout(
        listen=f"127.0.0.1:{settings.stack.nginx_port}",
        upstreams=tuple(f"{host}:{port}" for port in settings.api.api_ports),
        upstream_tries=len(settings.api.api_ports),
        run_dir=str(run_dir),
        error_log="stderr",
        access_log=str(run_dir / "logs" / "nginx-access.log"),
        user_directive=_root_user_directive(),
        tls=tls,
    )


def compose_layout(
    settings: Settings,
    run_dir: Path,
    api_host: str = "api",
    cert_dir: str = COMPOSE_CERT_DIR,
    worker_user: str | None = None,
) -> NginxLayout:
    """Compose: all interfaces, the ``api`` service (resolved to every replica), logs to stdio;
    HTTPS with the certificate in ``cert_dir``, and plain HTTP redirecting to it (with
    ``nginx_tls_port`` 0, e.g. behind a TLS-terminating balancer: plain HTTP serving the API).
    ``worker_user``: the user nginx's workers run as when its master starts as root."""
    tls = None
    if settings.stack.nginx_tls_port:
        pair = certificate_pair(Path(cert_dir))
        tls = Tls(f"0.0.0.0:{settings.stack.nginx_tls_port}", str(pair.certificate), str(pair.key))
    return NginxLayout(
        listen=f"0.0.0.0:{settings.stack.nginx_port}",
        upstreams=(f"{api_host}:{COMPOSE_API_PORT}",),
        upstream_tries=COMPOSE_API_REPLICAS,
        run_dir=str(run_dir),
        error_log="stderr",
        access_log="/dev/stdout",
        user_directive=f"user {worker_user} {worker_user};" if worker_user else "",
        tls=tls,
        redirect_http=tls is not None,
        resolver=settings.stack.nginx_resolver,
    )


def tls_dir(run_dir: Path) -> Path:
    """Where the local stack keeps its self-signed certificate."""
    return run_dir.resolve() / "tls"


def render_nginx(settings: Settings, layout: NginxLayout, template: str | None = None) -> str:
    """The complete nginx config for ``layout`` with limits from ``settings``."""
    paths = [layout.run_dir, layout.error_log, layout.access_log]
    if layout.tls is not None:
        paths += [layout.tls.certificate, layout.tls.certificate_key]
    for path in paths:
        if _UNSAFE_IN_PATH.search(path):
            raise TemplateError(f"nginx cannot be given the path {path!r}")
    if layout.redirect_http and layout.tls is None:
        raise TemplateError("plain HTTP can only redirect to HTTPS when there is HTTPS")
    servers = "\n".join(
        f"        server {address} max_fails={MAX_FAILS} fail_timeout={FAIL_TIMEOUT_S}s;"
        for address in layout.upstreams
    )
    sections = {
        "tls": layout.tls is not None,
        "redirect_http": layout.redirect_http,
        "serve_http": not layout.redirect_http,
        "rate_limit": settings.stack.nginx_rate_per_s > 0,
        "dynamic_upstream": bool(layout.resolver),
    }
    values = {
        "user_directive": layout.user_directive,
        "run_dir": layout.run_dir,
        "error_log": layout.error_log,
        "access_log": layout.access_log,
        "upstream_servers": servers,
        "resolver": layout.resolver,
        "api_service": layout.upstreams[0],
        "api_pass": "http://$batchgate_api_service" if layout.resolver else "http://batchgate_api",
        "upstream_tries": str(layout.upstream_tries),
        "http_listen": layout.listen,
        "tls_listen": layout.tls.listen if layout.tls else "",
        "tls_certificate": layout.tls.certificate if layout.tls else "",
        "tls_certificate_key": layout.tls.certificate_key if layout.tls else "",
        "rate_per_s": str(settings.stack.nginx_rate_per_s),
        # One second's worth at once: a burst of a few thousand requests is not a flood.
        "rate_burst": str(settings.stack.nginx_rate_per_s),
        "client_max_body_size": str(settings.api.max_body_bytes),
        "max_body_bytes": str(settings.api.max_body_bytes),
        "connect_timeout": str(CONNECT_TIMEOUT_S),
        "read_timeout": str(read_timeout_s(settings)),
        "sse_read_timeout": str(SSE_READ_TIMEOUT_S),
    }
    text = TEMPLATE.read_text() if template is None else template
    return fill(text, values, sections)


def read_timeout_s(settings: Settings) -> int:
    """nginx's upstream read timeout: the longest long-poll plus a margin, in whole seconds."""
    return int(settings.api.max_wait_s + 0.999) + READ_TIMEOUT_MARGIN_S


def fill(template: str, values: dict[str, str], sections: dict[str, bool] | None = None) -> str:
    """Render the Jinja2 ``template``: ``{{ name }}`` takes ``values[name]``, and each
    ``{% if name %}`` … ``{% endif %}`` section (its marker lines removed) is kept or dropped by
    ``sections[name]``. A name without a value or setting, and a value or setting the template
    never names, both fail: a typo on either side is caught, not rendered as nothing."""
    sections = sections or {}
    try:
        parsed = _JINJA.parse(template)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"nginx template: {exc.message} (line {exc.lineno})") from None
    named = jinja2.meta.find_undeclared_variables(parsed)
    given = set(values) | set(sections)
    if named - given:
        raise TemplateError(f"nginx template names {sorted(named - given)}, which have no value")
    if given - named:
        raise TemplateError(f"nginx template lacks {sorted(given - named)}")
    return _JINJA.from_string(template).render({**values, **sections})


def _root_user_directive() -> str:
    """As root, nginx's workers would become ``nobody``, who cannot enter a private run folder."""
    if os.geteuid() != 0:
        return ""
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    return f"user {user} {group};"
