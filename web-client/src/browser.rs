//! Small adapters to the browser: clock, randomness, timers, storage and date formatting.
//!
//! The session also runs in a shared worker (see `net::shared`), which has no window: the
//! adapters the session uses work in both, and what only a page has (`localStorage`,
//! whether it is shown, notifications) comes to the worker from its tabs.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

pub fn window() -> web_sys::Window {
    web_sys::window().expect("a browser window")
}

/// This code runs in the worker that holds the session for the tabs, not in a page.
pub fn in_worker() -> bool {
    web_sys::window().is_none()
}

fn worker_scope() -> web_sys::WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

pub fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

/// Fills `bytes` from the platform CSPRNG.
pub fn random_bytes(bytes: &mut [u8]) {
    let crypto = match web_sys::window() {
        Some(w) => w.crypto(),
        None => worker_scope().crypto(),
    };
    crypto.expect("Web Crypto").get_random_values_with_u8_array(bytes).expect("random bytes");
}

/// 18 random bytes from the platform CSPRNG, as a SCRAM nonce.
pub fn nonce() -> String {
    let mut bytes = [0u8; 18];
    random_bytes(&mut bytes);
    jabberwock_client_core::scram::nonce_from_bytes(&bytes)
}

/// Asks for the Web Lock `name` (page or worker: `navigator.locks`); once granted, calls
/// `granted`, and the lock is held until the promise it returns settles (a pending one:
/// until this page or worker ends). False where the browser has no Web Locks (an old
/// browser, or a page not served over HTTPS); a request the browser refuses is ignored.
pub fn request_lock(name: &str, granted: impl FnOnce() -> js_sys::Promise + 'static) -> bool {
    let locks = js_sys::Reflect::get(&js_sys::global(), &"navigator".into()).and_then(|n| js_sys::Reflect::get(&n, &"locks".into()));
    let Some(request) = locks.as_ref().ok().and_then(|l| js_sys::Reflect::get(l, &"request".into()).ok()).and_then(|r| r.dyn_into::<js_sys::Function>().ok())
    else {
        return false;
    };
    let callback = Closure::once_into_js(move |_lock: JsValue| granted());
    let Ok(pending) = request.call2(locks.as_ref().expect("checked above"), &name.into(), &callback) else { return false };
    // Refused (a frame with an opaque origin, say): nothing to wait for, and no uncaught
    // rejection either.
    let refused = Closure::<dyn FnMut(JsValue)>::new(|_| {});
    let _ = pending.unchecked_into::<js_sys::Promise>().catch(&refused);
    refused.forget();
    true
}

/// Runs `f` once after `ms` milliseconds; returns the timer id for [`clear_timeout`].
pub fn set_timeout(ms: i32, f: impl FnOnce() + 'static) -> i32 {
    let cb = Closure::once_into_js(f);
    let set = match web_sys::window() {
        Some(w) => w.set_timeout_with_callback_and_timeout_and_arguments_0(cb.unchecked_ref(), ms),
        None => worker_scope().set_timeout_with_callback_and_timeout_and_arguments_0(cb.unchecked_ref(), ms),
    };
    set.unwrap_or(0)
}

pub fn clear_timeout(id: i32) {
    match web_sys::window() {
        Some(w) => w.clear_timeout_with_handle(id),
        None => worker_scope().clear_timeout_with_handle(id),
    }
}

/// `fetch`, from the page or the worker.
pub fn fetch(request: &web_sys::Request) -> js_sys::Promise {
    match web_sys::window() {
        Some(w) => w.fetch_with_request(request),
        None => worker_scope().fetch_with_request(request),
    }
}

/// Installs the service worker (`sw.js`, next to the page) that keeps the app shell for
/// starting offline. Browsers allow one only in a secure context (https, or localhost);
/// elsewhere, and where it fails, the client works as before, online only.
pub fn register_service_worker() {
    let w = window();
    if !w.is_secure_context() {
        return;
    }
    let registering = w.navigator().service_worker().register("sw.js");
    // Awaited so that a refusal is handled: it only means no offline start.
    wasm_bindgen_futures::spawn_local(async move {
        let _ = wasm_bindgen_futures::JsFuture::from(registering).await;
    });
}

/// The largest file taken as a picture: decoding a bigger one would cost the page more
/// memory than a picture of 128 pixels is worth.
const MAX_PICTURE_FILE_BYTES: f64 = 20.0 * 1024.0 * 1024.0;

