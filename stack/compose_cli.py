"""``make up``'s preparation: what compose needs on the host and what is never committed.

``python -m stack.compose_cli prepare`` makes ``certs/fullchain.pem`` and
``certs/privkey.pem`` (self-signed, for localhost) when there are none, and writes the
secrets compose requires (``REDIS_PASSWORD``, ``BATCHGATE_FLOWER_AUTH``) to ``.env`` (mode
0600) when neither the environment nor ``.env`` sets them. Nothing present is replaced.
"""

from __future__ import annotations

import argparse
import os
import secrets
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from batchgate.apikeys import new_key
from stack.container import COMPOSE_HOSTNAMES
from stack.images import ImageError, apt_mirror, build_base_images, build_images, compose_command
from stack.programs import FLOWER_USER, REPO
from stack.tls import TlsError, ensure_self_signed

#: Secrets docker-compose.yml requires, and how to make each (URL-safe: the Redis password
#: is part of BATCHGATE_REDIS_URL).
GENERATED: dict[str, Callable[[], str]] = {
    "REDIS_PASSWORD": lambda: secrets.token_urlsafe(24),
    "BATCHGATE_FLOWER_AUTH": lambda: f"{FLOWER_USER}:{secrets.token_urlsafe(18)}",
    # Read by PostgreSQL only when its volume is first made: changing it later needs
    # `ALTER USER batchgate PASSWORD …` inside it too (docs/deployment.md).
    "POSTGRES_PASSWORD": lambda: secrets.token_urlsafe(24),
    # A premium key the API creates at start, so the stack answers at once (`make up` prints it).
    "BATCHGATE_DEMO_API_KEY": new_key,
    # The load-test container writes its reports as the user who owns ./loadtest/reports.
    "BATCHGATE_UID": lambda: str(os.getuid()),
    "BATCHGATE_GID": lambda: str(os.getgid()),
}


def read_env_file(path: Path) -> dict[str, str]:
    """The ``NAME=value`` lines of a compose ``.env`` file (comments and blanks skipped)."""
    values: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            name, sep, value = line.strip().partition("=")
            if sep and not name.startswith("#"):
                values[name.strip()] = value.strip().strip("'\"")
    return values


def prepare(root: Path, environ: Mapping[str, str]) -> list[str]:
    """Make what is missing under ``root``; one line per thing made."""
    made: list[str] = []
    pair, fresh = ensure_self_signed(root / "certs", hostnames=COMPOSE_HOSTNAMES)
    (root / "loadtest" / "reports").mkdir(parents=True, exist_ok=True)
    if fresh:
        made.append(
            f"self-signed certificate for localhost: {pair.certificate} (put a real one in its place)"
        )
    env_file = root / ".env"
    present = read_env_file(env_file)
    missing = {
        name: make() for name, make in GENERATED.items() if not environ.get(name) and name not in present
    }
    if missing:
        write_env_values(env_file, missing)
        made.append(f"{', '.join(missing)} generated into {env_file}")
    return made


def write_env_values(env_file: Path, values: Mapping[str, str]) -> None:
    """Append ``values`` to the compose ``.env`` file (mode 0600); a name already there keeps
    its value unless it is among ``values`` (the later line wins for compose)."""
    fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write("# Written by `make up` / `make base-images` (stack.compose_cli).\n")
        handle.writelines(f"{name}={value}\n" for name, value in values.items())


#: The compose project's name (docker-compose v1 rejects a top-level `name:`).
PROJECT = "batchgate"


def compose_env(root: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment compose and the builds see: ``.env`` under the shell's variables."""
    return {**read_env_file(root / ".env"), **environ}


def up(root: Path, environ: Mapping[str, str], timeout_s: float = 300.0) -> int:
    """Prepare, build the images, start the stack detached, wait until it answers over HTTPS,
    and print where it is and how to use it."""
    for line in prepare(root, environ):
        print(f"batchgate: {line}")
    env = compose_env(root, environ)
    build_images(env, environ)
    compose = [*compose_command(), "-p", PROJECT]
    subprocess.run([*compose, "up", "-d", "--no-build"], cwd=root, check=True)
    url = entry_url(env)
    if not wait_ready(f"{url}/ready", root / "certs" / "fullchain.pem", timeout_s):
        print(
            f"batchgate: {url}/ready did not answer 200 within {timeout_s:.0f} s; see `{' '.join(compose)} ps`"
        )
        return 1
    user, _, password = env.get("BATCHGATE_FLOWER_AUTH", "").partition(":")
    print(
        f"batchgate: up at {url}/ (self-signed unless ./certs holds yours: curl -k, or --cacert certs/fullchain.pem)"
    )
    print(f"batchgate: API key (premium): {env.get('BATCHGATE_DEMO_API_KEY', '')}  (send it as X-API-Key)")
    flower_port = env.get("BATCHGATE_FLOWER_HOST_PORT", "5555")
    print(f"batchgate: Flower: http://127.0.0.1:{flower_port}/  user {user}  password {password}")
    return 0


def entry_url(env: Mapping[str, str]) -> str:
    """Where the stack answers on this host: HTTPS unless BATCHGATE_NGINX_TLS_PORT is 0."""
    if env.get("BATCHGATE_NGINX_TLS_PORT", "8443") == "0":
        return f"http://127.0.0.1:{env.get('BATCHGATE_HTTP_PORT', '80')}"
    return f"https://127.0.0.1:{env.get('BATCHGATE_HTTPS_PORT', '443')}"


def wait_ready(url: str, ca: Path, timeout_s: float) -> bool:
    """Poll ``url`` until it answers 200, verifying TLS with ``ca`` (the host is 127.0.0.1, a
    name the self-signed certificate does not carry, so only the chain is checked)."""
    context = ssl.create_default_context(cafile=str(ca)) if ca.is_file() else ssl.create_default_context()
    context.check_hostname = False
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with opener.open(url, timeout=3) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(2)
    return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.compose_cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare", help="certificates and secrets for docker compose, if missing")
    prep.add_argument("--root", type=Path, default=REPO, help="the compose project folder")
    commands.add_parser("images", help="build the app, nginx and load-test images (BuildKit)")
    base = commands.add_parser("base-images", help="build stand-ins for the base images from Debian packages")
    base.add_argument("--mirror", default=None, help="Debian mirror (default: the one apt uses)")
    commands.add_parser("up", help="prepare, build, start detached, wait, print URL, key and Flower")
    down = commands.add_parser("down", help="stop and remove the containers")
    down.add_argument("--volumes", action="store_true", help="also remove the volumes (all data)")
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            for line in prepare(args.root, os.environ):
                print(f"batchgate: {line}")
        elif args.command == "images":
            build_images(compose_env(REPO, os.environ), os.environ)
        elif args.command == "base-images":
            names = build_base_images(args.mirror or apt_mirror(), os.environ)
            write_env_values(REPO / ".env", names)
            print(f"batchgate: {', '.join(f'{k}={v}' for k, v in names.items())} (in .env)")
        elif args.command == "up":
            return up(REPO, os.environ)
        elif args.command == "down":
            volumes = ["--volumes"] if args.volumes else []
            subprocess.run([*compose_command(), "-p", PROJECT, "down", *volumes], cwd=REPO, check=True)
    except (TlsError, ImageError, subprocess.CalledProcessError) as exc:
        print(f"batchgate: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
