"""Several worker processes on one port (listen.workers > 1), and the supervisor that runs them.

The proxy is one asyncio thread, so one process uses at most one core. With `workers: N` the
`shardproxy serve` process becomes a supervisor: it starts N workers (`serve` again, with
`--worker-index`), each a whole proxy that binds the MySQL port with SO_REUSEPORT, so the
kernel spreads new connections over them. The supervisor

- restarts a worker that dies (logged, with a growing delay while it keeps dying at once);
- forwards SIGHUP (reload) and SIGTERM/SIGINT (graceful shutdown) to every worker and exits
  when they have all exited;
- serves the HTTP endpoints for all of them: /ready asks every worker, /metrics adds theirs up.

Each worker is an XA coordinator of its own (instance id `<instance>w<k>`, sharing the decision
log as separate proxy instances do), hands out connection ids k+1, k+1+N, ... and forwards
what concerns other workers' sessions over the control channel (proxy/workers_control.py).
A worker notices a supervisor that died without stopping it (SIGKILL) by the end of its stdin
and shuts down gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile

from prometheus_client import PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from proxy.http import HttpEndpoints
from proxy.metrics import WorkerMetrics, families_of
from proxy.workers_control import WorkerDown, ask
from router.config import Config, Listener
from router.config_loader import load_config
from router.errors import ConfigError

log = logging.getLogger("shardproxy.workers")

RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 10.0
# A worker that ran this long before dying is restarted after RESTART_DELAY again.
STABLE_AFTER = 30.0
# On SIGTERM workers get shutdown_grace, then this long to close, then SIGKILL.
EXIT_MARGIN = 15.0


class Supervisor:
    """Runs `count` workers serving `config` and keeps them running until told to stop."""

    def __init__(self, config: Config, config_path: str, count: int, log_level: str | None):
        self.config = config
        self.config_path = config_path
        self.count = count
        self.log_level = log_level
        self.instance = config.transactions.instance_id or secrets.token_hex(4)
        self.run_dir = ""
        self.processes: list[asyncio.subprocess.Process | None] = [None] * count
        self.restarts = [0] * count
        self.stopping = False
        self.merged = WorkerMetrics()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_SupervisorCollector(self))
        self.http: HttpEndpoints | None = None
        if config.http is not None:
            self.http = HttpEndpoints(config.http, self.ready, self.scrape)

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit code."""
        problem = port_in_use(self.config.listen)
        if problem is not None:
            log.error("cannot listen: %s", problem)
            return 1
        self.run_dir = tempfile.mkdtemp(prefix="shardproxy-")  # mode 0700
        try:
            if self.http is not None:
                await self.http.start()
            log.info(
                "starting %d workers on %s:%d (instance %s)",
                self.count,
                self.config.listen.host,
                self.config.listen.port,
                self.instance,
            )
            keepers = [asyncio.ensure_future(self._keep_running(k)) for k in range(self.count)]
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            loop.add_signal_handler(signal.SIGHUP, self._reload)
            await stop.wait()
            self.stopping = True
            grace = self.config.listen.shutdown_grace
            log.info("shutting down: workers get %d s to finish", grace)
            self._signal_all(signal.SIGTERM)
            _, late = await asyncio.wait(keepers, timeout=grace + EXIT_MARGIN)
            if late:
                log.error("%d worker(s) did not exit in time; killing them", len(late))
                self._signal_all(signal.SIGKILL)
                await asyncio.wait(late)
        finally:
            if self.http is not None:
                await self.http.close()
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return 0

    def _command(self, index: int) -> list[str]:
        command = [sys.executable, "-m", "proxy.cli", "serve", "--config", self.config_path]
        command += ["--workers", str(self.count), "--worker-index", str(index)]
        command += ["--run-dir", self.run_dir, "--instance", self.instance]
        if self.log_level is not None:
            command += ["--log-level", self.log_level]
        return command

    async def _keep_running(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        delay = RESTART_DELAY
        while not self.stopping:
            started = loop.time()
            # stdin stays an open pipe: its end tells the worker the supervisor is gone. A
            # session of its own: a terminal's Ctrl-C reaches the supervisor, which passes it on.
            process = await asyncio.create_subprocess_exec(
                *self._command(index), stdin=asyncio.subprocess.PIPE, start_new_session=True
            )
            self.processes[index] = process
            log.info("worker %d started (pid %d)", index, process.pid)
            if self.stopping:
                process.send_signal(signal.SIGTERM)
            code = await process.wait()
            self.processes[index] = None
            if self.stopping:
                log.info("worker %d (pid %d) exited with %d", index, process.pid, code)
                return
            if loop.time() - started >= STABLE_AFTER:
                delay = RESTART_DELAY
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            log.error(
                "worker %d (pid %d) died (%s); restarting it in %g s",
                index,
                process.pid,
                how,
                delay,
            )
            self.restarts[index] += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY)

    def _signal_all(self, signum: signal.Signals) -> None:
        for process in self.processes:
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signum)

    def _reload(self) -> None:
        """SIGHUP: every worker reloads the file (and logs what it refuses)."""
        try:
            config = load_config(self.config_path)
        except (ConfigError, OSError):
            config = None  # the workers log why
        if config is not None and (
            config.listen.workers != self.config.listen.workers or config.http != self.config.http
        ):
            log.warning("config reload: listen.workers and http take a restart; keeping them")
        self._signal_all(signal.SIGHUP)

    # --- HTTP: every worker's view ---------------------------------------------------------

    async def _ask(self, index: int, request: dict[str, object]) -> object:
        if self.processes[index] is None:
            raise WorkerDown(f"worker {index} is not running")
        return await ask(self.run_dir, index, request)

    async def ready(self) -> tuple[bool, dict[str, object]]:
        """Ready while every worker is ready (accepts clients and reaches every backend)."""
        answers = await asyncio.gather(
            *(self._ask(k, {"op": "ready"}) for k in range(self.count)), return_exceptions=True
        )
        workers: dict[str, object] = {}
        backends: dict[str, str] = {}
        accepting = True
        for index, answer in enumerate(answers):
            if isinstance(answer, BaseException):
                reason = str(answer) or type(answer).__name__
                workers[str(index)] = {"ready": False, "problem": reason}
                accepting = False
                continue
            assert isinstance(answer, list)
            details = answer[1]
            workers[str(index)] = details
            accepting = accepting and bool(details["accepting_clients"])
            for name, state in details["backends"].items():
                if backends.get(name, "ok") == "ok":
                    backends[name] = state
        ready = all(isinstance(w, dict) and w.get("ready") for w in workers.values())
        details = {
            "ready": ready,
            "accepting_clients": accepting,
            "backends": backends,
            "workers": workers,
        }
        return ready, details

    async def scrape(self) -> bytes:
        answers = await asyncio.gather(
            *(self._ask(k, {"op": "metrics"}) for k in range(self.count)), return_exceptions=True
        )
        for index, answer in enumerate(answers):
            process = self.processes[index]
            pid = process.pid if process is not None else None
            if isinstance(answer, dict) and answer["pid"] == pid:
                self.merged.update(index, pid, answer["families"])
            else:
                if isinstance(answer, BaseException) and not isinstance(answer, WorkerDown):
                    log.warning("worker %d did not report metrics: %s", index, answer)
                self.merged.update(index, pid, None)
        return generate_latest(self.registry)


