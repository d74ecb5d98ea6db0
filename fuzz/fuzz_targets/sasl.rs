//! SASL messages: PLAIN, the two client messages of a SCRAM exchange, as `<auth/>` and
//! `<response/>` carry them before anyone has signed in, and the initial response of the
//! FAST token mechanisms (HT-SHA-256, in SASL2's `<authenticate/>`).
#![no_main]

use std::sync::OnceLock;

use jabberwock_sasl::ht::{HtExchange, HtMechanism};
use jabberwock_sasl::{
    derive_credentials, plain, ChannelBinding, ChannelBindingType, Decoy, HashAlg, ScramServer, StoredCredentials,
};
use libfuzzer_sys::fuzz_target;

/// One iteration of PBKDF2: the fuzzer is after the parsers, not the hash.
fn credentials() -> &'static StoredCredentials {
    static CREDS: OnceLock<StoredCredentials> = OnceLock::new();
    CREDS.get_or_init(|| derive_credentials("pencil", 1).expect("a valid password"))
}

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the mechanism and the connection; the rest are the messages.
    let Some((&choice, rest)) = data.split_first() else { return };
    if choice & 1 == 0 {
        if let Ok(msg) = plain::parse(rest) {
            plain::verify(&msg.password, &credentials().sha1);
        }
        return;
    }
    let alg = if choice & 2 == 0 { HashAlg::Sha1 } else { HashAlg::Sha256 };
    let plus = choice & 4 != 0;
    let bindings = match (choice & 8 != 0, choice & 16 != 0) {
        (false, _) => Vec::new(),
        (true, exporter) => vec![ChannelBinding {
            kind: if exporter { ChannelBindingType::TlsExporter } else { ChannelBindingType::TlsServerEndPoint },
            data: b"binding".to_vec(),
        }],
    };
    if choice & 64 != 0 {
        let mechanism = HtMechanism::ALL[usize::from(choice >> 1) % HtMechanism::ALL.len()];
        if let Ok(exchange) = HtExchange::parse(mechanism, rest, &bindings) {
            assert!(!exchange.username.is_empty());
            let _ = exchange.verify(&[7; 32]);
        }
        return;
    }
    let known_user = choice & 32 != 0;
    // 0xff never occurs in UTF-8, so it separates client-first from client-final.
    let (first, last) = match rest.iter().position(|&b| b == 0xff) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let mut server = ScramServer::new(alg, plus, bindings);
    if server.client_first(first).is_err() {
        return;
    }
    let decoy = Decoy::new([7; 32], 1);
    let server_first = server.server_first(known_user.then(|| credentials().for_alg(alg)), &decoy);
    // The server's half of the nonce is random: `r=*` in the input stands for the whole nonce.
    let nonce = server_first.split(|&b| b == b',').next().expect("r=…");
    let last = replace(last, b"r=*", nonce);
    let _ = server.client_final(&last);
    // The exchange is over, whatever the outcome.
    assert!(server.client_final(&last).is_err());
});

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    match haystack.windows(needle.len()).position(|w| w == needle) {
        Some(i) => [&haystack[..i], with, &haystack[i + needle.len()..]].concat(),
        None => haystack.to_vec(),
    }
}
