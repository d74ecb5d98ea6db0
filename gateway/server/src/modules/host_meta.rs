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
use crate::http::{is_secure, Secure};
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

/// `(rel, href)` of every alternative connection method, for the URL the client used
/// (or the configured public URL).
fn links(server: &Server, peer: SocketAddr, secure: Secure, headers: &HeaderMap) -> Vec<(&'static str, String)> {
    let base = match &server.config.http.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let scheme = if is_secure(server, peer, secure, headers) { "https" } else { "http" };
            let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or(&server.config.domains[0]);
            format!("{scheme}://{host}")
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
    headers: HeaderMap,
) -> impl IntoResponse {
    let mut out = Vec::from(&b"<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n"[..]);
    for (rel, href) in links(&server, peer, secure, &headers) {
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
    headers: HeaderMap,
) -> impl IntoResponse {
    let links: Vec<_> =
        links(&server, peer, secure, &headers).into_iter().map(|(rel, href)| serde_json::json!({ "rel": rel, "href": href })).collect();
    (cors(), axum::Json(serde_json::json!({ "links": links })))
}
