//! What browsers are told and asked about: which page origins may open XMPP sessions, the
//! Content-Security-Policy of the web client, and HSTS on encrypted responses.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use axum::Extension;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::{is_secure, Secure};
use crate::config::Config;
use crate::server::Server;

/// A web origin (RFC 6454): scheme, host and port, the default port filled in.
#[derive(Debug, PartialEq, Eq)]
struct WebOrigin {
    scheme: String,
    host: String,
    port: u16,
}

impl WebOrigin {
    /// Reads `scheme://host[:port]`, ignoring any path; `None` for anything else, such as
    /// the `null` origin of sandboxed frames and local files.
    fn parse(url: &str) -> Option<WebOrigin> {
        let (scheme, rest) = url.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return None;
        }
        // An IPv6 literal keeps its brackets, as in the Origin header.
        let (host, port) = match authority.rfind(':') {
            Some(colon) if !authority[colon..].contains(']') => (&authority[..colon], Some(&authority[colon + 1..])),
            _ => (authority, None),
        };
        let port = match port {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        (!host.is_empty()).then(|| WebOrigin { scheme, host: host.to_ascii_lowercase(), port })
    }
}

/// Whether `host` (a Host header or an origin's host, with or without a port) names this
/// machine.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.rfind(':') {
        Some(colon) if !host[colon..].contains(']') => &host[..colon],
        _ => host,
    };
    let name = name.to_ascii_lowercase();
    let ip = name.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>();
    name == "localhost" || name.ends_with(".localhost") || ip.is_ok_and(|ip| ip.is_loopback())
}

/// Whether a browser page of `origin` may open WebSocket and BOSH sessions: the configured
/// origins (`http.allowed_origins`, `http.public_url`), pages on one of the served domains,
/// and pages on the browser's own machine (development). The request's Host header plays
/// no part: any site can point its name at this server and send its own name as Host.
pub fn origin_allowed(config: &Config, origin: &str) -> bool {
    let http = &config.http;
    if http.allowed_origins.iter().any(|o| o == "*") {
        return true;
    }
    let Some(origin) = WebOrigin::parse(origin) else { return false };
    http.allowed_origins.iter().chain(&http.public_url).filter_map(|o| WebOrigin::parse(o)).any(|o| o == origin)
        || config.domains.iter().any(|d| d.eq_ignore_ascii_case(&origin.host))
        || is_loopback_host(&origin.host)
}

/// The Content-Security-Policy of every response. The web client needs its own scripts,
/// the right to compile its WebAssembly, its stylesheet, `data:` images (its icon), and to
/// connect to its own origin and to any chat server over an encrypted connection (a user of
/// another domain signs in through that domain's discovery). Nothing inline runs but the
/// scripts of the page named by their hash.
pub struct ContentSecurityPolicy {
    frame_ancestors: String,
    /// The upload service's origins (` origin` each): images and PUTs go there.
    uploads: String,
}

impl ContentSecurityPolicy {
    /// `embed_origins` (validated with the configuration) may frame the client as well as
    /// this origin.
    pub fn new(embed_origins: &[String]) -> Self {
        let mut frame_ancestors = "'self'".to_owned();
        for origin in embed_origins {
            frame_ancestors.push(' ');
            frame_ancestors.push_str(origin);
        }
        ContentSecurityPolicy { frame_ancestors, uploads: String::new() }
    }

    /// Images from, and connections to, the upload service's `origins` too: the web client
    /// PUTs files there and shows uploaded pictures inline (an `https:` origin is allowed
    /// connections anyway; a plain `http:` one, in development, is not otherwise).
    pub fn with_upload_origins(mut self, origins: &[String]) -> Self {
        for origin in origins {
            self.uploads.push(' ');
            self.uploads.push_str(origin);
        }
        self
    }