class _SupervisorCollector(Collector):
    """The workers' metrics merged, the supervisor's own, and the supervisor process's."""

    def __init__(self, supervisor: Supervisor):
        self.supervisor = supervisor
        self.own = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.own)
        PlatformCollector(registry=self.own)

    def collect(self) -> list[Metric]:
        supervisor = self.supervisor
        running = GaugeMetricFamily("shardproxy_workers", "Worker processes running.")
        running.add_metric([], sum(p is not None for p in supervisor.processes))
        restarts = CounterMetricFamily(
            "shardproxy_worker_restarts",
            "Worker processes that died and were started again.",
            labels=["worker"],
        )
        for index, count in enumerate(supervisor.restarts):
            restarts.add_metric([str(index)], count)
        metrics = [*supervisor.merged.collect(), running, restarts]
        # The supervisor's own process, labelled like the workers' (worker="supervisor").
        by_name = {m.name: m for m in metrics}
        for name, documentation, kind, unit, samples in families_of(self.own):
            metric = by_name.get(name)
            if metric is None:
                metric = Metric(name, documentation, kind, unit)
                metrics.append(metric)
            for sample, labels, value in samples:
                metric.add_sample(sample, {**labels, "worker": "supervisor"}, value)
        return metrics


def port_in_use(listen: Listener) -> str | None:
    """Why the MySQL port can't be had, or None. Workers bind it with SO_REUSEPORT, which
    would quietly share it with another process of the same user (an old proxy still
    running) instead of failing: try it without first."""
    try:
        infos = socket.getaddrinfo(
            listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        return f"{listen.host}: {exc}"
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                return f"{listen.host}:{listen.port}: {exc.strerror}"
    return None


def watch_supervisor(stop: asyncio.Event) -> None:
    """In a worker: set `stop` when the supervisor's end of stdin closes (it died)."""
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(0, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(0)
            log.warning("the supervisor went away; shutting down")
            stop.set()

    os.set_blocking(0, False)
    loop.add_reader(0, readable)
