"""docker/Dockerfile's steps, run without a container engine; and the sidecar examples' files.

The image build is the Dockerfile's own ENV, WORKDIR, COPY and RUN steps, executed here in
order with every path the image owns (/opt/..., /etc/shardproxy) moved under a temporary
directory: so `pip install .` runs in a fresh virtualenv from a copy holding only what the COPY
steps copy. Its CMD then starts the proxy on docker/config.yaml (backends pointed at the test
cluster), its HEALTHCHECK command must pass, and docker/app/query-loop.sh, the compose demo's
application, must run against it. One difference from a real build: the host's pip cache is
used (the image sets PIP_NO_CACHE_DIR), so the test doesn't download every dependency each run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from mariadb_instances import MariaDBInstance, die_with_parent, free_port
from shop_helpers import physical_tables

from router.config_loader import load_config, load_config_text

if TYPE_CHECKING:
    from conftest import Cluster

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
CONFIG_PATH = "/etc/shardproxy/config.yaml"
# Paths the image itself creates; everything else (/usr/local/bin, ...) is the base image's.
IMAGE_PREFIXES = ("/opt/", "/etc/shardproxy")
_HOST_PYTHON_ENV = ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONUSERBASE")
# What docker/config.yaml and the ConfigMap read from the environment.
CONFIG_ENV = {
    "APP_PASSWORD": "app",
    "SHARD_PASSWORD": "",
    "SHARD0_HOST": "shard0",
    "SHARD1_HOST": "shard1",
}


# --- reading the Dockerfile -----------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: continuations joined, comments dropped."""
    steps: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        steps.append((keyword.upper(), rest.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return steps


def expand(value: str, env: dict[str, str]) -> str:
    """$VAR and ${VAR} as Docker expands them in ENV, WORKDIR and COPY."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), value)


def exec_form(arguments: str) -> list[str]:
    command = json.loads(arguments)
    assert isinstance(command, list), f"use the exec (JSON) form: {arguments}"
    return [str(part) for part in command]


@dataclass
class Image:
    """The Dockerfile's steps as run under `root` instead of /."""

    root: Path
    base: str = ""
    env: dict[str, str] = field(default_factory=dict)  # as inside the image
    workdir: str = "/"
    user: str = "root"
    exposed: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    def host(self, path: str) -> Path:
        """Where an image path is on this machine."""
        assert path.startswith(IMAGE_PREFIXES), f"{path} is not a path the image creates"
        return self.root / path.lstrip("/")

    def host_value(self, value: str) -> str:
        """An image ENV value with its image paths moved under root."""
        parts = value.split(os.pathsep) if value.startswith("/") else [value]
        return os.pathsep.join(
            str(self.host(p)) if p.startswith(IMAGE_PREFIXES) else p for p in parts
        )

    def host_env(self, **overrides: str) -> dict[str, str]:
        # Nothing of this test's own Python setup leaks into the image's.
        env = {k: v for k, v in os.environ.items() if k not in _HOST_PYTHON_ENV}
        env.update({k: self.host_value(v) for k, v in self.env.items()})
        env.pop("PIP_NO_CACHE_DIR", None)  # the host's pip cache (see the module docstring)
        env.update(overrides)
        return env

    def host_argv(self, argv: list[str], env: dict[str, str]) -> list[str]:
        program = shutil.which(argv[0], path=env["PATH"])
        assert program is not None, f"{argv[0]} is not on the image's PATH"
        return [
            program,
            *(str(self.host(a)) if a.startswith(IMAGE_PREFIXES) else a for a in argv[1:]),
        ]

    def build(self, text: str) -> None:
        for keyword, arguments in instructions(text):
            if keyword == "FROM":
                self.base = arguments
                # The base image's PATH: its python first, like python:3.11-slim.
                self.env["PATH"] = base_path(self.root)
            elif keyword == "ENV":
                before = dict(self.env)  # one ENV sees only what earlier ones set
                for item in shlex.split(arguments):
                    name, _, value = item.partition("=")
                    self.env[name] = expand(value, before)
            elif keyword == "WORKDIR":
                self.workdir = os.path.join(self.workdir, expand(arguments, self.env))
                self.host(self.workdir).mkdir(parents=True, exist_ok=True)
            elif keyword == "COPY":
                self.copy(shlex.split(arguments))
            elif keyword == "RUN":
                self.run(arguments)
            elif keyword == "USER":
                self.user = arguments
            elif keyword == "EXPOSE":
                self.exposed += arguments.split()
            elif keyword == "HEALTHCHECK":
                _, _, command = arguments.partition(" CMD ")
                self.healthcheck = exec_form(command)
            elif keyword == "CMD":
                self.cmd = exec_form(arguments)
            else:
                raise AssertionError(f"the test does not know how to run {keyword}")

    def copy(self, args: list[str]) -> None:
        assert not any(a.startswith("--") for a in args), "COPY options are not modelled"
        *sources, dest = args
        dest = expand(dest, self.env)
        target = os.path.normpath(os.path.join(self.workdir, dest))
        into_dir = dest.endswith("/") or len(sources) > 1
        for source in sources:
            origin = ROOT / source
            assert origin.exists(), f"COPY {source}: no such file in the build context"
            where = self.host(target) / origin.name if into_dir else self.host(target)
            if origin.is_dir():
                shutil.copytree(origin, where, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                where.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, where)

    def run(self, command: str) -> None:
        literal = [p for p in IMAGE_PREFIXES if p in command]
        assert not literal, f"RUN names {literal} literally; use the ENV variables: {command}"
        self.runs.append(command)
        done = subprocess.run(
            ["sh", "-c", command],
            cwd=self.host(self.workdir),
            env=self.host_env(),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, f"RUN {command}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"


def base_path(root: Path) -> str:
    """A PATH whose `python` is a plain interpreter (not this test's virtualenv), like the
    base image's /usr/local/bin/python, followed by the host's PATH for sh, rm, ..."""
    shims = root / "base-image-bin"
    shims.mkdir(parents=True, exist_ok=True)
    python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for name in ("python", "python3"):
        link = shims / name
        if not link.exists():
            link.symlink_to(python)
    return os.pathsep.join([str(shims), os.environ.get("PATH", "/usr/bin:/bin")])


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The image built by the Dockerfile's steps (about 15 s: a venv and `pip install .`)."""
    built = Image(tmp_path_factory.mktemp("image"))
    built.build(DOCKERFILE.read_text())
    return built


@dataclass
class Running:
    image: Image
    port: int
    http_port: int
    env: dict[str, str]


@pytest.fixture
def running(image: Image, mariadb_cluster: Cluster, tmp_path: Path) -> Iterator[Running]:
    """The image's CMD serving docker/config.yaml, its backends pointed at the test cluster."""
    config = yaml.safe_load((DOCKER / "config.yaml").read_text())
    for index, backend in enumerate(config["backends"].values()):
        instance = mariadb_cluster.instances[index]
        backend.update(host=instance.host, port=instance.port, user="root", password="")
        instance.execute(f"CREATE DATABASE IF NOT EXISTS `{backend['database']}`")
    drop_orders(mariadb_cluster)
    port, http_port = free_port(), free_port()
    config["listen"]["port"] = port
    config["http"]["port"] = http_port
    config_file = image.host(CONFIG_PATH)
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    env = image.host_env(**CONFIG_ENV, SHARDPROXY_HEALTH_URL=f"http://127.0.0.1:{http_port}/health")
    log_path = tmp_path / "proxy.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            image.host_argv(image.cmd, env),
            cwd=tmp_path,  # not the repository: the proxy must come from the image's venv
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    try:
        wait_for_port(port, proc, log_path)
        yield Running(image, port, http_port, env)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        drop_orders(mariadb_cluster)


def drop_orders(cluster: Cluster) -> None:
    """The query loop's table, on every shard, straight on the backends."""
    for index, schema, table in physical_tables(cluster, "orders"):
        cluster.instances[index].execute(f"DROP TABLE IF EXISTS `{schema}`.`{table}`")


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the proxy exited: {log_path.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"the proxy never listened: {log_path.read_text(errors='replace')}")


# --- the Dockerfile -------------------------------------------------------------------------


def test_dockerfile_builds_a_slim_non_root_image_that_serves_the_mounted_config(
    image: Image,
) -> None:
    assert image.base == "python:3.11-slim"
    uid = image.user.split(":")[0]
    assert uid not in ("root", "0") and uid.isdigit() and int(uid) > 0
    assert image.cmd == ["shardproxy", "serve", "--config", CONFIG_PATH]
    assert {"3307", "9090"} <= set(image.exposed)
    assert any('pip" install .' in run or "pip install ." in run for run in image.runs)
    assert image.env["SHARDPROXY_HEALTH_URL"].endswith(":9090/health")
    assert image.healthcheck[0] == "python"
    # The install is a copy, not the repository: proxy and router come from site-packages.
    venv = image.host(image.env["VIRTUAL_ENV"])
    found = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import proxy.metrics, router; print(router.__file__)",
        ],
        cwd=image.root,
        env=image.host_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "site-packages" in found.stdout


def test_image_cmd_serves_queries_and_passes_its_healthcheck(running: Running) -> None:
    import pymysql

    conn = pymysql.connect(
        host="127.0.0.1", port=running.port, user="app", password="app", database="shop"
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1 + 1")
            assert cursor.fetchall() == ((2,),)
    finally:
        conn.close()
    image = running.image
    check = subprocess.run(
        image.host_argv(image.healthcheck, running.env),
        env=running.env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    unhealthy = subprocess.run(
        image.host_argv(image.healthcheck, running.env),
        env={**running.env, "SHARDPROXY_HEALTH_URL": f"http://127.0.0.1:{free_port()}/health"},
        capture_output=True,
        timeout=10,
        check=False,
    )
    assert unhealthy.returncode != 0


def mariadb_client(directory: Path, *options: str) -> str:
    """A PATH whose `mariadb` ignores the machine's option files (which may point at a system
    server) and adds `options`: the scripts run as in their containers, on our servers."""
    real = shutil.which("mariadb")
    if real is None:
        pytest.skip("needs the mariadb client (scripts/setup.sh installs it)")
    directory.mkdir(parents=True, exist_ok=True)
    wrapper = directory / "mariadb"
    args = " ".join(shlex.quote(o) for o in options)
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(real)} --no-defaults {args} "$@"\n')
    wrapper.chmod(0o755)
    return os.pathsep.join([str(directory), os.environ.get("PATH", "")])


def test_compose_application_loop_runs_through_the_image_proxy(
    running: Running, tmp_path: Path
) -> None:
    done = subprocess.run(
        ["sh", str(DOCKER / "app" / "query-loop.sh")],
        env={
            **os.environ,
            "PATH": mariadb_client(tmp_path / "bin"),
            "PROXY_PORT": str(running.port),
            "LOOPS": "3",
            "INTERVAL": "0",
            "APP_PASSWORD": "app",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if "order(s)" in line]
    assert lines == [
        "query-loop: user 1 has 1 order(s)",
        "query-loop: user 2 has 1 order(s)",
        "query-loop: user 3 has 1 order(s)",
    ]


# --- compose and Kubernetes files (checked as files: no engine or cluster here) -------------


def test_shard_init_script_creates_the_physical_databases(
    mariadb_base_dir: Path, tmp_path: Path
) -> None:
    server = MariaDBInstance("docker-initdb", free_port(), mariadb_base_dir)
    # The image's entrypoint runs init scripts against a server listening on a socket only.
    path = mariadb_client(tmp_path / "bin", f"--socket={server.socket_path}")
    server.start()
    try:
        done = subprocess.run(
            ["sh", str(DOCKER / "initdb" / "create-databases.sh")],
            env={
                **os.environ,
                "PATH": path,
                "SHARD_DATABASES": "shop_0 shop_9",
                "MARIADB_ROOT_PASSWORD": "",
            },
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        names = {row[0] for row in server.execute("SHOW DATABASES")}
        assert {"shop_0", "shop_9"} <= names
    finally:
        server.stop()


def test_compose_runs_the_proxy_as_the_application_sidecar() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"app", "proxy", "shard0", "shard1"} <= services.keys()
    proxy = services["proxy"]
    assert proxy["network_mode"] == "service:app"
    assert proxy["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert f"./config.yaml:{CONFIG_PATH}:ro" in proxy["volumes"]
    for name, database in (("shard0", "shop_0"), ("shard1", "shop_1")):
        shard = services[name]
        assert shard["environment"]["SHARD_DATABASES"] == database
        assert any("docker-entrypoint-initdb.d" in v for v in shard["volumes"])
    app_ports = services["app"]["ports"]
    assert any(p.endswith(":9090") for p in app_ports)
    for path in (*(v.split(":")[0] for v in proxy["volumes"]), "initdb/create-databases.sh"):
        assert (DOCKER / path).exists(), path

    config = load_config(str(DOCKER / "config.yaml"), CONFIG_ENV)
    hosts = {b.name: b.host for b in config.backends.values()}
    assert hosts == {"ds0": "shard0", "ds1": "shard1"}
    assert {b.database for b in config.backends.values()} == {"shop_0", "shop_1"}
    assert config.listen.host == "127.0.0.1"
    assert config.http is not None and config.http.port == 9090
    assert config.http.host == "0.0.0.0"


def test_kubernetes_pod_probes_the_sidecar_and_reads_the_configmap() -> None:
    documents = list(yaml.safe_load_all((DOCKER / "k8s-pod.yaml").read_text()))
    kinds = {doc["kind"]: doc for doc in documents}
    configmap, pod = kinds["ConfigMap"], kinds["Pod"]
    config = load_config_text(configmap["data"]["config.yaml"], "configmap", CONFIG_ENV)
    assert config.http is not None
    (proxy,) = [c for c in pod["spec"]["initContainers"] if c["name"] == "shardproxy"]
    assert proxy["restartPolicy"] == "Always"
    ports = {p["name"]: p["containerPort"] for p in proxy["ports"]}
    assert ports["http"] == config.http.port
    assert proxy["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert proxy["livenessProbe"]["httpGet"]["path"] == "/health"
    assert proxy["args"] == ["shardproxy", "serve", "--config", CONFIG_PATH]
    (mount,) = proxy["volumeMounts"]
    assert CONFIG_PATH.startswith(mount["mountPath"] + "/")
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes[mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
    env = {e["name"] for e in proxy["env"]}
    assert set(CONFIG_ENV) <= env
    # The same config as the compose demo's, apart from where passwords and hosts come from.
    compose_config = load_config(str(DOCKER / "config.yaml"), CONFIG_ENV)
    assert config.databases == compose_config.databases
    assert config.http == compose_config.http