/// `file` drawn as a square JPEG of `size` pixels (the middle of the picture, scaled), as
/// a `data:` URL. The browser decodes it (`createImageBitmap`), so any type it shows works.
pub async fn square_jpeg(file: web_sys::File, size: u32) -> Result<String, String> {
    if file.size() > MAX_PICTURE_FILE_BYTES {
        return Err("That file is too large for a picture (at most 20 MB)".into());
    }
    let not_a_picture = |_| "That file is not a picture this browser can show".to_owned();
    let decoding = window().create_image_bitmap_with_blob(&file).map_err(not_a_picture)?;
    let bitmap: web_sys::ImageBitmap =
        wasm_bindgen_futures::JsFuture::from(decoding).await.map_err(not_a_picture)?.dyn_into().map_err(not_a_picture)?;
    let (w, h) = (f64::from(bitmap.width()), f64::from(bitmap.height()));
    let side = w.min(h);
    fn failed<T>(_: T) -> String {
        "The picture could not be made".to_owned()
    }
    let canvas: web_sys::HtmlCanvasElement =
        window().document().expect("document").create_element("canvas").map_err(failed)?.dyn_into().map_err(failed)?;
    canvas.set_width(size);
    canvas.set_height(size);
    let context: web_sys::CanvasRenderingContext2d =
        canvas.get_context("2d").map_err(failed)?.ok_or_else(|| failed(()))?.dyn_into().map_err(failed)?;
    let target = f64::from(size);
    context
        .draw_image_with_image_bitmap_and_sw_and_sh_and_dx_and_dy_and_dw_and_dh(
            &bitmap,
            (w - side) / 2.0,
            (h - side) / 2.0,
            side,
            side,
            0.0,
            0.0,
            target,
            target,
        )
        .map_err(failed)?;
    bitmap.close();
    canvas.to_data_url_with_type_and_encoder_options("image/jpeg", &JsValue::from_f64(0.85)).map_err(failed)
}

/// `location.origin`, for example `http://127.0.0.1:5280`.
pub fn origin() -> String {
    match web_sys::window() {
        Some(w) => w.location().origin().unwrap_or_default(),
        None => worker_scope().location().origin(),
    }
}

pub fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

pub fn session_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok().flatten()
}

/// Hands a value written here to the other side (the worker, or its tabs).
type StoreForward = fn(&str, Option<&str>);

/// Hands a line of the worker's protocol log to its tabs.
type LogForward = fn(&str, &str);

thread_local! {
    /// In the worker: the tabs' `localStorage` values the session uses, as the tabs sent
    /// them; what the session writes goes back to the tabs.
    static WORKER_STORE: RefCell<BTreeMap<String, String>> = const { RefCell::new(BTreeMap::new()) };
    /// Tells the other side (the worker, or the tabs) about a value written here.
    static STORE_FORWARD: Cell<Option<StoreForward>> = const { Cell::new(None) };
    /// In the worker: whether any tab is shown.
    static WORKER_VISIBLE: Cell<bool> = const { Cell::new(false) };
    /// In the worker: whether its tabs say there is a network (a worker's own view may
    /// differ where the network is emulated, as in tests).
    static WORKER_ONLINE: Cell<bool> = const { Cell::new(true) };
    /// In the worker: where the protocol log goes (the tabs' consoles).
    static LOG_FORWARD: Cell<Option<LogForward>> = const { Cell::new(None) };
}

/// A value the client keeps (`localStorage`, or the worker's copy of it).
pub fn stored(key: &str) -> Option<String> {
    match local_storage() {
        Some(s) => s.get_item(key).ok().flatten(),
        None => WORKER_STORE.with(|m| m.borrow().get(key).cloned()),
    }
}

/// Keeps `value` under `key` (`None`: removes it); false when the browser refused it
/// (over the origin's quota).
pub fn store(key: &str, value: Option<&str>) -> bool {
    let kept = keep_here(key, value);
    if let Some(forward) = STORE_FORWARD.with(Cell::get) {
        forward(key, value);
    }
    kept
}

/// [`store`] without telling the other side: for what the other side wrote.
pub fn keep_here(key: &str, value: Option<&str>) -> bool {
    if in_worker() {
        WORKER_STORE.with(|m| match value {
            Some(v) => m.borrow_mut().insert(key.to_owned(), v.to_owned()),
            None => m.borrow_mut().remove(key),
        });
        return true;
    }
    let Some(storage) = local_storage() else { return false };
    match value {
        Some(v) => storage.set_item(key, v).is_ok(),
        None => storage.remove_item(key).is_ok(),
    }
}

/// The keys of every value kept.
pub fn stored_keys() -> Vec<String> {
    match local_storage() {
        Some(s) => (0..s.length().unwrap_or(0)).filter_map(|i| s.key(i).ok().flatten()).collect(),
        None => WORKER_STORE.with(|m| m.borrow().keys().cloned().collect()),
    }
}

/// From now on, every [`store`] is also handed to `forward`.
pub fn forward_stores(forward: StoreForward) {
    STORE_FORWARD.with(|f| f.set(Some(forward)));
}

