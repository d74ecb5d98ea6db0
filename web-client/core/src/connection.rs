//! The client's stream negotiation as a state machine without I/O:
//! open → features → SASL (SCRAM) → restart → features → bind (→ session) → online,
//! or, after the restart, resume (XEP-0198) a stream that dropped → online.
//!
//! Where the server offers SASL2 (XEP-0388), one exchange does it all: SCRAM (or a FAST
//! token, XEP-0484) with a Bind2 request (XEP-0386, stream management enabled inline)
//! or the resumption of a dropped stream, and a request for the token that signs this
//! device in next time.
//!
//! The transport feeds [`Input`]s to [`Connection::receive`] and performs the
//! [`ConnEvent::Send`]s it gets back; everything else is for the layer above.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use jabberwock_proto::Element;

use crate::address::Account;
use crate::fast::{self, FastToken};
use crate::framing::{Frame, Input};
use crate::ns;
use crate::scram::{ScramClient, ScramError, ScramHash, ScramKeys};
use crate::sm::{is_stanza, StreamManagement};
use crate::stanza::{self, ErrorInfo};

/// Where the connection is, for display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Authenticating,
    Binding,
    Online,
    Closing,
    Closed,
}

/// Why a connection ended or could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    #[error("{}", auth_message(condition, text.as_deref()))]
    AuthFailed { condition: String, text: Option<String> },
    #[error("the server offers no sign-in method this client supports ({})", .0.join(", "))]
    NoMechanism(Vec<String>),
    #[error("sign-in failed: {0}")]
    Scram(#[from] ScramError),
    #[error("{}", stream_message(condition, text.as_deref()))]
    Stream { condition: String, text: Option<String> },
    #[error("the server refused to bind a resource: {}", .0.describe())]
    Bind(ErrorInfo),
    #[error("the server sent something unexpected: {0}")]
    Protocol(String),
    #[error("the server closed the connection")]
    ServerClosed,
    #[error("the connection to the server was lost")]
    ConnectionLost,
    /// The session could not be resumed, and only the password can start a new one.
    #[error("Your session has ended; sign in again")]
    SessionExpired,
    #[error("This server does not let accounts be created here")]
    RegistrationClosed,
    #[error("{}", registration_message(.0))]
    Registration(ErrorInfo),
}

fn registration_message(e: &ErrorInfo) -> String {
    match e.condition.as_str() {
        "conflict" => "That address is taken; choose another".to_owned(),
        "resource-constraint" => "Too many accounts were created from here; try again later".to_owned(),
        "not-allowed" | "forbidden" | "service-unavailable" => "This server does not let accounts be created here".to_owned(),
        _ => format!("The account was not created: {}", e.describe()),
    }
}

fn auth_message(condition: &str, text: Option<&str>) -> String {
    let base = match condition {
        "not-authorized" => "Wrong address or password",
        "account-disabled" => "This account is disabled",
        "credentials-expired" => "The password has expired",
        "temporary-auth-failure" => "Sign-in is temporarily unavailable; try again shortly",
        "encryption-required" => "The server requires an encrypted connection for this sign-in method",
        "malformed-request" | "incorrect-encoding" | "invalid-mechanism" => "The server rejected the sign-in request",
        _ => "Sign-in failed",
    };
    match text {
        Some(t) if !t.is_empty() => format!("{base} ({t})"),
        _ => base.to_owned(),
    }
}

fn stream_message(condition: &str, text: Option<&str>) -> String {
    let base = match condition {
        "conflict" => "Signed in from another place with the same resource; this session was closed",
        "host-unknown" => "This server does not serve that domain",
        "system-shutdown" => "The server is shutting down",
        "policy-violation" => "The server closed the connection (policy violation)",
        "connection-timeout" => "The connection timed out",
        "not-authorized" => "Not authorized",
        other => return format!("The server closed the stream: {other}{}", text.map(|t| format!(" ({t})")).unwrap_or_default()),
    };
    base.to_owned()
}

impl ConnError {
    /// Trying again with the same credentials would fail the same way (or fight another
    /// session): no automatic reconnect.
    pub fn is_permanent(&self) -> bool {
        match self {
            ConnError::AuthFailed { condition, .. } => condition != "temporary-auth-failure",
            ConnError::NoMechanism(_)
            | ConnError::Scram(_)
            | ConnError::SessionExpired
            | ConnError::RegistrationClosed
            | ConnError::Registration(_) => true,
            ConnError::Stream { condition, .. } => matches!(condition.as_str(), "conflict" | "host-unknown" | "not-authorized"),
            _ => false,
        }
    }

    pub fn is_auth(&self) -> bool {
        matches!(self, ConnError::AuthFailed { .. } | ConnError::Scram(_))
    }
}

/// Reconnect delays double from 1 s up to this.
pub const MAX_RECONNECT_DELAY_MS: u32 = 30_000;

/// How long to wait before the `attempt`th retry (0 for the first): 1, 2, 4 … 60 s, each
/// shortened by up to a quarter with `jitter` (0 to 1, random) so that the clients of a
/// restarted server do not all come back at the same instant.
pub fn reconnect_delay_ms(attempt: u32, jitter: f64) -> u32 {
    let base = (1000u32 << attempt.min(6)).min(MAX_RECONNECT_DELAY_MS);
    base - (f64::from(base) * 0.25 * jitter.clamp(0.0, 1.0)) as u32
}

#[derive(Clone, Debug, PartialEq)]
pub enum ConnEvent {
    /// Hand this to the transport.
    Send(Frame),
    Phase(Phase),
    /// Resource bound, or the previous stream resumed (`resumed`); stanzas may flow. `jid`
    /// is our full JID.
    Online {
        jid: String,
        resumed: bool,
    },
    /// A stanza (or other top-level element) received while online.
    Stanza(Element),
    /// The connection failed; a [`Phase::Closed`] follows.
    Failed(ConnError),
}

/// Stream features the client cares about once authenticated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Features {
    pub roster_versioning: bool,
    pub pre_approval: bool,
    pub stream_management: bool,
    pub csi: bool,
}

enum Stage {
    Idle,
    /// `<open/>` sent; waiting for the server's.
    AwaitOpen {
        authenticated: bool,
    },
    AwaitFeatures {
        authenticated: bool,
    },
    /// XEP-0077: the account's creation was asked for, before signing in with the features
    /// the server offered.
    Registering {
        id: String,
        features: Box<Element>,
    },
    Sasl(Box<ScramClient>),
    Sasl2(Box<Sasl2>),
    Binding {
        id: String,
        session_required: bool,
    },
    Session {
        id: String,
    },
    /// `<resume/>` sent with this state.
    Resuming(StreamManagement),
    Online,
    Closing,
    Closed,
}

/// What signs us in.
#[derive(Clone, Debug)]
pub enum Credential {
    Password(String),
    /// Keys from an earlier SCRAM exchange ([`ScramClient::keys`]): enough to resume a
    /// session, not to start a new one (see [`ConnError::SessionExpired`]).
    Keys(ScramKeys),
    /// A FAST token the server issued to this device: starts a new session or resumes
    /// one, over SASL2.
    Token(FastToken),
}

/// A SASL2 exchange in progress.
struct Sasl2 {
    /// SCRAM; `None` when signing in with a token.
    scram: Option<ScramClient>,
    /// With a token: what the server's additional data must be.
    responder: Option<Vec<u8>>,
    /// A dropped stream being resumed inline, with its JID.
    resuming: Option<(StreamManagement, String)>,
    /// The server sets up client state indication inline (Bind2 offered it).
    csi: bool,
}

pub struct Connection {
    account: Account,
    /// Kept only until SASL succeeds.
    credential: Option<Credential>,
    /// Only to resume a dropped stream, never to start a new session: signing in with
    /// kept keys, which prove a past sign-in but are no credential of this device.
    resume_only: bool,
    /// Create the account (XEP-0077) with the password before signing in with it.
    register: bool,
    /// What SCRAM derived this time, to sign in again without the password.
    keys: Option<ScramKeys>,
    /// The FAST token the server issued last (SASL2), to sign in next time.
    token: Option<FastToken>,
    /// This device's stable id for SASL2's `<user-agent/>`: the server ties tokens and the
    /// Bind2 resource to it.
    device: String,
    resource: Option<String>,
    nonce: String,
    stage: Stage,
    jid: Option<String>,
    features: Features,
    /// The server wants the old session establishment after binding.
    session_required: bool,
    /// XEP-0198 on the current stream, requested when the server offers it.
    sm: Option<StreamManagement>,
    /// A dropped stream to resume after authenticating, with its JID.
    resume: Option<(StreamManagement, String)>,
    /// Messages of a stream that could not be resumed, to send once bound.
    resend: Vec<Element>,
}

