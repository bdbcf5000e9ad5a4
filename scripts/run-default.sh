#!/usr/bin/env bash
# The default run: two private MariaDB shards, the proxy in front of them, sample data loaded
# through the proxy. Safe to run again: shards keep running, the proxy is restarted.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=run
CONFIG=config/default.yaml
PY=.venv/bin/python

bash scripts/setup.sh
[ -f "$CONFIG" ] || { echo "run-default.sh: $CONFIG is missing" >&2; exit 1; }
mkdir -p "$RUN"

for shard in "shard0 13306 shop_0" "shard1 13307 shop_1"; do
    read -r name port database <<<"$shard"
    "$PY" scripts/mariadb_instances.py start "$name" "$port" --base-dir "$RUN"
    mariadb --protocol=tcp -h127.0.0.1 -P"$port" -uroot \
        -e "CREATE DATABASE IF NOT EXISTS \`$database\` CHARACTER SET utf8mb4"
done

bash scripts/stop-default.sh --proxy-only

listen_port=$("$PY" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["listen"]["port"])' "$CONFIG")
echo "--- $(date '+%F %T') starting the proxy" >>"$RUN/proxy.log"
setsid nohup .venv/bin/shardproxy serve --config "$CONFIG" </dev/null >>"$RUN/proxy.log" 2>&1 &
echo $! >"$RUN/proxy.pid"

# Wait until the proxy accepts connections, or show why it died.
for _ in $(seq 300); do
    if ! kill -0 "$(cat "$RUN/proxy.pid")" 2>/dev/null; then
        echo "run-default.sh: the proxy exited; end of $RUN/proxy.log:" >&2
        tail -n 30 "$RUN/proxy.log" >&2
        exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$listen_port") 2>/dev/null; then break; fi
    sleep 0.1
done
if ! (exec 3<>"/dev/tcp/127.0.0.1/$listen_port") 2>/dev/null; then
    echo "run-default.sh: the proxy is not listening on $listen_port after 30 s; see $RUN/proxy.log" >&2
    exit 1
fi
echo "proxy listening on 127.0.0.1:$listen_port (pid $(cat "$RUN/proxy.pid"), log $RUN/proxy.log)"

mariadb --protocol=tcp --default-character-set=utf8mb4 -h127.0.0.1 -P"$listen_port" -uapp -papp shop \
    <scripts/sample_data.sql
echo "sample data loaded through the proxy"

cat <<EOT

Connect:  mariadb -h127.0.0.1 -P$listen_port -uapp -papp shop
Stop:     scripts/stop-default.sh
EOT
