#!/usr/bin/env bash
# Builds the web client (installing its toolchain the first time) and runs the server on
# the embedded defaults: XMPP on 5222/5223, the web client and browser endpoints on
# http://localhost:5280/, data in ./data. Arguments go to `jabberwock` (for example
# `--config jabberwock.toml`).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
scripts/build-web-client.sh
exec cargo run --release -p jabberwock -- "$@"
