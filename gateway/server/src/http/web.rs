//! The web client's files at `/`: assets named by their content hash are cached forever,
//! everything else (the page, the widget loader, the app manifest, the service worker,
//! the icons) is checked with the server at each use.
//!
//! They come from a directory when there is one to serve (`http.web_root`, or a client
//! built locally into `web-client/dist`), and otherwise from the build embedded in the
//! binary: `static/web-client/`, published from the client's sources by
//! `scripts/build-web-client.sh --publish`, so that the server brings its web client
//! without the wasm toolchain.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use axum::handler::Handler;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;
use tower_http::services::ServeDir;

use super::security::{inline_script_hashes, ContentSecurityPolicy};
use crate::config::Config;
use crate::server::Server;

const LOCAL_BUILD: &str = "web-client/dist";

/// The published client, compiled into the binary.
#[derive(RustEmbed)]
#[folder = "../../static/web-client"]
struct EmbeddedClient;

const IMMUTABLE: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");
const REVALIDATE: HeaderValue = HeaderValue::from_static("no-cache");

/// How long a browser may keep `path` without asking: forever when trunk named it by its
/// content hash (`name-0123456789abcdef.js`, `…_bg.wasm`), since a new build has new
/// names; otherwise the name stays across releases (`widget.js`, which other sites
/// embed, `sw.js`, the web client's session worker, the manifest and icons) and the
/// browser must revalidate.
fn cache_control(path: &str) -> HeaderValue {
    let stem = path.rsplit('/').next().unwrap_or(path);
    let stem = stem.split_once('.').map_or(stem, |(stem, _)| stem);
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    let hashed = stem.rsplit_once('-').is_some_and(|(_, hash)| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
    if hashed {
        IMMUTABLE
    } else {
        REVALIDATE
    }
}

pub fn routes(config: &Config) -> Router<Arc<Server>> {
    let policy = ContentSecurityPolicy::new(&config.http.embed_origins).with_upload_origins(&crate::modules::upload::public_origins(config));
    let root = config.http.web_root.clone().or_else(|| {
        let local = PathBuf::from(LOCAL_BUILD);
        local.join("index.html").exists().then_some(local)
    });
    match root {
        Some(root) => directory_routes(root, policy),
        None => embedded_routes(policy),
    }
}

/// A client on disk, read at each request so that a rebuilt client is served at once.
fn directory_routes(root: PathBuf, policy: ContentSecurityPolicy) -> Router<Arc<Server>> {
    let page = Arc::new((root.join("index.html"), policy));
    // trunk names every asset by its content hash; only index.html changes in place, and
    // it is also the answer for any client-side route.
    let index = move || {
        let page = page.clone();
        async move {
            let (path, policy) = &*page;
            match tokio::fs::read_to_string(path).await {
                Ok(html) => {
                    let csp = policy.header(&inline_script_hashes(&html));
                    index_page(html.into_bytes().into(), csp)
                }
                Err(_) => StatusCode::NOT_FOUND.into_response(),
            }
        }
    };
    let assets = ServeDir::new(&root).precompressed_gzip().fallback(index.clone().with_state(()));
    Router::new()
        .route("/", get(index.clone()))
        .route("/index.html", get(index))
        .fallback_service(assets)
        .layer(axum::middleware::map_response(|uri: Uri, mut response: Response| async move {
            // The page sets its own (`no-cache`); an asset is cached by its name.
            if !response.headers().contains_key(header::CACHE_CONTROL) {
                response.headers_mut().insert(header::CACHE_CONTROL, cache_control(uri.path()));
            }
            response
        }))
}

fn embedded_routes(policy: ContentSecurityPolicy) -> Router<Arc<Server>> {
    let index = EmbeddedClient::get("index.html").expect("static/web-client holds a published client").data;
    // The page never changes: its policy is made once.
    let csp = policy.header(&inline_script_hashes(&String::from_utf8_lossy(&index)));
    let page = move || {
        let (index, csp) = (index.clone(), csp.clone());
        async move { index_page(index, csp) }
    };
    let asset = move |uri: Uri, headers: HeaderMap| {
        let page = page.clone();
        async move {
            let path = uri.path().trim_start_matches('/');
            match EmbeddedClient::get(path) {
                Some(file) if path != "index.html" => embedded_asset(path, file, &headers),
                _ => page().await,
            }
        }
    };
    Router::new().fallback(get(asset))
}

/// An embedded asset, its gzip copy (published next to it) to browsers that take gzip.
fn embedded_asset(path: &str, file: rust_embed::EmbeddedFile, request: &HeaderMap) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    headers.insert(header::CACHE_CONTROL, cache_control(path));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    let gzipped = accepts_gzip(request).then(|| EmbeddedClient::get(&format!("{path}.gz"))).flatten();
    let body = match gzipped {
        Some(gz) => {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            gz.data
        }
        None => file.data,
    };
    (headers, body).into_response()
}

/// The media type of a published file, by the extensions trunk's output has (browsers
/// compile a module streamed to them only as `application/wasm`).
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, extension)| extension) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        _ => "application/octet-stream",
    }
}

/// Whether `Accept-Encoding` takes gzip (RFC 9110 §12.5.3: a q-value of 0 refuses it).
fn accepts_gzip(request: &HeaderMap) -> bool {
    request.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|coding| {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let refused = parts.any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()) == Some(0.0));
        (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
    })
}

/// The client's page, with the policy (`csp`) that lets its inline loader script, and no
/// other, run.
fn index_page(html: Cow<'static, [u8]>, csp: HeaderValue) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::CONTENT_SECURITY_POLICY, csp),
    ];
    (headers, html).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_assets_named_by_their_hash_are_kept_forever() {
        for hashed in ["jabberwock-web-client-6d6486b3e3037f0b.js", "jabberwock-web-client-6d6486b3e3037f0b_bg.wasm", "/style-732cb19bd3336090.css"] {
            assert_eq!(cache_control(hashed), IMMUTABLE, "{hashed}");
        }
        let session_worker = ["session-worker.js", "jabberwock-session.js", "jabberwock-session_bg.wasm"];
        for named in ["widget.js", "sw.js", "manifest.webmanifest", "icons/icon-192.png", "jabberwock-web-client.js", "x-123.js"].into_iter().chain(session_worker) {
            assert_eq!(cache_control(named), REVALIDATE, "{named}");
        }
    }

    #[test]
    fn gzip_is_taken_unless_refused() {
        assert!(accepts_gzip(&accept("gzip, deflate, br")));
        assert!(accepts_gzip(&accept("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(&accept("*")));
        assert!(!accepts_gzip(&accept("gzip;q=0, br")));
        assert!(!accepts_gzip(&accept("identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
