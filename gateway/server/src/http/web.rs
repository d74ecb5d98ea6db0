//! The web client's files at `/`: hashed assets are cached forever, `index.html` never.

use std::path::PathBuf;
use std::sync::Arc;

use axum::handler::Handler;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower::ServiceBuilder;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use super::security::{inline_script_hashes, ContentSecurityPolicy};
use crate::config::Config;
use crate::server::Server;

const BUILT_CLIENT: &str = "web-client/dist";

pub fn routes(config: &Config) -> Router<Arc<Server>> {
    let root = config.http.web_root.clone().or_else(|| {
        let default = PathBuf::from(BUILT_CLIENT);
        default.join("index.html").exists().then_some(default)
    });
    let Some(root) = root else {
        return Router::new().route("/", get(|| async { Html(PLACEHOLDER) }));
    };
    // trunk names every asset by its content hash; only index.html changes in place, and
    // it is also the answer for any client-side route.
    let page =
        Arc::new(IndexPage { path: root.join("index.html"), policy: ContentSecurityPolicy::new(&config.http.embed_origins) });
    let index = move || {
        let page = page.clone();
        async move { page.serve().await }
    };
    let assets = ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        ))
        .service(ServeDir::new(&root).precompressed_gzip().fallback(index.clone().with_state(())));
    Router::new().route("/", get(index.clone())).route("/index.html", get(index)).fallback_service(assets)
}

/// The client's page, read at each request so that a rebuilt client is served at once,
/// with the policy that lets its inline loader script (and no other) run.
struct IndexPage {
    path: PathBuf,
    policy: ContentSecurityPolicy,
}

impl IndexPage {
    async fn serve(&self) -> Response {
        let Ok(html) = tokio::fs::read_to_string(&self.path).await else { return StatusCode::NOT_FOUND.into_response() };
        let headers = [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::CONTENT_SECURITY_POLICY, self.policy.header(&inline_script_hashes(&html))),
        ];
        (headers, html).into_response()
    }
}

const PLACEHOLDER: &str = "<!doctype html>
<html lang='en'><head><meta charset='utf-8'><meta name='viewport' content='width=device-width, initial-scale=1'>
<title>Jabberwock</title></head>
<body>
<h1>Jabberwock is running</h1>
<p>The web client has not been built on this server. Any XMPP client can connect now:
use your JID (for example <code>alice@localhost</code>) and password.</p>
<p>Browser clients can connect over WebSocket at <code>/xmpp-websocket</code>; the endpoints are
listed at <a href='/.well-known/host-meta'>/.well-known/host-meta</a>.</p>
</body></html>
";
