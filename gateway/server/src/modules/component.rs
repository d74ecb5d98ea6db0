//! XEP-0114 external components: a program (a gateway, a bot) connects to
//! `components.listen`, proves the shared secret of its domain with the handshake, and
//! from then on everything for that domain, from local users or other servers, goes to
//! it; what it sends from its domain is routed like any other stanza.
//!
//! One connection per domain: a second one is refused with `conflict`. While none is
//! connected, stanzas for the domain bounce with `service-unavailable`. What waits for a
//! component that does not read is bounded in bytes; beyond it stanzas bounce with
//! `resource-constraint`, and one that takes nothing for the write timeout is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, ReadEvent, Stanza, StanzaError, StreamError, StreamErrorCondition};
use jid::Jid;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{Host, Listener, Module, Service};
use crate::config::Config;
use crate::registry::output_cost;
use crate::server::Server;
use crate::stanzas::{bounce_reply, random_id};
use crate::stream::Frame;
use crate::transport::tcp::{configure_socket, StreamTransport};
use crate::transport::Transport;

pub struct Components {
    links: HashMap<String, Arc<ComponentLink>>,
    listen: Vec<SocketAddr>,
}

impl Components {
    pub fn new(config: &Config) -> Self {
        let links = config
            .components
            .domains
            .iter()
            .map(|(domain, entry)| {
                // Listed under the served domain it belongs to, or the first one.
                let parent = config.domains.iter().find(|d| domain.ends_with(&format!(".{d}"))).unwrap_or(&config.domains[0]).clone();
                let link = ComponentLink {
                    domain: domain.clone(),
                    parent,
                    secret: entry.secret.clone(),
                    max_queue: config.components.max_queue_bytes,
                    connected: Mutex::new(None),
                };
                (domain.clone(), Arc::new(link))
            })
            .collect();
        Components { links, listen: config.components.listen.clone() }
    }
}

impl Module for Components {
    fn register(self: Arc<Self>, host: &mut Host) {
        if self.links.is_empty() {
            return;
        }
        for link in self.links.values() {
            host.service(link.domain.clone(), &link.parent, &link.domain, link.clone());
        }
        host.listener(self.listen.clone(), self);
    }
}

/// The way to a connected component: its queue and what the queue holds, in bytes.
#[derive(Clone)]
struct Connection {
    id: u64,
    tx: mpsc::UnboundedSender<Stanza>,
    queued: Arc<AtomicUsize>,
}

struct ComponentLink {
    domain: String,
    parent: String,
    secret: String,
    max_queue: usize,
    connected: Mutex<Option<Connection>>,
}

#[async_trait]
impl Service for ComponentLink {
    async fn handle(&self, _server: &Arc<Server>, st: Stanza, _to: &Jid) -> Vec<Stanza> {
        let Some(conn) = self.connected.lock().expect("component link").clone() else {
            return bounce_reply(&st, StanzaError::service_unavailable().with_text("the component is not connected"));
        };
        let cost = output_cost(&st);
        if conn.queued.fetch_add(cost, Ordering::Relaxed) + cost > self.max_queue {
            conn.queued.fetch_sub(cost, Ordering::Relaxed);
            return bounce_reply(&st, StanzaError::resource_constraint().with_text("the component is not keeping up"));
        }
        match conn.tx.send(st) {
            Ok(()) => Vec::new(),
            Err(mpsc::error::SendError(st)) => {
                conn.queued.fetch_sub(cost, Ordering::Relaxed);
                bounce_reply(&st, StanzaError::service_unavailable().with_text("the component is not connected"))
            }
        }
    }
}

#[async_trait]
impl Listener for Components {
    async fn serve(&self, server: Arc<Server>, tcp: TcpStream, peer: SocketAddr) {
        configure_socket(&tcp);
        let mut transport = StreamTransport::with_content_ns(tcp, server.config.stream_limits(), ns::COMPONENT);
        let deadline = tokio::time::Instant::now() + server.config.negotiation_timeout();
        let link = match tokio::time::timeout_at(deadline, self.handshake(&server, &mut transport)).await {
            Ok(Ok(link)) => link,
            Ok(Err(e)) => {
                tracing::info!(%peer, error = %e, "component refused");
                let _ = transport.write(&[Frame::Error(e), Frame::Close]).await;
                transport.close().await;
                return;
            }
            Err(_) => {
                let e = StreamError::with_text(StreamErrorCondition::ConnectionTimeout, "no handshake in time");
                let _ = transport.write(&[Frame::Error(e), Frame::Close]).await;
                transport.close().await;
                return;
            }
        };
        link.run(&server, transport, peer).await;
    }
}

