#!/usr/bin/env bash
# Installs what the JavaScript interop suites (tests/interop/js) need on a Debian 12 machine:
# the pinned npm packages from tests/interop/js/package-lock.json, and Debian's Chromium for
# the Converse.js runs. Idempotent: a step whose result is already in place does nothing.
# Quiet unless something fails.
#
# No browser is ever downloaded by npm: playwright-core (not playwright) is used, with
# PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 and install scripts off; it drives /usr/bin/chromium.
# Node.js 20.10 or later must already be installed (Debian 12's own nodejs is too old).
# The slixmpp virtualenv the suites also use comes from scripts/setup-test-env.sh.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JS_DIR="$REPO_ROOT/tests/interop/js"
CHROMIUM="/usr/bin/chromium"
STAMP="$JS_DIR/node_modules/.setup-js-env.lock-sha256"

SETUP_NAME=setup-js-env
# shellcheck source=lib/setup.sh
. "$REPO_ROOT/scripts/lib/setup.sh"

# Node.js >= 20.10 with npm (the @xmpp/client packages require it).
ensure_node() {
    have node || die "node not found: install Node.js 20.10 or later (Debian 12's nodejs 18 is too old)"
    have npm || die "npm not found: install npm with Node.js 20.10 or later"
    node -e '
        const [maj, min] = process.versions.node.split(".").map(Number);
        process.exit(maj > 20 || (maj === 20 && min >= 10) ? 0 : 1);
    ' || die "Node.js 20.10 or later is required (found $(node --version))"
}

# The npm packages, exactly as locked. Reinstalled only when package-lock.json changes.
ensure_npm_packages() {
    [ -f "$JS_DIR/package-lock.json" ] || die "missing $JS_DIR/package-lock.json"
    local want
    want="$(sha256sum "$JS_DIR/package-lock.json" "$JS_DIR/package.json" | sha256sum | cut -d' ' -f1)"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
        && [ -d "$JS_DIR/node_modules/converse.js/dist" ]; then
        return 0
    fi
    (
        cd "$JS_DIR"
        export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
        quietly npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
    )
    printf '%s\n' "$want" >"$STAMP"
}

# Debian's Chromium (and its driver), which playwright-core drives headless.
ensure_chromium() {
    if [ ! -x "$CHROMIUM" ]; then
        apt_install chromium chromium-driver
    fi
    [ -x "$CHROMIUM" ] || die "$CHROMIUM is still missing after installing chromium"
    # Emoji (the reactions in the screenshots of tests/e2e) drawn as emoji, not as boxes.
    [ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || apt_install fonts-noto-color-emoji
    quietly "$CHROMIUM" --headless --no-sandbox --disable-gpu --version \
        || die "$CHROMIUM does not run"
}

main() {
    ensure_node
    ensure_npm_packages
    ensure_chromium
}

main "$@"
