"""listen.workers 1 vs 2: sysbench point selects through the proxy, its QPS and CPU.

    .venv/bin/python bench/workers.py [--seconds 20] [--threads 8] [--workers 1 2]

One private MariaDB holds both shards (two databases). For each worker count the proxy is
started afresh and sysbench oltp_point_select runs against it; the proxy's CPU is the
supervisor's plus every worker's (utime + stime from /proc), so "cores" is how much of the
machine the proxy used and "CPU µs/query" what each query cost it.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from mariadb_instances import HOST, MariaDBInstance, free_port  # noqa: E402
from proxy_process import start_proxy  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
DB = "sbtest"
TABLE_SIZE = 10000


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proxy_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(int(child) for child in children)]


def config(port: int, shard_port: int, workers: int) -> str:
    return f"""\
listen: {{host: {HOST}, port: {port}, workers: {workers}}}
users: [{{name: app, password: app}}]
backends:
  ds0: {{host: {HOST}, port: {shard_port}, user: root, password: "", database: {DB}_0}}
  ds1: {{host: {HOST}, port: {shard_port}, user: root, password: "", database: {DB}_1}}
databases:
  {DB}:
    default_backend: ds0
    tables:
      sbtest1: {{shard_key: id, algorithm: mod, backends: [ds0, ds1]}}
logging: {{level: warning}}
"""


def sysbench(port: int, command: str, threads: int, seconds: int) -> str:
    args = [
        "sysbench",
        "oltp_point_select",
        f"--mysql-host={HOST}",
        f"--mysql-port={port}",
        "--mysql-user=app",
        "--mysql-password=app",
        f"--mysql-db={DB}",
        "--tables=1",
        f"--table-size={TABLE_SIZE}",
        "--auto-inc=off",
        f"--threads={threads}",
        f"--time={seconds}",
        "--report-interval=0",
        command,
    ]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def measure(
    workdir: Path, shard_port: int, workers: int, threads: int, seconds: int, prepare: bool
) -> dict:
    port = free_port()
    path = workdir / f"workers{workers}.yaml"
    path.write_text(config(port, shard_port, workers))
    proc = start_proxy(
        [sys.executable, "-m", "proxy.cli", "serve", "--config", str(path)],
        port,
        workdir / f"workers{workers}.log",
    )
    try:
        time.sleep(2)  # every worker listening
        if prepare:
            sysbench(port, "prepare", 1, 0)
        sysbench(port, "run", threads, 3)  # warm the plan caches and pools
        pids = proxy_pids(proc.pid)
        before = {pid: cpu_seconds(pid) for pid in pids}
        started = time.monotonic()
        out = sysbench(port, "run", threads, seconds)
        wall = time.monotonic() - started
        used = sum(cpu_seconds(pid) - before[pid] for pid in pids)
        queries = int(re.search(r"queries:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
        return {
            "workers": workers,
            "qps": queries / wall,
            "cores": used / wall,
            "us_per_query": used / queries * 1e6,
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="shardproxy-workers-bench-"))
    shard = MariaDBInstance("workers-bench", free_port(), workdir)
    shard.start()
    try:
        for name in (f"{DB}_0", f"{DB}_1"):
            shard.execute(f"CREATE DATABASE IF NOT EXISTS {name}")
        counts = sorted(set(args.workers))
        results = [
            measure(workdir, shard.port, n, args.threads, args.seconds, prepare=i == 0)
            for i, n in enumerate(counts)
        ]
    finally:
        shard.stop()
    print(f"{args.threads} sysbench threads, {args.seconds} s, {os.cpu_count()} cores")
    print("workers       QPS   proxy cores   proxy CPU µs/query")
    for r in results:
        print(f"{r['workers']:7d} {r['qps']:9.0f} {r['cores']:13.2f} {r['us_per_query']:20.1f}")


if __name__ == "__main__":
    main()