/// In the worker: whether any of its tabs is shown.
pub fn set_tabs_visible(visible: bool) {
    WORKER_VISIBLE.with(|v| v.set(visible));
}

/// The page is shown (in the worker: any of its tabs).
pub fn document_visible() -> bool {
    match web_sys::window() {
        Some(w) => w.document().is_some_and(|d| d.visibility_state() == web_sys::VisibilityState::Visible),
        None => WORKER_VISIBLE.with(Cell::get),
    }
}

pub fn set_title(title: &str) {
    if let Some(d) = window().document() {
        d.set_title(title);
    }
}

fn date(ms: i64) -> js_sys::Date {
    js_sys::Date::new(&JsValue::from_f64(ms as f64))
}

/// `14:05` in the user's locale.
pub fn format_time(ms: i64) -> String {
    let opts = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&opts, &"hour".into(), &"2-digit".into());
    let _ = js_sys::Reflect::set(&opts, &"minute".into(), &"2-digit".into());
    date(ms).to_locale_time_string_with_options("default", &opts).into()
}

/// A full date and time for tooltips.
pub fn format_full(ms: i64) -> String {
    date(ms).to_locale_string("default", &JsValue::UNDEFINED).into()
}

/// A key that changes at local midnight.
pub fn day_key(ms: i64) -> String {
    date(ms).to_date_string().into()
}

/// "Today", "Yesterday" or a date like "Monday, 3 June 2024".
pub fn day_label(ms: i64) -> String {
    let now = now_ms();
    if day_key(ms) == day_key(now) {
        return "Today".into();
    }
    if day_key(ms) == day_key(now - 86_400_000) {
        return "Yesterday".into();
    }
    let opts = js_sys::Object::new();
    for (k, v) in [("weekday", "long"), ("year", "numeric"), ("month", "long"), ("day", "numeric")] {
        let _ = js_sys::Reflect::set(&opts, &k.into(), &v.into());
    }
    date(ms).to_locale_date_string("default", &opts).into()
}

thread_local! {
    static DEBUG: bool = stored("jabberwock.debug").is_some_and(|v| v == "1");
}

/// Logs protocol traffic to the console when `localStorage["jabberwock.debug"]` is "1" (in
/// the worker, to its tabs' consoles).
pub fn debug(what: &str, text: &str) {
    if DEBUG.with(|d| *d) {
        match LOG_FORWARD.with(Cell::get) {
            Some(forward) => forward(what, text),
            None => web_sys::console::log_2(&what.into(), &text.into()),
        }
    }
}

/// In the worker: the protocol log goes to `forward`.
pub fn forward_log(forward: LogForward) {
    LOG_FORWARD.with(|f| f.set(Some(forward)));
}

/// A random number in [0, 1), for jitter.
pub fn random() -> f64 {
    js_sys::Math::random()
}

/// The browser believes it has a network (`navigator.onLine`; in the worker, its tabs' too).
pub fn network_up() -> bool {
    match web_sys::window() {
        Some(w) => w.navigator().on_line(),
        None => WORKER_ONLINE.with(Cell::get) && worker_scope().navigator().on_line(),
    }
}

/// In the worker: whether its tabs say there is a network.
pub fn set_tabs_online(online: bool) {
    WORKER_ONLINE.with(|o| o.set(online));
}

/// Desktop notifications are allowed for this page (in the worker: the tab that shows one
/// asks).
pub fn notifications_allowed() -> bool {
    in_worker() || web_sys::Notification::permission() == web_sys::NotificationPermission::Granted
}

/// Asks the user to allow desktop notifications; true when allowed.
pub async fn ask_notifications() -> bool {
    if notifications_allowed() {
        return true;
    }
    let Ok(promise) = web_sys::Notification::request_permission() else { return false };
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    notifications_allowed()
}

/// Shows a desktop notification; one per `tag` at a time. `on_click` runs when it is
/// clicked, after the page is brought forward.
pub fn notify(title: &str, body: &str, tag: &str, on_click: impl FnOnce() + 'static) {
    let opts = web_sys::NotificationOptions::new();
    opts.set_body(body);
    opts.set_tag(tag);
    let Ok(n) = web_sys::Notification::new_with_options(title, &opts) else { return };
    let target = n.clone();
    let cb = Closure::once_into_js(move || {
        let _ = window().focus();
        target.close();
        on_click();
    });
    n.set_onclick(Some(cb.unchecked_ref()));
}

/// Runs `f` before the next repaint, after the pending view updates.
pub fn next_frame(f: impl FnOnce() + 'static) {
    let cb = Closure::once_into_js(f);
    let _ = window().request_animation_frame(cb.unchecked_ref());
}
