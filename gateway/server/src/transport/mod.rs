//! Transports turn bytes into stream events for the one session core, and frames back
//! into bytes. They own nothing of XMPP's logic: [`run`] is the single loop that feeds a
//! session from any transport, its mailbox, the negotiation deadline and shutdown.

pub mod bosh;
pub(crate) mod rate;
pub mod tcp;
pub mod websocket;

use jabberwock_proto::{ReadEvent, StreamError, StreamErrorCondition};
use futures_util::StreamExt;
use tokio::time::{Instant, Sleep};

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::admission::Slot;
use crate::registry::Mailbox;
use crate::server::Server;
use crate::session::Session;
use crate::stanzas::random_id;
use crate::stream::{encode_stream, Flow, Frame};

/// Accepts connections on `listener` and hands each to `serve` until shutdown begins.
pub(crate) async fn accept_until_shutdown(server: &Server, listener: TcpListener, mut serve: impl FnMut(TcpStream, SocketAddr)) {
    let mut shutdown = server.shutdown_signal();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => serve(tcp, peer),
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Refuses a plain-text stream at once with `err`: our header, the error and the close,
/// without waiting for the peer's header, which a peer holding sockets open never sends.
pub(crate) async fn refuse(server: &Server, mut tcp: TcpStream, err: StreamError, content_ns: &'static str) {
    let header = Frame::Header { from: server.config.domains[0].clone(), to: None, id: Some(random_id()) };
    let mut out = Vec::new();
    encode_stream(&[header, Frame::Error(err), Frame::Close], &mut out, content_ns);
    let write = async {
        tcp.write_all(&out).await?;
        tcp.shutdown().await
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), write).await;
}

/// One connection's way of carrying a stream.
pub(crate) trait Transport {
    /// The next event from the peer, waiting for it; `None` once the peer is gone.
    /// Must be cancel-safe: the loop drops it when the mailbox wins.
    async fn next_event(&mut self) -> Option<Result<ReadEvent, StreamError>>;

    /// An event already received, if any, without waiting.
    fn buffered_event(&mut self) -> Option<Result<ReadEvent, StreamError>>;

    /// The client restarts the stream after SASL success.
    fn restart(&mut self);

    /// Writes the frames, as one write where the transport allows. False if the peer is gone.
    /// Must be cancel-safe: a write cut short by the deadline keeps what it has not
    /// written, and the next write sends that first.
    async fn write(&mut self, frames: &[Frame]) -> bool;

    /// Whether the last write, even one cut short, got any output out.
    fn progressed(&self) -> bool {
        false
    }

    /// Ends the connection after the last frames were written.
    async fn close(&mut self);

    /// Nothing is in flight: a chance to release buffers.
    fn idle(&mut self) {}
}

/// Why [`run`] returned.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The stream was closed.
    Closed,
    /// The connection vanished without closing the stream (or another connection took the
    /// session over): a resumable session is parked.
    Vanished,
    /// The session accepted STARTTLS: the caller wraps the connection in TLS and runs again.
    StartTls,
}

