#!/bin/sh
# The demo application: it knows only its sidecar proxy at 127.0.0.1:3307. It creates the
# `orders` table through the proxy (which creates every shard), then writes and reads one order
# every few seconds. LOOPS=n stops after n rounds (0: forever).
set -u
host=${PROXY_HOST:-127.0.0.1}
port=${PROXY_PORT:-3307}
loops=${LOOPS:-0}
sql() {
    MYSQL_PWD="${APP_PASSWORD:-app}" mariadb --protocol=tcp -h"$host" -P"$port" -uapp shop "$@"
}
tries=0
until sql -e "SELECT 1" >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -ge 120 ] && { echo "query-loop: no proxy at $host:$port" >&2; exit 1; }
    echo "query-loop: waiting for the proxy at $host:$port"
    sleep 1
done
sql -e "CREATE TABLE IF NOT EXISTS orders (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL,
    status VARCHAR(20), total DECIMAL(10,2), created_at DATETIME, KEY (user_id))" || exit 1
round=0
while [ "$loops" -eq 0 ] || [ "$round" -lt "$loops" ]; do
    round=$((round + 1))
    user=$((round % 10))
    sql -e "INSERT INTO orders (id, user_id, status, total, created_at)
            VALUES ($(date +%s%N), $user, 'new', 9.99, NOW())" || exit 1
    sql --batch --skip-column-names -e "SELECT $user, COUNT(*) FROM orders WHERE user_id = $user" \
        | { read -r who count && echo "query-loop: user $who has $count order(s)"; } || exit 1
    if [ "$loops" -eq 0 ] || [ "$round" -lt "$loops" ]; then
        sleep "${INTERVAL:-2}"
    fi
done
