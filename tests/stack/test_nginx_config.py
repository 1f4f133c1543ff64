"""nginx.conf rendered for the local stack and for compose, checked by ``nginx -t``, and the
Jinja2 template's strictness."""

import re
import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from batchgate.settings import Settings
from stack.cluster import Cluster
from stack.nginx_config import (
    COMPOSE_API_PORT,
    COMPOSE_API_REPLICAS,
    COMPOSE_CERT_DIR,
    TemplateError,
    compose_layout,
    fill,
    local_layout,
    render_nginx,
)
from stack.tls import ensure_self_signed
from tests.stack.stack_configs import NGINX, make_cluster

# --- nginx -------------------------------------------------------------------------------------


#: A TLS directive or a TLS listen in a rendered config.
TLS_DIRECTIVE = re.compile(r"^\s*(ssl_\w+|listen .* ssl\b)", re.M)


def nginx_test(conf: Path, prefix: Path) -> None:
    result = subprocess.run(
        [NGINX, "-t", "-c", str(conf), "-p", f"{prefix}/", "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_rendered_nginx_conf_passes_nginx_t(cluster: Cluster) -> None:
    nginx_test(cluster.run_dir / "nginx.conf", cluster.run_dir)


def test_nginx_conf_proxies_to_every_replica(cluster: Cluster) -> None:
    text = (cluster.run_dir / "nginx.conf").read_text()
    assert "{{" not in text
    upstream = re.search(r"upstream batchgate_api \{(.*?)\n    \}", text, re.S)
    assert upstream is not None
    servers = re.findall(r"^\s*server (\S+) max_fails=\d+ fail_timeout=\d+s;", upstream.group(1), re.M)
    assert servers == ["127.0.0.1:9301", "127.0.0.1:9302", "127.0.0.1:9303"]
    assert "least_conn;" in upstream.group(1) and "keepalive 512;" in upstream.group(1)
    directives = [line.split("#")[0].strip() for line in text.splitlines()]
    assert "listen 127.0.0.1:9380 backlog=4096;" in directives
    assert "client_max_body_size 2048;" in directives
    assert "proxy_read_timeout 85s;" in directives  # max_wait_s 40 + margin
    assert "proxy_connect_timeout 2s;" in directives
    assert "proxy_http_version 1.1;" in directives and 'proxy_set_header Connection "";' in directives
    assert "proxy_next_upstream error timeout http_502 http_504;" in directives
    assert not [line for line in directives if "non_idempotent" in line]
    assert directives.count("proxy_buffering off;") == 2
    for path in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f"{path}_temp_path" in text and f'"{cluster.run_dir}/nginx_{path}_temp";' in text

    # HTTPS beside HTTP, with the certificate made in the run folder.
    tls = cluster.run_dir / "tls"
    assert "listen 127.0.0.1:9343 ssl http2 backlog=4096;" in directives
    assert f'ssl_certificate "{tls}/fullchain.pem";' in directives
    assert f'ssl_certificate_key "{tls}/privkey.pem";' in directives
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in directives
    assert stat.S_IMODE((tls / "privkey.pem").stat().st_mode) == 0o600
    assert "return 301 https://$host$request_uri;" not in directives  # local HTTP serves the API
    # Edge policy: per-address shield, short client timeouts, a quick /health.
    assert "limit_req_zone $binary_remote_addr zone=batchgate_per_ip:10m rate=5000r/s;" in directives
    assert "limit_req zone=batchgate_per_ip burst=5000 nodelay;" in directives
    assert "limit_req_status 429;" in directives
    for directive in ("client_header_timeout 10s;", "client_body_timeout 10s;", "send_timeout 30s;"):
        assert directive in directives
    health = re.search(r"location = /health \{(.*?)\}", text, re.S)
    assert health is not None and "proxy_read_timeout 5s;" in health.group(1)
    assert "server_tokens off;" in directives
    # No query string in the access log: the Gemini drop-in's `?key=` would be logged.
    log_format = re.search(r"log_format batchgate (.*?);", text, re.S)
    assert log_format is not None
    assert "$uri" in log_format.group(1) and "$batchgate_request_id" in log_format.group(1)
    assert not re.search(r"\$request\b|\$request_uri|\$args|\$query_string", log_format.group(1))


def test_local_nginx_conf_without_https_passes_nginx_t(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path / "run", BATCHGATE_NGINX_TLS_PORT="0", BATCHGATE_NGINX_RATE_PER_S="0")
    cluster.render(start_redis=False)
    nginx_test(cluster.run_dir / "nginx.conf", cluster.run_dir)
    text = (cluster.run_dir / "nginx.conf").read_text()
    assert not TLS_DIRECTIVE.search(text)
    assert "listen 127.0.0.1:9380 backlog=4096;" in text and "limit_req" not in text
    assert not (cluster.run_dir / "tls").exists()


def test_compose_nginx_conf_passes_nginx_t(tmp_path: Path) -> None:
    settings = Settings.from_env({})
    certs = tmp_path / "certs"
    ensure_self_signed(certs)
    # nginx -t resolves upstream names and reads the certificate: test the compose layout
    # against a resolvable host and a throwaway certificate.
    layout = compose_layout(settings, tmp_path, api_host="127.0.0.1", cert_dir=str(certs))
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx(settings, layout))
    nginx_test(conf, tmp_path)
    text = render_nginx(settings, compose_layout(settings, tmp_path))
    # The API's name is looked up at run time through Docker's DNS (replicas come and go),
    # and only in compose: the local stack's fixed replicas keep their kept-alive upstream.
    assert f'default "api:{COMPOSE_API_PORT}";' in text and "resolver 127.0.0.11 valid=5s" in text
    assert "upstream batchgate_api" not in text and "proxy_pass http://$batchgate_api_service;" in text
    local = (tmp_path / "nginx.conf").read_text()
    assert "resolver " not in render_nginx(settings, replace(layout, resolver=""))
    assert "upstream batchgate_api" in render_nginx(settings, replace(layout, resolver="")) and local
    assert f"proxy_next_upstream_tries {COMPOSE_API_REPLICAS};" in text
    assert f'ssl_certificate "{COMPOSE_CERT_DIR}/fullchain.pem";' in text
    # HTTPS serves the API; plain HTTP only redirects (and answers /health).
    servers = re.split(r"\n    server \{", text)[1:]
    assert len(servers) == 2
    redirect, api = servers
    assert (
        "listen 0.0.0.0:8080 backlog=4096;" in redirect
        and "return 301 https://$host$request_uri;" in redirect
    )
    assert "location = /health" in redirect and not TLS_DIRECTIVE.search(redirect)
    assert "listen 0.0.0.0:8443 ssl http2 backlog=4096;" in api and "listen 0.0.0.0:8080" not in api
    # Behind a balancer that terminates TLS: plain HTTP serving the API.
    plain = render_nginx(
        settings, compose_layout(Settings.from_env({"BATCHGATE_NGINX_TLS_PORT": "0"}), tmp_path)
    )
    assert not TLS_DIRECTIVE.search(plain) and "return 301" not in plain


def test_template_and_values_must_match() -> None:
    assert fill("a {{ x }} b {{y}}", {"x": "1", "y": "2"}) == "a 1 b 2"
    assert fill('path "{{ x }}";', {"x": "<&>"}) == 'path "<&>";'  # nginx syntax: nothing escaped
    with pytest.raises(TemplateError, match="no value"):
        fill("{{ x }}", {})
    with pytest.raises(TemplateError, match="lacks"):
        fill("nothing", {"x": "1"})
    with pytest.raises(TemplateError, match="cannot be given"):
        render_nginx(Settings.from_env({}), local_layout(Settings.from_env({}), Path("/tmp/$x")))


def test_template_sections_are_kept_or_dropped() -> None:
    template = "a\n  {% if on %}\nb {{ x }}\n{% endif %}\n{% if off %}\nc {{ y }}\n  {% endif %}\nd\n"
    assert fill(template, {"x": "1", "y": "2"}, {"on": True, "off": False}) == "a\nb 1\nd\n"
    # A value used only in a dropped section is still named by the template.
    assert fill(template, {"x": "1", "y": ""}, {"on": True, "off": False}) == "a\nb 1\nd\n"
    with pytest.raises(TemplateError, match="no value"):
        fill(template, {"x": "1", "y": "2"}, {"on": True})
    with pytest.raises(TemplateError, match="lacks"):
        fill(template, {"x": "1", "y": "2"}, {"on": True, "off": True, "other": True})
    with pytest.raises(TemplateError, match="endif"):
        fill("x\n{% if a %}\ny\n", {}, {"a": True})  # never ended
