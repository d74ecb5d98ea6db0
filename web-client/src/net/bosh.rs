//! XEP-0206 BOSH over fetch: the request bodies come from the core crate's [`Bosh`]; this
//! file only POSTs them and hands the answers back to [`super::on_bosh_response`].

use jabberwock_client_core::bosh::{Bosh, BoshRequest, WAIT_SECS};
use jabberwock_client_core::{Frame, Input};
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Request, RequestInit, RequestMode, Response};

use crate::browser;

pub struct BoshTransport {
    url: String,
    generation: u32,
    bosh: Bosh,
}

impl BoshTransport {
    pub fn new(url: &str, domain: &str, generation: u32) -> Self {
        // XEP-0124 §14.1: a random starting rid, far from 2^53.
        let mut bytes = [0u8; 4];
        browser::random_bytes(&mut bytes);
        let first_rid = u64::from(u32::from_le_bytes(bytes)) + 1;
        BoshTransport { url: url.to_owned(), generation, bosh: Bosh::new(domain, first_rid) }
    }

    /// Queues a frame and sends whatever requests are due; returns inputs the connection
    /// should see at once (a restart is immediate in BOSH).
    pub fn send(&mut self, frame: Frame) -> Vec<Input> {
        let inputs = self.bosh.push(frame);
        self.pump();
        inputs
    }

    pub fn on_response(&mut self, text: &str) -> Option<Vec<Input>> {
        let inputs = self.bosh.on_response(text).ok()?;
        self.pump();
        Some(inputs)
    }

    pub fn on_failure(&mut self) {
        self.bosh.on_failure();
    }

    /// The session exists on the server (the creation request was answered).
    pub fn is_open(&self) -> bool {
        self.bosh.sid().is_some()
    }

    pub fn is_terminated(&self) -> bool {
        self.bosh.is_terminated()
    }

    fn pump(&mut self) {
        while let Some(req) = self.bosh.next_request() {
            spawn_local(post(self.url.clone(), req, self.generation));
        }
    }
}

async fn post(url: String, req: BoshRequest, generation: u32) {
    browser::debug("BOSH →", &req.body);
    let result = fetch(&url, &req.body).await;
    match result {
        Some(text) => {
            browser::debug(&format!("BOSH ← (rid {})", req.rid), &text);
            super::on_bosh_response(generation, text)
        }
        None => {
            browser::debug("BOSH ✗", &req.rid.to_string());
            super::on_bosh_failure(generation)
        }
    }
}

/// POSTs a body; `None` on a network error, a timeout or an HTTP error status.
async fn fetch(url: &str, body: &str) -> Option<String> {
    let controller = AbortController::new().ok();
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_mode(RequestMode::Cors);
    init.set_body(&body.into());
    if let Some(c) = &controller {
        init.set_signal(Some(&c.signal()));
    }
    let request = Request::new_with_str_and_init(url, &init).ok()?;
    let _ = request.headers().set("Content-Type", "text/xml; charset=utf-8");
    // The server holds a request up to `wait` seconds; allow some more.
    let timer = controller.clone().map(|c| browser::set_timeout((WAIT_SECS as i32 + 15) * 1000, move || c.abort()));
    let resp =
        JsFuture::from(browser::fetch(&request)).await.ok().and_then(|r| r.dyn_into::<Response>().ok());
    let text = match resp {
        Some(r) if r.ok() => match r.text() {
            Ok(p) => JsFuture::from(p).await.ok().and_then(|t| t.as_string()),
            Err(_) => None,
        },
        _ => None,
    };
    if let Some(t) = timer {
        browser::clear_timeout(t);
    }
    text
}
