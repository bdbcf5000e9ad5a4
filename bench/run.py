"""End-to-end benchmark: sysbench through the proxy against a direct MariaDB, in one run.

    .venv/bin/python bench/run.py          # full run (~15 min): BENCHMARKS.md + bench/ratio.png
    .venv/bin/python bench/run.py --quick  # smaller data, shorter runs (~3 min), for iteration

What it does, in order:

1. installs what is missing: sysbench (apt-get), matplotlib and py-spy (bench/requirements.txt);
2. starts three private MariaDB servers with identical settings under bench/.run/ (two shards
   and one *direct* reference server the proxy never touches) and the proxy (sbtest1..N and
   `big` sharded by `id` with `mod` over the two shards);
3. `sysbench prepare` through the proxy and on the direct server, same seed, so both hold the
   same rows (checked by checksums), and checks the read_only statements' answers through the
   proxy against the direct server;
4. runs every workload (point select, oltp_read_only, oltp_write_only; text and prepared; 8 and
   32 threads) against the direct server and then the proxy, measuring QPS, p95 latency and the
   CPU each process used (from /proc), and the proxy's RSS;
5. runs the point selects again through a second proxy with 2 worker processes, and through a
   bare Python byte relay to the direct server (bench/bare_relay.py: the ceiling of any Python
   proxy on this machine);
6. profiles the proxy with py-spy during extra point-select runs;
7. opens 1,000 idle client connections and streams a 2,000,000-row scatter SELECT, sampling the
   proxy's RSS;
8. writes BENCHMARKS.md (repository root) and bench/ratio.png.

Everything it starts is stopped at the end (and killed if this script dies).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(BENCH))

import pymysql  # noqa: E402
from mariadb_instances import (  # noqa: E402
    HOST,
    MariaDBError,
    MariaDBInstance,
    die_with_parent,
    ensure_mariadb_installed,
    free_port,
)
from proxy_process import start_proxy  # noqa: E402

VENV_BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
DB = "sbtest"
USER, PASSWORD = "app", "app"
# Same settings on all three servers; a buffer pool that holds every table, so reads are
# served from memory on the direct server exactly as on the shards (each holds half).
SERVER_ARGS = ["--innodb-buffer-pool-size=768M", "--max-connections=500"]


@dataclass(frozen=True)
class Profile:
    """Sizes and durations of a run."""

    tables: int
    table_size: int
    seconds: int  # each measured sysbench run
    warmup: int  # a discarded run before each measured one
    threads: tuple[int, ...]
    big_rows: int
    idle_connections: int
    profile_seconds: int
    check_ranges: int  # random ranges per statement shape in the correctness check


FULL = Profile(
    tables=4,
    table_size=50_000,
    seconds=20,
    warmup=2,
    threads=(8, 32),
    big_rows=2_000_000,
    idle_connections=1000,
    profile_seconds=20,
    check_ranges=25,
)
QUICK = Profile(
    tables=2,
    table_size=10_000,
    seconds=3,
    warmup=1,
    threads=(8, 32),
    big_rows=200_000,
    idle_connections=1000,
    profile_seconds=5,
    check_ranges=5,
)


@dataclass(frozen=True)
class Workload:
    name: str  # label in the report
    script: str  # sysbench script
    target: float  # the minimum proxy/direct QPS ratio
    stretch: float | None = None
    extra: tuple[str, ...] = ()


POINT = Workload("point_select", "oltp_point_select", 0.35, 0.45)
READ_ONLY = Workload("oltp_read_only", "oltp_read_only", 0.25)
WRITE_ONLY = Workload("oltp_write_only", "oltp_write_only", 0.25)
MODES = {"text": "disable", "prepared": "auto"}
# Worker processes of the proxy in the extra point-select cases (Bench.run_workers).
WORKERS = 2
# Only a directory holding this file (or an empty or new one) is ever wiped as a run directory.
RUN_DIR_MARKER = ".shardproxy-bench-run"
# Other people's processes using more than this many cores during a run make it "noisy".
NOISY_CORES = 0.3
# --native shows time inside C (uvloop, system calls); unwinding native stacks pauses the
# proxy for a while at each sample, so the rate stays low.
PYSPY_EXTRA: list[str] = ["--native"]
PYSPY_RATE = 100


# --- setup --------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def as_root(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return command
    if shutil.which("sudo") is None:
        raise SystemExit(f"need root to run {' '.join(command)}")
    return ["sudo", "-n", *command]


def ensure_tools() -> None:
    """sysbench from apt, matplotlib and py-spy from PyPI into this venv, when missing."""
    ensure_mariadb_installed()
    if shutil.which("sysbench") is None:
        log("installing sysbench (apt-get)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "sysbench"],
        ):
            subprocess.run(as_root(command), env=env, check=True, stdin=subprocess.DEVNULL)
    missing = []
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        missing.append("matplotlib")
    if not (VENV_BIN / "py-spy").exists():
        missing.append("py-spy")
    if missing:
        log(f"installing {', '.join(missing)} from bench/requirements.txt")
        subprocess.run(
            [
                str(VENV_BIN / "pip"),
                "install",
                "-q",
                "--disable-pip-version-check",
                "-r",
                str(BENCH / "requirements.txt"),
            ],
            check=True,
        )


class Proxy:
    """The proxy as a child process (`shardproxy serve`)."""

    def __init__(self, config_path: Path, port: int, log_path: Path):
        self.config_path = config_path
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        # Clients log in as the proxy's user; the bare relay passes the server's root through.
        self.credentials = (USER, PASSWORD)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        command = [str(VENV_BIN / "shardproxy"), "serve", "--config", str(self.config_path)]
        self.proc = start_proxy(command, self.port, self.log_path)

    def connect(self, **kwargs) -> pymysql.Connection:
        return pymysql.connect(
            host=HOST, port=self.port, user=USER, password=PASSWORD, database=DB, **kwargs
        )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class BareRelay(Proxy):
    """bench/bare_relay.py in front of the direct server, measured as the proxy would be."""

    def __init__(self, server_port: int, port: int, log_path: Path):
        super().__init__(Path(), port, log_path)
        self.server_port = server_port
        self.credentials = ("root", "")

    def start(self) -> None:
        script = str(BENCH / "bare_relay.py")
        command = [sys.executable, script, f"--port={self.port}", f"--to={HOST}:{self.server_port}"]
        self.proc = start_proxy(command, self.port, self.log_path)


def proxy_config(port: int, shards: list[MariaDBInstance], tables: int, workers: int = 1) -> str:
    lines = [
        f"listen: {{host: {HOST}, port: {port}, workers: {workers}}}",
        f"users: [{{name: {USER}, password: {PASSWORD}}}]",
        "backends:",
    ]
    for i, shard in enumerate(shards):
        lines.append(
            f'  ds{i}: {{host: {HOST}, port: {shard.port}, user: root, password: "", '
            f"database: {DB}}}"
        )
    lines += ["databases:", f"  {DB}:", "    default_backend: ds0", "    tables:"]
    names = ", ".join(f"ds{i}" for i in range(len(shards)))
    for name in [f"sbtest{i}" for i in range(1, tables + 1)] + ["big"]:
        lines.append(f"      {name}: {{shard_key: id, algorithm: mod, backends: [{names}]}}")
    lines.append("transactions: {log_backend: ds0}")
    return "\n".join(lines) + "\n"


# --- /proc measurements -------------------------------------------------------------------


def proc_cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process (all its threads); zeros if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0, 0.0
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proxy_pids(pid: int) -> list[int]:
    """The proxy's process and its worker processes (listen.workers > 1)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(int(child) for child in children)]


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds; 0 if it is gone."""
    return sum(proc_cpu_split(pid))


def machine_cpu() -> tuple[float, float]:
    """(busy, interrupts) CPU seconds of the whole machine (every core), from /proc/stat;
    interrupts (irq + softirq, e.g. loopback TCP delivery) are not charged to any process."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK, (irq + softirq) / CLK_TCK


