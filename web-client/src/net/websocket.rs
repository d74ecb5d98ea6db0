//! RFC 7395 over the browser's WebSocket: one text message per frame, subprotocol `xmpp`.

use std::cell::Cell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, Event, MessageEvent, WebSocket};

/// RFC 6455 §7.4.1: the connection closed without a close frame.
const CLOSED_ABNORMALLY: u16 = 1006;

/// An open (or opening) socket whose events go to [`super::on_open`],
/// [`super::on_text`] and [`super::on_close`], tagged with the attempt's generation so
/// that a stale socket's late events are ignored.
pub struct WsTransport {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
    _on_error: Closure<dyn FnMut(Event)>,
}

impl WsTransport {
    pub fn open(url: &str, generation: u32) -> Result<WsTransport, String> {
        let ws = WebSocket::new_with_str(url, "xmpp").map_err(|e| format!("cannot open {url}: {}", describe(&e)))?;
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_| super::on_open(generation));
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if let Some(text) = e.data().as_string() {
                crate::browser::debug("WS ←", &text);
                super::on_text(generation, text);
            }
        });
        // The end is reported once. A socket the page's Content-Security-Policy forbids
        // (an unencrypted one to another server) ends with an error event alone, already
        // closed; any other ends with a close event, often after an error event.
        let ended = Rc::new(Cell::new(false));
        let end = Rc::new(move |code: u16| {
            if !ended.replace(true) {
                super::on_close(generation, code);
            }
        });
        let on_close = {
            let end = end.clone();
            Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| end(e.code()))
        };
        let closed = ws.clone();
        let on_error = Closure::<dyn FnMut(Event)>::new(move |_| {
            if closed.ready_state() == WebSocket::CLOSED {
                end(CLOSED_ABNORMALLY);
            }
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(WsTransport { ws, _on_open: on_open, _on_message: on_message, _on_close: on_close, _on_error: on_error })
    }

    pub fn send(&self, text: &str) {
        crate::browser::debug("WS →", text);
        let _ = self.ws.send_with_str(text);
    }
}

impl Drop for WsTransport {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        let _ = self.ws.close();
    }
}

fn describe(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).unwrap_or_else(|| format!("{e:?}"))
}
