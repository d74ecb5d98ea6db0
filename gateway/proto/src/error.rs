//! Stream errors (RFC 6120 §4.9) and stanza errors (RFC 6120 §8.3).

use crate::element::Element;
use crate::ns;

macro_rules! conditions {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// The defined-condition element name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($text => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}

conditions! {
    /// RFC 6120 §4.9.3 stream error conditions. `see-other-host` carries its target
    /// separately in [`StreamError::see_other_host`].
    StreamErrorCondition {
        BadFormat => "bad-format",
        BadNamespacePrefix => "bad-namespace-prefix",
        Conflict => "conflict",
        ConnectionTimeout => "connection-timeout",
        HostGone => "host-gone",
        HostUnknown => "host-unknown",
        ImproperAddressing => "improper-addressing",
        InternalServerError => "internal-server-error",
        InvalidFrom => "invalid-from",
        InvalidNamespace => "invalid-namespace",
        InvalidXml => "invalid-xml",
        NotAuthorized => "not-authorized",
        NotWellFormed => "not-well-formed",
        PolicyViolation => "policy-violation",
        RemoteConnectionFailed => "remote-connection-failed",
        Reset => "reset",
        ResourceConstraint => "resource-constraint",
        RestrictedXml => "restricted-xml",
        SeeOtherHost => "see-other-host",
        SystemShutdown => "system-shutdown",
        UndefinedCondition => "undefined-condition",
        UnsupportedEncoding => "unsupported-encoding",
        UnsupportedFeature => "unsupported-feature",
        UnsupportedStanzaType => "unsupported-stanza-type",
        UnsupportedVersion => "unsupported-version",
    }
}

/// A stream-level error: the stream is closed after it is sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stream error {}{}", condition.as_str(), text.as_deref().map(|t| format!(": {t}")).unwrap_or_default())]
pub struct StreamError {
    pub condition: StreamErrorCondition,
    pub text: Option<String>,
    /// The new host or URI for `see-other-host`.
    pub see_other_host: Option<String>,
}

impl StreamError {
    pub fn new(condition: StreamErrorCondition) -> Self {
        StreamError { condition, text: None, see_other_host: None }
    }

    pub fn with_text(condition: StreamErrorCondition, text: impl Into<String>) -> Self {
        StreamError { condition, text: Some(text.into()), see_other_host: None }
    }

    /// `<stream:error>`, in the streams namespace.
    pub fn to_element(&self) -> Element {
        let mut cond = Element::new(self.condition.as_str(), ns::STREAM_ERRORS);
        if let Some(host) = &self.see_other_host {
            cond.push_text(host.clone());
        }
        let mut el = Element::new("error", ns::STREAM).with_child(cond);
        if let Some(text) = &self.text {
            el.push(Element::new("text", ns::STREAM_ERRORS).with_text(text.clone()));
        }
        el
    }
}

/// The `type` attribute of a stanza `<error/>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

conditions! {
    /// RFC 6120 §8.3.3 stanza error conditions.
    StanzaErrorCondition {
        BadRequest => "bad-request",
        Conflict => "conflict",
        FeatureNotImplemented => "feature-not-implemented",
        Forbidden => "forbidden",
        Gone => "gone",
        InternalServerError => "internal-server-error",
        ItemNotFound => "item-not-found",
        JidMalformed => "jid-malformed",
        NotAcceptable => "not-acceptable",
        NotAllowed => "not-allowed",
        NotAuthorized => "not-authorized",
        PolicyViolation => "policy-violation",
        RecipientUnavailable => "recipient-unavailable",
        Redirect => "redirect",
        RegistrationRequired => "registration-required",
        RemoteServerNotFound => "remote-server-not-found",
        RemoteServerTimeout => "remote-server-timeout",
        ResourceConstraint => "resource-constraint",
        ServiceUnavailable => "service-unavailable",
        SubscriptionRequired => "subscription-required",
        UndefinedCondition => "undefined-condition",
        UnexpectedRequest => "unexpected-request",
    }
}

impl StanzaErrorCondition {
    /// The error type RFC 6120 §8.3.3 gives for each condition in its examples.
    pub fn default_type(self) -> ErrorType {
        use StanzaErrorCondition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation | Redirect => ErrorType::Modify,
            Forbidden | NotAuthorized | RegistrationRequired | SubscriptionRequired => ErrorType::Auth,
            InternalServerError | ResourceConstraint | RecipientUnavailable | RemoteServerTimeout | UnexpectedRequest => {
                ErrorType::Wait
            }
            Conflict | FeatureNotImplemented | Gone | ItemNotFound | NotAllowed | RemoteServerNotFound
            | ServiceUnavailable | UndefinedCondition => ErrorType::Cancel,
        }
    }
}

