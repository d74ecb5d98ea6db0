# Shared by the setup scripts (sourced, not run). The caller sets SETUP_NAME for messages.
# shellcheck shell=bash

log() { printf '%s: %s\n' "${SETUP_NAME:-setup}" "$*" >&2; }
die() { log "error: $*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# Runs a command with its output captured; prints the output only if the command fails.
quietly() {
    local out status=0
    out="$(mktemp)"
    "$@" >"$out" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        log "failed ($status): $*"
        cat "$out" >&2
    fi
    rm -f "$out"
    return "$status"
}

APT_UPDATED=0
# apt_install PACKAGE... — installs Debian packages (as root, or with sudo), updating the
# package lists once.
apt_install() {
    have apt-get || die "apt-get not found; install these packages by hand: $*"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        have sudo || die "need root (or sudo) to install: $*"
        sudo=(sudo)
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        quietly "${sudo[@]}" apt-get update -qq
        APT_UPDATED=1
    fi
    quietly "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}