def all_processes_cpu() -> dict[int, tuple[float, bool]]:
    """pid -> (CPU seconds, is a kernel thread) for every process on the machine."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        ppid = int(fields[1])
        kernel = ppid == 2 or entry.name == "2"
        found[int(entry.name)] = ((int(fields[11]) + int(fields[12])) / CLK_TCK, kernel)
    return found


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (FileNotFoundError, ProcessLookupError):
        return 0


SERVER_COUNTERS = (
    "Questions",
    "Com_select",
    "Com_insert",
    "Com_update",
    "Com_delete",
    "Com_begin",
    "Com_commit",
    "Com_stmt_execute",
    "Com_xa_start",
    "Com_xa_end",
    "Com_xa_prepare",
    "Com_xa_commit",
    "Com_xa_rollback",
    "Innodb_log_writes",
    "Innodb_data_fsyncs",
)


def server_counters(instance: MariaDBInstance) -> dict[str, int]:
    names = ", ".join(f"'{n}'" for n in SERVER_COUNTERS)
    rows = instance.execute(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})")
    return {name: int(value) for name, value in rows}


def plan_cache_cost(config_path: Path, shapes: int = 6, rows: int = 2300) -> dict:
    """RSS growth of a Router per cached multi-row INSERT shape like sysbench prepare's
    (~2,300 rows, ~450 KB each; its row count, so the shape, changes as ids grow), measured
    in a child process so that this one's heap doesn't blur it."""
    code = f"""
import gc, json, random
from router.config_loader import load_config
from router.planner import Router
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * {PAGE}
router = Router(load_config({str(config_path)!r}))
rng = random.Random(1)
def digits(n):
    return '-'.join(str(rng.randrange(10**10, 10**11)) for _ in range(n))
def insert(start, n):
    rows = ','.join(f"({{i}}, {{rng.randrange(1, 50000)}}, '{{digits(10)}}', '{{digits(5)}}')"
                    for i in range(start, start + n))
    return 'INSERT INTO sbtest1(id, k, c, pad) VALUES' + rows
router.plan(insert(1, 10), {DB!r})
gc.collect()
samples = [rss()]
cache = getattr(router, "_shapes", None)
cached_before = len(cache) if cache is not None else None
start = 100
for j in range({shapes}):
    sql = insert(start, {rows} + j)
    router.plan(sql, {DB!r})
    start += {rows} + j
    gc.collect()
    samples.append(rss())
try:
    from router.normalize import normalize
    shape_chars = len(normalize(sql).shape)
except Exception:
    shape_chars = None
