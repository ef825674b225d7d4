#!/usr/bin/env bash
# Make sure a PostgreSQL server is installed: the tests start their own throwaway server from its
# binaries (tests/conftest.py, postgres_server), for the coordinator's PostgreSQL state and the
# node's SQL sources. Debian's package only; nothing is started here and no system cluster is used.
set -euo pipefail

has_server() {
    ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || command -v postgres >/dev/null 2>&1
}
if has_server; then
    exit 0
fi
WHAT="the PostgreSQL tests need a PostgreSQL server"
source "$(dirname "$0")/apt_install.sh"
apt_install postgresql
has_server || fail "no postgres binary after the install"