    /// The policy for a page whose inline scripts are `script_hashes` (`'sha256-…'`).
    pub fn header(&self, script_hashes: &[String]) -> HeaderValue {
        let mut scripts = "'self' 'wasm-unsafe-eval'".to_owned();
        for hash in script_hashes {
            scripts.push(' ');
            scripts.push_str(hash);
        }
        let policy = format!(
            "default-src 'none'; script-src {scripts}; style-src 'self'; img-src 'self' data:{uploads}; \
             connect-src 'self' https: wss:{uploads}; manifest-src 'self'; worker-src 'self'; base-uri 'none'; \
             form-action 'none'; frame-ancestors {}",
            self.frame_ancestors,
            uploads = self.uploads
        );
        HeaderValue::from_str(&policy).expect("validated origins and base64 hashes make a valid header")
    }
}

/// `'sha256-…'` for each inline `<script>` of `html`: trunk writes the loader of the
/// WebAssembly module into the page itself.
pub fn inline_script_hashes(html: &str) -> Vec<String> {
    let mut hashes = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let Some(tag_len) = rest[start..].find('>') else { break };
        let tag = &rest[start..start + tag_len];
        let body = &rest[start + tag_len + 1..];
        let Some(body_len) = body.find("</script") else { break };
        if !tag.contains(" src=") {
            let digest = Sha256::digest(&body.as_bytes()[..body_len]);
            hashes.push(format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest)));
        }
        rest = &body[body_len..];
    }
    hashes
}

/// RFC 6797: responses that reached the browser encrypted (from the TLS listener, or
/// from a trusted proxy that says so) ask it to use HTTPS only from now on. Not for a page
/// of this machine (`https://localhost:5443` in development): the browser would then
/// refuse plain HTTP to every other local site too.
pub async fn strict_transport_security(
    State(server): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(secure): Extension<Secure>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let local = headers.get(header::HOST).and_then(|v| v.to_str().ok()).is_some_and(is_loopback_host);
    let encrypted = is_secure(&server, peer, secure, headers);
    let mut response = next.run(request).await;
    let max_age = server.config.http.hsts_max_age_secs;
    if encrypted && !local && max_age > 0 {
        let value = HeaderValue::from_str(&format!("max-age={max_age}")).expect("a number is a valid header");
        response.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_with_their_default_ports() {
        let o = |s| WebOrigin::parse(s);
        assert_eq!(o("https://Chat.Example.org"), o("https://chat.example.org:443/"));
        assert_ne!(o("http://chat.example.org"), o("https://chat.example.org"));
        assert_eq!(o("http://[::1]:5280").unwrap().host, "[::1]");
        assert_eq!(o("http://[::1]").unwrap().port, 80);
        for bad in ["null", "file:///x", "https://", "https://a:b", "https://user@evil.example"] {
            assert!(o(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn allowed_origins_come_from_the_configuration_only() {
        let config = Config::parse(
            "domains = ['example.org']\n[http]\npublic_url = 'https://chat.example.org'\nallowed_origins = ['https://app.example.net']",
        )
        .unwrap();
        for ok in [
            "https://chat.example.org",
            "https://app.example.net",
            "https://example.org",
            "http://localhost:8080",
            "http://[::1]:5280",
        ] {
            assert!(origin_allowed(&config, ok), "{ok}");
        }
        for refused in [
            "https://evil.example",
            "https://chat.example.org:8443",
            "http://app.example.net",
            "null",
            "https://example.org.evil.example",
        ] {
            assert!(!origin_allowed(&config, refused), "{refused}");
        }
        let any = Config::parse("[http]\nallowed_origins = ['*']").unwrap();
        assert!(origin_allowed(&any, "https://evil.example"));
    }

    #[test]
    fn loopback_hosts() {
        for local in ["localhost", "LOCALHOST:5443", "app.localhost", "127.0.0.1:5443", "127.1.2.3", "[::1]", "[::1]:5443"] {
            assert!(is_loopback_host(local), "{local}");
        }
        for remote in ["example.org", "localhost.example.org", "10.0.0.1:5443", "[2001:db8::1]:443", ""] {
            assert!(!is_loopback_host(remote), "{remote}");
        }
    }

    #[test]
    fn only_inline_scripts_are_hashed() {
        let html = "<script type=\"module\">run()</script><script src=\"/x.js\"></script><script>\n</script>";
        let sha = |s: &str| format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(s)));
        assert_eq!(inline_script_hashes(html), [sha("run()"), sha("\n")]);
        assert!(inline_script_hashes("<p>no scripts</p><script>unterminated").is_empty());
    }
}
