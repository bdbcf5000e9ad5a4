"""Fixtures for tests against real servers: private MariaDB instances and proxy processes.

Session-scoped servers are shared by all tests; a test may stop or SIGKILL one, and the
`_heal_shared_servers` finalizer restarts it so the next test starts from running servers.
Everything started here is stopped at the end of the session, and dies with pytest if pytest is
killed (see `mariadb_instances.die_with_parent`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest
import yaml
from mariadb_instances import MariaDBInstance, die_with_parent, free_port

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "config" / "default.yaml"

# Used while config/default.yaml does not exist yet; same shape as the design sketch.
FALLBACK_SHOP_CONFIG = """\
listen: {host: 127.0.0.1, port: 3307}
users: [{name: app, password: app}]
backends:
  ds0: {host: 127.0.0.1, port: 13306, user: root, password: "", database: shop_0}
  ds1: {host: 127.0.0.1, port: 13307, user: root, password: "", database: shop_1}
databases:
  shop:
    default_backend: ds0
    tables:
      orders:      {shard_key: user_id, algorithm: hash_mod, backends: [ds0, ds1], tables_per_backend: 2}
      order_items: {shard_key: user_id, algorithm: hash_mod, backends: [ds0, ds1], tables_per_backend: 2}
      users:       {shard_key: id, algorithm: hash_mod, backends: [ds0, ds1]}
      countries:   {broadcast: true}
    binding: [[orders, order_items]]
"""  # noqa: E501


# -- MariaDB ---------------------------------------------------------------------------------


@dataclass
class Cluster:
    """The shard servers every integration test shares; `instances[i]` backs backend i."""

    instances: list[MariaDBInstance]

    def connect(self, index: int, database: str | None = None) -> pymysql.Connection:
        """A root connection (autocommit, utf8mb4) straight to instance `index`."""
        return self.instances[index].connect(database)


@dataclass
class ReferenceDB:
    """An empty database on a plain MariaDB, the oracle for differential tests."""

    instance: MariaDBInstance
    database: str

    def connect(self) -> pymysql.Connection:
        return self.instance.connect(self.database)

    def execute(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        return self.instance.execute(sql, params, self.database)


@pytest.fixture(scope="session")
def mariadb_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's instances live; they share one install-db template here."""
    return tmp_path_factory.mktemp("mariadb")


def _start_instances(base_dir: Path, names: list[str]) -> list[MariaDBInstance]:
    instances: list[MariaDBInstance] = []
    try:
        for name in names:
            instance = MariaDBInstance(name, free_port(), base_dir)
            instances.append(instance)
            instance.start()
    except BaseException:
        _stop_all(instances)
        raise
    return instances


def _stop_all(instances: list[MariaDBInstance]) -> None:
    for instance in instances:
        with contextlib.suppress(Exception):
            instance.stop()


@pytest.fixture(scope="session")
def mariadb_cluster(mariadb_base_dir: Path) -> Iterator[Cluster]:
    """Two fresh MariaDB servers (shard0, shard1) on free ports."""
    instances = _start_instances(mariadb_base_dir, ["shard0", "shard1"])
    yield Cluster(instances)
    _stop_all(instances)


@pytest.fixture(scope="session")
def reference_server(mariadb_base_dir: Path) -> Iterator[MariaDBInstance]:
    """A third server, so crash tests on the shards never disturb the reference."""
    instances = _start_instances(mariadb_base_dir, ["reference"])
    yield instances[0]
    _stop_all(instances)


@pytest.fixture
def reference_db(reference_server: MariaDBInstance) -> ReferenceDB:
    """A freshly created, empty `reference` database for one test."""
    reference_server.execute("DROP DATABASE IF EXISTS reference")
    reference_server.execute("CREATE DATABASE reference")
    return ReferenceDB(reference_server, "reference")


@pytest.fixture
def backend_conn(
    mariadb_cluster: Cluster,
) -> Iterator[Callable[..., pymysql.Connection]]:
    """`backend_conn(i, database=None)`: a root connection to shard i, closed after the test."""
    opened: list[pymysql.Connection] = []

    def connect(index: int, database: str | None = None) -> pymysql.Connection:
        conn = mariadb_cluster.connect(index, database)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        with contextlib.suppress(Exception):
            conn.close()


# -- proxy -----------------------------------------------------------------------------------


class ProxyStartError(RuntimeError):
    """The proxy exited or never listened; the message carries its log tail."""


