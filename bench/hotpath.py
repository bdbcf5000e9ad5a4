"""The proxy's CPU per routed point SELECT, text and prepared (issue 6's hot path).

    .venv/bin/python bench/hotpath.py                      # 8 threads, text + prepared
    .venv/bin/python bench/hotpath.py --threads 32 --events 60000 --repeat 5
    .venv/bin/python bench/hotpath.py --py-spy /tmp/spy    # plus a py-spy profile per mode
    .venv/bin/python bench/hotpath.py --cprofile /tmp/prof # proxy run under cProfile instead
    .venv/bin/python bench/hotpath.py --baseline /tmp/base # A/B against another source tree

It starts two private MariaDB shards (scripts/mariadb_instances.py, under --base-dir), loads
`sbtest1` (sysbench's table) split by `id mod 2` straight into them, starts the proxy as a
subprocess with that table sharded by `id`, and runs `sysbench oltp_point_select` through the
proxy for a fixed number of events (--db-ps-mode=disable for text, auto for prepared). For each
run it reports the proxy process's user + system CPU (/proc/<pid>/stat) divided by the queries
sysbench completed: CPU per query does not depend on how busy the rest of the machine is, which
QPS does (everything here shares two cores with other people's work). The median of --repeat
runs is printed, as µs per query, with the share spent in system calls, and the minimum:
on a shared VM, other work only ever adds to a run's CPU (cache pollution, steal time charged
to whoever ran), so the least disturbed run is the best estimate when comparing.

With --baseline DIR (a copy of another commit, e.g. `git archive HEAD | tar -x -C DIR`), a
second proxy runs that tree's code against the same shards, and the runs alternate between the
two (A, B, A, B, ...), so both see the same background load; both medians are printed.

With --py-spy DIR, one extra run per mode is sampled by py-spy into DIR/<mode>.txt (collapsed
stacks, `py-spy record --format raw`) and the functions with the most samples, own and
inclusive, are printed. --cprofile FILE runs the proxy under cProfile (much slower, for call
counts) and writes FILE.<pid>.

Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from mariadb_instances import HOST, MariaDBInstance, free_port  # noqa: E402
from proxy_process import start_proxy  # noqa: E402

VENV_BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
DB = "sbtest"
USER = PASSWORD = "app"
MODES = {"text": "disable", "prepared": "auto"}
# sysbench workloads this script runs; an oltp_* event is a transaction of many queries.
WORKLOADS = ("oltp_point_select", "oltp_read_only", "oltp_write_only")
_QUERIES = re.compile(r"^\s*queries:\s+(\d+)", re.M)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def load_shards(shards: list[MariaDBInstance], rows: int) -> None:
    """sbtest1 as sysbench creates it, row `id` on shard `id mod 2` (the `mod` algorithm)."""
    for index, shard in enumerate(shards):
        shard.execute(f"DROP DATABASE IF EXISTS {DB}")
        shard.execute(f"CREATE DATABASE {DB}")
        conn = shard.connect(DB)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "CREATE TABLE sbtest1 (id INT NOT NULL, k INT NOT NULL DEFAULT 0, "
                    "c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '', "
                    "PRIMARY KEY (id), KEY k_1 (k))"
                )
                values = [
                    (i, i * 7 % rows, f"{i:011d}-" * 10, f"{i:011d}-" * 5)
                    for i in range(1, rows + 1)
                    if i % len(shards) == index
                ]
                cur.executemany("INSERT INTO sbtest1 VALUES (%s, %s, %s, %s)", values)
            conn.commit()
        finally:
            conn.close()


def proxy_config(port: int, shards: list[MariaDBInstance]) -> str:
    backends = "\n".join(
        f'  ds{i}: {{host: {HOST}, port: {s.port}, user: root, password: "", database: {DB}}}'
        for i, s in enumerate(shards)
    )
    return (
        f"listen: {{host: {HOST}, port: {port}}}\n"
        f"users: [{{name: {USER}, password: {PASSWORD}}}]\n"
        f"backends:\n{backends}\n"
        f"databases:\n  {DB}:\n    default_backend: ds0\n    tables:\n"
        "      sbtest1: {shard_key: id, algorithm: mod, backends: [ds0, ds1]}\n"
        "transactions: {log_backend: ds0}\n"
    )


def run_proxy(
    config: Path, port: int, log: Path, cprofile: str | None, source: Path = ROOT
) -> subprocess.Popen:
    """The proxy of the tree at `source` (`python -m` imports from its working directory)."""
    command = [str(VENV_BIN / "python")]
    if cprofile:
        command += ["-m", "cProfile", "-o", f"{cprofile}.{os.getpid()}"]
    command += ["-m", "proxy.cli", "serve", "--config", str(config), "--log-level", "warning"]
    return start_proxy(command, port, log, source)


def sysbench(
    port: int, mode: str, threads: int, events: int, rows: int, workload: str = WORKLOADS[0]
) -> int:
    """Run `workload` through the proxy; the number of queries sysbench completed."""
    command = [
        "sysbench",
        workload,
        f"--threads={threads}",
        "--tables=1",
        f"--table-size={rows}",
        "--rand-type=uniform",
        f"--mysql-host={HOST}",
        f"--mysql-port={port}",
        f"--mysql-user={USER}",
        f"--mysql-password={PASSWORD}",
        f"--mysql-db={DB}",
        f"--db-ps-mode={MODES[mode]}",
        f"--events={events}",
        "--time=0",
        "run",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    match = _QUERIES.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise SystemExit(f"sysbench failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return int(match.group(1))


def measure(pid: int, port: int, mode: str, args: argparse.Namespace):
    """(µs of proxy CPU per query, share of it in the kernel) for one sysbench run."""
    user0, sys0 = cpu_seconds(pid)
    queries = sysbench(port, mode, args.threads, args.events, args.rows, args.workload)
    user1, sys1 = cpu_seconds(pid)
    total = (user1 - user0) + (sys1 - sys0)
    return total / queries * 1e6, (sys1 - sys0) / total if total else 0.0


def py_spy(pid: int, out: Path, run) -> None:
    """Sample the proxy with py-spy while `run()` runs; print the heaviest functions."""
    spy = subprocess.Popen(
        [str(VENV_BIN / "py-spy"), "record", "--pid", str(pid), "--format", "raw",
         "--rate", "250", "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.0)
    run()
    spy.send_signal(signal.SIGINT)
    spy.wait(30)
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [re.sub(r" \((.*/)?", " (", f) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    print(f"  py-spy: {total} samples in {out}")
    for title, counter in (("own", own), ("inclusive", inclusive)):
        print(f"  top {title}:")
        for frame, n in counter.most_common(25):
            print(f"    {100 * n / total:5.1f}%  {frame}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--workload", choices=WORKLOADS, default=WORKLOADS[0])
    parser.add_argument(
        "--events", type=int, help="sysbench events per run (40,000 point selects, 2,500 oltp_*)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per mode")
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--modes", default="text,prepared")
    parser.add_argument("--base-dir", type=Path, default=Path("/tmp/shardproxy-hotpath"))
    parser.add_argument("--baseline", type=Path, help="source tree of a proxy to compare with")
    parser.add_argument("--py-spy", type=Path, help="also profile one run per mode into DIR")
    parser.add_argument("--cprofile", help="run the proxy under cProfile, output FILE.<pid>")
    args = parser.parse_args()
    if args.events is None:
        args.events = 40000 if args.workload == WORKLOADS[0] else 2500
    if shutil.which("sysbench") is None:
        raise SystemExit("sysbench is not installed (apt-get install sysbench)")
    args.base_dir.mkdir(parents=True, exist_ok=True)
    shards = [MariaDBInstance(f"shard{i}", free_port(), args.base_dir) for i in range(2)]
    proxies: dict[str, tuple[subprocess.Popen, int]] = {}
    try:
        for shard in shards:
            shard.start()
        load_shards(shards, args.rows)
        sources = {"this": ROOT}
        if args.baseline is not None:
            sources["baseline"] = args.baseline.resolve()
        for name, source in sources.items():
            port = free_port()
            config = args.base_dir / f"proxy-{name}.yaml"
            config.write_text(proxy_config(port, shards))
            log = args.base_dir / f"proxy-{name}.log"
            proxies[name] = (run_proxy(config, port, log, args.cprofile, source), port)
        for mode in args.modes.split(","):
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in proxies}
            warm = 3000 if args.workload == WORKLOADS[0] else 200
            for _, port in proxies.values():  # warm the caches and pools
                sysbench(port, mode, args.threads, warm, args.rows, args.workload)
            for _ in range(args.repeat):
                for name, (proc, port) in proxies.items():
                    runs[name].append(measure(proc.pid, port, mode, args))
            for name, measured in runs.items():
                cpu = statistics.median(r[0] for r in measured)
                least = min(r[0] for r in measured)
                kernel = statistics.median(r[1] for r in measured)
                each = ", ".join(f"{r[0]:.1f}" for r in measured)
                print(
                    f"{mode:9} {args.threads:3}t {name:8}  proxy CPU µs/query: median "
                    f"{cpu:6.1f}, min {least:6.1f} ({100 * kernel:.0f}% in kernel)  runs: {each}",
                    flush=True,
                )
            if args.py_spy is not None:
                args.py_spy.mkdir(parents=True, exist_ok=True)
                proc, port = proxies["this"]
                py_spy(
                    proc.pid,
                    args.py_spy / f"{mode}.txt",
                    lambda m=mode, p=port: sysbench(
                        p, m, args.threads, args.events, args.rows, args.workload
                    ),
                )
    finally:
        for proc, _ in proxies.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(20)
                if proc.poll() is None:
                    proc.kill()
        for shard in shards:
            with contextlib.suppress(Exception):
                shard.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
