#!/usr/bin/env bash
# Idempotent setup: system packages (MariaDB server + client), .venv, the package in editable mode.
# Quiet when there is nothing to do; prints the failing command's output otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

# Runs a command silently, showing its output only when it fails.
quiet() {
    local out
    if ! out=$("$@" 2>&1); then
        printf 'setup.sh: %s failed:\n%s\n' "$*" "$out" >&2
        return 1
    fi
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]
}

python_ok() {
    command -v python3 >/dev/null 2>&1 &&
        python3 -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

packages=()
have mariadbd && have mariadb-install-db || packages+=(mariadb-server)
have mariadb || packages+=(mariadb-client)
python_ok || packages+=(python3 python3-venv)
# The client matrix: mysqlclient builds against libmariadb; sysbench and Node's mysql2 run there.
dpkg -s libmariadb-dev >/dev/null 2>&1 || packages+=(libmariadb-dev)
have pkg-config || packages+=(pkg-config)
have sysbench || packages+=(sysbench)
have npm || packages+=(nodejs npm)
if [ ${#packages[@]} -gt 0 ]; then
    echo "setup.sh: installing ${packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    quiet as_root apt-get update -qq
    quiet as_root apt-get install -y -qq "${packages[@]}"
fi
python_ok || { echo "setup.sh: python3 >= 3.11 with venv support is required" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
    echo "setup.sh: creating .venv"
    quiet python3 -m venv .venv
fi
# Reinstall only when pyproject.toml changed since the last successful install.
stamp=.venv/.shardproxy-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup.sh: pip install -e '.[test]'"
    quiet .venv/bin/pip install --disable-pip-version-check -q -e '.[test]'
    echo "$want" >"$stamp"
fi
