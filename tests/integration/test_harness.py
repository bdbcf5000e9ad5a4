"""The MariaDB harness itself: crash tests and XA recovery tests trust these behaviours."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pymysql
import pytest
from mariadb_instances import MariaDBError, MariaDBInstance, free_port

if TYPE_CHECKING:
    from conftest import Cluster, ReferenceDB

CLI = Path(__file__).resolve().parents[2] / "scripts" / "mariadb_instances.py"


@pytest.fixture
def instance(mariadb_base_dir: Path, request: pytest.FixtureRequest) -> Iterator[MariaDBInstance]:
    """A private running instance this test may stop, kill and restart at will."""
    name = f"harness-{request.node.name.replace('[', '-').rstrip(']')}"
    server = MariaDBInstance(name, free_port(), mariadb_base_dir)
    server.start()
    yield server
    server.stop()


def test_committed_data_survives_sigkill_and_uncommitted_does_not(
    instance: MariaDBInstance,
) -> None:
    instance.execute("CREATE DATABASE d")
    instance.execute("CREATE TABLE d.t (id INT PRIMARY KEY)")
    instance.execute("INSERT INTO d.t VALUES (1)")
    conn = instance.connect("d", autocommit=False)
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO d.t VALUES (2)")  # never committed

    instance.kill()
    assert not instance.is_running()
    instance.start()

    assert instance.execute("SELECT id FROM d.t") == [(1,)]


def test_prepared_xa_branch_survives_sigkill(instance: MariaDBInstance) -> None:
    instance.execute("CREATE DATABASE d")
    instance.execute("CREATE TABLE d.t (id INT PRIMARY KEY)")
    conn = instance.connect("d")
    with conn.cursor() as cursor:
        for statement in ("XA START 'x1'", "INSERT INTO d.t VALUES (7)", "XA END 'x1'"):
            cursor.execute(statement)
        cursor.execute("XA PREPARE 'x1'")

    instance.kill()
    instance.start()

    recovered = instance.execute("XA RECOVER")
    assert [row[3] for row in recovered] == [b"x1"]
    instance.execute("XA COMMIT 'x1'")
    assert instance.execute("SELECT id FROM d.t") == [(7,)]


def test_clean_stop_and_restart_keep_data(instance: MariaDBInstance) -> None:
    instance.execute("CREATE DATABASE d")
    instance.execute("CREATE TABLE d.t (s VARCHAR(20))")
    instance.execute("INSERT INTO d.t VALUES (%s)", ["Zoë 🙂"])

    instance.stop()
    assert not instance.is_running()
    with pytest.raises(pymysql.err.OperationalError):
        instance.execute("SELECT 1")
    instance.restart()

    assert instance.execute("SELECT s FROM d.t") == [("Zoë 🙂",)]


def test_start_refuses_a_running_instance_and_a_busy_port(
    instance: MariaDBInstance, mariadb_base_dir: Path
) -> None:
    with pytest.raises(MariaDBError, match="already running"):
        instance.start()
    intruder = MariaDBInstance("harness-intruder", instance.port, mariadb_base_dir)
    with pytest.raises(MariaDBError, match="already in use"):
        intruder.start()


def test_startup_failure_reports_the_error_log(mariadb_base_dir: Path) -> None:
    broken = MariaDBInstance(
        "harness-broken", free_port(), mariadb_base_dir, extra_args=["--no-such-option"]
    )
    with pytest.raises(MariaDBError, match="no-such-option"):
        broken.start()
    assert not broken.is_running()


def test_cluster_instances_are_separate_utf8mb4_servers(mariadb_cluster: Cluster) -> None:
    datadirs = set()
    for index, server in enumerate(mariadb_cluster.instances):
        conn = mariadb_cluster.connect(index)
        with conn.cursor() as cursor:
            cursor.execute("SELECT @@datadir, @@character_set_server, @@log_bin")
            datadir, charset, log_bin = cursor.fetchone()
        conn.close()
        assert charset == "utf8mb4"
        assert log_bin == 0
        assert server.port != 3306
        datadirs.add(datadir)
    assert len(datadirs) == 2


def test_cli_started_instance_outlives_the_cli(tmp_path: Path) -> None:
    port = free_port()

    def cli(*args: str) -> str:
        command = [sys.executable, str(CLI), *args, "--base-dir", str(tmp_path)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    try:
        assert "started cli-a" in cli("start", "cli-a", str(port))
        assert "already running" in cli("start", "cli-a", str(port))
        server = MariaDBInstance.existing("cli-a", tmp_path)
        assert server.port == port
        assert server.execute("SELECT 1") == [(1,)]
        assert "running" in cli("status")
        assert "stopped cli-a" in cli("stop", "cli-a")
        assert "stopped" in cli("status")
        assert not server.is_running()
    finally:
        MariaDBInstance.existing("cli-a", tmp_path).stop()


def test_reference_db_is_fresh_for_each_test(reference_db: ReferenceDB) -> None:
    assert reference_db.execute("SHOW TABLES") == []
    reference_db.execute("CREATE TABLE leftover (id INT)")  # the next test must not see it


test_reference_db_is_fresh_again = test_reference_db_is_fresh_for_each_test


def test_backend_conn_reaches_the_named_shard(
    backend_conn: Callable[..., pymysql.Connection], mariadb_cluster: Cluster
) -> None:
    conn = backend_conn(1)
    with conn.cursor() as cursor:
        cursor.execute("SELECT @@port")
        assert cursor.fetchone() == (mariadb_cluster.instances[1].port,)
