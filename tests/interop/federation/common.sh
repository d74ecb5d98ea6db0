# What the federation suites share (sourced, not run, after ../server.sh):
#   jw_federation_config C2S_PORT [S2S_PORT] [<<TOML]
#                                      Jabberwock's config for jabberwock.test on $JW_HOST
#                                      (s2s on S2S_PORT, 5269 by default), with the
#                                      certificate test_cert made for it, the test CA as
#                                      trust store, top-level keys from $JW_TOP_TOML, and
#                                      any extra TOML on stdin
#   require_hosts "NAME ADDRESS"...    stops the run (exit 2) unless each NAME resolves to
#                                      ADDRESS, as scripts/setup-test-env.sh arranges
# Certificates:
#   new_key FILE                       a P-256 private key
#   test_ca DIR                        a CA both servers under test trust: DIR/ca.key, DIR/ca.pem
#   test_cert DIR NAME [ALTNAME...]    DIR/NAME.key and DIR/NAME.crt from that CA, for NAME and
#                                      each ALTNAME (its group chat service, say); CA:FALSE, as
#                                      webpki wants of a server's own certificate
# shellcheck shell=bash

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

test_ca() {
    new_key "$1/ca.key"
    openssl req -x509 -new -key "$1/ca.key" -out "$1/ca.pem" -days 2 -subj "/CN=Federation test CA" 2>/dev/null
}

test_cert() {
    local dir="$1" name="$2" san="DNS:$2" alt
    shift 2
    for alt in "$@"; do san+=",DNS:$alt"; done
    new_key "$dir/$name.key"
    openssl req -new -key "$dir/$name.key" -subj "/CN=$name" 2>/dev/null |
        openssl x509 -req -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 2 -out "$dir/$name.crt" \
            -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n' "$san") 2>/dev/null
}

# The certificates of insecure.test, Prosody's dialback-only host: self-signed, and an
# unrelated CA as its trust store, so that neither side can authenticate the other.
insecure_certs() {
    new_key "$1/insecure.test.key"
    openssl req -x509 -new -key "$1/insecure.test.key" -out "$1/insecure.test.crt" -days 2 \
        -subj "/CN=insecure.test" -addext "subjectAltName=DNS:insecure.test" 2>/dev/null
    new_key "$1/other-ca.key"
    openssl req -x509 -new -key "$1/other-ca.key" -out "$1/other-ca.pem" -days 2 -subj "/CN=Unrelated CA" 2>/dev/null
}

jw_federation_config() {
    local extra
    extra="$(cat)"
    jw_config <<TOML
${JW_TOP_TOML:-}
[listen]
c2s = ["$JW_HOST:$1"]
c2s_direct_tls = []

[http]
listen = []
listen_tls = []

[tls."jabberwock.test"]
cert = "$CERTS/jabberwock.test.crt"
key = "$CERTS/jabberwock.test.key"

[s2s]
listen = ["$JW_HOST:${2:-5269}"]
trust_store = "$CERTS/ca.pem"
connect_timeout_secs = 10
$extra
TOML
}

require_hosts() {
    local entry
    for entry in "$@"; do
        set -- $entry
        [ "$(getent hosts "$1" | awk '{print $1}')" = "$2" ] || {
            say "$1 does not resolve to $2: run scripts/setup-test-env.sh (it adds /etc/hosts entries)"
            exit 2
        }
    done
}

# expect_log WHAT LOG REGEX: says "ok: WHAT" when a line of LOG matches REGEX; otherwise
# says it failed and sets the caller's rc to 1.
expect_log() {
    if grep -Eq "$3" "$2"; then
        say "ok: $1"
    else
        say "FAILED: $1 (no line of $2 matching: $3)"
        rc=1
    fi
}