cached = len(cache) - cached_before if cache is not None else None
print(json.dumps({{"samples": samples, "rows": {rows}, "shapes": {shapes}, "cached": cached,
                  "text_chars": len(sql), "shape_chars": shape_chars}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        return {"error": done.stderr[-500:]}
    result = json.loads(done.stdout)
    samples = result["samples"]
    # The first big statement also grows the heap for the parse itself; later ones show what
    # each cached shape keeps.
    result["per_shape"] = (samples[-1] - samples[1]) / max(1, len(samples) - 2)
    return result


class RssSampler:
    """Samples one process's RSS in a thread; `peak` and `samples` afterwards."""

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = rss_bytes(self.pid)
            self.samples.append((time.monotonic() - self._t0, rss))
            self.peak = max(self.peak, rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        rss = rss_bytes(self.pid)
        self.peak = max(self.peak, rss)


# --- sysbench -----------------------------------------------------------------------------


@dataclass
class SysbenchResult:
    ok: bool
    queries: int = 0
    transactions: int = 0
    qps: float = 0.0
    tps: float = 0.0
    avg_ms: float = 0.0
    p95_ms: float = 0.0
    ignored_errors: int = 0
    reconnects: int = 0
    seconds: float = 0.0
    fatal: str = ""  # the first fatal messages when sysbench failed
    ignore_all: bool = False  # rerun with --mysql-ignore-errors=all after a failure
    command: str = ""


@dataclass
class Measured:
    """One sysbench run against one target, with the CPU every part of the system used."""

    sysbench: SysbenchResult
    wall: float
    # CPU seconds: client (sysbench), proxy, backends (our MariaDB servers), kernel
    # (interrupts and kernel threads), others (everybody else's processes), unattributed
    # (the rest of the machine's busy time: mostly processes that came and went)
    cpu: dict[str, float]
    proxy_rss_peak: int = 0
    proxy_system: float = 0.0  # of the proxy's CPU seconds, those spent in the kernel
    # Server status counters (SHOW GLOBAL STATUS) summed over the servers that did the work.
    server: dict[str, int] = field(default_factory=dict)
    # irq + softirq seconds (/proc/stat), already inside the processes' times above.
    interrupts: float = 0.0

    def foreign_cores(self) -> float:
        """Cores other people's work took during the run: their processes, and busy time
        charged to nobody of ours (mostly their short-lived processes)."""
        return (self.cpu.get("others", 0.0) + self.cpu.get("unattributed", 0.0)) / self.wall

    def per_query_us(self, part: str) -> float:
        queries = self.sysbench.queries
        return self.cpu.get(part, 0.0) / queries * 1e6 if queries else 0.0


def parse_sysbench(text: str) -> SysbenchResult:
    def number(pattern: str, default: float = 0.0) -> float:
        match = re.search(pattern, text)
        return float(match.group(1)) if match else default

    qps = re.search(r"queries:\s+(\d+)\s+\(([\d.]+) per sec", text)
    tps = re.search(r"transactions:\s+(\d+)\s+\(([\d.]+) per sec", text)
    result = SysbenchResult(ok=qps is not None)
    if qps:
        result.queries = int(qps.group(1))
        result.qps = float(qps.group(2))
    if tps:
        result.transactions = int(tps.group(1))
        result.tps = float(tps.group(2))
    result.avg_ms = number(r"avg:\s+([\d.]+)")
    result.p95_ms = number(r"95th percentile:\s+([\d.]+)")
    result.ignored_errors = int(number(r"ignored errors:\s+(\d+)"))
    result.reconnects = int(number(r"reconnects:\s+(\d+)"))
    result.seconds = number(r"total time:\s+([\d.]+)s")
    fatal = [line.strip() for line in text.splitlines() if "FATAL" in line or "ALERT" in line]
    result.fatal = "\n".join(dict.fromkeys(fatal))[:1500]
    return result


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.profile = QUICK if args.quick else FULL
        self.run_dir = Path(args.run_dir).resolve()
        self.shards: list[MariaDBInstance] = []
        self.direct: MariaDBInstance | None = None
        self.proxy: Proxy | None = None
        # Budgets against other people's jobs on the shared machine: cases measured again,
        # and seconds spent waiting for the machine to be quiet before a case.
        self.retries_left = 0 if args.quick else 4
        self.quiet_budget = 0.0 if args.quick else 180.0
        self.results: dict = {
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join([".venv/bin/python", "bench/run.py", *sys.argv[1:]]),
            "quick": args.quick,
            "profile": asdict(self.profile),
            "cases": [],
            "notes": [],
        }

    # -- lifecycle -----------------------------------------------------------------------

    def check_run_dir(self) -> None:
        """Refuse to wipe a directory that isn't a run directory (or the default one)."""
        marker = self.run_dir / RUN_DIR_MARKER
        ours = marker.exists() or self.run_dir == (BENCH / ".run").resolve()
        if self.run_dir.exists() and any(self.run_dir.iterdir()) and not ours:
            raise SystemExit(f"{self.run_dir} is not empty and not a run directory of ours")

    def start_servers(self) -> None:
        marker = self.run_dir / RUN_DIR_MARKER
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        marker.touch()
        for name in ("shard0", "shard1", "direct"):
            instance = MariaDBInstance(name, free_port(), self.run_dir, extra_args=SERVER_ARGS)
            try:
                instance.start()
            except MariaDBError as exc:  # seen once: mariadb-install-db losing a /tmp file
                log(f"{name} failed to start, retrying once: {str(exc)[-200:]}")
                shutil.rmtree(self.run_dir / "_template", ignore_errors=True)
                shutil.rmtree(instance.dir, ignore_errors=True)
                instance.start()
            instance.execute(f"CREATE DATABASE {DB}")
            if name == "direct":
                self.direct = instance
            else:
                self.shards.append(instance)
        port = free_port()
        config_path = self.run_dir / "proxy.yaml"
        config_path.write_text(proxy_config(port, self.shards, self.profile.tables))
        self.proxy = Proxy(config_path, port, self.run_dir / "proxy.log")
        self.proxy.start()
        self.results["proxy_rss_start"] = rss_bytes(self.proxy.pid)
        log(
            f"servers up: shards on {[s.port for s in self.shards]}, direct on "
            f"{self.direct.port}, proxy on {port} (pid {self.proxy.pid})"
        )

    def stop_all(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        for instance in [*self.shards, *([self.direct] if self.direct else [])]:
            with contextlib.suppress(Exception):
                instance.stop()

    # -- sysbench ------------------------------------------------------------------------

    def sysbench_command(
        self,
        target: str,
        script: str,
        command: str,
        threads: int,
        mode: str = "text",
        seconds: int = 0,
        extra: tuple[str, ...] = (),
    ) -> list[str]:
        assert self.proxy is not None and self.direct is not None
        if target == "proxy":
            user, password = self.proxy.credentials
            conn = [
                f"--mysql-port={self.proxy.port}",
                f"--mysql-user={user}",
                f"--mysql-password={password}",
            ]
        else:
            conn = [f"--mysql-port={self.direct.port}", "--mysql-user=root", "--mysql-password="]
        return [
            "sysbench",
            script,
            f"--threads={threads}",
            f"--tables={self.profile.tables}",
            f"--table-size={self.profile.table_size}",
            "--auto-inc=off",
            "--rand-type=uniform",
            f"--mysql-host={HOST}",
            *conn,
            f"--mysql-db={DB}",
            f"--db-ps-mode={MODES[mode]}",
            *([f"--time={seconds}", "--report-interval=0", "--percentile=95"] if seconds else []),
            *extra,
            command,
        ]

    def pids(self) -> dict[str, list[int]]:
        assert self.proxy is not None and self.direct is not None
        return {
            "proxy": proxy_pids(self.proxy.pid),
            "backends": [pid for s in [*self.shards, self.direct] if (pid := s.pid())],
        }

    def run_sysbench(self, command: list[str], timeout: float) -> tuple[str, int, float, float]:
        """Run sysbench; (output, exit code, its CPU seconds, wall seconds)."""
        out_path = self.run_dir / "sysbench.out"
        began = time.monotonic()
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        deadline = began + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - began
        return (
            out_path.read_text(errors="replace"),
            proc.returncode,
            usage.ru_utime + usage.ru_stime,
            wall,
        )

    def measure(self, target: str, workload: Workload, threads: int, mode: str) -> Measured:
        profile = self.profile
        if profile.warmup:
            warm = self.sysbench_command(
                target, workload.script, "run", threads, mode, profile.warmup, workload.extra
            )
            self.run_sysbench(warm, profile.warmup + 60)
        command = self.sysbench_command(
            target, workload.script, "run", threads, mode, profile.seconds, workload.extra
        )
        measured = self._measure_once(target, command)
        if not measured.sysbench.ok or measured.sysbench.fatal:
            first = measured.sysbench
            log(f"  {target}: sysbench failed: {first.fatal.splitlines()[:1]}")
            # The run died on an error: measure again ignoring every error, so the table shows
            # a throughput and how many errors it took, next to the failure itself.
            retry = [*command[:-1], "--mysql-ignore-errors=all", command[-1]]
            measured = self._measure_once(target, retry)
            measured.sysbench.ignore_all = True
            measured.sysbench.fatal = first.fatal
        return measured

    def _measure_once(self, target: str, command: list[str]) -> Measured:
        pids = self.pids()
        assert self.proxy is not None and self.direct is not None
        servers = self.shards if target == "proxy" else [self.direct]
        counters_before = [server_counters(s) for s in servers]
        before = {part: sum(proc_cpu_seconds(p) for p in ps) for part, ps in pids.items()}
        everyone_before = all_processes_cpu()
        busy_before, irq_before = machine_cpu()
        system_before = sum(proc_cpu_split(pid)[1] for pid in pids["proxy"])
        with RssSampler(self.proxy.pid, 0.25) as rss:
            output, code, client_cpu, wall = self.run_sysbench(command, self.profile.seconds + 120)
        busy, irq = machine_cpu()
        busy -= busy_before
        everyone = all_processes_cpu()
        cpu = {
            part: sum(proc_cpu_seconds(p) for p in ps) - before[part] for part, ps in pids.items()
        }
        cpu["client"] = client_cpu
        ours = {os.getpid(), *(p for ps in pids.values() for p in ps)}
        kernel = others = 0.0
        for pid, (seconds, is_kernel) in everyone.items():
            if pid in ours:
                continue
            delta = seconds - everyone_before.get(pid, (0.0, False))[0]
            if is_kernel:
                kernel += delta
            else:
                others += delta
        # Kernel threads only: this kernel (no CONFIG_IRQ_TIME_ACCOUNTING) charges interrupt
        # and softirq time to the process it interrupted as well as to /proc/stat's irq
        # columns, so adding those would count it twice.
        cpu["kernel"] = kernel
        cpu["others"] = others
        cpu["unattributed"] = max(0.0, busy - sum(cpu.values()))
        result = parse_sysbench(output)
        result.command = " ".join(command)
        if code != 0 and not result.fatal:
            result.fatal = f"sysbench exited with {code}: " + output[-500:]
        if code != 0:
            result.ok = False
        system = sum(proc_cpu_split(pid)[1] for pid in pids["proxy"]) - system_before
        counters: dict[str, int] = {}
        for server, old in zip(servers, counters_before, strict=True):
            for name, value in server_counters(server).items():
                counters[name] = counters.get(name, 0) + value - old.get(name, 0)
        interrupts = irq - irq_before
        if target == "proxy":
            return Measured(result, wall, cpu, rss.peak, system, counters, interrupts)
        return Measured(result, wall, cpu, server=counters, interrupts=interrupts)

    # -- phases --------------------------------------------------------------------------

    def prepare(self) -> None:
        profile = self.profile
        for target in ("direct", "proxy"):
            threads = profile.tables  # one thread per table: same seed, same rows everywhere
            command = self.sysbench_command(
                target, "oltp_read_write", "prepare", threads, extra=("--rand-seed=1",)
            )
            began = time.monotonic()
            output, code, _, _ = self.run_sysbench(command, 3600)
            took = time.monotonic() - began
            self.results[f"prepare_{target}_seconds"] = round(took, 1)
            if code != 0:
                (self.run_dir / f"prepare-{target}.out").write_text(output)
                raise SystemExit(
                    f"sysbench prepare via {target} failed ({code}):\n{output[-2000:]}"
                )
            rows = f"{profile.tables} x {profile.table_size} rows"
            log(f"prepared {rows} via {target} in {took:.1f} s")
        self.results["data"] = self.compare_data()
        self.copy_for_check()

    def table_checksums(self, instance: MariaDBInstance) -> dict[str, tuple[int, int]]:
        sums = {}
        with contextlib.closing(instance.connect(DB)) as conn, conn.cursor() as cur:
            for i in range(1, self.profile.tables + 1):
                cur.execute(
                    f"SELECT COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS(',', id, k, c, pad))), 0) "
                    f"FROM sbtest{i}"
                )
                count, total = cur.fetchone()
                sums[f"sbtest{i}"] = (int(count), int(total))
        return sums

    def compare_data(self) -> dict:
        """Row counts and checksums of the proxied data (summed over the shards) and direct."""
        assert self.direct is not None
        direct = self.table_checksums(self.direct)
        shards = [self.table_checksums(s) for s in self.shards]
        merged = {t: (sum(s[t][0] for s in shards), sum(s[t][1] for s in shards)) for t in direct}
        spread = {t: [s[t][0] for s in shards] for t in direct}
        log(f"rows per shard: {spread}")
        return {"direct": direct, "shards": merged, "spread": spread}

    def copy_for_check(self) -> None:
        """sysbench's data differs from one prepare to the next even with --rand-seed, so the
        answers are checked against a copy of the proxied sbtest1 on the direct server."""
        assert self.direct is not None
        self.direct.execute("CREATE DATABASE IF NOT EXISTS sbcheck")
        self.direct.execute("CREATE TABLE sbcheck.sbtest1 LIKE sbtest.sbtest1")
        with contextlib.closing(self.direct.connect("sbcheck")) as target:
            cur = target.cursor()
            for shard in self.shards:
                with contextlib.closing(
                    shard.connect(DB, cursorclass=pymysql.cursors.SSCursor)
                ) as source:
                    reader = source.cursor()
                    reader.execute("SELECT id, k, c, pad FROM sbtest1")
                    while batch := reader.fetchmany(5000):
                        cur.executemany(
                            "INSERT INTO sbtest1 (id, k, c, pad) VALUES (%s, %s, %s, %s)", batch
                        )
        copied = self.direct.execute("SELECT COUNT(*) FROM sbcheck.sbtest1")[0][0]
        log(f"copied the proxied sbtest1 ({copied} rows) to the direct server for the check")

    def check_answers(self) -> list[dict]:
        """Each oltp_read_only statement through the proxy vs on the direct server."""
        assert self.proxy is not None and self.direct is not None
        rng = random.Random(7)
        size = self.profile.table_size
        shapes = [
            ("point select", "SELECT c FROM sbtest1 WHERE id=%s", 1, "rows"),
            ("simple range", "SELECT c FROM sbtest1 WHERE id BETWEEN %s AND %s", 2, "multiset"),
            ("SUM range", "SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN %s AND %s", 2, "rows"),
            (
                "ORDER BY range",
                "SELECT c FROM sbtest1 WHERE id BETWEEN %s AND %s ORDER BY c",
                2,
                "rows",
            ),
            (
                "DISTINCT range",
                "SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN %s AND %s ORDER BY c",
                2,
                "rows",
            ),
        ]
        cases = []
        for _ in range(self.profile.check_ranges):
            start = rng.randint(1, size - 99)
            cases.append((start, start + 99))
        checks = []
        clients, closers = self._check_clients()
        try:
            for label, sql, nparams, compare in shapes:
                for mode, (proxy_query, direct_query) in clients.items():
                    outcome = {
                        "statement": label,
                        "sql": sql.replace("%s", "?"),
                        "mode": mode,
                        "checked": 0,
                        "wrong": 0,
                        "error": None,
                        "example": None,
                    }
                    for low, high in cases:
                        params = (low,) if nparams == 1 else (low, high)
                        want = direct_query(sql, params)
                        try:
                            got = proxy_query(sql, params)
                        except Exception as exc:  # a driver error: record it, stop this shape
                            outcome["error"] = _error_text(exc)
                            break
                        outcome["checked"] += 1
                        same = (
                            (sorted(got) == sorted(want)) if compare == "multiset" else got == want
                        )
                        if not same:
                            outcome["wrong"] += 1
                            if outcome["example"] is None:
                                outcome["example"] = _diff_text(got, want)
                    checks.append(outcome)
        finally:
            for closer in closers:
                closer()
        for c in checks:
            state = c["error"] or (f"{c['wrong']}/{c['checked']} wrong" if c["wrong"] else "ok")
            log(f"  check {c['statement']:<15} {c['mode']:<8} {state}")
        return checks

    def _check_clients(self) -> tuple[dict, list]:
        """({mode: (proxy_query, direct_query)}, closers): text via PyMySQL, prepared via
        mysql-connector; the direct side reads the copy in database sbcheck."""
        assert self.proxy is not None and self.direct is not None
        closers = []
        proxy_text = self.proxy.connect(autocommit=True)
        direct_text = self.direct.connect("sbcheck")
        closers += [proxy_text.close, direct_text.close]

        def text(conn):
            def query(sql, params):
                with conn.cursor() as cur:
                    cur.execute(sql, params)
                    return [tuple(row) for row in cur.fetchall()]

            return query

        clients: dict = {"text": (text(proxy_text), text(direct_text))}
        try:
            import mysql.connector
        except ImportError:
            self.results["notes"].append("mysql-connector-python missing: prepared check skipped")
        else:

            def prepared(**kwargs):
                conn = mysql.connector.connect(host=HOST, autocommit=True, use_pure=True, **kwargs)
                closers.append(conn.close)

                def query(sql, params):
                    cur = conn.cursor(prepared=True)
                    try:
                        cur.execute(sql, params)
                        rows = [tuple(_plain(v) for v in row) for row in cur.fetchall()]
                    finally:
                        cur.close()
                    return rows

                return query

            clients["prepared"] = (
                prepared(port=self.proxy.port, user=USER, password=PASSWORD, database=DB),
                prepared(port=self.direct.port, user="root", password="", database="sbcheck"),
            )
        return clients, closers

    def run_matrix(self) -> None:
        profile = self.profile
        plan: list[tuple[Workload, int, str]] = []
        for workload in (POINT, READ_ONLY, WRITE_ONLY):
            for mode in MODES:
                for threads in profile.threads:
                    plan.append((workload, threads, mode))
        plan.insert(0, (POINT, 1, "text"))  # unsaturated latency, for context
        for workload, threads, mode in plan:
            self.wait_quiet()
            log(f"{workload.name} {mode} {threads} threads")
            case = {
                "workload": workload.name,
                "threads": threads,
                "mode": mode,
                "target": workload.target,
                "stretch": workload.stretch,
            }
            best: dict[str, Measured] | None = None
            best_noise = 0.0
            for attempt in range(1, 3):
                pair = {}
                for target in ("direct", "proxy"):
                    measured = self.measure(target, workload, threads, mode)
                    pair[target] = measured
                    sb = measured.sysbench
                    log(
                        f"  {target:<6} {sb.qps:9.0f} qps  p95 {sb.p95_ms:6.2f} ms  "
                        f"errors {sb.ignored_errors}  cpu {_cpu_text(measured)}"
                        + ("  FAILED" if sb.fatal else "")
                    )
                noise = max(m.foreign_cores() for m in pair.values())
                if best is None or noise < best_noise:
                    best, best_noise = pair, noise
                    case["attempt"] = attempt
                if noise <= NOISY_CORES or self.retries_left <= 0:
                    break
                # Someone else's job took a good share of the machine: measure the pair again
                # (a limited number of times per run) and keep the quieter one.
                self.retries_left -= 1
                log(f"  others used {noise:.2f} cores: measuring this case again")
            assert best is not None
            case["attempts"] = attempt
            case.update({target: asdict(m) for target, m in best.items()})
            self.results["cases"].append(case)
            self._save()

    def run_workers(self) -> None:
        """Point selects at 8 threads again, direct and through a second proxy that runs
        WORKERS worker processes on its port (listen.workers): one event loop is one core."""
        port = free_port()
        config = self.run_dir / "proxy-workers.yaml"
        config.write_text(proxy_config(port, self.shards, self.profile.tables, WORKERS))
        multi = Proxy(config, port, self.run_dir / "proxy-workers.log")
        label = f"proxy with {WORKERS} workers"
        self._point_selects_through(multi, label, "workers_cases", {"workers": WORKERS})

    def run_relay(self) -> None:
        """Point selects at 8 threads again, direct and through the bare Python relay in front
        of the direct server (bench/bare_relay.py): the best a Python proxy could do here."""
        assert self.direct is not None
        relay = BareRelay(self.direct.port, free_port(), self.run_dir / "bare-relay.log")
        self._point_selects_through(relay, "bare relay", "relay_cases", {})

    def _point_selects_through(
        self, stand_in: Proxy, label: str, results_key: str, extra: dict[str, object]
    ) -> None:
        """Point selects at 8 threads in both modes, direct and through `stand_in` in the
        proxy's place; its measures are kept where a case keeps the proxy's (report.py)."""
        stand_in.start()
        proxy, self.proxy = self.proxy, stand_in
        try:
            for mode in MODES:
                self.wait_quiet()
                log(f"point_select {mode} 8 threads, {label}")
                pair = {}
                for target in ("direct", "proxy"):
                    pair[target] = measured = self.measure(target, POINT, 8, mode)
                    sb = measured.sysbench
                    log(
                        f"  {target:<6} {sb.qps:9.0f} qps  p95 {sb.p95_ms:6.2f} ms  "
                        f"errors {sb.ignored_errors}  cpu {_cpu_text(measured)}"
                    )
                case = {"workload": POINT.name, "threads": 8, "mode": mode, **extra}
                case.update({target: asdict(m) for target, m in pair.items()})
                self.results.setdefault(results_key, []).append(case)
                self._save()
        finally:
            self.proxy = proxy
            stand_in.stop()

    def others_cores(self, seconds: float = 2.0) -> float:
        """Cores the rest of the machine uses right now: its busy time minus our processes'
        (short-lived processes included, which a per-process count would miss)."""
        pids = self.pids()
        ours = [os.getpid(), *(p for ps in pids.values() for p in ps)]
        busy_before = machine_cpu()[0]
        ours_before = sum(proc_cpu_seconds(p) for p in ours)
        time.sleep(seconds)
        busy = machine_cpu()[0] - busy_before
        used = busy - (sum(proc_cpu_seconds(p) for p in ours) - ours_before)
        return max(0.0, used) / seconds

    def wait_quiet(self) -> None:
        """Before a case, wait (within a budget per run) while others keep the machine busy."""
        if self.quiet_budget <= 0:
            return
        began = time.monotonic()
        busy = self.others_cores()
        if busy <= NOISY_CORES:
            return
        log(f"others use {busy:.2f} cores: waiting up to {self.quiet_budget:.0f} s for quiet")
        while busy > NOISY_CORES and time.monotonic() - began < self.quiet_budget:
            time.sleep(3.0)
            busy = self.others_cores()
        waited = time.monotonic() - began
        self.quiet_budget -= waited
        self.results["waited_for_quiet_seconds"] = round(
            self.results.get("waited_for_quiet_seconds", 0) + waited
        )
        log(f"  waited {waited:.0f} s; others now use {busy:.2f} cores")

    def profile_proxy(self) -> None:
        """py-spy during extra proxy runs (not the measured ones: sampling costs a little)."""
        assert self.proxy is not None
        targets = [(POINT, 8, "text"), (POINT, 8, "prepared")]
        if not self.args.quick:
            targets += [(READ_ONLY, 8, "prepared"), (WRITE_ONLY, 8, "prepared")]
        profiles = []
        for workload, threads, mode in targets:
            seconds = self.profile.profile_seconds
            raw = self.run_dir / f"pyspy-{workload.name}-{mode}-{threads}.txt"
            command = self.sysbench_command(
                "proxy", workload.script, "run", threads, mode, seconds + 3, workload.extra
            )
            self.wait_quiet()
            user0, system0 = proc_cpu_split(self.proxy.pid)
            with open(self.run_dir / "sysbench-profile.out", "wb") as out:
                bench = subprocess.Popen(
                    command,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=die_with_parent,
                )
            time.sleep(1.0)
            spy = subprocess.run(
                [
                    str(VENV_BIN / "py-spy"),
                    "record",
                    "--pid",
                    str(self.proxy.pid),
                    "--rate",
                    str(PYSPY_RATE),
                    "--duration",
                    str(seconds),
                    "--format",
                    "raw",
                    "--function",
                    *PYSPY_EXTRA,
                    "-o",
                    str(raw),
                ],
                capture_output=True,
                text=True,
            )
            bench.wait()
            user1, system1 = proc_cpu_split(self.proxy.pid)
            sysbench = parse_sysbench((self.run_dir / "sysbench-profile.out").read_text())
            if spy.returncode != 0 or not raw.exists():
                log(f"py-spy failed: {spy.stderr.strip()[-300:]}")
                self.results["notes"].append(f"py-spy failed: {spy.stderr.strip()[-300:]}")
                continue
            profiles.append(
                {
                    "workload": workload.name,
                    "mode": mode,
                    "threads": threads,
                    "seconds": seconds,
                    "rate": PYSPY_RATE,
                    "qps": sysbench.qps,
                    "queries": sysbench.queries,
                    "transactions": sysbench.transactions,
                    "proxy_user": user1 - user0,
                    "proxy_system": system1 - system0,
                    "raw": raw.read_text(),
                }
            )
            log(f"profiled {workload.name} {mode}: {sysbench.qps:.0f} qps under py-spy")
        self.results["profiles"] = profiles

    def memory(self) -> None:
        """1,000 idle connections on the proxy that ran the workloads, then on a fresh one
        (which shows the cost per connection without free memory left by the workloads), and
        the scatter SELECT on the fresh one."""
        assert self.proxy is not None
        idle = {"warm": asyncio.run(self._idle_connections())}
        self.proxy.stop()
        self.proxy.start()
        time.sleep(1.0)
        idle["fresh_start"] = rss_bytes(self.proxy.pid)
        idle["fresh"] = asyncio.run(self._idle_connections())
        self.results["idle"] = idle
        for kind in ("warm", "fresh"):
            i = idle[kind]
            log(
                f"idle ({kind} proxy): {i['opened']} connections, proxy RSS "
                f"{_mb(i['rss_before'])} -> {_mb(i['rss_idle'])} MB ({i['failed']} failed)"
            )
        self.results["scatter"] = self.scatter()

    async def _idle_connections(self) -> dict:
        import aiomysql

        assert self.proxy is not None
        n = self.profile.idle_connections
        gate = asyncio.Semaphore(64)
        conns = []

        async def one():
            async with gate:
                conn = await aiomysql.connect(
                    host=HOST,
                    port=self.proxy.port,
                    user=USER,
                    password=PASSWORD,
                    db=DB,
                    autocommit=True,
                )
                conns.append(conn)

        rss_before = rss_bytes(self.proxy.pid)
        began = time.monotonic()
        results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
        opened_in = time.monotonic() - began
        failures = [r for r in results if isinstance(r, BaseException)]
        await asyncio.sleep(2.0)
        rss_idle = rss_bytes(self.proxy.pid)
        pings = await asyncio.gather(*(c.ping(False) for c in conns), return_exceptions=True)
        ping_failures = sum(isinstance(r, BaseException) for r in pings)
        rss_after_ping = rss_bytes(self.proxy.pid)
        for conn in conns:
            conn.close()
        await asyncio.sleep(2.0)
        return {
            "requested": n,
            "opened": len(conns),
            "failed": len(failures),
            "failure": _error_text(failures[0]) if failures else None,
            "open_seconds": round(opened_in, 2),
            "ping_failures": ping_failures,
            "rss_before": rss_before,
            "rss_idle": rss_idle,
            "rss_after_ping": rss_after_ping,
            "rss_after_close": rss_bytes(self.proxy.pid),
        }

    def load_big(self) -> None:
        """`big` with profile.big_rows rows: split by id % 2 on the shards, whole on direct.

        Filled on each server with MariaDB's sequence engine (loading 2M rows through any
        client would dominate the run); the table itself is created through the proxy."""
        assert self.proxy is not None and self.direct is not None
        rows = self.profile.big_rows
        ddl = (
            "CREATE TABLE big (id INT NOT NULL PRIMARY KEY, k INT NOT NULL, "
            "c CHAR(100) NOT NULL) ENGINE=InnoDB"
        )
        with contextlib.closing(self.proxy.connect(autocommit=True)) as conn:
            conn.cursor().execute(ddl)
        self.direct.execute(ddl, database=DB)
        fill = (
            "INSERT INTO big SELECT seq, seq % 1000, CONCAT(MD5(seq), MD5(seq + 1), "
            "LEFT(MD5(seq + 2), 36)) FROM seq_{lo}_to_{hi}{step}"
        )
        began = time.monotonic()
        threads = [
            threading.Thread(
                target=s.execute,
                args=(fill.format(lo=i, hi=rows - 1, step="_step_2"),),
                kwargs={"database": DB},
            )
            for i, s in enumerate(self.shards)
        ] + [
            threading.Thread(
                target=self.direct.execute,
                args=(fill.format(lo=0, hi=rows - 1, step=""),),
                kwargs={"database": DB},
            )
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        log(f"loaded big: {rows} rows in {time.monotonic() - began:.1f} s")

    def scatter(self) -> dict:
        """Stream `SELECT * FROM big` unbuffered through the proxy, sampling its RSS."""
        assert self.proxy is not None and self.direct is not None
        out: dict = {"rows_expected": self.profile.big_rows}
        sql = "SELECT id, k, c FROM big"
        for target in ("direct", "proxy"):
            if target == "proxy":
                conn = self.proxy.connect(cursorclass=pymysql.cursors.SSCursor)
            else:
                conn = self.direct.connect(DB, cursorclass=pymysql.cursors.SSCursor)
            rss_before = rss_bytes(self.proxy.pid)
            cpu_before = proc_cpu_seconds(self.proxy.pid)
            with contextlib.closing(conn), RssSampler(self.proxy.pid, 0.05) as rss:
                began = time.monotonic()
                cur = conn.cursor()
                cur.execute(sql)
                first = None
                rows = 0
                while batch := cur.fetchmany(10_000):
                    if first is None:
                        first = time.monotonic() - began
                    rows += len(batch)
                took = time.monotonic() - began
                cur.close()
            out[target] = {
                "rows": rows,
                "seconds": round(took, 2),
                "first_row_seconds": round(first or 0.0, 3),
                "rows_per_second": round(rows / took) if took else 0,
            }
            if target == "proxy":
                out[target].update(
                    {
                        "rss_before": rss_before,
                        "rss_peak": rss.peak,
                        "rss_after": rss_bytes(self.proxy.pid),
                        "cpu_seconds": round(proc_cpu_seconds(self.proxy.pid) - cpu_before, 2),
                        "rss_samples": rss.samples[:: max(1, len(rss.samples) // 200)],
                    }
                )
            log(
                f"scatter via {target}: {rows} rows in {took:.1f} s"
                + (f", proxy RSS peak {_mb(rss.peak)} MB" if target == "proxy" else "")
            )
        return out

    def after_writes(self) -> None:
        """write_only deletes and reinserts the same ids: row counts must be unchanged."""
        assert self.direct is not None
        direct = self.table_checksums(self.direct)
        shards = [self.table_checksums(s) for s in self.shards]
        self.results["rows_after_writes"] = {
            t: {"direct": direct[t][0], "shards": sum(s[t][0] for s in shards)} for t in direct
        }

    def environment(self) -> None:
        cpu = "unknown"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
        assert self.direct is not None
        (version,) = self.direct.execute("SELECT VERSION()")[0]
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "proxy", "router"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        sysbench_version = subprocess.run(
            ["sysbench", "--version"], capture_output=True, text=True
        ).stdout.strip()
        self.results["environment"] = {
            "cpu": cpu,
            "cores": os.cpu_count(),
            "memory_gb": round(mem / 2**30, 1),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "mariadb": version,
            "sysbench": sysbench_version,
            "commit": commit,
            "proxy_router_dirty": bool(dirty),
            "hostname": socket.gethostname(),
            "load_before": os.getloadavg(),
        }

    def _save(self) -> None:
        (self.run_dir / "results.json").write_text(json.dumps(self.results, indent=1))

    def run(self) -> None:
        self.check_run_dir()
        ensure_tools()
        began = time.monotonic()
        try:
            self.start_servers()
            self.environment()
            self.prepare()
            assert self.proxy is not None
            self.results["proxy_rss_after_prepare"] = rss_bytes(self.proxy.pid)
            self.results["plan_cache_bulk_insert"] = plan_cache_cost(self.proxy.config_path)
            self.results["checks"] = self.check_answers()
            self._save()
            self.run_matrix()
            self.run_workers()
            self.run_relay()
            self.after_writes()
            self.profile_proxy()
            self.load_big()
            self.memory()
            assert self.proxy is not None
            self.results["proxy_rss_end"] = rss_bytes(self.proxy.pid)
        finally:
            if self.proxy is not None and self.proxy.log_path.exists():
                lines = self.proxy.log_path.read_text(errors="replace").splitlines()
                problems = [x for x in lines if " ERROR " in x or " CRITICAL " in x]
                self.results["proxy_log"] = {
                    "lines": len(lines),
                    "errors": problems[:20],
                    "error_count": len(problems),
                }
            self.results["duration_seconds"] = round(time.monotonic() - began)
            self._save()
            self.stop_all()
        import report

        report.write(self.results, ROOT / "BENCHMARKS.md", BENCH / "ratio.png")
        log(f"wrote BENCHMARKS.md and bench/ratio.png in {self.results['duration_seconds']} s")


def _cpu_text(m: Measured) -> str:
    parts = " ".join(f"{k} {m.per_query_us(k):.0f}us" for k in ("client", "proxy", "backends"))
    return f"{parts}  others {m.foreign_cores():.2f} cores"


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f}"


def _plain(value):
    if isinstance(value, bytearray):
        return bytes(value).decode()
    if isinstance(value, bytes):
        return value.decode()
    return value


def _error_text(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return f"{args[0]}: {args[1]}"
    errno = getattr(exc, "errno", None)
    if errno and getattr(exc, "msg", None):
        return f"{errno}: {exc.msg}"
    return f"{type(exc).__name__}: {exc}"


def _diff_text(got: list, want: list) -> str:
    def show(rows: list) -> str:
        text = repr(rows[:3])[:160]
        return f"{len(rows)} row(s) {text}"

    return f"proxy: {show(got)}; direct: {show(want)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, short runs (~3 min)")
    parser.add_argument(
        "--run-dir",
        default=str(BENCH / ".run"),
        help="servers, logs, raw results (default bench/.run; wiped at start)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite BENCHMARKS.md from RUN_DIR/results.json"
    )
    args = parser.parse_args()
    if args.report_only:
        import report

        results = json.loads((Path(args.run_dir) / "results.json").read_text())
        report.write(results, ROOT / "BENCHMARKS.md", BENCH / "ratio.png")
        return 0
    Bench(args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
