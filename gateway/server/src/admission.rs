//! Caps on what the server accepts at once, in total and per client address: connections,
//! and streams still negotiating. A connection over a cap is refused when it arrives
//! instead of being held, so one address, or a flood of idle sockets, cannot take every
//! slot: negotiating streams have a smaller budget than connections, and a stream leaves
//! it once it has bound a resource.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use jabberwock_proto::{StreamError, StreamErrorCondition};

use crate::metrics::LimiterMetrics;

/// Why a slot was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The client's address holds its share already.
    PerAddress,
    /// The server holds as many as it allows.
    Total,
}

impl Refused {
    /// RFC 6120 §4.9.3: policy-violation for one address's excess, resource-constraint
    /// when the server as a whole is full.
    pub fn stream_error(self, what: &str) -> StreamError {
        match self {
            Refused::PerAddress => StreamError::with_text(StreamErrorCondition::PolicyViolation, format!("too many {what} from your address")),
            Refused::Total => StreamError::with_text(StreamErrorCondition::ResourceConstraint, format!("too many {what}")),
        }
    }
}

/// Counts slots in total and per address.
pub struct Limiter {
    max_total: usize,
    max_per_address: usize,
    counts: Mutex<Counts>,
    metrics: LimiterMetrics,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

impl Limiter {
    pub fn new(max_total: usize, max_per_address: usize, metrics: LimiterMetrics) -> Arc<Limiter> {
        Arc::new(Limiter { max_total, max_per_address, counts: Mutex::default(), metrics })
    }

    /// Takes a slot for a client at `ip`, or for one whose address is not counted (`None`:
    /// a trusted proxy, which speaks for many clients, or our own outgoing connections).
    pub fn acquire(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Slot, Refused> {
        let address = ip.map(address_key);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= self.max_total {
            self.metrics.refused_total.inc();
            return Err(Refused::Total);
        }
        if let Some(a) = address {
            let n = counts.per_address.entry(a).or_default();
            if *n >= self.max_per_address {
                self.metrics.refused_per_address.inc();
                return Err(Refused::PerAddress);
            }
            *n += 1;
        }
        counts.total += 1;
        if let Some(held) = &self.metrics.held {
            held.inc();
        }
        Ok(Slot { limiter: self.clone(), address })
    }

    #[cfg(test)]
    fn total(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

/// The address a client is counted under: an IPv6 client under its /64, which one
/// subscriber usually holds whole, and an IPv4-mapped address as the IPv4 address.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// One slot, given back when dropped.
pub struct Slot {
    limiter: Arc<Limiter>,
    address: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(held) = &self.limiter.metrics.held {
            held.dec();
        }
        let mut counts = self.limiter.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total -= 1;
        if let Some(a) = self.address {
            if let Some(n) = counts.per_address.get_mut(&a) {
                *n -= 1;
                if *n == 0 {
                    counts.per_address.remove(&a);
                }
            }
        }
    }
}

/// The client side's caps (`[limits]`): connections on the c2s and HTTP listeners
/// together, and client streams (c2s, WebSocket, BOSH) that have not bound a resource.
pub struct Admission {
    pub connections: Arc<Limiter>,
    pub negotiating: Arc<Limiter>,
}

impl Admission {
    pub fn new(limits: &crate::config::LimitsConfig, metrics: &crate::metrics::Metrics) -> Admission {
        use crate::metrics::Limit;
        Admission {
            connections: Limiter::new(
                limits.max_connections,
                limits.max_connections_per_ip,
                metrics.limiter(Limit::Connections, Limit::ConnectionsPerAddress, None),
            ),
            negotiating: Limiter::new(
                limits.max_unauthenticated,
                limits.max_unauthenticated_per_ip,
                metrics.limiter(Limit::Unauthenticated, Limit::UnauthenticatedPerAddress, None),
            ),
        }
    }

    /// A connection on a client listener and its negotiating stream, or why not.
    pub fn client(&self, ip: IpAddr) -> Result<(Slot, Slot), Refused> {
        let connection = self.connections.acquire(Some(ip))?;
        Ok((connection, self.negotiating.acquire(Some(ip))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_in_total_and_gives_slots_back() {
        let limiter = Limiter::new(3, 2, LimiterMetrics::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = limiter.acquire(Some(a)).unwrap();
        let _a2 = limiter.acquire(Some(a)).unwrap();
        assert_eq!(limiter.acquire(Some(a)).err(), Some(Refused::PerAddress));
        let _b1 = limiter.acquire(Some(b)).unwrap();
        assert_eq!(limiter.acquire(None).err(), Some(Refused::Total));
        drop(a1);
        let _unaddressed = limiter.acquire(None).unwrap();
        assert_eq!(limiter.total(), 3);
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let limiter = Limiter::new(10, 1, LimiterMetrics::default());
        let _one = limiter.acquire(Some("2001:db8:1:2::1".parse().unwrap())).unwrap();
        assert!(limiter.acquire(Some("2001:db8:1:2:ffff::9".parse().unwrap())).is_err());
        assert!(limiter.acquire(Some("2001:db8:1:3::1".parse().unwrap())).is_ok());
        let _v4 = limiter.acquire(Some("192.0.2.1".parse().unwrap())).unwrap();
        assert!(limiter.acquire(Some("::ffff:192.0.2.1".parse().unwrap())).is_err());
    }
}
