#!/usr/bin/env bash
# Runs the server on the embedded defaults: XMPP on 5222/5223, the web client (embedded in
# the binary) and browser endpoints on http://localhost:5280/, data in ./data. Arguments go
# to `jabberwock` (for example `--config jabberwock.toml`). A client built locally with
# scripts/build-web-client.sh (web-client/dist) is served in place of the embedded one.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
exec cargo run --release -p jabberwock -- "$@"
