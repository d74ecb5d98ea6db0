//! XEP-0156 discovery over fetch: the JID's domain first, then the server that serves
//! this page.

use jabberwock_client_core::discovery::{host_meta_urls, link_endpoint_allowed, parse_json, parse_xrd, Endpoints};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Request, RequestInit, RequestMode, Response};

use crate::browser;

const FETCH_TIMEOUT_MS: i32 = 5000;

enum Fetched {
    Text(String),
    /// An HTTP error status: the host answered, try its other document.
    Missing,
    /// Nothing answered: skip this host.
    Unreachable,
}

async fn fetch_text(url: &str) -> Fetched {
    let controller = AbortController::new().ok();
    let init = RequestInit::new();
    init.set_method("GET");
    init.set_mode(RequestMode::Cors);
    if let Some(c) = &controller {
        init.set_signal(Some(&c.signal()));
    }
    let Ok(request) = Request::new_with_str_and_init(url, &init) else { return Fetched::Unreachable };
    let timer = controller.clone().map(|c| browser::set_timeout(FETCH_TIMEOUT_MS, move || c.abort()));
    let result = JsFuture::from(browser::fetch(&request)).await;
    let out = match result.ok().and_then(|r| r.dyn_into::<Response>().ok()) {
        None => Fetched::Unreachable,
        Some(resp) if !resp.ok() => Fetched::Missing,
        Some(resp) => match resp.text() {
            Ok(p) => JsFuture::from(p).await.ok().and_then(|t| t.as_string()).map_or(Fetched::Missing, Fetched::Text),
            Err(_) => Fetched::Missing,
        },
    };
    if let Some(t) = timer {
        browser::clear_timeout(t);
    }
    out
}

/// Reads host-meta at `base` (an `http(s)://host[:port]` URL): JSON, then XRD.
pub async fn from_base(base: &str) -> Option<Endpoints> {
    let [json, xrd] = host_meta_urls(base);
    match fetch_text(&json).await {
        Fetched::Text(t) => {
            if let Some(e) = parse_json(&t).filter(|e| !e.is_empty()) {
                return Some(e);
            }
        }
        Fetched::Unreachable => return None,
        Fetched::Missing => {}
    }
    match fetch_text(&xrd).await {
        Fetched::Text(t) => parse_xrd(&t).filter(|e| !e.is_empty()),
        _ => None,
    }
}

/// The endpoints for `domain`, or a sentence saying why there are none.
pub async fn discover(domain: &str) -> Result<Endpoints, String> {
    let mut bases = vec![format!("https://{domain}")];
    let origin = browser::origin();
    if origin.starts_with("http") && !bases.contains(&origin) {
        bases.push(origin);
    }
    for base in bases {
        if let Some(e) = from_base(&base).await {
            return Ok(usable(e));
        }
    }
    Err(format!(
        "Could not find the chat server for {domain} (XEP-0156 discovery failed). Check the address, or enter the server's URL under “Advanced”."
    ))
}

/// Whether the server URL in the page's address may be used: on this page's origin, or
/// advertised by it ([`link_endpoint_allowed`]).
pub async fn link_endpoint_usable(url: &str) -> bool {
    let origin = browser::origin();
    if link_endpoint_allowed(url, &origin, &Endpoints::default()) {
        return true;
    }
    let advertised = if origin.starts_with("http") { from_base(&origin).await.unwrap_or_default() } else { Endpoints::default() };
    link_endpoint_allowed(url, &origin, &advertised)
}

/// A page loaded over HTTPS may not open unencrypted sockets.
pub fn usable(mut e: Endpoints) -> Endpoints {
    if browser::origin().starts_with("https:") {
        e.websocket.retain(|u| u.starts_with("wss:"));
        e.bosh.retain(|u| u.starts_with("https:"));
    }
    e
}
