"""Private MariaDB servers for the tests and the default run, importable and as a CLI.

Each instance owns its datadir, port, unix socket, pid file and error log under
``BASE_DIR/NAME``, so a test can stop, SIGKILL and restart it without touching the system
MariaDB on port 3306. A new datadir is a copy of a template that ``mariadb-install-db`` builds
once per base directory, which makes a fresh instance ready in a fraction of a second.

CLI (instances outlive it; they run in their own session with output in their log)::

    python scripts/mariadb_instances.py start NAME PORT [--base-dir DIR]
    python scripts/mariadb_instances.py stop NAME [--base-dir DIR]
    python scripts/mariadb_instances.py status [--base-dir DIR]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pymysql

DEFAULT_BASE_DIR = Path(__file__).resolve().parent.parent / "run"
HOST = "127.0.0.1"

# Shared by mariadb-install-db and the server so the template's files match what the server
# expects (a smaller redo log also makes each copy cheaper).
_COMMON_OPTIONS = (
    "--innodb-buffer-pool-size=64M",
    "--innodb-log-file-size=16M",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_general_ci",
    "--skip-name-resolve",
)
# Durability settings stay at their defaults (flush at every commit): the XA crash tests
# SIGKILL servers and rely on prepared and committed transactions surviving.
_SERVER_OPTIONS = (
    f"--bind-address={HOST}",
    "--skip-log-bin",
    "--max-connections=300",
)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


class MariaDBError(RuntimeError):
    """An instance could not be installed, started or stopped."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def die_with_parent() -> None:
    """``preexec_fn`` that SIGKILLs the child when its parent dies.

    Test servers and proxies must not outlive a pytest that was itself killed, when neither
    fixture finalizers nor atexit handlers get to run.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _find_binary(name: str) -> str | None:
    # /usr/sbin is often missing from a non-login root PATH.
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/usr/bin"):
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_mariadb_installed() -> str:
    """Return the path of ``mariadbd``, installing MariaDB with apt-get when it is missing.

    A fresh CI machine has no MariaDB; CI runs as root, elsewhere ``sudo -n`` is tried.
    """
    if _find_binary("mariadbd") is None or _find_binary("mariadb-install-db") is None:
        prefix: list[str] = []
        if os.geteuid() != 0:
            if shutil.which("sudo") is None:
                raise MariaDBError("mariadbd is not installed and we are not root to install it")
            prefix = ["sudo", "-n"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "mariadb-server", "mariadb-client"],
        ):
            done = subprocess.run(
                prefix + command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
            )
            if done.returncode != 0:
                raise MariaDBError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    mariadbd = _find_binary("mariadbd")
    if mariadbd is None:
        raise MariaDBError("mariadbd is still missing after installing mariadb-server")
    return mariadbd


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def _ensure_template(base_dir: Path) -> Path:
    """Build the initialized datadir that new instances copy, once per base directory."""
    template = base_dir / "_template"
    if template.is_dir():
        return template
    base_dir.mkdir(parents=True, exist_ok=True)
    # The lock serializes concurrent first starts; the rename makes a half-built template
    # impossible to see.
    with open(base_dir / "_template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if template.is_dir():
            return template
        ensure_mariadb_installed()
        install_db = _find_binary("mariadb-install-db")
        assert install_db is not None  # ensure_mariadb_installed checked it
        building = base_dir / f"_template.building-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        command = [
            install_db,
            "--no-defaults",
            f"--datadir={building}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *_COMMON_OPTIONS,
        ]
        if os.geteuid() == 0:
            command.append("--user=root")
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            raise MariaDBError(f"mariadb-install-db failed:\n{done.stdout}{done.stderr}")
        building.rename(template)
    return template


class MariaDBInstance:
    """One private mariadbd: its files live in ``base_dir/name``, it listens on 127.0.0.1:port.

    The datadir persists across stop/kill/start, so restarts test recovery of real data.
    With ``stop_at_exit`` (the default, for tests) the server is stopped when this Python
    process exits and killed if it dies; the CLI passes False so servers outlive it.
    """

    def __init__(
        self,
        name: str,
        port: int,
        base_dir: str | os.PathLike[str] = DEFAULT_BASE_DIR,
        *,
        extra_args: Sequence[str] = (),
        stop_at_exit: bool = True,
    ) -> None:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"bad instance name {name!r}: use letters, digits, '_', '.', '-'")
        self.name = name
        self.port = port
        self.host = HOST
        self.base_dir = Path(base_dir).resolve()
        self.dir = self.base_dir / name
        self.datadir = self.dir / "data"
        self.pid_path = self.dir / "mariadbd.pid"
        self.log_path = self.dir / "error.log"
        self.extra_args = tuple(extra_args)
        self.stop_at_exit = stop_at_exit
        self.socket_path = self.dir / "mariadbd.sock"
        if len(str(self.socket_path)) > _SOCKET_PATH_MAX:
            digest = hashlib.sha1(str(self.dir).encode()).hexdigest()[:12]
            self.socket_path = Path(tempfile.gettempdir()) / f"shardproxy-mariadb-{digest}.sock"
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def existing(
        cls, name: str, base_dir: str | os.PathLike[str] = DEFAULT_BASE_DIR
    ) -> MariaDBInstance:
        """The instance a previous ``start`` created, e.g. to stop one the CLI started."""
        port_file = Path(base_dir).resolve() / name / "port"
        try:
            port = int(port_file.read_text())
        except FileNotFoundError:
            raise MariaDBError(f"no instance {name!r} in {base_dir}") from None
        return cls(name, port, base_dir, stop_at_exit=False)

    def __repr__(self) -> str:
        return f"MariaDBInstance({self.name!r}, port={self.port}, dir={str(self.dir)!r})"

    @property
    def dsn(self) -> dict[str, Any]:
        """Keyword arguments for ``pymysql.connect`` (root with an empty password over TCP)."""
        return {"host": self.host, "port": self.port, "user": "root", "password": ""}

    def connect(self, database: str | None = None, **kwargs: Any) -> pymysql.Connection:
        """Open an autocommit utf8mb4 connection as root."""
        options: dict[str, Any] = {"autocommit": True, "charset": "utf8mb4", **kwargs}
        return pymysql.connect(**self.dsn, database=database, **options)

    def execute(
        self, sql: str, params: Sequence[Any] | None = None, database: str | None = None
    ) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection and return its rows, for test setup."""
        with contextlib.closing(self.connect(database)) as conn, conn.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    # -- process control --------------------------------------------------------------------

    def pid(self) -> int | None:
        """The pid of this instance's mariadbd if it is running, else None."""
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None  # reaped: a zombie would otherwise look alive
        try:
            pid = int(self.pid_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            return None
        # A stale pid file may name a recycled pid: only our own datadir argument counts.
        if state == "Z" or f"--datadir={self.datadir}".encode() not in cmdline:
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self, wait: bool = True, timeout: float = 30.0) -> None:
        """Start the server (creating its datadir from the template on first use).

        With ``wait``, return once it accepts connections, or raise ``MariaDBError`` with the
        tail of its error log.
        """
        if self.is_running():
            raise MariaDBError(f"{self.name} is already running")
        if _port_in_use(self.port):
            raise MariaDBError(f"cannot start {self.name}: port {self.port} is already in use")
        mariadbd = ensure_mariadb_installed()
        if not self.datadir.is_dir():
            template = _ensure_template(self.base_dir)
            self.dir.mkdir(parents=True, exist_ok=True)
            shutil.copytree(template, self.datadir, symlinks=True)
        (self.dir / "port").write_text(f"{self.port}\n")
        self.pid_path.unlink(missing_ok=True)
        command = [
            mariadbd,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            f"--socket={self.socket_path}",
            f"--pid-file={self.pid_path}",
            f"--log-error={self.log_path}",
            *_COMMON_OPTIONS,
            *_SERVER_OPTIONS,
            *self.extra_args,
        ]
        if os.geteuid() == 0:
            command.append("--user=root")  # mariadbd refuses root without it
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C meant for pytest must not reach the server
                preexec_fn=die_with_parent if self.stop_at_exit else None,
            )
        # mariadbd writes the same pid itself, but only after a moment; write it now so that a
        # stop() racing the startup still finds the process.
        self.pid_path.write_text(f"{self._proc.pid}\n")
        if self.stop_at_exit:
            atexit.unregister(self._stop_at_exit)  # a crashed earlier run may have left one
            atexit.register(self._stop_at_exit)
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the server answers as root over TCP, or raise with its log tail."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self.is_running():
                raise MariaDBError(
                    f"mariadbd {self.name} exited during startup; {self.log_path} ends with:\n"
                    + _tail(self.log_path)
                )
            try:
                conn = self.connect(connect_timeout=2)
                with contextlib.closing(conn), conn.cursor() as cursor:
                    cursor.execute("SELECT @@datadir")
                    datadir = cursor.fetchone()[0]
            except pymysql.MySQLError as exc:
                last_error = exc
                time.sleep(0.05)
                continue
            # Guards against answering for some other server that grabbed the port.
            if Path(datadir).resolve() != self.datadir:
                raise MariaDBError(f"port {self.port} is served by another server ({datadir})")
            return
        raise MariaDBError(
            f"mariadbd {self.name} not ready after {timeout:.0f} s ({last_error}); "
            f"{self.log_path} ends with:\n" + _tail(self.log_path)
        )

    def stop(self, timeout: float = 60.0) -> None:
        """Shut down cleanly (SIGTERM); SIGKILL only if that takes longer than ``timeout``."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL the server, as a crash: InnoDB recovers on the next start."""
        self._signal_and_wait(signal.SIGKILL, 30.0)

    def restart(self, timeout: float = 30.0) -> None:
        """Stop cleanly if running, then start and wait until ready."""
        self.stop()
        self.start(wait=True, timeout=timeout)

    def _signal_and_wait(self, signum: signal.Signals, timeout: float) -> None:
        if self.stop_at_exit:
            atexit.unregister(self._stop_at_exit)
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signum)
        if not self._wait_exit(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            if not self._wait_exit(pid, 30.0):
                raise MariaDBError(f"mariadbd {self.name} (pid {pid}) survived SIGKILL")
        self._proc = None

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while self.pid() == pid:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _stop_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop(timeout=10.0)


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((HOST, port)) == 0


# -- CLI -----------------------------------------------------------------------------------


def _cli_start(args: argparse.Namespace) -> int:
    instance = MariaDBInstance(args.name, args.port, args.base_dir, stop_at_exit=False)
    pid = instance.pid()
    if pid is not None:
        running = MariaDBInstance.existing(args.name, args.base_dir)
        if running.port != args.port:
            print(f"{args.name} is already running on port {running.port}", file=sys.stderr)
            return 1
        print(f"{args.name} already running (pid {pid}, port {args.port})")
        return 0
    began = time.monotonic()
    instance.start(wait=True, timeout=args.timeout)
    print(
        f"started {args.name} on {HOST}:{args.port} in {time.monotonic() - began:.1f} s "
        f"(pid {instance.pid()}, log {instance.log_path})"
    )
    return 0


def _cli_stop(args: argparse.Namespace) -> int:
    instance = MariaDBInstance.existing(args.name, args.base_dir)
    if not instance.is_running():
        print(f"{args.name} is not running")
        return 0
    instance.stop()
    print(f"stopped {args.name}")
    return 0


def _cli_status(args: argparse.Namespace) -> int:
    base_dir = Path(args.base_dir)
    names = sorted(p.parent.name for p in base_dir.glob("*/port")) if base_dir.is_dir() else []
    if not names:
        print(f"no instances in {base_dir}")
    for name in names:
        instance = MariaDBInstance.existing(name, base_dir)
        pid = instance.pid()
        state = f"running (pid {pid})" if pid is not None else "stopped"
        print(f"{name:<12} port {instance.port:<6} {state:<22} {instance.dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {}

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_)
        sub.add_argument("--base-dir", default=str(DEFAULT_BASE_DIR), help="default: ./run")
        handlers[name] = handler
        return sub

    start = command("start", _cli_start, "start NAME on PORT unless it is already running")
    start.add_argument("name")
    start.add_argument("port", type=int)
    start.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for ready")
    command("stop", _cli_stop, "shut NAME down cleanly").add_argument("name")
    command("status", _cli_status, "list the instances under the base directory")

    args = parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except MariaDBError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
