//! RFC 7395 XMPP over WebSocket: one complete element per text message, `<open/>` and
//! `<close/>` in the framing namespace instead of the stream tags.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;
use jabberwock_proto::{ns, websocket, Element, Limits, ReadEvent, StreamError, StreamErrorCondition};
use tokio::time::Instant;

use super::{run, Ended, Transport};
use crate::admission::Slot;
use crate::http::SessionPeer;
use crate::server::Server;
use crate::session::{Security, Session};
use crate::stream::Frame;

/// How often the server pings an idle peer, and how long it waits for any sign of life.
const PING_EVERY: Duration = Duration::from_secs(30);
const DEAD_AFTER: Duration = Duration::from_secs(90);

/// Runs the stream of an upgraded connection, which keeps the HTTP connection's slot.
pub async fn serve(server: Arc<Server>, socket: WebSocket, client: SessionPeer, _connection: Arc<Slot>, negotiating: Slot) {
    let _guard = server.connection_guard();
    let deadline = Instant::now() + server.config.negotiation_timeout();
    let security = Security { encrypted: client.encrypted, starttls_available: false, channel_bindings: Vec::new() };
    let (mut session, mut rx) = Session::new(server.clone(), crate::metrics::Transport::WebSocket, client.ip, security);
    let mut transport = WsTransport {
        socket,
        limits: server.config.stream_limits(),
        last_seen: Instant::now(),
        unsent: VecDeque::new(),
        wrote_some: false,
        traffic: server.metrics.traffic(crate::metrics::Transport::WebSocket),
    };
    let ended = run(&mut session, &mut rx, &mut transport, deadline, &mut Some(negotiating)).await;
    Box::pin(session.finish(rx, ended == Ended::Vanished)).await;
}

struct WsTransport {
    socket: WebSocket,
    limits: Limits,
    last_seen: Instant,
    /// Messages of a write the deadline cut short, not yet taken by the socket.
    unsent: VecDeque<String>,
    /// The last write got a message out.
    wrote_some: bool,
    traffic: crate::metrics::Traffic,
}

/// RFC 7395 §3.3: frames in their WebSocket form.
fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    match frame {
        Frame::Header { from, id, .. } => {
            let open = Element::new("open", ns::FRAMING)
                .with_attr("from", from.as_str())
                .with_opt_attr("id", id.as_deref())
                .with_attr("version", "1.0")
                .with_attr("xml:lang", "en");
            open.write_to(&mut out, "");
        }
        Frame::StreamElement(el) => write_stream_element(&mut out, el),
        Frame::Element(el) => el.write_to(&mut out, ""),
        Frame::Stanza(st) => st.write_to(&mut out, ""),
        Frame::Error(e) => write_stream_element(&mut out, &e.to_element()),
        Frame::Close => Element::new("close", ns::FRAMING).write_to(&mut out, ""),
    }
    out
}

/// `<stream:features>` and `<stream:error>` declare the prefix themselves, since there
/// is no stream header to do it.
fn write_stream_element(out: &mut Vec<u8>, el: &Element) {
    let mut wrapped = Vec::new();
    jabberwock_proto::writer::stream_element(&mut wrapped, el);
    let tag_end = b"<stream:".len() + el.name().len();
    out.extend_from_slice(&wrapped[..tag_end]);
    jabberwock_proto::escape::namespace_declaration(out, "stream", ns::STREAM);
    out.extend_from_slice(&wrapped[tag_end..]);
}

impl Transport for WsTransport {
    async fn next_event(&mut self) -> Option<Result<ReadEvent, StreamError>> {
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        loop {
            let msg = tokio::select! {
                msg = self.socket.recv() => msg,
                _ = ping.tick() => {
                    if self.last_seen.elapsed() > DEAD_AFTER || self.socket.send(Message::Ping(Default::default())).await.is_err() {
                        return None;
                    }
                    continue;
                }
            };
            self.last_seen = Instant::now();
            match msg? {
                Ok(Message::Text(text)) => {
                    self.traffic.received(text.len());
                    return Some(websocket::parse_message(text.as_str(), &self.limits));
                }
                Ok(Message::Binary(_)) => {
                    return Some(Err(StreamError::with_text(StreamErrorCondition::UnsupportedEncoding, "XMPP frames are text")))
                }
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(Message::Close(_)) | Err(_) => return None,
            }
        }
    }

    fn buffered_event(&mut self) -> Option<Result<ReadEvent, StreamError>> {
        // Every message is read on its own; nothing waits in a buffer.
        None
    }

    fn restart(&mut self) {}

    async fn write(&mut self, frames: &[Frame]) -> bool {
        self.unsent.extend(frames.iter().map(|f| String::from_utf8(encode(f)).expect("the writer produces UTF-8")));
        self.wrote_some = false;
        // A message leaves the queue only once the socket is ready to take it, so a
        // cancelled write loses none.
        while !self.unsent.is_empty() {
            if std::future::poll_fn(|cx| self.socket.poll_ready_unpin(cx)).await.is_err() {
                return false;
            }
            let Some(text) = self.unsent.pop_front() else { break };
            self.traffic.sent(text.len());
            if self.socket.start_send_unpin(Message::Text(text.into())).is_err() {
                return false;
            }
            self.wrote_some = true;
        }
        self.unsent = VecDeque::new();
        self.socket.flush().await.is_ok()
    }

    fn progressed(&self) -> bool {
        self.wrote_some
    }

    async fn close(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.socket.send(Message::Close(None))).await;
    }
}
