#!/usr/bin/env bash
# Stops what scripts/run-default.sh started: the proxy, then (unless --proxy-only) both shards.
# Data stays in ./run; run-default.sh starts from it again.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=run
pidfile="$RUN/proxy.pid"

if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile")
    # Only signal the pid if it still is our proxy, not a recycled pid.
    if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q shardproxy; then
        kill -TERM "$pid"
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "stop-default.sh: proxy $pid ignored SIGTERM for 10 s; killing it" >&2
            kill -KILL "$pid"
        fi
        echo "stopped proxy (pid $pid)"
    fi
    rm -f "$pidfile"
fi

if [ "${1:-}" != "--proxy-only" ]; then
    for name in shard0 shard1; do
        if [ -f "$RUN/$name/port" ]; then
            .venv/bin/python scripts/mariadb_instances.py stop "$name" --base-dir "$RUN"
        fi
    done
fi
