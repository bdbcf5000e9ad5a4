#!/usr/bin/env bash
# The whole check, as CI runs it: setup, lint, format check, tests. Extra arguments go to pytest
# (e.g. `scripts/test.sh tests/integration/test_harness.py -k kill`).
# Lint failures fail the run but don't hide test results; the exit code is pytest's when the
# tests fail, else the linters'.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh || exit 1

lint=0
paths=()
for dir in proxy router tests scripts bench; do
    [ -d "$dir" ] && paths+=("$dir")  # git keeps no empty directories, e.g. a fresh bench/
done
.venv/bin/ruff check "${paths[@]}" || lint=1
.venv/bin/ruff format --check "${paths[@]}" || lint=1

# A temp dir of this checkout's own: pytest keeps only the newest three under /tmp, so two runs
# on one machine would delete each other's MariaDB data directories.
basetemp="$PWD/run/pytest-$$"
mkdir -p "$PWD/run"
.venv/bin/pytest -q -p no:cacheprovider --durations=15 -r fEs --basetemp="$basetemp" "$@"
tests=$?
rm -rf "$basetemp"

if [ "$tests" -ne 0 ]; then exit "$tests"; fi
if [ "$lint" -ne 0 ]; then echo "test.sh: tests passed but ruff failed" >&2; fi
exit "$lint"