/// A stanza-level error, returned to the sender inside a `type='error'` stanza.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stanza error {}", condition.as_str())]
pub struct StanzaError {
    pub error_type: ErrorType,
    pub condition: StanzaErrorCondition,
    pub text: Option<String>,
    /// Extra application-specific condition element (for example a XEP-0191 `<blocked/>`).
    pub app_condition: Option<Box<Element>>,
    /// The error's `by` attribute.
    pub by: Option<String>,
}

impl StanzaError {
    pub fn new(condition: StanzaErrorCondition) -> Self {
        StanzaError { error_type: condition.default_type(), condition, text: None, app_condition: None, by: None }
    }

    pub fn with_type(mut self, error_type: ErrorType) -> Self {
        self.error_type = error_type;
        self
    }

    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    pub fn with_app_condition(mut self, el: Element) -> Self {
        self.app_condition = Some(Box::new(el));
        self
    }

    /// `<error type='…'>` in `content_ns` (the stanza's namespace).
    pub fn to_element(&self, content_ns: &str) -> Element {
        let mut el = Element::new("error", content_ns)
            .with_attr("type", self.error_type.as_str())
            .with_opt_attr("by", self.by.clone())
            .with_child(Element::new(self.condition.as_str(), ns::STANZA_ERRORS));
        if let Some(text) = &self.text {
            el.push(Element::new("text", ns::STANZA_ERRORS).with_text(text.clone()));
        }
        if let Some(app) = &self.app_condition {
            el.push((**app).clone());
        }
        el
    }

    /// Reads the `<error/>` child of an error stanza.
    pub fn from_element(el: &Element) -> Option<Self> {
        let cond = el
            .children()
            .filter(|c| c.ns() == ns::STANZA_ERRORS)
            .find_map(|c| StanzaErrorCondition::from_name(c.name()))?;
        let error_type = match el.attr("type")? {
            "auth" => ErrorType::Auth,
            "cancel" => ErrorType::Cancel,
            "continue" => ErrorType::Continue,
            "modify" => ErrorType::Modify,
            "wait" => ErrorType::Wait,
            _ => return None,
        };
        Some(StanzaError {
            error_type,
            condition: cond,
            text: el.child_text("text", ns::STANZA_ERRORS),
            app_condition: None,
            by: el.attr("by").map(str::to_owned),
        })
    }
}

macro_rules! stanza_error_shorthands {
    ($($fn_name:ident => $variant:ident),+ $(,)?) => {
        impl StanzaError {
            $(pub fn $fn_name() -> Self { Self::new(StanzaErrorCondition::$variant) })+
        }
    };
}

stanza_error_shorthands! {
    bad_request => BadRequest,
    conflict => Conflict,
    feature_not_implemented => FeatureNotImplemented,
    forbidden => Forbidden,
    gone => Gone,
    internal_server_error => InternalServerError,
    item_not_found => ItemNotFound,
    jid_malformed => JidMalformed,
    not_acceptable => NotAcceptable,
    not_allowed => NotAllowed,
    not_authorized => NotAuthorized,
    policy_violation => PolicyViolation,
    recipient_unavailable => RecipientUnavailable,
    remote_server_not_found => RemoteServerNotFound,
    remote_server_timeout => RemoteServerTimeout,
    resource_constraint => ResourceConstraint,
    service_unavailable => ServiceUnavailable,
    unexpected_request => UnexpectedRequest,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_error_element() {
        let e = StreamError::with_text(StreamErrorCondition::PolicyViolation, "stanza too large");
        assert_eq!(
            e.to_element().to_xml_string(),
            "<error xmlns='http://etherx.jabber.org/streams'><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>stanza too large</text></error>"
        );
    }

    #[test]
    fn stanza_error_round_trip() {
        let e = StanzaError::service_unavailable().with_text("nope");
        assert_eq!(e.error_type, ErrorType::Cancel);
        let el = e.to_element(ns::CLIENT);
        assert_eq!(StanzaError::from_element(&el), Some(e));
    }
}
