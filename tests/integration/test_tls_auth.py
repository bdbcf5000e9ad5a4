"""TLS for clients, require_secure_transport, and caching_sha2_password logins."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import mysql.connector
import pymysql
import pytest
import yaml

if TYPE_CHECKING:
    from conftest import ProxyFactory, ProxyProcess


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _tls_config(shop_config: str, certificate: tuple[Path, Path], required: bool) -> str:
    config = yaml.safe_load(shop_config)
    cert, key = certificate
    config["listen"]["tls"] = {"cert": str(cert), "key": str(key)}
    config["listen"]["require_secure_transport"] = required
    return yaml.safe_dump(config, sort_keys=False)


@pytest.fixture(scope="module")
def tls_proxy(proxy_server: ProxyFactory, shop_config: str, certificate) -> ProxyProcess:
    return proxy_server(_tls_config(shop_config, certificate, False), name="tls")


@pytest.fixture(scope="module")
def secure_proxy(proxy_server: ProxyFactory, shop_config: str, certificate) -> ProxyProcess:
    return proxy_server(_tls_config(shop_config, certificate, True), name="secure")


def _tls_connect(proxy: ProxyProcess, cert: Path) -> pymysql.Connection:
    return proxy.connect(ssl_ca=str(cert), ssl_verify_cert=True, ssl_verify_identity=True)


def test_pymysql_verifies_the_certificate_and_queries_over_tls(tls_proxy, certificate):
    conn = _tls_connect(tls_proxy, certificate[0])
    assert isinstance(conn._sock, ssl.SSLSocket)
    with conn.cursor() as cursor:
        cursor.execute("SELECT 'over tls', 1 + 1")
        assert cursor.fetchone() == ("over tls", 2)
    plain = tls_proxy.connect()
    assert not isinstance(plain._sock, ssl.SSLSocket)
    with plain.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_mariadb_cli_and_mysql_connector_over_tls(tls_proxy: ProxyProcess, certificate):
    cert = str(certificate[0])
    out = subprocess.run(
        [
            "mariadb", "--protocol=tcp", "-h127.0.0.1", f"-P{tls_proxy.port}", "-uapp", "-papp",
            "--ssl", f"--ssl-ca={cert}", "--ssl-verify-server-cert", "-N", "-e",
            "SELECT 'cli tls'",
        ],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "cli tls"
    conn = mysql.connector.connect(
        host="127.0.0.1", port=tls_proxy.port, user="app", password="app", database="shop",
        use_pure=True, ssl_ca=cert, ssl_verify_cert=True,
    )  # fmt: skip
    cursor = conn.cursor()
    cursor.execute("SELECT 'connector tls'")
    assert cursor.fetchone() == ("connector tls",)
    conn.close()


def test_require_secure_transport_refuses_plain_clients(secure_proxy, certificate):
    with pytest.raises(pymysql.err.OperationalError) as refused:
        secure_proxy.connect()
    assert refused.value.args[0] == 3159
    conn = _tls_connect(secure_proxy, certificate[0])
    with conn.cursor() as cursor:
        cursor.execute("SELECT 2")
        assert cursor.fetchone() == (2,)


@pytest.mark.parametrize("plugin", ["caching_sha2_password", "mysql_native_password"])
def test_both_password_plugins_log_in(shop_proxy: ProxyProcess, plugin: str):
    def connect(password: str):
        return mysql.connector.connect(
            host="127.0.0.1", port=shop_proxy.port, user="app", password=password,
            database="shop", use_pure=True, auth_plugin=plugin,
        )  # fmt: skip

    conn = connect("app")
    cursor = conn.cursor()
    cursor.execute("SELECT CURRENT_USER() IS NOT NULL")
    assert cursor.fetchone() == (1,)
    conn.close()
    with pytest.raises(mysql.connector.errors.ProgrammingError) as denied:
        connect("wrong")
    assert denied.value.errno == 1045