/// Feeds `session` from `transport` and its mailbox until the stream ends. `negotiating`
/// is the stream's place in the budget of unauthenticated streams, given back once a
/// resource is bound.
pub(crate) async fn run<T: Transport>(
    session: &mut Session,
    rx: &mut Mailbox,
    transport: &mut T,
    negotiation_deadline: Instant,
    negotiating: &mut Option<Slot>,
) -> Ended {
    let mut shutdown = session.server.shutdown_signal();
    let write_timeout = session.server.config.write_timeout();
    // Boxed and dropped once bound: a long-lived session keeps no timer.
    let mut negotiation = Some(Box::pin(tokio::time::sleep_until(negotiation_deadline)));
    loop {
        // Per turn, not kept: an idle session holds no output buffer.
        let mut frames: Vec<Frame> = Vec::new();
        let flow = tokio::select! {
            ev = transport.next_event() => match ev {
                Some(ev) => Box::pin(handle_input(session, rx, transport, ev, &mut frames)).await,
                None => return Ended::Vanished,
            },
            Some(routed) = rx.next() => {
                // Boxed, like the input handling: the deep futures of stanza processing
                // exist only while a stanza is processed, not in every idle connection.
                let mut flow = Box::pin(session.on_routed(routed, &mut frames)).await;
                // Batch: everything already queued goes out in the same write.
                while flow == Flow::Continue {
                    let Ok(more) = rx.try_recv() else { break };
                    flow = Box::pin(session.on_routed(more, &mut frames)).await;
                }
                flow
            }
            _ = until(&mut negotiation) => session.on_negotiation_timeout(&mut frames),
            _ = shutdown.changed() => {
                session.on_stream_error(StreamError::new(StreamErrorCondition::SystemShutdown), &mut frames)
            }
        };
        if flow == Flow::Detach {
            // What this turn took waits, unacknowledged, for the connection that resumes.
            session.before_write(&mut frames);
            session.settle_output();
            return Ended::Vanished;
        }
        if session.is_bound() {
            negotiation = None;
            *negotiating = None;
        }
        if !frames.is_empty() {
            session.before_write(&mut frames);
            // Boxed: the deadline's timer takes room only while a write is under way, not
            // in the state of every idle session.
            let written = Box::pin(write_by_deadline(transport, &frames, write_timeout)).await;
            session.settle_output();
            let closing = frames.iter().any(|f| matches!(f, Frame::Close));
            match written {
                Some(true) => session.written(&frames),
                Some(false) => return Ended::Vanished,
                None => return Box::pin(abandon(session, rx, transport, write_timeout, closing)).await,
            }
            if closing {
                transport.close().await;
                return Ended::Closed;
            }
        } else {
            session.settle_output();
        }
        match flow {
            Flow::Continue | Flow::Restart | Flow::Resume => transport.idle(),
            Flow::StartTls => return Ended::StartTls,
            Flow::Close => {
                transport.close().await;
                return Ended::Closed;
            }
            Flow::Detach => unreachable!("handled above"),
        }
    }
}

/// Writes `frames` under the write deadline, which starts again whenever some output went
/// out: a slow client is not a stuck one. `None` if the client took nothing for a whole
/// deadline.
async fn write_by_deadline<T: Transport>(transport: &mut T, frames: &[Frame], deadline: Duration) -> Option<bool> {
    let mut written = tokio::time::timeout(deadline, transport.write(frames)).await;
    while written.is_err() && transport.progressed() {
        written = tokio::time::timeout(deadline, transport.write(&[])).await;
    }
    written.ok()
}

/// The client has taken nothing written to it for `write_timeout`. Its session leaves
/// routing first, so that what it has not received goes elsewhere at once (as when a
/// XEP-0198 session times out: to another resource or offline storage); then the stream
/// error (unless the stuck write was already closing the stream) gets one more deadline
/// to reach the client behind what is already queued.
async fn abandon<T: Transport>(session: &mut Session, rx: &mut Mailbox, transport: &mut T, write_timeout: Duration, closing: bool) -> Ended {
    tracing::debug!(conn = session.conn, "the client stopped reading");
    session.server.metrics.limit_hit(crate::metrics::Limit::WriteTimeout);
    session.closed(rx).await;
    let mut frames = Vec::new();
    if !closing {
        let timeout = StreamError::with_text(StreamErrorCondition::ConnectionTimeout, "the client stopped reading");
        let _ = session.on_stream_error(timeout, &mut frames);
    }
    if write_by_deadline(transport, &frames, write_timeout).await == Some(true) {
        transport.close().await;
    }
    Ended::Closed
}

/// Waits for the deadline if there is one, forever if not.
async fn until(deadline: &mut Option<Pin<Box<Sleep>>>) {
    match deadline {
        Some(sleep) => sleep.await,
        None => std::future::pending().await,
    }
}

/// Hands `first` and every event already buffered behind it to the session. Stops at
/// anything but `Continue`, except a SASL restart, after which the transport restarts and
/// the buffered bytes are read as the new stream.
async fn handle_input<T: Transport>(
    session: &mut Session,
    rx: &mut Mailbox,
    transport: &mut T,
    first: Result<ReadEvent, StreamError>,
    frames: &mut Vec<Frame>,
) -> Flow {
    let mut next = Some(first);
    while let Some(ev) = next {
        let flow = match ev {
            Ok(ev) => session.on_event(ev, frames).await,
            Err(e) => session.on_stream_error(e, frames),
        };
        match flow {
            Flow::Continue => {}
            Flow::Restart => transport.restart(),
            // The parked session replaces this one, on this connection.
            Flow::Resume => Session::resume(session, rx, frames).await,
            other => return other,
        }
        next = transport.buffered_event();
    }
    Flow::Continue
}
