#!/usr/bin/env bash
# Make sure Debian's chromium is installed: the browser tests open the reports and the dashboard
# in it, driven by Playwright. No browser is ever downloaded (`playwright install` is not used).
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
WHAT="the browser tests need Debian's chromium"
source "$(dirname "$0")/apt_install.sh"
apt_install chromium fonts-dejavu-core
command -v chromium >/dev/null 2>&1 || fail "chromium is still not on PATH after the install"
