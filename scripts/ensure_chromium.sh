#!/usr/bin/env bash
# Make sure Debian's chromium is installed: the browser tests open the reports and the dashboard
# in it, driven by Playwright. No browser is ever downloaded (`playwright install` is not used).
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi

fail() {
    echo "make test: the browser tests need Debian's chromium, and it could not be installed: $1" >&2
    echo "make test: install it as root with 'apt-get install chromium', then run make test again" >&2
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

echo "make test: installing Debian's chromium for the browser tests"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -q || fail "apt-get update failed"
"${as_root[@]}" apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core \
    || fail "apt-get install chromium failed"
command -v chromium >/dev/null 2>&1 || fail "chromium is still not on PATH after the install"