impl Connection {
    /// `nonce`: fresh random printable text for SCRAM (see [`crate::scram::ScramClient::new`]).
    pub fn new(account: Account, credential: Credential, resource: Option<String>, nonce: String) -> Self {
        Connection {
            account,
            resume_only: matches!(credential, Credential::Keys(_)),
            register: false,
            keys: match &credential {
                Credential::Keys(k) => Some(k.clone()),
                Credential::Password(_) | Credential::Token(_) => None,
            },
            token: match &credential {
                Credential::Token(t) => Some(t.clone()),
                _ => None,
            },
            credential: Some(credential),
            resource,
            device: format!("web-{}", &nonce[..nonce.len().min(16)]),
            nonce,
            stage: Stage::Idle,
            jid: None,
            features: Features::default(),
            session_required: false,
            sm: None,
            resume: None,
            resend: Vec::new(),
        }
    }

    /// Tries to resume the stream `sm` (bound to `jid`) once authenticated; without
    /// resumption it binds a new session, or with kept keys fails with
    /// [`ConnError::SessionExpired`].
    pub fn resuming(mut self, resume: Option<(StreamManagement, String)>) -> Self {
        self.resume = resume.filter(|(sm, _)| sm.id().is_some());
        self
    }

    /// The stream-management state of a dropped stream that may be resumed, with its JID.
    pub fn take_resumable(&mut self) -> Option<(StreamManagement, String)> {
        // A connection that was to resume and never got that far (a page started without a
        // network) leaves the same stream to resume.
        if let Some(pending) = self.resume.take() {
            return Some(pending);
        }
        let sm = self.sm.take().filter(|sm| sm.id().is_some())?;
        Some((sm, self.jid.clone()?))
    }

    /// The stream's XEP-0198 state, or that of the stream this connection is to resume.
    pub fn stream_management(&self) -> Option<&StreamManagement> {
        self.sm.as_ref().or(self.resume.as_ref().map(|(sm, _)| sm))
    }

    /// The SCRAM keys that signed this connection in.
    pub fn keys(&self) -> Option<&ScramKeys> {
        self.keys.as_ref()
    }

    /// The FAST token for this device's next sign-in: the one issued last, or the one
    /// signing in until the server replaces it.
    pub fn token(&self) -> Option<&FastToken> {
        self.token.as_ref()
    }

    /// The SASL2 user-agent id, to keep across connections of this device.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Creates the account with the password (XEP-0077 in-band registration) before signing
    /// in: a new user's first connection.
    pub fn registering(mut self) -> Self {
        self.register = matches!(self.credential, Some(Credential::Password(_)));
        self
    }

    /// The account is still to be created (a new connection for the same user must too).
    pub fn registers(&self) -> bool {
        self.register
    }

    /// Uses `device` as the SASL2 user-agent id (one kept from an earlier connection).
    pub fn with_device(mut self, device: String) -> Self {
        self.device = device;
        self
    }

    pub fn phase(&self) -> Phase {
        match self.stage {
            Stage::Idle | Stage::AwaitOpen { authenticated: false } | Stage::AwaitFeatures { authenticated: false } => {
                Phase::Connecting
            }
            Stage::Registering { .. } | Stage::Sasl(_) | Stage::Sasl2(_) => Phase::Authenticating,
            Stage::AwaitOpen { authenticated: true }
            | Stage::AwaitFeatures { authenticated: true }
            | Stage::Binding { .. }
            | Stage::Session { .. }
            | Stage::Resuming(_) => Phase::Binding,
            Stage::Online => Phase::Online,
            Stage::Closing => Phase::Closing,
            Stage::Closed => Phase::Closed,
        }
    }

    pub fn is_online(&self) -> bool {
        matches!(self.stage, Stage::Online)
    }

    /// Our full JID: bound, or that of the stream this connection is to resume.
    pub fn jid(&self) -> Option<&str> {
        self.jid.as_deref().or(self.resume.as_ref().map(|(_, jid)| jid.as_str()))
    }

    pub fn account(&self) -> &Account {
        &self.account
    }

