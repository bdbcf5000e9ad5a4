"""A proxy started for a benchmark: a subprocess that dies with the benchmark, ready once its
port accepts connections."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from mariadb_instances import HOST, die_with_parent  # noqa: E402

START_TIMEOUT = 30.0


def start_proxy(command: list[str], port: int, log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    """Run `command` (a `serve` of the proxy) with its output appended to `log`; return once
    it listens on `port`. Exits the benchmark with a pointer to the log when it can't start."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"proxy exited at start; see {log}")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"proxy not listening after {START_TIMEOUT:.0f} s; see {log}")
