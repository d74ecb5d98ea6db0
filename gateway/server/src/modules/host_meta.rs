//! XEP-0156: how a client finds this server's HTTP endpoints, at
//! `/.well-known/host-meta` (XML) and `/.well-known/host-meta.json`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Extension;

use super::{Host, Module};
use crate::http::{is_secure, LocalPort, Secure};
use crate::server::Server;

pub struct HostMeta;

impl Module for HostMeta {
    fn register(self: Arc<Self>, host: &mut Host) {
        host.http_routes(
            axum::Router::new()
                .route("/.well-known/host-meta", get(host_meta_xml))
                .route("/.well-known/host-meta.json", get(host_meta_json)),
        );
    }
}

const WEBSOCKET_REL: &str = "urn:xmpp:alt-connections:websocket";
const BOSH_REL: &str = "urn:xmpp:alt-connections:xbosh";

/// `(rel, href)` of every alternative connection method: under the configured public URL,
/// or else on a served domain with the port and scheme of the listener asked. The
/// request's Host only picks among the served domains and is never echoed: a cache in
/// between would otherwise keep, for everyone, links to whatever host one request named.
fn links(server: &Server, peer: SocketAddr, secure: Secure, port: LocalPort, headers: &HeaderMap) -> Vec<(&'static str, String)> {
    let base = match &server.config.http.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let domains = &server.config.domains;
            let asked =
                headers.get(header::HOST).and_then(|v| v.to_str().ok()).map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name));
            let domain = asked.and_then(|h| domains.iter().find(|d| d.eq_ignore_ascii_case(h))).unwrap_or(&domains[0]);
            let (scheme, port) = match (secure.0, is_secure(server, peer, secure, headers)) {
                // A TLS-terminating proxy in front: the browser used its default port.
                (false, true) => ("https", None),
                (true, _) => ("https", Some(port.0).filter(|&p| p != 443)),
                (false, false) => ("http", Some(port.0).filter(|&p| p != 80)),
            };
            match port {
                Some(port) => format!("{scheme}://{domain}:{port}"),
                None => format!("{scheme}://{domain}"),
            }
        }
    };
    let ws_base = base.replacen("http", "ws", 1);
    vec![(WEBSOCKET_REL, format!("{ws_base}/xmpp-websocket")), (BOSH_REL, format!("{base}/http-bind"))]
}

/// Browsers on any site may discover the endpoints.
fn cors() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"))]
}

async fn host_meta_xml(
    State(server): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(secure): Extension<Secure>,
    Extension(port): Extension<LocalPort>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let mut out = Vec::from(&b"<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n"[..]);
    for (rel, href) in links(&server, peer, secure, port, &headers) {
        out.extend_from_slice(b"  <Link");
        jabberwock_proto::escape::attribute(&mut out, "rel", rel);
        jabberwock_proto::escape::attribute(&mut out, "href", &href);
        out.extend_from_slice(b"/>\n");
    }
    out.extend_from_slice(b"</XRD>\n");
    (cors(), [(header::CONTENT_TYPE, HeaderValue::from_static("application/xrd+xml; charset=utf-8"))], out)
}

async fn host_meta_json(
    State(server): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(secure): Extension<Secure>,
    Extension(port): Extension<LocalPort>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let links: Vec<_> = links(&server, peer, secure, port, &headers)
        .into_iter()
        .map(|(rel, href)| serde_json::json!({ "rel": rel, "href": href }))
        .collect();
    (cors(), axum::Json(serde_json::json!({ "links": links })))
}
