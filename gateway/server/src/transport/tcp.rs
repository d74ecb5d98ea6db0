//! Native client connections: port 5222 with mandatory STARTTLS (RFC 6120 §5) and port
//! 5223 with direct TLS (XEP-0368).

use std::net::SocketAddr;
use std::sync::Arc;

use jabberwock_proto::{ReadEvent, StreamError, StreamErrorCondition, StreamReader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use crate::router::Routed;
use crate::server::Server;
use crate::session::{Security, Session};
use crate::stream::{encode_stream, Flow, Frame};

const READ_CHUNK: usize = 4096;

pub async fn accept_loop(server: Arc<Server>, listener: TcpListener, direct_tls: bool) {
    let mut shutdown = server.shutdown_signal();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    tokio::spawn(serve(server.clone(), tcp, peer, direct_tls));
                }
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

async fn serve(server: Arc<Server>, tcp: TcpStream, peer: SocketAddr, direct_tls: bool) {
    let _guard = server.connection_guard();
    let _ = tcp.set_nodelay(true);
    // A peer that vanishes without closing (a phone losing its network) is detected by
    // TCP keepalive; the session then ends with unavailable presence like any other.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(std::time::Duration::from_secs(60))
        .with_interval(std::time::Duration::from_secs(10))
        .with_retries(3);
    let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
    let deadline = Instant::now() + server.config.negotiation_timeout();
    let (mut session, mut rx) = if direct_tls {
        let Some(tls) = handshake(&server, &server.tls.direct, tcp, deadline, peer).await else { return };
        let security = Security { encrypted: true, starttls_available: false, channel_bindings: server.tls.channel_bindings(&tls) };
        let (mut session, mut rx) = Session::new(server.clone(), peer.ip(), security);
        drive(&mut session, &mut rx, tls, deadline).await;
        session.closed().await;
        return;
    } else {
        Session::new(server.clone(), peer.ip(), Security { starttls_available: true, ..Default::default() })
    };
    if let Some(tcp) = drive(&mut session, &mut rx, tcp, deadline).await {
        if let Some(tls) = handshake(&server, &server.tls.starttls, tcp, deadline, peer).await {
            session.tls_established(server.tls.channel_bindings(&tls));
            drive(&mut session, &mut rx, tls, deadline).await;
        }
    }
    session.closed().await;
}

async fn handshake(
    server: &Server,
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    deadline: Instant,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, timeout = ?server.config.negotiation_timeout(), "TLS handshake timed out");
            None
        }
    }
}

/// Runs the session over `io` until the stream ends. Returns the connection when the
/// session asked for STARTTLS, so the caller can wrap it.
async fn drive<S>(session: &mut Session, rx: &mut UnboundedReceiver<Routed>, mut io: S, deadline: Instant) -> Option<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut reader = StreamReader::new(session.server.config.stream_limits());
    let mut shutdown = session.server.shutdown_signal();
    let mut frames: Vec<Frame> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let negotiation = tokio::time::sleep_until(deadline);
    tokio::pin!(negotiation);
    loop {
        let flow = tokio::select! {
            read = io.read(&mut buf) => match read {
                Ok(0) | Err(_) => return None,
                Ok(n) => {
                    reader.feed(&buf[..n]);
                    process_input(session, &mut reader, &mut frames).await
                }
            },
            Some(routed) = rx.recv() => {
                let mut flow = session.on_routed(routed, &mut frames).await;
                // Batch: everything already queued goes out in the same write.
                while flow == Flow::Continue {
                    let Ok(more) = rx.try_recv() else { break };
                    flow = session.on_routed(more, &mut frames).await;
                }
                flow
            }
            _ = &mut negotiation, if !session.is_bound() => session.on_negotiation_timeout(&mut frames),
            _ = shutdown.changed() => session.on_stream_error(StreamError::new(StreamErrorCondition::SystemShutdown), &mut frames),
        };
        if !frames.is_empty() {
            encode_stream(&frames, &mut out);
            frames.clear();
            if io.write_all(&out).await.is_err() || io.flush().await.is_err() {
                return None;
            }
            out.clear();
        }
        match flow {
            Flow::Continue | Flow::Restart => {}
            Flow::StartTls => return Some(io),
            Flow::Close => {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), io.shutdown()).await;
                return None;
            }
        }
        if reader.is_idle() && out.capacity() > READ_CHUNK {
            // An idle connection keeps no large buffers.
            out = Vec::new();
            reader.release_buffer();
        }
    }
}

/// Hands every complete event to the session. Stops at anything but `Continue`, except a
/// SASL restart, which resets the reader and goes on with the bytes already received.
async fn process_input(session: &mut Session, reader: &mut StreamReader, frames: &mut Vec<Frame>) -> Flow {
    loop {
        let flow = match reader.next_event() {
            Ok(Some(ev)) => {
                let closing = matches!(ev, ReadEvent::StreamClose);
                let flow = session.on_event(ev, frames).await;
                if closing {
                    return Flow::Close;
                }
                flow
            }
            Ok(None) => return Flow::Continue,
            Err(e) => return session.on_stream_error(e, frames),
        };
        match flow {
            Flow::Continue => {}
            Flow::Restart => reader.restart(),
            other => return other,
        }
    }
}
