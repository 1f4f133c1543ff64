"""Free ports, taken ports and whether a local service answers: what the stack checks before
and after it starts its programs."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import redis

from batchgate.apikeys import new_key


def free_port() -> int:
    """A TCP port nothing listens on now on loopback (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` different free ports (the OS may hand the same free port out twice)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def port_in_use(host: str, port: int) -> bool:
    """Someone listens on ``host:port`` already (our programs would fail and be restarted forever)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def redis_answers(url: str) -> bool:
    """Something at ``url`` answers PING (a Redis asking for a password counts)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    except redis.RedisError:
        return True
    finally:
        client.close()


#: Never through an HTTP proxy from the environment: everything probed is local.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def probe(url: str) -> tuple[int, str]:
    """GET ``url``: (status, short description); status 0 when nothing answered."""
    try:
        with OPENER.open(url, timeout=2.0) as response:
            return response.status, f"{url}: {response.status}"
    except urllib.error.HTTPError as exc:
        return exc.code, f"{url}: {exc.code} {exc.read()[:200].decode(errors='replace')}"
    except (OSError, ValueError) as exc:
        return 0, f"{url}: {type(exc).__name__}: {exc}"


def isolated_stack_env(run_dir: Path, api_replicas: int = 3) -> dict[str, str]:
    """The ``BATCHGATE_*`` variables of a stack of its own beside any other: free ports for
    every program, a Redis URL nothing answers on (the cluster starts its own Redis there),
    its run folder and a premium demo key."""
    redis_port, nginx, tls, flower, sim, *api = free_ports(5 + api_replicas)
    return {
        "BATCHGATE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "BATCHGATE_API_PORTS": ",".join(str(port) for port in api),
        "BATCHGATE_NGINX_PORT": str(nginx),
        "BATCHGATE_NGINX_TLS_PORT": str(tls),
        "BATCHGATE_FLOWER_PORT": str(flower),
        "BATCHGATE_SIM_PORT": str(sim),
        "BATCHGATE_RUN_DIR": str(run_dir),
        "BATCHGATE_DEMO_API_KEY": new_key(),
    }