class ProxyProcess:
    """One `python -m proxy.cli serve --config FILE` subprocess listening on host:port."""

    host = "127.0.0.1"

    def __init__(self, name: str, config_path: Path, port: int, log_path: Path) -> None:
        self.name = name
        self.config_path = config_path
        self.port = port
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"ProxyProcess({self.name!r}, port={self.port}, log={str(self.log_path)!r})"

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until the listen port accepts TCP connections."""
        if self.is_running():
            raise ProxyStartError(f"proxy {self.name} is already running")
        command = [sys.executable, "-m", "proxy.cli", "serve", "--config", str(self.config_path)]
        with open(self.log_path, "ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(command)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},  # so the log tail is current
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ProxyStartError(
                    f"proxy {self.name} exited with {self._proc.returncode}; "
                    f"{self.log_path} ends with:\n{self.log_tail()}"
                )
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.05)
                continue
            return
        self.kill()
        raise ProxyStartError(
            f"proxy {self.name} did not listen on {self.port} within {timeout:.0f} s; "
            f"{self.log_path} ends with:\n{self.log_tail()}"
        )

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def terminate(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM); SIGKILL if it takes longer than `timeout`."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def send_signal(self, signum: signal.Signals) -> None:
        """Deliver a signal (SIGHUP reloads the config) without waiting for anything."""
        assert self._proc is not None and self.is_running()
        self._proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; its exit code."""
        assert self._proc is not None
        return self._proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash: whatever was in flight is left for recovery."""
        self._signal_and_wait(signal.SIGKILL, 10.0)

    def restart(self, timeout: float = 30.0) -> None:
        """Terminate if running, then start again on the same port with the same config."""
        self.terminate()
        self.start(timeout)

    def _signal_and_wait(self, signum: signal.Signals, timeout: float) -> None:
        if not self.is_running():
            return
        assert self._proc is not None
        self._proc.send_signal(signum)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10.0)

    def connect(
        self, user: str = "app", password: str = "app", database: str | None = "shop", **kwargs: Any
    ) -> pymysql.Connection:
        """A client connection through the proxy (autocommit, utf8mb4)."""
        options: dict[str, Any] = {"autocommit": True, "charset": "utf8mb4", **kwargs}
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=user,
            password=password,
            database=database,
            **options,
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log yet)"


class ProxyFactory:
    """`proxy_server(config_text, name="proxy")` starts a proxy and returns its ProxyProcess.

    The config's `listen:` is replaced by 127.0.0.1 and a free port; backends are taken as
    given. Config and log files go to the session's `proxy` tmp directory.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[ProxyProcess] = []

    def __call__(
        self, config_text: str, name: str = "proxy", timeout: float = 30.0
    ) -> ProxyProcess:
        config = yaml.safe_load(config_text)
        port = free_port()
        listen = config.setdefault("listen", {})
        listen.update(host=ProxyProcess.host, port=port)
        stem = f"{name}-{len(self.started)}"
        config_path = self.directory / f"{stem}.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        proxy = ProxyProcess(name, config_path, port, self.directory / f"{stem}.log")
        self.started.append(proxy)
        proxy.start(timeout)
        return proxy

    def stop_all(self) -> None:
        for proxy in self.started:
            proxy.terminate()


@pytest.fixture(scope="session")
def proxy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyFactory]:
    """Factory for proxy processes; all of them are stopped at the end of the session."""
    factory = ProxyFactory(tmp_path_factory.mktemp("proxy"))
    yield factory
    factory.stop_all()


def retarget_config(config_text: str, cluster: Cluster) -> str:
    """Point a config's backends at the cluster's instances, creating their databases.

    Backends are matched by server: the i-th distinct (host, port) in the file becomes
    instance i, so two backends sharing one server in the file share one instance here.
    """
    config = yaml.safe_load(config_text)
    servers: dict[tuple[str, int], MariaDBInstance] = {}
    for name, backend in config["backends"].items():
        key = (backend.get("host"), backend.get("port"))
        if key not in servers:
            if len(servers) == len(cluster.instances):
                raise ValueError(f"backend {name}: more servers than the cluster's instances")
            servers[key] = cluster.instances[len(servers)]
        instance = servers[key]
        backend.update(host=instance.host, port=instance.port, user="root", password="")
        instance.execute(f"CREATE DATABASE IF NOT EXISTS `{backend['database']}`")
    return yaml.safe_dump(config, sort_keys=False)


@pytest.fixture(scope="session")
def shop_config(mariadb_cluster: Cluster) -> str:
    """config/default.yaml retargeted at `mariadb_cluster` (physical databases created)."""
    text = DEFAULT_CONFIG.read_text() if DEFAULT_CONFIG.exists() else FALLBACK_SHOP_CONFIG
    return retarget_config(text, mariadb_cluster)


@pytest.fixture(scope="session")
def shop_proxy(proxy_server: ProxyFactory, shop_config: str) -> ProxyProcess:
    """One proxy serving `shop_config`, shared by the session."""
    return proxy_server(shop_config, name="shop")


@pytest.fixture(autouse=True)
def _heal_shared_servers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Restart shared servers a test stopped or killed, so one crash test can't fail the rest."""
    yield
    values = request.node.funcargs
    instances: list[MariaDBInstance] = []
    if "mariadb_cluster" in values:
        instances += values["mariadb_cluster"].instances
    if "reference_server" in values:
        instances.append(values["reference_server"])
    for instance in instances:
        if not instance.is_running():
            instance.start()
    proxy = values.get("shop_proxy")
    if proxy is not None and not proxy.is_running():
        proxy.start()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Append the log tail of every proxy a failed test used to its report."""
    report = yield
    if report.failed and isinstance(item, pytest.Function):
        proxies: list[ProxyProcess] = []
        for value in item.funcargs.values():
            if isinstance(value, ProxyProcess):
                proxies.append(value)
            elif isinstance(value, ProxyFactory):
                proxies += value.started
        for proxy in dict.fromkeys(proxies):
            report.sections.append((f"log of {proxy!r}", proxy.log_tail()))
    return report
