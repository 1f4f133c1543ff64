"""Render ``supervisord.conf`` for the local stack's programs.

supervisor restarts a program that dies without touching the others, stops them all on
SIGTERM/SIGINT, and serves ``supervisorctl`` (and our XML-RPC calls) on a unix socket.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import resource
import shlex
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from stack.programs import REPO, Program

#: A program that stays up this long counts as started (small: these start fast).
START_SECS = 1
#: Quick failures tolerated at start before a program is marked FATAL.
START_RETRIES = 5
#: File descriptors supervisord (and so every program) may open: gunicorn and nginx hold
#: one per connection, far beyond the usual soft limit of 1024.
WANTED_FDS = 16384
#: User name on the control socket (the password is generated per cluster).
CONTROL_USER = "batchgate"
#: Unix socket paths longer than this do not fit ``sockaddr_un`` (108 bytes with the NUL).
MAX_SOCKET_PATH = 100


def socket_path(run_dir: Path) -> Path:
    """The control socket: in ``run_dir``, or in the temp folder if that path is too long."""
    path = run_dir.resolve() / "supervisor.sock"
    if len(str(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"batchgate-supervisor-{digest}.sock"


def render_supervisord(
    programs: Iterable[Program], run_dir: Path, control_password: str, workdir: Path = REPO
) -> str:
    """supervisord.conf: foreground supervisord, a control socket, one section per program.

    The socket is mode 0700 and also asks for ``CONTROL_USER``/``control_password`` (kept in
    this file, which only its owner can read), so supervisord runs without warnings.
    """
    run_dir = run_dir.resolve()
    logs = run_dir / "logs"
    sock = socket_path(run_dir)
    lines = [
        "; Rendered by stack.cluster from Settings at every start; edits are overwritten.",
        "[supervisord]",
        "nodaemon=true",
        f"logfile={_esc(logs / 'supervisord.log')}",
        "logfile_maxbytes=10MB",
        "logfile_backups=1",
        "loglevel=info",
        f"pidfile={_esc(run_dir / 'supervisord.pid')}",
        f"childlogdir={_esc(logs)}",
        f"directory={_esc(workdir)}",
        f"minfds={_minfds()}",
        # As root, say so: supervisord otherwise logs a CRIT that privileges were not dropped.
        *([f"user={_esc(pwd.getpwuid(0).pw_name)}"] if os.geteuid() == 0 else []),
        "",
        "[unix_http_server]",
        f"file={_esc(sock)}",
        "chmod=0700",
        f"username={CONTROL_USER}",
        f"password={_esc(control_password)}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_esc(sock)}",
        f"username={CONTROL_USER}",
        f"password={_esc(control_password)}",
    ]
    for program in programs:
        lines += ["", *_program_section(program, logs, workdir)]
    return "\n".join(lines) + "\n"


def _program_section(program: Program, logs: Path, workdir: Path) -> list[str]:
    lines = [
        f"[program:{program.name}]",
        f"command={_esc(shlex.join(program.argv))}",
        f"directory={_esc(workdir)}",
        f"priority={program.priority}",
        "autostart=true",
        "autorestart=true",
        f"startsecs={START_SECS}",
        f"startretries={START_RETRIES}",
        "stopsignal=TERM",
        f"stopwaitsecs={program.stop_wait_s}",
        # Signal the whole process group: gunicorn's and nginx's workers, celery's pool.
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={_esc(logs / (program.name + '.log'))}",
        "stdout_logfile_maxbytes=50MB",
        "stdout_logfile_backups=2",
    ]
    if program.environment:
        lines.append(f"environment={_environment(program.environment)}")
    return lines


def _environment(variables: Mapping[str, str]) -> str:
    """supervisor's ``KEY="value",…`` (added to what supervisord itself was given)."""
    for name, value in variables.items():
        if not name.isidentifier() or any(c in value for c in '"\\\n'):
            raise ValueError(f"{name}: supervisor cannot be given this variable's value")
    return ",".join(f'{name}="{_esc(value)}"' for name, value in variables.items())


def _esc(value: object) -> str:
    """supervisor expands ``%(name)s`` in values: a literal ``%`` must be doubled."""
    return str(value).replace("%", "%%")


def _minfds() -> int:
    """As many descriptors as wanted, but no more than the hard limit allows (or supervisord refuses)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        return WANTED_FDS
    return min(WANTED_FDS, hard)
