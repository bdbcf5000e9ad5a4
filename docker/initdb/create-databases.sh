#!/bin/sh
# Run once by the mariadb image's entrypoint, on a shard's first start (mounted into
# /docker-entrypoint-initdb.d): creates the physical databases named in SHARD_DATABASES, the
# `database:` of the proxy's backends on this server. The proxy creates the tables.
set -eu
for db in ${SHARD_DATABASES:?set SHARD_DATABASES to the physical database names}; do
    MYSQL_PWD="${MARIADB_ROOT_PASSWORD:-}" mariadb -uroot -e "CREATE DATABASE IF NOT EXISTS \`$db\`"
    echo "create-databases.sh: $db"
done