impl Components {
    /// The stream header and XEP-0114 §3 handshake: SHA-1 of the stream id and the secret.
    async fn handshake(&self, server: &Server, transport: &mut StreamTransport<TcpStream>) -> Result<Arc<ComponentLink>, StreamError> {
        let header = match transport.next_event().await {
            Some(Ok(ReadEvent::StreamOpen(h))) => h,
            Some(Err(e)) => return Err(e),
            _ => return Err(StreamError::new(StreamErrorCondition::NotWellFormed)),
        };
        let stream_id = random_id();
        let to = header.to.clone().unwrap_or_default();
        let from = self.links.get(&to).map_or_else(|| server.config.domains[0].clone(), |l| l.domain.clone());
        if !transport.write(&[Frame::Header { from, to: None, id: Some(stream_id.clone()) }]).await {
            return Err(StreamError::new(StreamErrorCondition::ConnectionTimeout));
        }
        if header.content_ns != ns::COMPONENT {
            return Err(StreamError::with_text(StreamErrorCondition::InvalidNamespace, "expected jabber:component:accept"));
        }
        let Some(link) = self.links.get(&to) else {
            return Err(StreamError::with_text(StreamErrorCondition::HostUnknown, "no component is configured for that domain"));
        };
        let proof = match transport.next_event().await {
            Some(Ok(ReadEvent::Stanza(st))) if st.is("handshake", ns::COMPONENT) => st.to_element().map(|e| e.text()).unwrap_or_default(),
            Some(Err(e)) => return Err(e),
            _ => return Err(StreamError::with_text(StreamErrorCondition::NotAuthorized, "expected the handshake")),
        };
        let expected = hex(&Sha1::digest(format!("{stream_id}{}", link.secret).as_bytes()));
        if !bool::from(expected.as_bytes().ct_eq(proof.trim().to_ascii_lowercase().as_bytes())) {
            return Err(StreamError::with_text(StreamErrorCondition::NotAuthorized, "wrong secret"));
        }
        Ok(link.clone())
    }
}

/// Tells a link's connection from the one that replaced it.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

impl ComponentLink {
    /// Serves an authenticated component until it or the server goes.
    async fn run(&self, server: &Arc<Server>, mut transport: StreamTransport<TcpStream>, peer: SocketAddr) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let conn = Connection { id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed), tx, queued: Arc::new(AtomicUsize::new(0)) };
        let taken = {
            let mut connected = self.connected.lock().expect("component link");
            let taken = connected.is_some();
            if !taken {
                *connected = Some(conn.clone());
            }
            taken
        };
        if taken {
            let e = StreamError::with_text(StreamErrorCondition::Conflict, "this component is already connected");
            let _ = transport.write(&[Frame::Error(e), Frame::Close]).await;
            transport.close().await;
            return;
        }
        tracing::info!(domain = %self.domain, %peer, "component connected");
        let handshake_ok = Element::new("handshake", ns::COMPONENT);
        let mut ending: Option<StreamError> = None;
        let mut alive = transport.write(&[Frame::Element(handshake_ok)]).await;
        let mut shutdown = server.shutdown_signal();
        let write_timeout = server.config.write_timeout();
        while alive && ending.is_none() {
            tokio::select! {
                ev = transport.next_event() => match ev {
                    Some(Ok(ReadEvent::Stanza(st))) => ending = self.route_from_component(server, st).await.err(),
                    Some(Ok(ReadEvent::StreamClose)) | None => break,
                    Some(Ok(ReadEvent::StreamOpen(_))) => ending = Some(StreamError::with_text(StreamErrorCondition::NotWellFormed, "unexpected stream header")),
                    Some(Err(e)) => ending = Some(e),
                },
                Some(st) = rx.recv() => {
                    conn.queued.fetch_sub(output_cost(&st), Ordering::Relaxed);
                    let mut frames = vec![Frame::Stanza(st)];
                    while let Ok(more) = rx.try_recv() {
                        conn.queued.fetch_sub(output_cost(&more), Ordering::Relaxed);
                        frames.push(Frame::Stanza(more));
                    }
                    alive = matches!(tokio::time::timeout(write_timeout, transport.write(&frames)).await, Ok(true));
                }
                _ = shutdown.changed() => ending = Some(StreamError::new(StreamErrorCondition::SystemShutdown)),
            }
        }
        // Gone for routing first; then what it never got goes back to its senders.
        {
            let mut connected = self.connected.lock().expect("component link");
            if connected.as_ref().is_some_and(|c| c.id == conn.id) {
                *connected = None;
            }
        }
        drop(conn);
        rx.close();
        while let Ok(st) = rx.try_recv() {
            for reply in bounce_reply(&st, StanzaError::service_unavailable().with_text("the component disconnected")) {
                crate::routing::route(server, reply).await;
            }
        }
        if alive {
            let mut frames = Vec::new();
            if let Some(e) = ending {
                frames.push(Frame::Error(e));
            }
            frames.push(Frame::Close);
            let _ = tokio::time::timeout(write_timeout, transport.write(&frames)).await;
            transport.close().await;
        }
        tracing::info!(domain = %self.domain, %peer, "component disconnected");
    }

    /// A stanza from the component: from its own domain, then routed like any other.
    async fn route_from_component(&self, server: &Arc<Server>, mut st: Stanza) -> Result<(), StreamError> {
        if st.kind() == jabberwock_proto::StanzaKind::Other {
            return Err(StreamError::new(StreamErrorCondition::UnsupportedStanzaType));
        }
        let from_ok = st.from().and_then(|f| Jid::new(f).ok()).is_some_and(|f| f.domain().as_str() == self.domain);
        if !from_ok {
            return Err(StreamError::with_text(StreamErrorCondition::InvalidFrom, format!("stanzas must come from {}", self.domain)));
        }
        st.set_content_ns(ns::CLIENT);
        crate::routing::route(server, st).await;
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
