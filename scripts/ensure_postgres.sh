#!/usr/bin/env bash
# Make sure a PostgreSQL server is installed: the tests start their own throwaway server from its
# binaries (tests/postgres.py), for the coordinator's PostgreSQL state and the node's SQL sources.
# Debian's package only; nothing is started here and no system cluster is used.
set -euo pipefail

if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || command -v postgres >/dev/null 2>&1; then
    exit 0
fi

fail() {
    echo "make test: the PostgreSQL tests need a PostgreSQL server, and it could not be installed: $1" >&2
    echo "make test: install it as root with 'apt-get install postgresql', then run make test again" >&2
    exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "there is no apt-get on this machine"
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    fail "this user is not root and there is no sudo"
fi

echo "make test: installing Debian's PostgreSQL server for the PostgreSQL tests"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -q || fail "apt-get update failed"
"${as_root[@]}" apt-get install -y -q --no-install-recommends postgresql \
    || fail "apt-get install postgresql failed"
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || fail "no postgres binary after the install"
