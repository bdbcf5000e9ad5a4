"""`shardproxy check-config`: what it prints for a good file, and file:line:key errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_check_config_prints_every_table_and_its_data_nodes(capsys: pytest.CaptureFixture[str]):
    assert main(["check-config", str(ROOT / "config" / "default.yaml")]) == 0
    out = capsys.readouterr().out
    assert "orders       sharded by user_id (mod, 4 shards): " in out
    assert "ds0.orders_0 ds0.orders_1 ds1.orders_2 ds1.orders_3" in out
    assert "countries    broadcast: ds0.countries ds1.countries" in out
    assert "settings     single: ds1.settings" in out
    assert "app" in out and "password" not in out


def test_check_config_reports_each_problem_with_file_line_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "listen: {host: 127.0.0.1, port: 99999}\n"
        "users: [{name: app, password: app}]\n"
        "backends:\n"
        "  ds0: {host: h, port: 1, user: u, database: d}\n"
        "databases:\n"
        "  shop:\n"
        "    default_backend: ds9\n"
        "    tables: {t: {shard_key: id, algoritm: mod, backends: [ds0]}}\n"
    )
    assert main(["check-config", str(bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert f"{bad}:1: listen.port: 99999 is out of range (must be 1..65535)" in err
    assert f"{bad}:7: databases.shop.default_backend: unknown backend 'ds9' (known: ds0)" in err
    assert any(line.startswith(f"{bad}:8: databases.shop.tables.t.algoritm:") for line in err)


def test_check_config_of_a_missing_file_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["check-config", str(tmp_path / "nope.yaml")]) == 1
    assert "nope.yaml" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "workers", "expected"),
    [
        ("", "0", "--workers: 0 is out of range (must be 1..64)"),
        ("transactions: {worker_id: 1023}\n", "2", "--workers: with transactions.worker_id 1023"),
    ],
)
def test_serve_refuses_a_bad_worker_count_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, workers: str, expected: str
):
    config = tmp_path / "proxy.yaml"
    config.write_text((ROOT / "config" / "default.yaml").read_text() + extra)
    assert main(["serve", "--config", str(config), "--workers", workers]) == 1
    assert capsys.readouterr().err.startswith(expected)
