#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian 12 machine. Idempotent: a step whose
# result is already in place does nothing. Quiet unless something fails.
#
# Each prerequisite is one small function called from main() at the bottom; add new ones
# (PostgreSQL, Chromium, ...) the same way.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/tests/interop/.venv"

# Python packages of the interop suite, pinned. slixmpp's own dependencies are pinned too so
# a new release of one of them cannot change the client under test.
PY_PACKAGES=(
    "slixmpp==1.17.0"
    "aiodns==4.0.4"
    "pycares==5.2.1"
    "cffi==2.1.1"
    "pycparser==3.12"
    "pyasn1==0.6.5"
    "pyasn1_modules==0.4.2"
    # slixmpp's XEP-0363 plugin uploads with aiohttp.
    "aiohttp==3.14.5"
    "aiohappyeyeballs==2.7.1"
    "aiosignal==1.4.0"
    "attrs==26.1.0"
    "frozenlist==1.8.0"
    "idna==3.21"
    "multidict==7.2.1"
    "propcache==0.5.4"
    "yarl==1.25.1"
    "typing_extensions==4.16.0"
    # The reference parser the metrics test checks /metrics against (no dependencies).
    "prometheus_client==0.26.0"
)

SETUP_NAME=setup-test-env
# shellcheck source=lib/setup.sh
. "$REPO_ROOT/scripts/lib/setup.sh"

# python3 with a working venv module (Debian splits ensurepip into python3-venv).
ensure_python() {
    if ! have python3; then
        apt_install python3 python3-venv
    fi
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        apt_install python3-venv
    fi
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' \
        || die "python3 >= 3.9 is required (found $(python3 --version 2>&1))"
}

# The interop suite's virtualenv with the pinned packages.
ensure_interop_venv() {
    local py="$VENV/bin/python"
    # A venv whose interpreter no longer runs (python upgraded or removed) is rebuilt.
    if [ -e "$VENV" ] && ! "$py" -c 'import sys' >/dev/null 2>&1; then
        rm -rf "$VENV"
    fi
    if [ ! -x "$py" ]; then
        quietly python3 -m venv "$VENV"
    fi
    local want have_now
    want="$(printf '%s\n' "${PY_PACKAGES[@]}" | sort | tr '\n' ' ')"
    have_now="$("$py" -m pip freeze --disable-pip-version-check 2>/dev/null | tr '[:upper:]-' '[:lower:]_' | sort | tr '\n' ' ')"
    want="$(printf '%s' "$want" | tr '[:upper:]-' '[:lower:]_')"
    local missing=0 pkg
    for pkg in $want; do
        case " $have_now " in *" $pkg "*) ;; *) missing=1 ;; esac
    done
    if [ "$missing" -eq 1 ]; then
        quietly "$py" -m pip install --disable-pip-version-check --no-input -q "${PY_PACKAGES[@]}"
    fi
    quietly "$py" -c 'import slixmpp, sys; sys.exit(slixmpp.__version__ != "1.17.0")' \
        || die "slixmpp in $VENV is not the pinned version"
}

# Prosody (Debian's 0.12) as the federation peer, with lua-unbound so it can read the test
# domains from /etc/hosts. The package may start a system daemon on the standard ports;
# the suite runs its own instance, so a daemon this script finds running is stopped (by
# the PID in its pidfile).
ensure_prosody() {
    if ! have prosody || ! dpkg -s lua-unbound >/dev/null 2>&1; then
        apt_install prosody lua-unbound
    fi
    local pidfile=/run/prosody/prosody.pid pid
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        log "stopping the packaged Prosody daemon (pid $pid)"
        kill -TERM "$pid"
    fi
}

# ejabberd (Debian's 23.01), the second federation peer. The package starts a system
# daemon; the suite runs its own node, so a running daemon is stopped by its PID.
ensure_ejabberd() {
    have ejabberdctl || apt_install ejabberd
    local pid
    pid="$(cat /run/ejabberd/ejabberd.pid 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        log "stopping the packaged ejabberd daemon (pid $pid)"
        kill -TERM "$pid"
    fi
}

# PostgreSQL (Debian's) for the storage backend's tests: scripts/postgres-tests.sh runs its
# own server from the package's binaries, so a daemon the package starts is left alone.
ensure_postgresql() {
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || apt_install postgresql
}

# Redis (Debian's redis-server) for the cluster tests: each test runs its own from the
# package's binary on a free port, so a daemon the package starts is left alone.
ensure_redis() {
    have redis-server || apt_install redis-server
}

# HAProxy (Debian's) for the cluster's load-balancer test, which runs its own in the
# foreground with its own config; a daemon the package starts is left alone.
ensure_haproxy() {
    have haproxy || [ -x /usr/sbin/haproxy ] || apt_install haproxy
}

# The federation suite's domains, each server on its own loopback address.
FEDERATION_HOSTS=(
    "127.0.0.2 jabberwock.test"
    "127.0.0.3 prosody.test insecure.test"
    "127.0.0.2 conference.jabberwock.test"
    "127.0.0.3 rooms.prosody.test"
    "127.0.0.4 ejabberd.test"
    "127.0.0.4 rooms.ejabberd.test"
)

ensure_federation_hosts() {
    local entry name
    for entry in "${FEDERATION_HOSTS[@]}"; do
        name="${entry#* }"
        name="${name%% *}"
        if [ "$(getent hosts "$name" | awk '{print $1}')" != "${entry%% *}" ]; then
            [ -w /etc/hosts ] || die "cannot add '$entry' to /etc/hosts (need root)"
            printf '%s\n' "$entry" >>/etc/hosts
        fi
    done
}

main() {
    ensure_python
    ensure_interop_venv
    ensure_prosody
    ensure_ejabberd
    ensure_postgresql
    ensure_redis
    ensure_haproxy
    ensure_federation_hosts
}

main "$@"
