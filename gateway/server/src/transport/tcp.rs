//! Native client connections: port 5222 with mandatory STARTTLS (RFC 6120 §5) and port
//! 5223 with direct TLS (XEP-0368).

use std::net::SocketAddr;
use std::sync::Arc;

use jabberwock_proto::{ns, Limits, ReadEvent, StreamError, StreamReader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use super::{accept_until_shutdown, refuse, run, Ended, Transport};
use crate::admission::Slot;
use crate::metrics::{self, Traffic};
use crate::registry::Mailbox;
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
    let (_connection, negotiating) = match server.admission.client(peer.ip()) {
        Ok(slots) => slots,
        // Direct TLS would need a handshake to say why: the connection just closes.
        Err(_) if direct_tls => return,
        Err(refused) => return refuse(&server, tcp, refused.stream_error("connections"), ns::CLIENT).await,
    };
    let mut negotiating = Some(negotiating);
    configure_socket(&tcp);
    let deadline = Instant::now() + server.config.negotiation_timeout();
    // Each phase is boxed to its own size. A task is as large as its largest state, so
    // otherwise every idle session would keep room for the handshake and the plain stream.
    let Some((session, rx, tls)) = Box::pin(secure(&server, tcp, peer, direct_tls, deadline, &mut negotiating)).await else { return };
    let via = if direct_tls { metrics::Transport::DirectTls } else { metrics::Transport::Tcp };
    let transport = StreamTransport::new(tls, server.config.stream_limits()).counting(server.metrics.traffic(via));
    Box::pin(run_encrypted(session, rx, transport, deadline, negotiating)).await;
}

/// Brings the connection to TLS: the handshake right away on the direct-TLS port, or once
/// the plain stream asked for STARTTLS. `None` if the connection ended before that.
async fn secure(
    server: &Arc<Server>,
    tcp: TcpStream,
    peer: SocketAddr,
    direct_tls: bool,
    deadline: Instant,
    negotiating: &mut Option<Slot>,
) -> Option<(Session, Mailbox, TlsStream<TcpStream>)> {
    if direct_tls {
        let tls = handshake(server, &server.tls.direct, tcp, deadline, peer).await?;
        let security = Security { encrypted: true, starttls_available: false, channel_bindings: server.tls.channel_bindings(&tls) };
        let (session, rx) = Session::new(server.clone(), metrics::Transport::DirectTls, peer.ip(), security);
        return Some((session, rx, tls));
    }
    let security = Security { starttls_available: true, ..Default::default() };
    let (mut session, mut rx) = Session::new(server.clone(), metrics::Transport::Tcp, peer.ip(), security);
    let mut plain = StreamTransport::new(tcp, server.config.stream_limits()).counting(server.metrics.traffic(metrics::Transport::Tcp));
    let ended = run(&mut session, &mut rx, &mut plain, deadline, negotiating).await;
    if ended == Ended::StartTls {
        // Bytes the client sent after <starttls/> are discarded with the plain transport.
        if let Some(tls) = handshake(server, &server.tls.starttls, plain.io, deadline, peer).await {
            session.tls_established(server.tls.channel_bindings(&tls));
            return Some((session, rx, tls));
        }
    }
    Box::pin(session.finish(rx, ended == Ended::Vanished)).await;
    None
}

/// The session over TLS until it ends: all an established client connection holds.
#[allow(clippy::manual_async_fn)] // on purpose: see the comment in the body
fn run_encrypted(
    mut session: Session,
    mut rx: Mailbox,
    mut transport: StreamTransport<TlsStream<TcpStream>>,
    deadline: Instant,
    mut negotiating: Option<Slot>,
) -> impl std::future::Future<Output = ()> {
    // An async block rather than an async fn: an async fn copies its arguments into its
    // body's state, so an idle session would hold its session and transport twice.
    async move {
        let ended = run(&mut session, &mut rx, &mut transport, deadline, &mut negotiating).await;
        Box::pin(session.finish(rx, ended == Ended::Vanished)).await;
    }
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
) -> Option<TlsStream<IO>> {
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
    /// Encoded output not yet written, and how much of it went out: what a write the
    /// deadline cut short left goes first in the next. Emptied once written, so an idle
    /// connection holds no output buffer.
    unsent: Vec<u8>,
    sent: usize,
    /// The last write got bytes out.
    wrote_some: bool,
    content_ns: &'static str,
    /// Client connections count their bytes in the metrics; server ones do not.
    traffic: Option<Traffic>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> StreamTransport<S> {
    pub(crate) fn new(io: S, limits: Limits) -> Self {
        Self::with_content_ns(io, limits, ns::CLIENT)
    }

    pub(crate) fn with_content_ns(io: S, limits: Limits, content_ns: &'static str) -> Self {
        StreamTransport {
            io,
            reader: StreamReader::new(limits),
            read_buf: Vec::new(),
            unsent: Vec::new(),
            sent: 0,
            wrote_some: false,
            content_ns,
            traffic: None,
        }
    }

    /// Counts the connection's bytes in `traffic`.
    pub(crate) fn counting(self, traffic: Traffic) -> Self {
        StreamTransport { traffic: Some(traffic), ..self }
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
                    if let Some(t) = &self.traffic {
                        t.received(n);
                    }
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
        encode_stream(frames, &mut self.unsent, self.content_ns);
        self.wrote_some = false;
        // Not write_all: a write that returns has taken its bytes, one that is cancelled
        // took none, so `sent` always says where to go on.
        while self.sent < self.unsent.len() {
            match self.io.write(&self.unsent[self.sent..]).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => {
                    if let Some(t) = &self.traffic {
                        t.sent(n);
                    }
                    self.sent += n;
                    self.wrote_some = true;
                }
            }
        }
        self.unsent = Vec::new();
        self.sent = 0;
        self.io.flush().await.is_ok()
    }

    fn progressed(&self) -> bool {
        self.wrote_some
    }

    async fn close(&mut self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.io.shutdown()).await;
    }

    fn idle(&mut self) {
        if self.reader.is_idle() {
            // A read buffer a burst grew is given back.
            if self.read_buf.len() > IDLE_READ {
                self.read_buf = Vec::new();
            }
            self.reader.release_buffer();
        }
    }
}
