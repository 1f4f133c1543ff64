"""The local stack's supervisord.conf, rendered for non-default ports and read by supervisor's
own parser: one restarting program per process, each with its command, secrets only where
they are used."""

import configparser
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest
import redis
from supervisor.options import ServerOptions

from batchgate.settings import Settings
from stack.cluster import Cluster, ClusterError
from stack.ports import free_port, port_in_use
from stack.supervisor_config import socket_path
from tests.stack.stack_configs import (
    PROGRAMS,
    make_cluster,
    supervisor_commands,
)

# --- supervisord.conf ------------------------------------------------------------------------


def test_supervisord_conf_has_one_restarting_program_per_process(cluster: Cluster) -> None:
    parser = configparser.RawConfigParser()
    parser.read(cluster.conf_path)
    programs = {section.removeprefix("program:") for section in parser if section.startswith("program:")}
    assert programs == PROGRAMS == set(cluster.programs)
    assert parser["supervisord"]["nodaemon"] == "true"
    assert Path(parser["unix_http_server"]["file"]) == cluster.run_dir / "supervisor.sock"
    assert parser["supervisorctl"]["serverurl"] == f"unix://{cluster.run_dir / 'supervisor.sock'}"
    for name in PROGRAMS:
        section = parser[f"program:{name}"]
        assert section["autorestart"] == "true"
        assert section["stopsignal"] == "TERM"
        assert section["stopasgroup"] == section["killasgroup"] == "true"
        assert int(section["startsecs"]) <= 2
        assert int(section["stopwaitsecs"]) >= 5
        assert Path(section["stdout_logfile"]) == cluster.logs_dir / f"{name}.log"
    # Start order: Redis first, nginx last (and so stopped first).
    priority = {name: int(parser[f"program:{name}"]["priority"]) for name in PROGRAMS}
    assert min(priority, key=priority.__getitem__) == "redis"
    assert max(priority, key=priority.__getitem__) == "nginx"
    assert stat.S_IMODE(cluster.conf_path.stat().st_mode) == 0o600


def test_supervisor_runs_the_commands_of_each_process(cluster: Cluster) -> None:
    commands = supervisor_commands(cluster.conf_path)
    run_dir = str(cluster.run_dir)

    redis_cmd = commands["redis"]
    assert redis_cmd[redis_cmd.index("--port") + 1] == "6411"
    assert redis_cmd[redis_cmd.index("--save") + 1] == ""
    assert redis_cmd[redis_cmd.index("--dir") + 1] == run_dir

    assert commands["simulator"][-2:] == ["-m", "batching.simulator"]
    assert Settings.from_env(cluster.env).gemini.model_base_url == "http://127.0.0.1:9390"

    for port in (9301, 9302, 9303):
        api = commands[f"api-{port}"]
        assert Path(api[0]).name == "gunicorn" and api[-1] == "api.wsgi:app"
        assert api[api.index("--worker-class") + 1] == "gevent"
        assert api[api.index("--bind") + 1] == f"127.0.0.1:{port}"
        # No access log: it would hold query strings (the Gemini drop-in's `?key=`).
        assert not [arg for arg in api if arg.startswith(("--access-log", "--log-level"))]

    worker = commands["worker"]
    # Plain `celery -A workers.celery_entry worker`: its shape is the app's configuration.
    assert worker[1:] == ["-A", "workers.celery_entry", "worker", "-n", "batch@%h", "--loglevel", "INFO"]

    beat = commands["beat"]
    assert beat[beat.index("--schedule") + 1] == f"{run_dir}/celerybeat-schedule"

    flower = commands["flower"]
    assert "--address=127.0.0.1" in flower and "--port=9355" in flower
    conf = Path(next(arg for arg in flower if arg.startswith("--conf=")).removeprefix("--conf="))
    assert repr(cluster.flower_auth) in conf.read_text()
    assert cluster.flower_auth not in " ".join(flower)
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600

    assert commands["nginx"][1:] == ["-c", f"{run_dir}/nginx.conf", "-p", f"{run_dir}/", "-e", "stderr"]


def test_flower_auth_from_settings_or_generated_once(tmp_path: Path) -> None:
    given = make_cluster(tmp_path / "a", BATCHGATE_FLOWER_AUTH="ops:s3cret")
    assert given.flower_auth == "ops:s3cret"
    generated = make_cluster(tmp_path / "b")
    user, _, password = generated.flower_auth.partition(":")
    assert user == "admin" and len(password) >= 16
    generated.render(start_redis=False)
    generated.render(start_redis=False)
    assert repr(generated.flower_auth) in (tmp_path / "b" / "flowerconfig.py").read_text()
    assert make_cluster(tmp_path / "c").flower_auth != generated.flower_auth


