//! Native client connections: port 5222 with mandatory STARTTLS (RFC 6120 §5) and port
//! 5223 with direct TLS (XEP-0368).

use std::net::SocketAddr;
use std::sync::Arc;

use jabberwock_proto::{ns, Limits, ReadEvent, StreamError, StreamReader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::{accept_until_shutdown, run, Ended, Transport};
use crate::server::Server;
use crate::session::{Security, Session};
use crate::stream::{encode_stream, Frame};

/// Reads start small, since every idle connection holds its read buffer while the read
/// is pending; a read that fills the buffer grows it to `READ_CHUNK` for the burst.
const IDLE_READ: usize = 256;
const READ_CHUNK: usize = 2048;

pub async fn accept_loop(server: Arc<Server>, listener: TcpListener, direct_tls: bool) {
    accept_until_shutdown(&server, listener, |tcp, peer| {
        tokio::spawn(serve(server.clone(), tcp, peer, direct_tls));
    })
    .await;
}

async fn serve(server: Arc<Server>, tcp: TcpStream, peer: SocketAddr, direct_tls: bool) {
    let _guard = server.connection_guard();
    configure_socket(&tcp);
    let deadline = Instant::now() + server.config.negotiation_timeout();
    let limits = server.config.stream_limits();
    if direct_tls {
        let Some(tls) = handshake(&server, &server.tls.direct, tcp, deadline, peer).await else { return };
        let security = Security { encrypted: true, starttls_available: false, channel_bindings: server.tls.channel_bindings(&tls) };
        let (mut session, mut rx) = Session::new(server.clone(), peer.ip(), security);
        let ended = run(&mut session, &mut rx, &mut StreamTransport::new(tls, limits), deadline).await;
        Box::pin(session.finish(rx, ended == Ended::Vanished)).await;
        return;
    }
    let security = Security { starttls_available: true, ..Default::default() };
    let (mut session, mut rx) = Session::new(server.clone(), peer.ip(), security);
    let mut plain = StreamTransport::new(tcp, limits.clone());
    let mut ended = run(&mut session, &mut rx, &mut plain, deadline).await;
    if ended == Ended::StartTls {
        // Bytes the client sent after <starttls/> are discarded with the plain transport's
        // buffers, which are freed here rather than kept for the session's lifetime.
        let StreamTransport { io, .. } = plain;
        ended = match handshake(&server, &server.tls.starttls, io, deadline, peer).await {
            Some(tls) => {
                session.tls_established(server.tls.channel_bindings(&tls));
                run(&mut session, &mut rx, &mut StreamTransport::new(tls, limits), deadline).await
            }
            None => Ended::Closed,
        };
    }
    Box::pin(session.finish(rx, ended == Ended::Vanished)).await;
}

/// No Nagle delay, and TCP keepalive: a peer that vanishes without closing (a phone
/// losing its network) is detected, and its session ends like any other.
pub(crate) fn configure_socket(tcp: &TcpStream) {
    let _ = tcp.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(std::time::Duration::from_secs(60))
        .with_interval(std::time::Duration::from_secs(10))
        .with_retries(3);
    let _ = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive);
}

pub(crate) async fn handshake<IO: AsyncRead + AsyncWrite + Unpin>(
    server: &Server,
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: IO,
    deadline: Instant,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<IO>> {
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

/// A plain XML stream over TCP or TLS: client-to-server here, server-to-server in
/// [`crate::s2s`].
pub(crate) struct StreamTransport<S> {
    pub(crate) io: S,
    reader: StreamReader,
    read_buf: Vec<u8>,
    out: Vec<u8>,
    content_ns: &'static str,
}

impl<S: AsyncRead + AsyncWrite + Unpin> StreamTransport<S> {
    pub(crate) fn new(io: S, limits: Limits) -> Self {
        Self::with_content_ns(io, limits, ns::CLIENT)
    }

    pub(crate) fn with_content_ns(io: S, limits: Limits, content_ns: &'static str) -> Self {
        StreamTransport { io, reader: StreamReader::new(limits), read_buf: Vec::new(), out: Vec::new(), content_ns }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Transport for StreamTransport<S> {
    async fn next_event(&mut self) -> Option<Result<ReadEvent, StreamError>> {
        loop {
            if let Some(ev) = self.buffered_event() {
                return Some(ev);
            }
            if self.read_buf.is_empty() {
                self.read_buf.resize(IDLE_READ, 0);
            }
            match self.io.read(&mut self.read_buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => {
                    self.reader.feed(&self.read_buf[..n]);
                    if n == self.read_buf.len() && n < READ_CHUNK {
                        self.read_buf.resize(READ_CHUNK, 0);
                    }
                }
            }
        }
    }

    fn buffered_event(&mut self) -> Option<Result<ReadEvent, StreamError>> {
        self.reader.next_event().transpose()
    }

    fn restart(&mut self) {
        self.reader.restart();
    }

    async fn write(&mut self, frames: &[Frame]) -> bool {
        encode_stream(frames, &mut self.out, self.content_ns);
        let ok = self.io.write_all(&self.out).await.is_ok() && self.io.flush().await.is_ok();
        self.out.clear();
        ok
    }

    async fn close(&mut self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.io.shutdown()).await;
    }

    fn idle(&mut self) {
        if self.reader.is_idle() {
            // Buffers a burst grew are given back; the small ones stay, so steady chat
            // traffic does not allocate on every stanza.
            if self.out.capacity() > READ_CHUNK / 2 {
                self.out = Vec::new();
            }
            if self.read_buf.len() > IDLE_READ {
                self.read_buf = Vec::new();
            }
            self.reader.release_buffer();
        }
    }
}
