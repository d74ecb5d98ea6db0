//! `/http-bind`: XEP-0124/0206 BOSH requests, with CORS for browser pages.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use jabberwock_proto::bosh::{body_events, parse_request, RequestBody};
use jabberwock_proto::Element;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::{admit, security, Secure};
use crate::cluster::node_of;
use crate::server::Server;
use crate::transport::bosh::{BoshSession, Creation, Reply, Request};

pub fn routes(server: &Arc<Server>) -> Router<Arc<Server>> {
    let for_cors = server.clone();
    let cors = CorsLayer::new()
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(86400))
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            origin.to_str().is_ok_and(|o| security::origin_allowed(&for_cors.config, o))
        }));
    // A body carries a few stanzas at most; anything far larger is refused (413) before
    // it is buffered whole.
    let body_limit = server.config.limits.max_stanza_bytes.saturating_mul(4);
    Router::new()
        .route("/http-bind", post(request).options(|| async { StatusCode::NO_CONTENT }))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(cors)
}

fn respond(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/xml; charset=utf-8"))], reply.body).into_response()
}

async fn request(
    State(server): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(secure): Extension<Secure>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let client = match admit(&server, peer, secure, &headers) {
        Ok(c) => c,
        Err(refused) => return *refused,
    };
    let bad_request = || respond(Reply::terminate(400, "bad-request"));
    server.metrics.traffic(crate::metrics::Transport::Bosh).received(body.len());
    let Some(RequestBody { body: el, rid }) = parse_request(&body, &server.config.stream_limits()) else { return bad_request() };
    let number = |name: &str| el.attr(name).and_then(|v| v.parse::<u64>().ok());
    let Some(sid) = el.attr("sid") else {
        // XEP-0124 §17.2: policy-violation for a client opening sessions too fast, or
        // holding too many that have not authenticated.
        let policy_violation = || respond(Reply::terminate(403, "policy-violation"));
        if !server.bosh.creation_allowed(client.ip) {
            return policy_violation();
        }
        let Ok(negotiating) = server.admission.negotiating.acquire(Some(client.ip)) else { return policy_violation() };
        let creation = Creation {
            rid,
            to: el.attr("to").map(str::to_owned),
            wait: number("wait").unwrap_or(60),
            hold: number("hold").unwrap_or(1) as usize,
            lang: el.attr("xml:lang").map(str::to_owned),
        };
        let (_session, rx) = BoshSession::create(server.clone(), server.bosh.clone(), creation, client.ip, client.encrypted, negotiating);
        return match tokio::time::timeout(server.config.negotiation_timeout(), rx).await {
            Ok(Ok(reply)) => respond(reply),
            _ => respond(Reply::terminate(500, "internal-server-error")),
        };
    };
    if let Some(session) = server.bosh.get(sid) {
        return respond(to_session(&session, &el, rid).await);
    }
    // Behind a load balancer without sticky sessions: the node the sid names answers.
    match (server.sessions.cluster(), node_of(sid)) {
        (Some(cluster), Some(node)) if node != cluster.node() => respond(cluster.forward_bosh(node, &body).await),
        _ => respond(Reply::terminate(404, "item-not-found")),
    }
}

/// A request that another node of the cluster received for a session of this one. It is
/// answered here or not at all: never forwarded again, so it cannot go round the nodes.
pub(crate) async fn forwarded(server: &Server, body: &[u8]) -> Reply {
    let Some(RequestBody { body: el, rid }) = parse_request(body, &server.config.stream_limits()) else {
        return Reply::terminate(400, "bad-request");
    };
    match el.attr("sid").and_then(|sid| server.bosh.get(sid)) {
        Some(session) => to_session(&session, &el, rid).await,
        None => Reply::terminate(404, "item-not-found"),
    }
}

async fn to_session(session: &BoshSession, el: &Element, rid: u64) -> Reply {
    let Ok(events) = body_events(el) else { return Reply::terminate(400, "bad-request") };
    let pause = el.attr("pause").and_then(|v| v.parse::<u64>().ok());
    session.request(Request { rid, events, pause }).await
}
