"""Build the compose stack's images on any machine: the app and nginx images with BuildKit,
and, where no container registry is reachable, local stand-ins for the base images.

``make base-images`` makes a Debian bookworm root file system with ``debootstrap`` (from the
Debian mirror apt uses here), imports it, and builds from it stand-ins for the official
python, redis and postgres images (``stack/images/*.Dockerfile``); it records them in ``.env``
(``PYTHON_IMAGE``, ``REDIS_IMAGE``, ``POSTGRES_IMAGE``), which compose and ``make images``
read. Sites with a private or air-gapped registry set those variables to their own mirrors.
pip's CA bundle and index settings go into the build as BuildKit secrets, never into a layer.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from stack.programs import REPO

IMAGES_DIR = REPO / "stack" / "images"
#: The official base images, and the stand-ins ``make base-images`` builds in their place.
OFFICIAL = {
    "PYTHON_IMAGE": "python:3.11-slim",
    "REDIS_IMAGE": "redis:7-alpine",
    "POSTGRES_IMAGE": "postgres:16-alpine",
}
DEBIAN_IMAGE = "batchgate-local/debian:bookworm"
STAND_INS = {
    "PYTHON_IMAGE": ("batchgate-local/python:3.11", "python.Dockerfile"),
    "REDIS_IMAGE": ("batchgate-local/redis:7", "redis.Dockerfile"),
    "POSTGRES_IMAGE": ("batchgate-local/postgres:15", "postgres.Dockerfile"),
}
#: The images compose runs, by Dockerfile target.
APP_IMAGES = {
    "app": "batchgate:latest",
    "nginx": "batchgate-nginx:latest",
    "loadtest": "batchgate-loadtest:latest",
}
DEFAULT_MIRROR = "http://deb.debian.org/debian"


class ImageError(RuntimeError):
    """Docker cannot build what compose needs; the message says what to install or set."""


def _runs(argv: Sequence[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _client_major(docker: str) -> int:
    out = subprocess.run(
        [docker, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True
    )
    match = re.match(r"(\d+)", out.stdout.strip())
    return int(match.group(1)) if match else 0


def buildkit_docker() -> str:
    """A docker CLI that builds with BuildKit: one with the buildx plugin, or one older than
    23 (BuildKit built in; Debian's docker.io ships 20.10)."""
    candidates = [c for c in (shutil.which("docker"), "/usr/bin/docker") if c and os.path.exists(c)]
    for docker in dict.fromkeys(candidates):
        if _runs([docker, "buildx", "version"]) or 0 < _client_major(docker) < 23:
            return docker
    raise ImageError("no docker CLI can build with BuildKit: install the buildx plugin or Debian's docker.io")


def compose_command() -> list[str]:
    """``docker compose`` (the v2 plugin) when present, else Debian's ``docker-compose`` (v1)."""
    if _runs(["docker", "compose", "version"]):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise ImageError(
        "neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)"
    )


def pip_secrets(folder: Path, environ: Mapping[str, str]) -> dict[str, Path]:
    """The machine's pip CA bundle and its network index settings, as files for ``--secret``.

    Local ``file://`` indexes and find-links folders are left out: they do not exist inside a
    build. The config may hold credentials (``https://user:token@…``): it is written 0600 and
    only ever mounted."""
    secrets: dict[str, Path] = {}
    config = _pip_config(environ)
    ca = environ.get("PIP_CERT") or config.get("cert") or "/etc/ssl/certs/ca-certificates.crt"
    if os.path.isfile(ca):
        secrets["pip_ca"] = Path(ca)
    lines = []
    for name in ("index-url", "extra-index-url", "trusted-host"):
        value = environ.get("PIP_" + name.upper().replace("-", "_")) or config.get(name, "")
        kept = [v for v in value.split() if not v.startswith("file:")]
        if kept:
            lines.append(f"{name} = {' '.join(kept)}")
    if lines:
        conf = folder / "pip.conf"
        conf.touch(mode=0o600)
        conf.write_text("[global]\n" + "\n".join(lines) + "\n")
        secrets["pip_conf"] = conf
    return secrets


def _pip_config(environ: Mapping[str, str]) -> dict[str, str]:
    """``global.*`` values of ``pip config list`` (every pip config file of this machine)."""
    out = subprocess.run(
        ["python3", "-m", "pip", "config", "list"], capture_output=True, text=True, env=dict(environ)
    )
    values: dict[str, str] = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.startswith("global."):
            values[key.removeprefix("global.")] = value.strip().strip("'\"")
    return values


def build_images(base: Mapping[str, str], environ: Mapping[str, str], targets: Sequence[str] = ()) -> None:
    """Build the app, nginx and load-test images from ``base``'s PYTHON_IMAGE."""
    docker = buildkit_docker()
    python_image = base.get("PYTHON_IMAGE") or OFFICIAL["PYTHON_IMAGE"]
    with tempfile.TemporaryDirectory(prefix="batchgate-build-") as tmp:
        secrets = pip_secrets(Path(tmp), environ)
        for target in targets or APP_IMAGES:
            argv = [docker, "build", "--target", target, "-t", APP_IMAGES[target]]
            argv += ["--build-arg", f"PYTHON_IMAGE={python_image}"]
            argv += [arg for sid, path in secrets.items() for arg in ("--secret", f"id={sid},src={path}")]
            print(f"batchgate: building {APP_IMAGES[target]} on {python_image}", flush=True)
            _check(subprocess.run([*argv, str(REPO)], env={**environ, "DOCKER_BUILDKIT": "1"}))


def build_base_images(mirror: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The Debian root image (debootstrap, once) and the stand-ins built on it; their names."""
    docker = buildkit_docker()
    if not _runs([docker, "image", "inspect", DEBIAN_IMAGE]):
        if not shutil.which("debootstrap"):
            raise ImageError("debootstrap is not installed (apt-get install debootstrap)")
        with tempfile.TemporaryDirectory(prefix="batchgate-rootfs-") as root:
            print(f"batchgate: debootstrap bookworm from {mirror} (a few minutes)", flush=True)
            _check(subprocess.run(["debootstrap", "--variant=minbase", "bookworm", root, mirror]))
            tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
            _check(subprocess.run([docker, "import", "-", DEBIAN_IMAGE], stdin=tar.stdout))
            tar.wait()
    names = {}
    for variable, (name, dockerfile) in STAND_INS.items():
        print(f"batchgate: building {name}", flush=True)
        argv = [docker, "build", "-f", str(IMAGES_DIR / dockerfile), "-t", name, str(IMAGES_DIR)]
        _check(subprocess.run(argv, env={**environ, "DOCKER_BUILDKIT": "1"}))
        names[variable] = name
    return names


def apt_mirror() -> str:
    """The Debian mirror apt uses on this machine (deb822 or one-line sources)."""
    for path in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    sources = Path("/etc/apt/sources.list")
    if sources.is_file():
        for line in sources.read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1] if not parts[1].startswith("[") else parts[2]
    return DEFAULT_MIRROR


def _check(done: subprocess.CompletedProcess[bytes]) -> None:
    if done.returncode:
        raise ImageError(f"{' '.join(map(str, done.args[:3]))} … failed with exit code {done.returncode}")
