//! The HTTP side: RFC 7395 WebSocket at `/xmpp-websocket`, XEP-0206 BOSH at
//! `/http-bind`, the routes modules add (XEP-0156 discovery, for one), and the web client
//! at `/`. Plain HTTP and HTTPS listeners serve the same routes.

pub(crate) mod bosh;
mod ops;
mod security;
mod web;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutBody;

use crate::admission::{Refused, Slot};
use crate::server::Server;
use crate::transport::websocket;

/// Whether the request arrived on the TLS listener.
#[derive(Clone, Copy, Debug)]
pub struct Secure(pub bool);

/// The port of the listener the request arrived on.
#[derive(Clone, Copy, Debug)]
pub struct LocalPort(pub u16);

pub fn router(server: Arc<Server>) -> Router {
    let mut app = Router::new()
        .route("/xmpp-websocket", get(websocket_upgrade))
        .merge(bosh::routes(&server))
        .merge(ops::routes(&server));
    for routes in server.modules.http_routes() {
        app = app.merge(routes.clone());
    }
    let embed_origins = &server.config.http.embed_origins;
    // The web client's page sets its own policy, which names its inline scripts.
    let csp = security::ContentSecurityPolicy::new(embed_origins).header(&[]);
    // For browsers that predate `frame-ancestors`, when only this origin may frame us.
    let frame_options = embed_origins.is_empty().then(|| HeaderValue::from_static("SAMEORIGIN"));
    app.merge(web::routes(&server.config))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::if_not_present(header::CONTENT_SECURITY_POLICY, csp))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, move |_: &Response| frame_options.clone()))
        .layer(axum::middleware::from_fn_with_state(server.clone(), security::strict_transport_security))
        .with_state(server)
}

/// Serves HTTP (or HTTPS with `tls`) on `listener` until shutdown.
pub async fn accept_loop(server: Arc<Server>, listener: TcpListener, tls: bool) {
    let app = router(server.clone());
    crate::transport::accept_until_shutdown(&server, listener, |tcp, peer| {
        tokio::spawn(serve_connection(server.clone(), app.clone(), tcp, peer, tls));
    })
    .await;
}

async fn serve_connection(server: Arc<Server>, app: Router, tcp: TcpStream, peer: SocketAddr, tls: bool) {
    // A trusted proxy speaks for many clients: its connections count in the total only,
    // and the per-address caps apply to the forwarded address of each session it opens.
    let counted = (!server.config.http.trusted_proxies.contains(&peer.ip())).then_some(peer.ip());
    let Ok(slot) = server.admission.connections.acquire(counted) else { return };
    // Shared with the WebSocket a request may turn into, which outlives this connection.
    let slot = Arc::new(slot);
    let _ = tcp.set_nodelay(true);
    let body_timeout = std::time::Duration::from_secs(server.config.http.body_timeout_secs);
    let local_port = LocalPort(tcp.local_addr().map_or(0, |a| a.port()));
    let app = app.layer(Extension(Secure(tls))).layer(Extension(local_port)).layer(Extension(slot)).map_request(
        move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.map(|body| TimeoutBody::new(body_timeout, body))
        },
    );
    let service = TowerToHyperService::new(app);
    // HTTP/1.1 only (ALPN offers nothing else): HTTP/2 detection would wait for the
    // first bytes with no timeout at all. The header timer starts whenever a request is
    // awaited, so it also closes idle keep-alive connections.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(server.config.header_timeout());
    let result = if tls {
        let handshake = tokio::time::timeout(server.config.header_timeout(), server.tls.https.accept(tcp)).await;
        let Ok(Ok(stream)) = handshake else {
            tracing::debug!(%peer, "HTTPS handshake failed");
            return;
        };
        builder.serve_connection(TokioIo::new(stream), service).with_upgrades().await
    } else {
        builder.serve_connection(TokioIo::new(tcp), service).with_upgrades().await
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// The client's address: the peer's, or the one a trusted proxy forwarded.
fn client_ip(server: &Server, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    if !server.config.http.trusted_proxies.contains(&peer.ip()) {
        return peer.ip();
    }
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(peer.ip())
}

/// Whether the request reached the server, or a trusted proxy in front of it, over TLS.
pub fn is_secure(server: &Server, peer: SocketAddr, secure: Secure, headers: &HeaderMap) -> bool {
    secure.0
        || (server.config.http.trusted_proxies.contains(&peer.ip())
            && headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https"))
}

/// Who opens a WebSocket or BOSH session: the client's address and whether the
/// connection is encrypted, as a trusted proxy may tell.
pub struct SessionPeer {
    pub ip: IpAddr,
    pub encrypted: bool,
}

/// Admits a request that opens an XMPP session, or refuses a browser page whose origin may
/// not (403).
pub fn admit(server: &Server, peer: SocketAddr, secure: Secure, headers: &HeaderMap) -> Result<SessionPeer, Box<Response>> {
    let origin = headers.get(header::ORIGIN).map(|v| v.to_str().unwrap_or_default());
    // Requests without an Origin header do not come from a browser page.
    if origin.is_some_and(|o| !security::origin_allowed(&server.config, o)) {
        return Err(Box::new((StatusCode::FORBIDDEN, "this origin may not open XMPP sessions here").into_response()));
    }
    Ok(SessionPeer { ip: client_ip(server, peer, headers), encrypted: is_secure(server, peer, secure, headers) })
}

async fn websocket_upgrade(
    State(server): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(secure): Extension<Secure>,
    Extension(connection): Extension<Arc<Slot>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // RFC 7395 §3.1: the handshake must ask for the xmpp subprotocol.
    let offers_xmpp = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "xmpp");
    if !offers_xmpp {
        return (StatusCode::BAD_REQUEST, "the xmpp WebSocket subprotocol is required (RFC 7395)").into_response();
    }
    let client = match admit(&server, peer, secure, &headers) {
        Ok(c) => c,
        Err(refused) => return *refused,
    };
    let negotiating = match server.admission.negotiating.acquire(Some(client.ip)) {
        Ok(slot) => slot,
        Err(Refused::PerAddress) => return (StatusCode::TOO_MANY_REQUESTS, "too many unauthenticated sessions from your address").into_response(),
        Err(Refused::Total) => return (StatusCode::SERVICE_UNAVAILABLE, "too many unauthenticated sessions").into_response(),
    };
    // Frames above the stanza limit are refused by the session with policy-violation;
    // the WebSocket layer only stops what is far beyond it.
    let frame_limit = server.config.limits.max_stanza_bytes.saturating_mul(2);
    ws.protocols(["xmpp"])
        .max_message_size(frame_limit)
        .max_frame_size(frame_limit)
        // tungstenite reserves 128 KiB per connection for reading by default; stanzas are
        // small, and a larger one only takes several reads.
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .on_upgrade(move |socket| websocket::serve(server, socket, client, connection, negotiating))
}
