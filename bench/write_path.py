"""What a cross-shard write transaction costs: statements, XA statements and redo-log writes on
the shards, and proxy CPU, per transaction.

Starts two private MariaDB servers and a proxy (table `sbtest1` sharded by id over both, decision
log on ds0, or with `--separate-log` in a database of its own on the first server), then runs
sysbench oltp_write_only's transaction from several connections at once:

    BEGIN; UPDATE ... SET k = k + 1 WHERE id = ?; UPDATE ... SET c = ? WHERE id = ?;
    DELETE ... WHERE id = ?; INSERT ... (id = the deleted one); COMMIT

and reports, per committed transaction, the shards' `SHOW GLOBAL STATUS` deltas (`Questions`,
`Com_xa_*`, `Innodb_log_writes`, `Innodb_data_fsyncs`) and the proxy's user+system CPU from /proc.
CPU time, not wall time, is the figure to compare across commits on a shared machine.

    .venv/bin/python bench/write_path.py [--threads 8] [--transactions 2000] [--separate-log]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import pymysql  # noqa: E402
from mariadb_instances import HOST, MariaDBInstance, free_port  # noqa: E402
from proxy_process import start_proxy  # noqa: E402

VENV_BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
DB = "sbtest"
ROWS = 20000
COUNTERS = (
    "Questions",
    "Com_xa_start",
    "Com_xa_end",
    "Com_xa_prepare",
    "Com_xa_commit",
    "Com_xa_rollback",
    "Innodb_log_writes",
    "Innodb_data_fsyncs",
)
TABLE = (
    "CREATE TABLE sbtest1 (id INT NOT NULL PRIMARY KEY, k INT NOT NULL DEFAULT 0, "
    "c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '', KEY k_1 (k))"
)


def proxy_config(port: int, shards: list[MariaDBInstance], separate_log: bool) -> str:
    backends = [
        f'  ds{i}: {{host: {HOST}, port: {s.port}, user: root, password: "", database: {DB}}}'
        for i, s in enumerate(shards)
    ]
    log = "ds0"
    if separate_log:
        log = "xalog"
        backends.append(
            f'  xalog: {{host: {HOST}, port: {shards[0].port}, user: root, password: "", '
            f"database: {DB}_log}}"
        )
    return "\n".join(
        [
            f"listen: {{host: {HOST}, port: {port}}}",
            "users: [{name: app, password: app}]",
            "backends:",
            *backends,
            "databases:",
            f"  {DB}:",
            "    default_backend: ds0",
            "    tables:",
            "      sbtest1: {shard_key: id, algorithm: mod, backends: [ds0, ds1]}",
            f"transactions: {{log_backend: {log}}}",
            "",
        ]
    )


def status(shards: list[MariaDBInstance]) -> dict[str, int]:
    total = dict.fromkeys(COUNTERS, 0)
    for shard in shards:
        for name, value in shard.execute("SHOW GLOBAL STATUS"):
            if name in total:
                total[name] += int(value)
    return total


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def worker(port: int, count: int, seed: int, done: list[int], errors: list[str]) -> None:
    """Run `count` oltp_write_only transactions; a deadlock or lock wait is retried."""
    rng = random.Random(seed)
    conn = pymysql.connect(host=HOST, port=port, user="app", password="app", database=DB)
    with conn.cursor() as cur:
        committed = 0
        while committed < count:
            a, b, c = (rng.randrange(1, ROWS + 1) for _ in range(3))
            try:
                cur.execute("BEGIN")
                cur.execute(f"UPDATE sbtest1 SET k = k + 1 WHERE id = {a}")
                cur.execute(f"UPDATE sbtest1 SET c = '{rng.random():.12f}' WHERE id = {b}")
                cur.execute(f"DELETE FROM sbtest1 WHERE id = {c}")
                cur.execute(f"INSERT INTO sbtest1 (id, k, c, pad) VALUES ({c}, {c}, 'x', 'y')")
                cur.execute("COMMIT")
                committed += 1
            except pymysql.err.OperationalError as exc:
                if exc.args[0] not in (1205, 1213, 1614):
                    raise
                errors.append(str(exc.args[0]))
                cur.execute("ROLLBACK")
    conn.close()
    done.append(committed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--transactions", type=int, default=2000, help="in all threads")
    parser.add_argument("--separate-log", action="store_true", help="decision log not a shard")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()

    # The servers' template datadir is built once here and kept; their own datadirs are new.
    base = ROOT / "run" / "write-path"
    shards = [MariaDBInstance(f"wp{i}", free_port(), base) for i in range(2)]
    for shard in shards:
        shutil.rmtree(shard.dir, ignore_errors=True)
        shard.start()
    proxy = None
    try:
        for i, shard in enumerate(shards):
            shard.execute(f"CREATE DATABASE {DB}")
            shard.execute(f"CREATE DATABASE {DB}_log")
            shard.execute(TABLE, database=DB)
            ids = [n for n in range(1, ROWS + 1) if n % 2 == i]
            for start in range(0, len(ids), 1000):
                values = ",".join(f"({n}, {n}, 'c', 'p')" for n in ids[start : start + 1000])
                shard.execute(f"INSERT INTO sbtest1 (id, k, c, pad) VALUES {values}", database=DB)
        port = free_port()
        config = base / "proxy.yaml"
        config.write_text(proxy_config(port, shards, args.separate_log))
        proxy = start_proxy(
            [str(VENV_BIN / "shardproxy"), "serve", "--config", str(config)],
            port,
            base / "proxy.log",
        )
        # Warm-up: pools open, plans cached.
        worker(port, 50, 0, [], [])

        per_thread = args.transactions // args.threads
        done: list[int] = []
        errors: list[str] = []
        threads = [
            threading.Thread(target=worker, args=(port, per_thread, n + 1, done, errors))
            for n in range(args.threads)
        ]
        before, cpu_before, began = status(shards), cpu_seconds(proxy.pid), time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
        after, cpu_after = status(shards), cpu_seconds(proxy.pid)
        txns = sum(done)
        if txns != per_thread * args.threads:
            raise SystemExit("a worker failed; see above")
        result = {
            "threads": args.threads,
            "transactions": txns,
            "retried": len(errors),
            "separate_log": args.separate_log,
            "tps_wall": round(txns / elapsed),
            "proxy_cpu_us_per_txn": round((cpu_after - cpu_before) / txns * 1e6),
            **{
                f"{name}_per_txn": round((after[name] - before[name]) / txns, 2)
                for name in COUNTERS
            },
        }
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    finally:
        if proxy is not None and proxy.poll() is None:
            proxy.send_signal(signal.SIGTERM)
            proxy.wait(10)
        for shard in shards:
            shard.stop()


if __name__ == "__main__":
    main()