@pytest.mark.parametrize(
    ("overrides", "simulator"),
    [
        ({}, True),
        ({"BATCHGATE_START_SIMULATOR": "never"}, False),
        ({"GEMINI_API_KEY": "key"}, False),
        ({"BATCHGATE_SIMULATOR_URL": "http://127.0.0.1:9999"}, False),
        ({"BATCHGATE_SIMULATOR_URL": "http://127.0.0.1:9390/"}, True),
        ({"BATCHGATE_START_SIMULATOR": "always", "BATCHGATE_SIMULATOR_URL": "http://127.0.0.1:9999"}, True),
    ],
)
def test_optional_programs(tmp_path: Path, overrides: dict[str, str], simulator: bool) -> None:
    cluster = make_cluster(tmp_path / "run", **overrides)
    cluster.render(start_redis=False)
    assert "redis" not in cluster.programs
    assert ("simulator" in cluster.programs) is simulator


def test_control_socket_path_fits_a_unix_socket(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 6)
    assert len(str(socket_path(deep))) <= 100
    assert socket_path(deep) == socket_path(deep)
    assert socket_path(tmp_path) == tmp_path.resolve() / "supervisor.sock"


def test_start_refuses_ports_in_use_before_spawning_anything(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cluster = make_cluster(tmp_path / "run", BATCHGATE_NGINX_PORT=str(port))
        with pytest.raises(ClusterError, match=f"nginx 127.0.0.1:{port}"):
            cluster.start()
    assert cluster.poll() is None and not (tmp_path / "run" / "logs" / "supervisord.log").exists()
    assert not port_in_use("127.0.0.1", port)


def test_start_refuses_a_tls_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cluster = make_cluster(tmp_path / "run", BATCHGATE_NGINX_TLS_PORT=str(port))
        with pytest.raises(ClusterError, match=f"nginx https 127.0.0.1:{port}"):
            cluster.start()
    assert cluster.poll() is None


def test_the_gemini_key_reaches_only_the_worker(tmp_path: Path) -> None:
    key = "AIzaSy-test_key-0123456789"
    cluster = make_cluster(tmp_path / "run", GEMINI_API_KEY=key)
    cluster.render(start_redis=False)
    assert "GEMINI_API_KEY" not in cluster.env  # what supervisord (and so every program) gets
    parser = configparser.RawConfigParser()
    parser.read(cluster.conf_path)
    for name in cluster.programs:
        environment = parser[f"program:{name}"].get("environment", "")
        assert (key in environment) is (name == "worker"), name
    assert parser["program:worker"]["environment"] == f'GEMINI_API_KEY="{key}"'
    assert key not in " ".join(" ".join(argv) for argv in supervisor_commands(cluster.conf_path).values())
    # supervisor's own parser gives it to the worker, and only to it.
    options = ServerOptions()
    options.realize(args=["-c", str(cluster.conf_path)])
    environments = {
        process.name: process.environment or {}
        for group in options.process_group_configs
        for process in group.process_configs
    }
    assert environments["worker"] == {"GEMINI_API_KEY": key}
    assert all("GEMINI_API_KEY" not in env for name, env in environments.items() if name != "worker")


@pytest.mark.parametrize(
    ("url", "login"),
    [
        ("redis://:pa%40ss%22word@127.0.0.1:{port}/0", ("default", 'pa@ss"word')),
        ("redis://batch:s3cret@127.0.0.1:{port}/0", ("batch", "s3cret")),
    ],
)
def test_local_redis_requires_the_password_of_its_url(
    tmp_path: Path, url: str, login: tuple[str, str]
) -> None:
    port = free_port()
    cluster = make_cluster(tmp_path / "run", BATCHGATE_REDIS_URL=url.format(port=port))
    cluster.render(start_redis=True)
    argv = supervisor_commands(cluster.conf_path)["redis"]
    conf = cluster.run_dir / "redis.conf"
    assert argv[1] == str(conf) and argv[argv.index("--bind") + 1] == "127.0.0.1"
    assert login[1] not in " ".join(argv)  # never on a command line
    assert cluster.urls()["redis"] == url.format(port=port).replace(url.split(":")[2].split("@")[0], "***")
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    # The real redis-server, on that command line: a password is required, and it is this one.
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        anonymous = redis.Redis(port=port, socket_timeout=2)
        deadline = time.monotonic() + 10
        while True:
            try:
                anonymous.ping()
                pytest.fail("Redis answered without a password")
            except redis.AuthenticationError:
                break
            except redis.ResponseError as exc:  # NOAUTH
                assert "NOAUTH" in str(exc) or "auth" in str(exc).lower()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        user, password = login
        assert redis.Redis(port=port, username=user, password=password).ping()
        assert redis.Redis.from_url(cluster.settings.broker.redis_url).ping()
    finally:
        proc.terminate()
        proc.wait(10)


def test_worker_processes_start_that_many_workers_each_its_own_node(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path, BATCHGATE_WORKER_PROCESSES="3")
    cluster.render(start_redis=False)
    commands = supervisor_commands(cluster.conf_path)
    workers = {name: argv for name, argv in commands.items() if name.startswith("worker")}
    assert sorted(workers) == ["worker", "worker-2", "worker-3"]
    nodes = sorted(argv[argv.index("-n") + 1] for argv in workers.values())
    assert nodes == ["batch2@%h", "batch3@%h", "batch@%h"]  # one Celery node each, all on one queue
