//! What operators and their tools ask: `/healthz` (the process serves HTTP), `/readyz`
//! (it can do its work: listeners bound, storage answering) and `/metrics` (Prometheus,
//! for the addresses or the bearer token `[metrics]` allows).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use subtle::ConstantTimeEq;

use crate::server::Server;

pub fn routes(server: &Server) -> Router<Arc<Server>> {
    let routes = Router::new().route("/healthz", get(|| async { "ok" })).route("/readyz", get(readyz));
    if server.config.metrics.enabled {
        routes.route("/metrics", get(metrics))
    } else {
        // Not the web client's page, which answers every other path.
        routes.route("/metrics", get(|| async { (StatusCode::NOT_FOUND, "metrics are disabled") }))
    }
}

async fn readyz(State(server): State<Arc<Server>>) -> Response {
    match server.unready().await {
        None => "ready".into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

async fn metrics(State(server): State<Arc<Server>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap) -> Response {
    if !may_read_metrics(&server, peer, &headers) {
        return (StatusCode::FORBIDDEN, "metrics are not served to this address").into_response();
    }
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-store")], server.metrics.encode()).into_response()
}

/// The right bearer token, or a client address on the allowed list (the forwarded one
/// behind a trusted proxy, so the proxy's own address does not open the door).
fn may_read_metrics(server: &Server, peer: SocketAddr, headers: &HeaderMap) -> bool {
    let config = &server.config.metrics;
    if let Some(token) = &config.bearer_token {
        let presented = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(token.as_bytes()))) {
            return true;
        }
    }
    config.allowed_addresses.contains(&super::client_ip(server, peer, headers).to_canonical())
}
