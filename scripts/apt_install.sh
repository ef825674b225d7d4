# Sourced by the ensure_*.sh scripts: install Debian packages for make test, as root or with sudo.
# The caller sets WHAT (what needs the packages, for messages) before sourcing this file.

fail() {
    echo "make test: ${WHAT}, and it could not be installed: $1" >&2
    echo "make test: install it as root with 'apt-get install ${PACKAGES:-the package}', then run make test again" >&2
    exit 1
}

# apt_install PACKAGE...: apt-get install them (update first), or fail with what to do.
apt_install() {
    PACKAGES="$*"
    command -v apt-get >/dev/null 2>&1 || fail "there is no apt-get on this machine"
    local as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || fail "this user is not root and there is no sudo"
        as_root=(sudo)
    fi
    echo "make test: installing Debian's $PACKAGES"
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get update -q || fail "apt-get update failed"
    "${as_root[@]}" apt-get install -y -q --no-install-recommends "$@" \
        || fail "apt-get install $PACKAGES failed"
}