    /// The resource we ask the server for.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    pub fn features(&self) -> &Features {
        &self.features
    }

    /// The transport is up: open the stream.
    pub fn start(&mut self) -> Vec<ConnEvent> {
        self.stage = Stage::AwaitOpen { authenticated: false };
        vec![
            ConnEvent::Phase(Phase::Connecting),
            ConnEvent::Send(Frame::Open { to: self.account.domain.clone(), restart: false }),
        ]
    }

    /// Sends a stanza (or another top-level element); only while online. A stanza waits
    /// for the server's acknowledgement under stream management.
    pub fn send(&mut self, el: Element) -> Vec<ConnEvent> {
        if !self.is_online() {
            return vec![];
        }
        let Some(sm) = self.sm.as_mut().filter(|_| is_stanza(&el)) else {
            return vec![ConnEvent::Send(Frame::Element(el))];
        };
        let request = sm.sent(el.clone());
        std::iter::once(el).chain(request).map(|e| ConnEvent::Send(Frame::Element(e))).collect()
    }

    /// Ends the stream politely; the session ends with it (nothing to resume).
    pub fn close(&mut self) -> Vec<ConnEvent> {
        self.sm = None;
        match self.stage {
            Stage::Closed | Stage::Closing => vec![],
            Stage::Idle => self.closed(None),
            _ => {
                self.stage = Stage::Closing;
                vec![ConnEvent::Phase(Phase::Closing), ConnEvent::Send(Frame::Close)]
            }
        }
    }

    /// The transport went away (socket closed, network lost).
    pub fn transport_closed(&mut self) -> Vec<ConnEvent> {
        match self.stage {
            Stage::Closed => vec![],
            Stage::Closing => self.closed(None),
            _ => self.closed(Some(ConnError::ConnectionLost)),
        }
    }

    fn closed(&mut self, error: Option<ConnError>) -> Vec<ConnEvent> {
        self.stage = Stage::Closed;
        self.credential = None;
        // Only a connection that vanished leaves a session behind on the server.
        if error != Some(ConnError::ConnectionLost) {
            self.sm = None;
        }
        let mut out: Vec<ConnEvent> = error.into_iter().map(ConnEvent::Failed).collect();
        out.push(ConnEvent::Phase(Phase::Closed));
        out
    }

    fn fail(&mut self, error: ConnError) -> Vec<ConnEvent> {
        let mut out = vec![ConnEvent::Send(Frame::Close)];
        out.extend(self.closed(Some(error)));
        out
    }

    pub fn receive(&mut self, input: Input) -> Vec<ConnEvent> {
        match input {
            Input::Closed { .. } => match self.stage {
                Stage::Closing | Stage::Closed => self.closed(None),
                // RFC 7395 §3.6: answer the server's close with ours.
                _ => {
                    let mut out = vec![ConnEvent::Send(Frame::Close)];
                    out.extend(self.closed(Some(ConnError::ServerClosed)));
                    out
                }
            },
            Input::Opened { .. } => match self.stage {
                Stage::AwaitOpen { authenticated } => {
                    self.stage = Stage::AwaitFeatures { authenticated };
                    vec![]
                }
                Stage::Closing | Stage::Closed => vec![],
                _ => self.fail(ConnError::Protocol("an unexpected stream open".into())),
            },
            Input::Element(el) => self.element(el),
        }
    }

    fn element(&mut self, el: Element) -> Vec<ConnEvent> {
        if el.is("error", ns::STREAM) {
            let condition = el
                .children()
                .find(|c| c.ns() == ns::STREAM_ERRORS && c.name() != "text")
                .map_or("undefined-condition", |c| c.name())
                .to_owned();
            let text = el.child_text("text", ns::STREAM_ERRORS).filter(|t| !t.is_empty());
            return self.closed(Some(ConnError::Stream { condition, text }));
        }
        match std::mem::replace(&mut self.stage, Stage::Idle) {
            Stage::AwaitFeatures { authenticated: false } if el.is("features", ns::STREAM) && self.register => self.start_register(el),
            Stage::AwaitFeatures { authenticated: false } if el.is("features", ns::STREAM) => self.start_sasl(&el),
            Stage::Registering { id, features } if el.is("iq", ns::CLIENT) && el.attr("id") == Some(id.as_str()) => {
                if el.attr("type") == Some("result") {
                    // Created: sign in to it, on the same stream (XEP-0077 §3.1).
                    self.register = false;
                    self.start_sasl(&features)
                } else {
                    self.fail(ConnError::Registration(ErrorInfo::from_stanza(&el)))
                }
            }
            Stage::AwaitFeatures { authenticated: true } if el.is("features", ns::STREAM) => self.authenticated(&el),
            Stage::Sasl(scram) if el.ns() == ns::SASL => self.sasl_step(scram, &el),
            Stage::Sasl2(state) if el.ns() == ns::SASL2 => self.sasl2_step(state, &el),
            Stage::Binding { id, session_required } if el.is("iq", ns::CLIENT) && el.attr("id") == Some(id.as_str()) => {
                self.bind_result(&el, session_required)
            }
            Stage::Session { id } if el.is("iq", ns::CLIENT) && el.attr("id") == Some(id.as_str()) => {
                if el.attr("type") == Some("result") {
                    self.online()
                } else {
                    self.fail(ConnError::Bind(ErrorInfo::from_stanza(&el)))
                }
            }
            Stage::Resuming(sm) if el.ns() == ns::SM => self.resume_answer(sm, &el),
            Stage::Online => {
                self.stage = Stage::Online;
                if el.ns() == ns::SM {
                    return self.sm_element(&el);
                }
                if let Some(sm) = self.sm.as_mut().filter(|_| is_stanza(&el)) {
                    sm.received();
                }
                vec![ConnEvent::Stanza(el)]
            }
            stage @ (Stage::Closing | Stage::Closed) => {
                self.stage = stage;
                vec![]
            }
            _ => self.fail(ConnError::Protocol(format!("<{}/> during negotiation", el.name()))),
        }
    }

    /// XEP-0077 §3.1: asks for the account, when the server offers registration here.
    fn start_register(&mut self, features: Element) -> Vec<ConnEvent> {
        if features.child("register", ns::REGISTER_FEATURE).is_none() {
            return self.fail(ConnError::RegistrationClosed);
        }
        let Some(Credential::Password(password)) = &self.credential else {
            return self.fail(ConnError::Protocol("registering needs a password".into()));
        };
        let id = format!("reg-{}", &self.nonce[..self.nonce.len().min(8)]);
        let query = Element::new("query", ns::REGISTER)
            .with_child(Element::new("username", ns::REGISTER).with_text(self.account.local.as_str()))
            .with_child(Element::new("password", ns::REGISTER).with_text(password.as_str()));
        let request = Element::new("iq", ns::CLIENT).with_attr("type", "set").with_attr("id", id.as_str()).with_child(query);
        self.stage = Stage::Registering { id, features: Box::new(features) };
        vec![ConnEvent::Phase(Phase::Authenticating), ConnEvent::Send(Frame::Element(request))]
    }

    fn start_sasl(&mut self, features: &Element) -> Vec<ConnEvent> {
        if let Some(auth) = features.child("authentication", ns::SASL2) {
            return self.start_sasl2(auth);
        }
        let offered: Vec<String> = features
            .child("mechanisms", ns::SASL)
            .map(|m| m.children().filter(|c| c.is("mechanism", ns::SASL)).map(|c| c.text().trim().to_owned()).collect())
            .unwrap_or_default();
        let mut scram = match self.scram_client(&offered) {
            Ok(s) => s,
            Err(e) => return self.fail(e),
        };
        let hash = scram.hash();
        let auth =
            Element::new("auth", ns::SASL).with_attr("mechanism", hash.mechanism()).with_text(B64.encode(scram.client_first()));
        self.stage = Stage::Sasl(Box::new(scram));
        vec![ConnEvent::Phase(Phase::Authenticating), ConnEvent::Send(Frame::Element(auth))]
    }

    /// A SCRAM exchange for one of the `offered` mechanisms, with the password or kept keys.
    fn scram_client(&self, offered: &[String]) -> Result<ScramClient, ConnError> {
        // PLAIN would hand the password to the server: never offered by this client.
        let Some(hash) = [ScramHash::Sha256, ScramHash::Sha1].into_iter().find(|h| offered.iter().any(|o| o == h.mechanism()))
        else {
            return Err(ConnError::NoMechanism(offered.to_vec()));
        };
        let scram = match self.credential.clone() {
            // Kept keys are for the mechanism they came from.
            Some(Credential::Keys(keys)) if offered.iter().any(|o| o == keys.hash.mechanism()) => {
                ScramClient::with_keys(&self.account.local, keys, &self.nonce)
            }
            Some(Credential::Keys(_) | Credential::Token(_)) => return Err(ConnError::SessionExpired),
            Some(Credential::Password(password)) => ScramClient::new(hash, &self.account.local, &password, &self.nonce),
            None => return Err(ConnError::Protocol("no credential to sign in with".into())),
        };
        Ok(scram?)
    }

    /// SASL2's `<authenticate/>`: SCRAM or the token, a token request, and either the
    /// resumption of a dropped stream or a Bind2 request (or both: the server binds when
    /// it cannot resume). Kept keys only ever resume.
    fn start_sasl2(&mut self, auth: &Element) -> Vec<ConnEvent> {
        let offered: Vec<String> = auth.children().filter(|c| c.is("mechanism", ns::SASL2)).map(|c| c.text().trim().to_owned()).collect();
        let inline = auth.child("inline", ns::SASL2);
        let fast = inline
            .and_then(|i| i.child("fast", ns::FAST))
            .is_some_and(|f| f.children().any(|m| m.is("mechanism", ns::FAST) && m.text().trim() == fast::MECHANISM));
        let bind2 = inline.and_then(|i| i.child("bind", ns::BIND2));
        let bind2_offers = |var: &str| {
            bind2.and_then(|b| b.child("inline", ns::BIND2)).is_some_and(|i| i.children().any(|f| f.attr("var") == Some(var)))
        };
        let mut state = Sasl2 { scram: None, responder: None, resuming: None, csi: bind2_offers(ns::CSI) };
        let mut authenticate = Element::new("authenticate", ns::SASL2);
        let initial = match self.credential.clone() {
            Some(Credential::Token(token)) if fast => {
                authenticate.set_attr("mechanism", fast::MECHANISM);
                state.responder = Some(token.expected_responder());
                token.initial_response(&self.account.local)
            }
            _ => {
                let mut scram = match self.scram_client(&offered) {
                    Ok(s) => s,
                    Err(e) => return self.fail(e),
                };
                authenticate.set_attr("mechanism", scram.hash().mechanism());
                let first = scram.client_first().into_bytes();
                state.scram = Some(scram);
                first
            }
        };
        authenticate.push(Element::new("initial-response", ns::SASL2).with_text(B64.encode(initial)));
        authenticate.push(
            Element::new("user-agent", ns::SASL2)
                .with_attr("id", self.device.clone())
                .with_child(Element::new("software", ns::SASL2).with_text("Jabberwock web client")),
        );
        if fast {
            authenticate.push(match state.responder {
                Some(_) => Element::new("fast", ns::FAST),
                None => Element::new("request-token", ns::FAST).with_attr("mechanism", fast::MECHANISM),
            });
        }
        let sm_inline = inline.is_some_and(|i| i.child("sm", ns::SM).is_some());
        match self.resume.take() {
            Some((sm, jid)) if sm_inline => {
                authenticate.push(sm.resume_request().expect("only resumable state is kept"));
                state.resuming = Some((sm, jid));
            }
            // Resumed after the features that follow the success, as after SASL.
            other => self.resume = other,
        }
        let resume_only = self.resume_only || (state.resuming.is_none() && self.resume.is_some());
        if let (Some(_), false) = (bind2, resume_only) {
            let tag = self.resource.clone().unwrap_or_else(|| "web".to_owned());
            let mut bind = Element::new("bind", ns::BIND2).with_child(Element::new("tag", ns::BIND2).with_text(tag));
            if bind2_offers(ns::SM) {
                bind.push(StreamManagement::enable());
            }
            authenticate.push(bind);
        }
        self.stage = Stage::Sasl2(Box::new(state));
        vec![ConnEvent::Phase(Phase::Authenticating), ConnEvent::Send(Frame::Element(authenticate))]
    }

    fn sasl2_step(&mut self, mut state: Box<Sasl2>, el: &Element) -> Vec<ConnEvent> {
        let decode = |text: &str| B64.decode(text.trim()).ok();
        match el.name() {
            "challenge" => {
                let Some(scram) = state.scram.as_mut() else { return self.fail(ConnError::Protocol("a challenge to a token".into())) };
                let Some(data) = decode(&el.text()).and_then(|b| String::from_utf8(b).ok()) else {
                    return self.fail(ScramError::MalformedChallenge.into());
                };
                let reply = match scram.client_final(&data) {
                    Ok(final_msg) => B64.encode(final_msg),
                    Err(ScramError::KeysOutdated) => return self.fail(ConnError::SessionExpired),
                    Err(e) => return self.fail(e.into()),
                };
                self.stage = Stage::Sasl2(state);
                vec![ConnEvent::Send(Frame::Element(Element::new("response", ns::SASL2).with_text(reply)))]
            }
            "success" => self.sasl2_success(*state, el),
            "failure" => {
                let condition = el.children().find(|c| c.ns() == ns::SASL).map_or("not-authorized", |c| c.name()).to_owned();
                // A token refused (used, expired, revoked): only the password helps now.
                if state.responder.is_some() && matches!(condition.as_str(), "not-authorized" | "credentials-expired") {
                    self.token = None;
                    return self.fail(ConnError::SessionExpired);
                }
                let text = el.child_text("text", ns::SASL2).filter(|t| !t.is_empty());
                self.fail(ConnError::AuthFailed { condition, text })
            }
            other => self.fail(ConnError::Protocol(format!("<{other}/> during SASL2"))),
        }
    }

    fn sasl2_success(&mut self, state: Sasl2, el: &Element) -> Vec<ConnEvent> {
        let additional = el.child_text("additional-data", ns::SASL2).and_then(|d| B64.decode(d.trim()).ok());
        // The server proves it knew the password (or the token) too.
        match (state.scram, &state.responder) {
            (Some(mut scram), _) => {
                let verified = additional
                    .and_then(|d| String::from_utf8(d).ok())
                    .map(|d| scram.verify_server_final(&d))
                    .unwrap_or(Err(ScramError::BadServerSignature));
                if let Err(e) = verified.and_then(|_| if scram.is_done() { Ok(()) } else { Err(ScramError::BadServerSignature) }) {
                    return self.fail(e.into());
                }
                self.keys = scram.keys().cloned();
            }
            (None, Some(expected)) if additional.as_ref() == Some(expected) => {}
            (None, _) => return self.fail(ScramError::BadServerSignature.into()),
        }
        self.credential = None;
        if state.responder.is_some() {
            // Used up; its replacement comes with the success.
            self.token = None;
        }
        if let Some(t) = el.child("token", ns::FAST) {
            if let (Some(token), Some(expiry)) = (t.attr("token"), t.attr("expiry")) {
                self.token = Some(FastToken { token: token.to_owned(), expiry: expiry.to_owned() });
            }
        }
        let jid = el.child_text("authorization-identifier", ns::SASL2).map(|j| j.trim().to_owned());
        if let Some((sm, old_jid)) = state.resuming {
            if let Some(resumed) = el.child("resumed", ns::SM) {
                self.jid = Some(old_jid);
                return self.resume_answer(sm, resumed);
            }
            if self.resume_only {
                return self.fail(ConnError::SessionExpired);
            }
            // Gone: the new session (bound inline) sends again what the old one never confirmed.
            self.resend = sm.unacked().filter(|e| e.name() == "message").cloned().collect();
        }
        match (el.child("bound", ns::BIND2), jid) {
            (Some(bound), Some(jid)) => {
                let enabled = bound.child("enabled", ns::SM);
                self.features = Features { stream_management: enabled.is_some(), csi: state.csi, ..Features::default() };
                self.sm = enabled.map(|e| {
                    let mut sm = StreamManagement::new();
                    sm.on_enabled(e);
                    sm
                });
                self.jid = Some(jid);
                self.online()
            }
            // Not bound inline: the features of the authenticated stream follow, without a restart.
            _ => {
                self.stage = Stage::AwaitFeatures { authenticated: true };
                vec![ConnEvent::Phase(Phase::Binding)]
            }
        }
    }

    fn sasl_step(&mut self, mut scram: Box<ScramClient>, el: &Element) -> Vec<ConnEvent> {
        let payload = || B64.decode(el.text().trim()).ok().and_then(|b| String::from_utf8(b).ok());
        match el.name() {
            "challenge" => {
                let Some(data) = payload() else { return self.fail(ScramError::MalformedChallenge.into()) };
                let reply = match scram.client_final(&data) {
                    Ok(final_msg) => B64.encode(final_msg),
                    Err(ScramError::KeysOutdated) => return self.fail(ConnError::SessionExpired),
                    Err(_) => {
                        // A server-final-message sent as a challenge: verify, then answer empty.
                        match scram.verify_server_final(&data) {
                            Ok(()) => String::new(),
                            Err(e) => return self.fail(e.into()),
                        }
                    }
                };
                self.stage = Stage::Sasl(scram);
                vec![ConnEvent::Send(Frame::Element(Element::new("response", ns::SASL).with_text(reply)))]
            }
            "success" => {
                let data = el.text();
                if !data.trim().is_empty() {
                    let Some(data) = payload() else { return self.fail(ScramError::MalformedChallenge.into()) };
                    if let Err(e) = scram.verify_server_final(&data) {
                        return self.fail(e.into());
                    }
                }
                if !scram.is_done() {
                    // The server never proved it knows the password.
                    return self.fail(ScramError::BadServerSignature.into());
                }
                self.credential = None;
                self.keys = scram.keys().cloned();
                self.stage = Stage::AwaitOpen { authenticated: true };
                vec![
                    ConnEvent::Phase(Phase::Binding),
                    ConnEvent::Send(Frame::Open { to: self.account.domain.clone(), restart: true }),
                ]
            }
            "failure" => {
                let condition = el.children().find(|c| c.name() != "text").map_or("not-authorized", |c| c.name()).to_owned();
                let text = el.child_text("text", ns::SASL).filter(|t| !t.is_empty());
                self.fail(ConnError::AuthFailed { condition, text })
            }
            other => self.fail(ConnError::Protocol(format!("<{other}/> during SASL"))),
        }
    }

    /// The features after SASL: resume the previous stream if there is one, else bind.
    fn authenticated(&mut self, features: &Element) -> Vec<ConnEvent> {
        self.features = Features {
            roster_versioning: features.child("ver", ns::ROSTER_VER).is_some(),
            pre_approval: features.child("sub", ns::PRE_APPROVAL).is_some(),
            stream_management: features.child("sm", ns::SM).is_some(),
            csi: features.child("csi", ns::CSI).is_some(),
        };
        if features.child("bind", ns::BIND).is_none() {
            return self.fail(ConnError::Protocol("no resource binding offered".into()));
        }
        // RFC 6121 dropped session establishment; old servers mark it optional or require it.
        self.session_required =
            features.child("session", ns::SESSION).is_some_and(|s| s.child("optional", ns::SESSION).is_none());
        match self.resume.take() {
            Some((sm, jid)) if self.features.stream_management => {
                let request = sm.resume_request().expect("only resumable state is kept");
                self.jid = Some(jid);
                self.stage = Stage::Resuming(sm);
                vec![ConnEvent::Send(Frame::Element(request))]
            }
            _ if self.resume_only => self.fail(ConnError::SessionExpired),
            _ => self.start_bind(),
        }
    }

    /// `<resumed/>` or `<failed/>` after our `<resume/>`.
    fn resume_answer(&mut self, mut sm: StreamManagement, el: &Element) -> Vec<ConnEvent> {
        match el.name() {
            "resumed" => {
                let Some(h) = el.attr("h").and_then(|h| h.parse::<u32>().ok()) else {
                    return self.fail(ConnError::Protocol("<resumed/> without h".into()));
                };
                let again = match sm.on_resumed(h) {
                    Ok(again) => again,
                    Err(e) => return self.fail(ConnError::Protocol(format!("the server acknowledged {} stanzas too many", e.h))),
                };
                self.sm = Some(sm);
                self.stage = Stage::Online;
                let jid = self.jid.clone().unwrap_or_default();
                // What the server missed goes first, so that the queue keeps the wire order.
                let mut out: Vec<ConnEvent> = again.into_iter().map(|e| ConnEvent::Send(Frame::Element(e))).collect();
                out.extend([ConnEvent::Phase(Phase::Online), ConnEvent::Online { jid, resumed: true }]);
                out
            }
            "failed" if self.resume_only => self.fail(ConnError::SessionExpired),
            // The session is gone (the window passed): a new one on this stream, which
            // sends again the messages the old one never confirmed (XEP-0198 §5).
            "failed" => {
                self.jid = None;
                self.resend = sm.unacked().filter(|e| e.name() == "message").cloned().collect();
                self.start_bind()
            }
            other => self.fail(ConnError::Protocol(format!("<{other}/> in answer to <resume/>"))),
        }
    }

    /// Stream-management elements on an established stream.
    fn sm_element(&mut self, el: &Element) -> Vec<ConnEvent> {
        let Some(sm) = self.sm.as_mut() else { return vec![] };
        match el.name() {
            "r" => vec![ConnEvent::Send(Frame::Element(sm.answer()))],
            "a" => match el.attr("h").and_then(|h| h.parse::<u32>().ok()).map(|h| sm.on_ack(h)) {
                Some(Ok(request)) => request.into_iter().map(|r| ConnEvent::Send(Frame::Element(r))).collect(),
                Some(Err(e)) => self.fail(ConnError::Protocol(format!("the server acknowledged {} stanzas too many", e.h))),
                None => self.fail(ConnError::Protocol("<a/> without h".into())),
            },
            "enabled" => {
                sm.on_enabled(el);
                vec![]
            }
            // Refused: no stream management on this stream.
            "failed" => {
                self.sm = None;
                vec![]
            }
            _ => vec![],
        }
    }

    fn start_bind(&mut self) -> Vec<ConnEvent> {
        let session_required = self.session_required;
        let id = format!("bind-{}", &self.nonce[..self.nonce.len().min(8)]);
        let iq = stanza::bind(&id, self.resource.as_deref());
        self.stage = Stage::Binding { id, session_required };
        vec![ConnEvent::Send(Frame::Element(iq))]
    }

    fn bind_result(&mut self, iq: &Element, session_required: bool) -> Vec<ConnEvent> {
        if iq.attr("type") != Some("result") {
            return self.fail(ConnError::Bind(ErrorInfo::from_stanza(iq)));
        }
        let Some(jid) = iq.child("bind", ns::BIND).and_then(|b| b.child_text("jid", ns::BIND)).map(|j| j.trim().to_owned())
        else {
            return self.fail(ConnError::Protocol("bind result without a JID".into()));
        };
        self.jid = Some(jid);
        if session_required {
            let id = format!("sess-{}", &self.nonce[..self.nonce.len().min(8)]);
            let iq = stanza::session(&id);
            self.stage = Stage::Session { id };
            return vec![ConnEvent::Send(Frame::Element(iq))];
        }
        self.online()
    }

    /// Bound: stanzas flow. Stream management is asked for now, unless it was enabled
    /// inline (Bind2).
    fn online(&mut self) -> Vec<ConnEvent> {
        self.stage = Stage::Online;
        let jid = self.jid.clone().unwrap_or_default();
        let mut out = Vec::new();
        if self.features.stream_management && self.sm.is_none() {
            self.sm = Some(StreamManagement::new());
            out.push(ConnEvent::Send(Frame::Element(StreamManagement::enable())));
        }
        for message in std::mem::take(&mut self.resend) {
            out.extend(self.send(message));
        }
        out.extend([ConnEvent::Phase(Phase::Online), ConnEvent::Online { jid, resumed: false }]);
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jabberwock_proto::{reader, Limits};

    pub fn parse(xml: &str) -> Element {
        reader::parse_element(xml.as_bytes(), &Limits::default()).unwrap()
    }

    pub fn features_sasl(mechs: &[&str]) -> Element {
        let m: String = mechs.iter().map(|m| format!("<mechanism>{m}</mechanism>")).collect();
        parse(&format!(
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>\
             <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{m}</mechanisms></stream:features>"
        ))
    }

    pub fn features_bind() -> Element {
        parse(
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>\
             <ver xmlns='urn:xmpp:features:rosterver'/><sub xmlns='urn:xmpp:features:pre-approval'/></stream:features>",
        )
    }

    fn sent(events: &[ConnEvent]) -> Vec<&Frame> {
        events.iter().filter_map(|e| if let ConnEvent::Send(f) = e { Some(f) } else { None }).collect()
    }

    fn sent_element(events: &[ConnEvent]) -> Element {
        match sent(events).as_slice() {
            [Frame::Element(e)] => e.clone(),
            other => panic!("expected one element, got {other:?}"),
        }
    }

    fn sasl(name: &str, text: &str) -> Input {
        Input::Element(Element::new(name, ns::SASL).with_text(B64.encode(text)))
    }

    /// A server's side of SCRAM-SHA-1 for user/pencil, from the RFC 5802 example.
    const CNONCE: &str = "fyko+d2lbbFgONRv9qkxdawL";
    const SERVER_FIRST: &str = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
    const SERVER_FINAL: &str = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=";

    fn conn() -> Connection {
        Connection::new(
            Account { local: "user".into(), domain: "localhost".into() },
            Credential::Password("pencil".into()),
            Some("web".into()),
            CNONCE.into(),
        )
    }

    /// Drives a connection through SASL; returns it waiting for the restarted stream.
    fn authenticated() -> Connection {
        let mut c = conn();
        c.start();
        c.receive(Input::Opened { id: Some("s1".into()) });
        c.receive(Input::Element(features_sasl(&["SCRAM-SHA-1"])));
        c.receive(sasl("challenge", SERVER_FIRST));
        c.receive(sasl("success", SERVER_FINAL));
        c
    }

    pub fn bind_result(id: &str, jid: &str) -> Input {
        Input::Element(parse(&format!(
            "<iq xmlns='jabber:client' type='result' id='{id}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>{jid}</jid></bind></iq>"
        )))
    }

    const SASL2_INLINE: &str = "<sm xmlns='urn:xmpp:sm:3'/><bind xmlns='urn:xmpp:bind:0'><inline>\
        <feature var='urn:xmpp:sm:3'/><feature var='urn:xmpp:csi:0'/></inline></bind>\
        <fast xmlns='urn:xmpp:fast:0'><mechanism>HT-SHA-256-NONE</mechanism></fast>";

    fn features_sasl2(inline: &str) -> Input {
        Input::Element(parse(&format!(
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>\
             <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism></mechanisms>\
             <authentication xmlns='urn:xmpp:sasl:2'><mechanism>SCRAM-SHA-1</mechanism><inline>{inline}</inline></authentication>\
             </stream:features>"
        )))
    }

    fn sasl2_success(additional: &[u8], inner: &str) -> Input {
        Input::Element(parse(&format!(
            "<success xmlns='urn:xmpp:sasl:2'><additional-data>{}</additional-data>\
             <authorization-identifier>user@localhost/web.1a2b</authorization-identifier>{inner}</success>",
            B64.encode(additional)
        )))
    }

    fn token(t: &str) -> FastToken {
        FastToken { token: t.into(), expiry: "2030-01-01T00:00:00Z".into() }
    }

    fn with_credential(credential: Credential) -> Connection {
        let account = Account { local: "user".into(), domain: "localhost".into() };
        let mut c = Connection::new(account, credential, Some("web".into()), CNONCE.into()).with_device("device-1".into());
        c.start();
        c.receive(Input::Opened { id: None });
        c
    }

    #[test]
    fn sasl2_with_scram_binds_inline_and_gets_a_token() {
        let mut c = with_credential(Credential::Password("pencil".into()));
        let auth = sent_element(&c.receive(features_sasl2(SASL2_INLINE)));
        assert!(auth.is("authenticate", ns::SASL2));
        assert_eq!(auth.attr("mechanism"), Some("SCRAM-SHA-1"));
        let initial = B64.decode(auth.child_text("initial-response", ns::SASL2).unwrap()).unwrap();
        assert_eq!(initial, format!("n,,n=user,r={CNONCE}").as_bytes());
        assert_eq!(auth.child("user-agent", ns::SASL2).and_then(|u| u.attr("id")), Some("device-1"));
        assert_eq!(auth.child("request-token", ns::FAST).and_then(|t| t.attr("mechanism")), Some("HT-SHA-256-NONE"));
        let bind = auth.child("bind", ns::BIND2).expect("Bind2");
        assert_eq!(bind.child_text("tag", ns::BIND2).as_deref(), Some("web"));
        assert!(bind.child("enable", ns::SM).is_some(), "stream management inline");

        let resp = sent_element(&c.receive(Input::Element(Element::new("challenge", ns::SASL2).with_text(B64.encode(SERVER_FIRST)))));
        assert!(resp.is("response", ns::SASL2));
        assert_eq!(
            B64.decode(resp.text()).unwrap(),
            b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        let bound = "<bound xmlns='urn:xmpp:bind:0'><enabled xmlns='urn:xmpp:sm:3' id='sm1' resume='true' max='300'/></bound>\
                     <token xmlns='urn:xmpp:fast:0' token='T1' expiry='2030-01-01T00:00:00Z'/>";
        let ev = c.receive(sasl2_success(SERVER_FINAL.as_bytes(), bound));
        // Online at once; stream management is already on, so no <enable/> goes out.
        assert_eq!(ev, [ConnEvent::Phase(Phase::Online), ConnEvent::Online { jid: "user@localhost/web.1a2b".into(), resumed: false }]);
        assert_eq!(c.stream_management().and_then(|sm| sm.id()), Some("sm1"));
        assert!(c.features().stream_management && c.features().csi);
        assert_eq!(c.token(), Some(&token("T1")));
        assert!(c.keys().is_some() && c.credential.is_none());
    }

    #[test]
    fn sasl2_checks_the_server_signature() {
        let mut c = with_credential(Credential::Password("pencil".into()));
        c.receive(features_sasl2(SASL2_INLINE));
        c.receive(Input::Element(Element::new("challenge", ns::SASL2).with_text(B64.encode(SERVER_FIRST))));
        let ev = c.receive(sasl2_success(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "<bound xmlns='urn:xmpp:bind:0'/>"));
        assert!(ev.iter().any(|e| matches!(e, ConnEvent::Failed(ConnError::Scram(_)))), "{ev:?}");
        assert!(!c.is_online());
    }

    #[test]
    fn a_token_signs_in_without_the_password_and_is_replaced() {
        let t1 = token("T1");
        let mut c = with_credential(Credential::Token(t1.clone()));
        let auth = sent_element(&c.receive(features_sasl2(SASL2_INLINE)));
        assert_eq!(auth.attr("mechanism"), Some("HT-SHA-256-NONE"));
        assert_eq!(B64.decode(auth.child_text("initial-response", ns::SASL2).unwrap()).unwrap(), t1.initial_response("user"));
        assert!(auth.child("fast", ns::FAST).is_some() && auth.child("request-token", ns::FAST).is_none());
        assert!(auth.child("bind", ns::BIND2).is_some(), "a token starts a new session");
        let next = "<bound xmlns='urn:xmpp:bind:0'/><token xmlns='urn:xmpp:fast:0' token='T2' expiry='2030-01-02T00:00:00Z'/>";
        let ev = c.receive(sasl2_success(&t1.expected_responder(), next));
        assert!(ev.contains(&ConnEvent::Online { jid: "user@localhost/web.1a2b".into(), resumed: false }), "{ev:?}");
        assert_eq!(c.token().map(|t| t.token.as_str()), Some("T2"));

        // A server that did not know the token is not believed.
        let mut c = with_credential(Credential::Token(t1));
        c.receive(features_sasl2(SASL2_INLINE));
        let ev = c.receive(sasl2_success(&token("other").expected_responder(), "<bound xmlns='urn:xmpp:bind:0'/>"));
        assert!(ev.iter().any(|e| matches!(e, ConnEvent::Failed(_))) && !c.is_online(), "{ev:?}");
    }

    #[test]
    fn a_refused_token_asks_for_the_password() {
        let mut c = with_credential(Credential::Token(token("T1")));
        c.receive(features_sasl2(SASL2_INLINE));
        let failure = parse("<failure xmlns='urn:xmpp:sasl:2'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></failure>");
        let ev = c.receive(Input::Element(failure));
        assert!(ev.contains(&ConnEvent::Failed(ConnError::SessionExpired)), "{ev:?}");
        assert!(c.token().is_none(), "a refused token is forgotten");
    }

    #[test]
    fn a_dropped_stream_resumes_inside_sasl2() {
        let sm = StreamManagement::restore("sm1".into(), 300, 5, 0, Vec::new());
        let account = Account { local: "user".into(), domain: "localhost".into() };
        let t1 = token("T1");
        let mut c = Connection::new(account, Credential::Token(t1.clone()), Some("web".into()), CNONCE.into())
            .resuming(Some((sm, "user@localhost/web.1a2b".into())));
        c.start();
        c.receive(Input::Opened { id: None });
        let auth = sent_element(&c.receive(features_sasl2(SASL2_INLINE)));
        let resume = auth.child("resume", ns::SM).expect("resumption inline");
        assert_eq!((resume.attr("previd"), resume.attr("h")), (Some("sm1"), Some("5")));
        assert!(auth.child("bind", ns::BIND2).is_some(), "a bind in case the session is gone");
        let resumed = "<resumed xmlns='urn:xmpp:sm:3' previd='sm1' h='0'/><token xmlns='urn:xmpp:fast:0' token='T2' expiry='x'/>";
        let ev = c.receive(sasl2_success(&t1.expected_responder(), resumed));
        assert!(ev.contains(&ConnEvent::Online { jid: "user@localhost/web.1a2b".into(), resumed: true }), "{ev:?}");
    }

    #[test]
    fn a_token_starts_a_new_session_when_the_old_one_is_gone() {
        // A reloaded page after a server restart: the session it saved is no more.
        let sm = StreamManagement::restore("sm1".into(), 300, 5, 0, Vec::new());
        let account = Account { local: "user".into(), domain: "localhost".into() };
        let t1 = token("T1");
        let mut c = Connection::new(account, Credential::Token(t1.clone()), Some("web".into()), CNONCE.into())
            .resuming(Some((sm, "user@localhost/web.1a2b".into())));
        c.start();
        c.receive(Input::Opened { id: None });
        let auth = sent_element(&c.receive(features_sasl2(SASL2_INLINE)));
        assert!(auth.child("resume", ns::SM).is_some() && auth.child("bind", ns::BIND2).is_some());
        let gone = "<failed xmlns='urn:xmpp:sm:3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>\
                    <bound xmlns='urn:xmpp:bind:0'/><token xmlns='urn:xmpp:fast:0' token='T2' expiry='x'/>";
        let ev = c.receive(sasl2_success(&t1.expected_responder(), gone));
        assert!(ev.contains(&ConnEvent::Online { jid: "user@localhost/web.1a2b".into(), resumed: false }), "{ev:?}");
    }

    #[test]
    fn a_new_account_is_created_then_signed_in_to() {
        let account = Account { local: "newbie".into(), domain: "localhost".into() };
        let mut c = Connection::new(account.clone(), Credential::Password("pencil".into()), Some("web".into()), CNONCE.into())
            .registering();
        c.start();
        c.receive(Input::Opened { id: None });
        let features = parse(
            "<features xmlns='http://etherx.jabber.org/streams'><register xmlns='http://jabber.org/features/iq-register'/>\
             <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism></mechanisms></features>",
        );
        let request = sent_element(&c.receive(Input::Element(features.clone())));
        let q = request.child("query", ns::REGISTER).expect("a registration");
        assert_eq!(request.attr("type"), Some("set"));
        assert_eq!(q.child_text("username", ns::REGISTER).as_deref(), Some("newbie"));
        assert_eq!(q.child_text("password", ns::REGISTER).as_deref(), Some("pencil"));
        assert_eq!(c.phase(), Phase::Authenticating);
        let id = request.attr("id").unwrap().to_owned();
        let auth = sent_element(&c.receive(Input::Element(parse(&format!("<iq xmlns='jabber:client' type='result' id='{id}'/>")))));
        assert!(auth.is("auth", ns::SASL), "then SCRAM with the same password: {auth:?}");

        // Taken, or not offered: a clear error, not retried.
        let mut c = Connection::new(account.clone(), Credential::Password("pencil".into()), None, CNONCE.into()).registering();
        c.start();
        c.receive(Input::Opened { id: None });
        let id = sent_element(&c.receive(Input::Element(features))).attr("id").unwrap().to_owned();
        let taken = format!("<iq xmlns='jabber:client' type='error' id='{id}'><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>");
        let ev = c.receive(Input::Element(parse(&taken)));
        let err = ev.iter().find_map(|e| if let ConnEvent::Failed(e) = e { Some(e.clone()) } else { None }).unwrap();
        assert!(err.to_string().contains("taken") && err.is_permanent(), "{err}");
        let mut c = Connection::new(account, Credential::Password("pencil".into()), None, CNONCE.into()).registering();
        c.start();
        c.receive(Input::Opened { id: None });
        let ev = c.receive(Input::Element(features_sasl(&["SCRAM-SHA-1"])));
        assert!(ev.contains(&ConnEvent::Failed(ConnError::RegistrationClosed)), "{ev:?}");
    }

    #[test]
    fn kept_keys_only_resume_over_sasl2() {
        let mut c = authenticated();
        let keys = c.keys().cloned().unwrap();
        let account = Account { local: "user".into(), domain: "localhost".into() };
        c = Connection::new(account, Credential::Keys(keys), Some("web".into()), CNONCE.into());
        c.start();
        c.receive(Input::Opened { id: None });
        let auth = sent_element(&c.receive(features_sasl2(SASL2_INLINE)));
        assert_eq!(auth.attr("mechanism"), Some("SCRAM-SHA-1"));
        assert!(auth.child("bind", ns::BIND2).is_none(), "keys do not start a new session");
    }

    #[test]
    fn a_full_negotiation() {
        let mut c = conn();
        let ev = c.start();
        assert_eq!(
            ev,
            [ConnEvent::Phase(Phase::Connecting), ConnEvent::Send(Frame::Open { to: "localhost".into(), restart: false })]
        );
        assert!(c.receive(Input::Opened { id: Some("s1".into()) }).is_empty());

        // SCRAM-SHA-256 preferred; PLAIN never used.
        let ev = c.receive(Input::Element(features_sasl(&["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"])));
        assert_eq!(ev[0], ConnEvent::Phase(Phase::Authenticating));
        let auth = sent_element(&ev);
        assert_eq!(auth.attr("mechanism"), Some("SCRAM-SHA-256"));
        assert_eq!(B64.decode(auth.text()).unwrap(), format!("n,,n=user,r={CNONCE}").as_bytes());
        assert_eq!(c.phase(), Phase::Authenticating);
    }

    #[test]
    fn sasl_then_bind_then_online() {
        let mut c = conn();
        c.start();
        c.receive(Input::Opened { id: None });
        let ev = c.receive(Input::Element(features_sasl(&["SCRAM-SHA-1", "PLAIN"])));
        assert_eq!(sent_element(&ev).attr("mechanism"), Some("SCRAM-SHA-1"));

        let resp = sent_element(&c.receive(sasl("challenge", SERVER_FIRST)));
        assert!(resp.is("response", ns::SASL));
        assert_eq!(
            String::from_utf8(B64.decode(resp.text()).unwrap()).unwrap(),
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );

        let ev = c.receive(sasl("success", SERVER_FINAL));
        assert_eq!(
            ev,
            [ConnEvent::Phase(Phase::Binding), ConnEvent::Send(Frame::Open { to: "localhost".into(), restart: true })]
        );
        assert!(c.credential.is_none(), "the password is dropped once it has served");
        assert!(c.keys().is_some(), "the derived keys are kept");

        assert!(c.receive(Input::Opened { id: Some("s2".into()) }).is_empty());
        let bind = sent_element(&c.receive(Input::Element(features_bind())));
        assert!(bind.child("bind", ns::BIND).is_some());
        assert_eq!(bind.child("bind", ns::BIND).unwrap().child_text("resource", ns::BIND).as_deref(), Some("web"));
        assert!(c.features().pre_approval && c.features().roster_versioning && !c.features().stream_management);

        let ev = c.receive(bind_result(bind.attr("id").unwrap(), "user@localhost/web"));
        assert_eq!(ev, [ConnEvent::Phase(Phase::Online), ConnEvent::Online { jid: "user@localhost/web".into(), resumed: false }]);
        assert!(c.is_online());
        assert_eq!(c.jid(), Some("user@localhost/web"));

        // Online: stanzas go up; sending works.
        let msg = parse("<message xmlns='jabber:client' from='a@b/c'><body>x</body></message>");
        assert_eq!(c.receive(Input::Element(msg.clone())), [ConnEvent::Stanza(msg.clone())]);
        assert_eq!(c.send(msg.clone()), [ConnEvent::Send(Frame::Element(msg))]);

        // Closing politely.
        assert_eq!(c.close(), [ConnEvent::Phase(Phase::Closing), ConnEvent::Send(Frame::Close)]);
        assert_eq!(c.receive(Input::Closed { see_other: None }), [ConnEvent::Phase(Phase::Closed)]);
        assert!(c.close().is_empty());
    }

    #[test]
    fn server_final_as_a_challenge_and_required_session() {
        let mut c = conn();
        c.start();
        c.receive(Input::Opened { id: None });
        c.receive(Input::Element(features_sasl(&["SCRAM-SHA-1"])));
        c.receive(sasl("challenge", SERVER_FIRST));
        let resp = sent_element(&c.receive(sasl("challenge", SERVER_FINAL)));
        assert_eq!(resp.text(), "", "an empty response after verifying");
        let ev = c.receive(Input::Element(Element::new("success", ns::SASL)));
        assert!(matches!(ev.last(), Some(ConnEvent::Send(Frame::Open { restart: true, .. }))));
        c.receive(Input::Opened { id: None });
        let features = parse(
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>\
             <session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></stream:features>",
        );
        let bind = sent_element(&c.receive(Input::Element(features)));
        let session = sent_element(&c.receive(bind_result(bind.attr("id").unwrap(), "user@localhost/r")));
        assert!(session.child("session", ns::SESSION).is_some());
        let ev = c.receive(Input::Element(parse(&format!(
            "<iq xmlns='jabber:client' type='result' id='{}'/>",
            session.attr("id").unwrap()
        ))));
        assert!(ev.contains(&ConnEvent::Online { jid: "user@localhost/r".into(), resumed: false }));
    }

    #[test]
    fn a_wrong_password_is_an_auth_failure() {
        let mut c = conn();
        c.start();
        c.receive(Input::Opened { id: None });
        c.receive(Input::Element(features_sasl(&["SCRAM-SHA-1"])));
        c.receive(sasl("challenge", SERVER_FIRST));
        let failure = parse("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>");
        let ev = c.receive(Input::Element(failure));
        let err = ev.iter().find_map(|e| if let ConnEvent::Failed(e) = e { Some(e.clone()) } else { None }).unwrap();
        assert_eq!(err, ConnError::AuthFailed { condition: "not-authorized".into(), text: None });
        assert!(err.is_auth() && err.is_permanent());
        assert_eq!(err.to_string(), "Wrong address or password");
        assert_eq!(ev.last(), Some(&ConnEvent::Phase(Phase::Closed)));
        assert_eq!(c.phase(), Phase::Closed);
    }

    #[test]
    fn a_server_that_cannot_prove_the_password_is_refused() {
        let mut c = conn();
        c.start();
        c.receive(Input::Opened { id: None });
        c.receive(Input::Element(features_sasl(&["SCRAM-SHA-1"])));
        c.receive(sasl("challenge", SERVER_FIRST));
        let ev = c.receive(sasl("success", "v=AAAAAAAAAAAAAAAAAAAAAAAAAAA="));
        assert!(ev.contains(&ConnEvent::Failed(ConnError::Scram(ScramError::BadServerSignature))));
        // And a success with no proof at all.
        let mut c = conn();
        c.start();
        c.receive(Input::Opened { id: None });
        c.receive(Input::Element(features_sasl(&["SCRAM-SHA-1"])));
        c.receive(sasl("challenge", SERVER_FIRST));
        let ev = c.receive(Input::Element(Element::new("success", ns::SASL)));
        assert!(ev.contains(&ConnEvent::Failed(ConnError::Scram(ScramError::BadServerSignature))));
    }

    #[test]
    fn only_plain_offered_is_refused() {
        let mut c = conn();
        c.start();
        c.receive(Input::Opened { id: None });
        let ev = c.receive(Input::Element(features_sasl(&["PLAIN"])));
        assert!(ev.contains(&ConnEvent::Failed(ConnError::NoMechanism(vec!["PLAIN".into()]))));
        assert_eq!(sent(&ev), [&Frame::Close]);
    }

    #[test]
    fn stream_errors_and_lost_connections() {
        let mut c = authenticated();
        c.receive(Input::Opened { id: None });
        let bind = sent_element(&c.receive(Input::Element(features_bind())));
        c.receive(bind_result(bind.attr("id").unwrap(), "user@localhost/web"));
        let err = parse(
            "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>replaced</text></stream:error>",
        );
        let ev = c.receive(Input::Element(err));
        let ConnEvent::Failed(e) = &ev[0] else { panic!("{ev:?}") };
        assert_eq!(e, &ConnError::Stream { condition: "conflict".into(), text: Some("replaced".into()) });
        assert!(e.is_permanent());
        assert_eq!(c.phase(), Phase::Closed);
        assert!(c.transport_closed().is_empty(), "already closed");

        let mut c = conn();
        c.start();
        let ev = c.transport_closed();
        assert_eq!(ev, [ConnEvent::Failed(ConnError::ConnectionLost), ConnEvent::Phase(Phase::Closed)]);
        assert!(!ConnError::ConnectionLost.is_permanent());

        let mut c = conn();
        c.start();
        c.receive(Input::Opened { id: None });
        let ev = c.receive(Input::Closed { see_other: None });
        assert_eq!(ev[0], ConnEvent::Send(Frame::Close));
        assert!(ev.contains(&ConnEvent::Failed(ConnError::ServerClosed)));
    }

    #[test]
    fn out_of_order_input_fails_cleanly() {
        let mut c = conn();
        c.start();
        // Features before the stream is open.
        let ev = c.receive(Input::Element(features_sasl(&["SCRAM-SHA-1"])));
        assert!(matches!(ev[1], ConnEvent::Failed(ConnError::Protocol(_))));
        let mut c = authenticated();
        c.receive(Input::Opened { id: None });
        let ev = c.receive(Input::Element(parse("<stream:features xmlns:stream='http://etherx.jabber.org/streams'/>")));
        assert!(matches!(ev[1], ConnEvent::Failed(ConnError::Protocol(_))), "no bind offered");
        let mut c = authenticated();
        c.receive(Input::Opened { id: None });
        let bind = sent_element(&c.receive(Input::Element(features_bind())));
        let ev = c.receive(Input::Element(parse(&format!(
            "<iq xmlns='jabber:client' type='error' id='{}'><error type='cancel'><not-allowed \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
            bind.attr("id").unwrap()
        ))));
        assert!(matches!(&ev[1], ConnEvent::Failed(ConnError::Bind(e)) if e.condition == "not-allowed"));
    }

    fn features_bind_sm() -> Element {
        parse(
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>\
             <sm xmlns='urn:xmpp:sm:3'/></stream:features>",
        )
    }

    fn sent_elements(events: &[ConnEvent]) -> Vec<Element> {
        sent(events).into_iter().filter_map(|f| if let Frame::Element(e) = f { Some(e.clone()) } else { None }).collect()
    }

    /// Online with stream management enabled and resumable, as `sm1`.
    fn online_with_sm(mut c: Connection) -> Connection {
        c.start();
        c.receive(Input::Opened { id: None });
        c.receive(Input::Element(features_sasl(&["SCRAM-SHA-1"])));
        c.receive(sasl("challenge", SERVER_FIRST));
        c.receive(sasl("success", SERVER_FINAL));
        c.receive(Input::Opened { id: None });
        let bind = sent_element(&c.receive(Input::Element(features_bind_sm())));
        let ev = c.receive(bind_result(bind.attr("id").unwrap(), "user@localhost/web"));
        let out = sent_elements(&ev);
        assert!(out[0].is("enable", ns::SM) && out[0].attr("resume") == Some("true"), "asked for at once: {out:?}");
        assert!(c.receive(Input::Element(parse("<enabled xmlns='urn:xmpp:sm:3' id='sm1' resume='true' max='300'/>"))).is_empty());
        c
    }

    fn chat(id: &str) -> Element {
        parse(&format!("<message xmlns='jabber:client' to='bob@localhost' id='{id}'><body>{id}</body></message>"))
    }

    #[test]
    fn stream_management_counts_and_acknowledges() {
        let mut c = online_with_sm(conn());
        // Our stanzas: the first asks for an acknowledgement; nonzas are not counted.
        let out = sent_elements(&c.send(chat("m1")));
        assert_eq!(out.iter().map(|e| e.name()).collect::<Vec<_>>(), ["message", "r"]);
        assert_eq!(sent_elements(&c.send(chat("m2"))).len(), 1);
        assert_eq!(sent_elements(&c.send(Element::new("inactive", ns::CSI))).len(), 1);
        assert_eq!(c.stream_management().unwrap().unacked().count(), 2);
        // The server's acknowledgement covers one; the other is asked for again.
        let out = sent_elements(&c.receive(Input::Element(parse("<a xmlns='urn:xmpp:sm:3' h='1'/>"))));
        assert!(out[0].is("r", ns::SM));
        assert!(c.receive(Input::Element(parse("<a xmlns='urn:xmpp:sm:3' h='2'/>"))).is_empty());
        // Theirs: counted, and reported when asked; SM elements do not go up.
        for i in 0..3 {
            let m = parse(&format!("<message xmlns='jabber:client' from='bob@localhost/a' id='in{i}'/>"));
            assert_eq!(c.receive(Input::Element(m.clone())), [ConnEvent::Stanza(m)]);
        }
        let out = sent_elements(&c.receive(Input::Element(parse("<r xmlns='urn:xmpp:sm:3'/>"))));
        assert_eq!((out[0].name(), out[0].attr("h")), ("a", Some("3")));
        // An acknowledgement of what was never sent ends the stream.
        let ev = c.receive(Input::Element(parse("<a xmlns='urn:xmpp:sm:3' h='9'/>")));
        assert!(matches!(&ev[1], ConnEvent::Failed(ConnError::Protocol(_))), "{ev:?}");
    }

    #[test]
    fn a_dropped_stream_is_resumed_with_what_the_server_missed() {
        let mut c = online_with_sm(conn());
        c.send(chat("m1"));
        c.send(chat("m2"));
        c.receive(Input::Element(parse("<message xmlns='jabber:client' from='bob@localhost/a' id='in1'/>")));
        let ev = c.transport_closed();
        assert!(ev.contains(&ConnEvent::Failed(ConnError::ConnectionLost)));
        let resume = c.take_resumable().expect("a vanished connection leaves the session resumable");
        let keys = c.keys().unwrap().clone();

        // Signed in again (here with the kept keys, as after a reload), then <resume/>.
        let account = Account { local: "user".into(), domain: "localhost".into() };
        let mut c = Connection::new(account, Credential::Keys(keys), Some("web".into()), CNONCE.into()).resuming(Some(resume));
        c.start();
        c.receive(Input::Opened { id: None });
        c.receive(Input::Element(features_sasl(&["SCRAM-SHA-256", "SCRAM-SHA-1"])));
        let resp = sent_element(&c.receive(sasl("challenge", SERVER_FIRST)));
        assert!(
            B64.decode(resp.text()).unwrap().ends_with(b"p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="),
            "the same proof as with the password"
        );
        c.receive(sasl("success", SERVER_FINAL));
        c.receive(Input::Opened { id: None });
        let req = sent_element(&c.receive(Input::Element(features_bind_sm())));
        assert!(req.is("resume", ns::SM));
        assert_eq!((req.attr("previd"), req.attr("h")), (Some("sm1"), Some("1")));
        assert_eq!(c.phase(), Phase::Binding);

        // The server had m1 only: m2 goes again, then a request; then we are online.
        let ev = c.receive(Input::Element(parse("<resumed xmlns='urn:xmpp:sm:3' previd='sm1' h='1'/>")));
        let out = sent_elements(&ev);
        assert_eq!(out.iter().map(|e| e.attr("id").unwrap_or(e.name())).collect::<Vec<_>>(), ["m2", "r"]);
        assert_eq!(
            &ev[2..],
            [ConnEvent::Phase(Phase::Online), ConnEvent::Online { jid: "user@localhost/web".into(), resumed: true }]
        );
        assert_eq!(c.jid(), Some("user@localhost/web"));
        // Counting goes on from where it was.
        c.receive(Input::Element(parse("<message xmlns='jabber:client' from='bob@localhost/a' id='in2'/>")));
        let out = sent_elements(&c.receive(Input::Element(parse("<r xmlns='urn:xmpp:sm:3'/>"))));
        assert_eq!(out[0].attr("h"), Some("2"));
    }

    #[test]
    fn a_session_that_cannot_be_resumed() {
        // With the password: a new session on the same stream, where what the old one
        // never confirmed is sent again (messages only).
        let mut c = online_with_sm(conn());
        c.send(chat("lost"));
        c.send(parse("<iq xmlns='jabber:client' type='get' id='q1'/>"));
        c.transport_closed();
        let resume = c.take_resumable();
        let mut c = conn().resuming(resume.clone());
        c.start();
        c.receive(Input::Opened { id: None });
        c.receive(Input::Element(features_sasl(&["SCRAM-SHA-1"])));
        c.receive(sasl("challenge", SERVER_FIRST));
        c.receive(sasl("success", SERVER_FINAL));
        c.receive(Input::Opened { id: None });
        assert!(sent_element(&c.receive(Input::Element(features_bind_sm()))).is("resume", ns::SM));
        let failed = "<failed xmlns='urn:xmpp:sm:3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>";
        let bind = sent_element(&c.receive(Input::Element(parse(failed))));
        assert!(bind.child("bind", ns::BIND).is_some());
        let ev = c.receive(bind_result(bind.attr("id").unwrap(), "user@localhost/web"));
        assert!(ev.contains(&ConnEvent::Online { jid: "user@localhost/web".into(), resumed: false }));
        let out = sent_elements(&ev);
        assert_eq!(out.iter().map(|e| e.attr("id").unwrap_or(e.name())).collect::<Vec<_>>(), ["enable", "lost", "r"]);
        assert_eq!(c.stream_management().unwrap().unacked().count(), 1, "counted on the new stream");

        // With kept keys only: the password is needed for a new session.
        let keys = c.keys().unwrap().clone();
        let account = Account { local: "user".into(), domain: "localhost".into() };
        let mut c = Connection::new(account.clone(), Credential::Keys(keys.clone()), None, CNONCE.into()).resuming(resume);
        c.start();
        c.receive(Input::Opened { id: None });
        c.receive(Input::Element(features_sasl(&["SCRAM-SHA-1"])));
        c.receive(sasl("challenge", SERVER_FIRST));
        c.receive(sasl("success", SERVER_FINAL));
        c.receive(Input::Opened { id: None });
        c.receive(Input::Element(features_bind_sm()));
        let ev = c.receive(Input::Element(parse(failed)));
        let err = ev.iter().find_map(|e| if let ConnEvent::Failed(e) = e { Some(e.clone()) } else { None }).unwrap();
        assert_eq!(err, ConnError::SessionExpired);
        assert!(err.is_permanent());
        // Nor are keys enough when the salt changed, or for another mechanism.
        let mut c = Connection::new(account.clone(), Credential::Keys(keys.clone()), None, CNONCE.into());
        c.start();
        c.receive(Input::Opened { id: None });
        c.receive(Input::Element(features_sasl(&["SCRAM-SHA-1"])));
        let ev = c.receive(sasl("challenge", &SERVER_FIRST.replace("s=QSXCR", "s=AAAAA")));
        assert!(ev.contains(&ConnEvent::Failed(ConnError::SessionExpired)));
        let mut c = Connection::new(account, Credential::Keys(keys), None, CNONCE.into());
        c.start();
        c.receive(Input::Opened { id: None });
        let ev = c.receive(Input::Element(features_sasl(&["SCRAM-SHA-256"])));
        assert!(ev.contains(&ConnEvent::Failed(ConnError::SessionExpired)));
    }

    #[test]
    fn a_clean_close_leaves_nothing_to_resume() {
        let mut c = online_with_sm(conn());
        c.close();
        assert!(c.take_resumable().is_none());
        let mut c = online_with_sm(conn());
        let err = "<stream:error xmlns:stream='http://etherx.jabber.org/streams'>\
                   <conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>";
        c.receive(Input::Element(parse(err)));
        assert!(c.take_resumable().is_none());
        // Without resume='true' there is nothing to resume either.
        let mut c = conn();
        c.start();
        c.receive(Input::Opened { id: None });
        c.receive(Input::Element(features_sasl(&["SCRAM-SHA-1"])));
        c.receive(sasl("challenge", SERVER_FIRST));
        c.receive(sasl("success", SERVER_FINAL));
        c.receive(Input::Opened { id: None });
        let bind = sent_element(&c.receive(Input::Element(features_bind_sm())));
        c.receive(bind_result(bind.attr("id").unwrap(), "user@localhost/web"));
        c.receive(Input::Element(parse("<enabled xmlns='urn:xmpp:sm:3'/>")));
        c.transport_closed();
        assert!(c.take_resumable().is_none());
    }

    #[test]
    fn reconnect_delays_back_off_with_jitter() {
        let plain: Vec<u32> = (0..9).map(|a| reconnect_delay_ms(a, 0.0)).collect();
        assert_eq!(plain, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000], "never more than 30 s");
        assert_eq!(reconnect_delay_ms(0, 1.0), 750);
        assert_eq!(reconnect_delay_ms(40, 0.5), 26_250);
        assert_eq!(reconnect_delay_ms(1, 7.0), 1500, "jitter is clamped");
    }
}
