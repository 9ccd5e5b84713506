//! Rate limits the node applies itself (the engine applies those of pages and seeds): HTTP
//! publishers per client address, and every peer's frames and bytes, paid for by reading its
//! socket later (see `conn`).

use hearsay_proto::{Rate, TokenBucket};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Beyond this many client addresses, buckets that have refilled are forgotten.
const MAX_TRACKED: usize = 10_000;

/// One token bucket per client address.
#[derive(Debug)]
pub struct PerAddress {
    rate: Rate,
    /// Loopback clients (the operator, `hearsay demo`, tests and benchmarks on one machine)
    /// are not limited unless this is set.
    limit_loopback: bool,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

impl PerAddress {
    pub fn new(rate: Rate, limit_loopback: bool) -> Self {
        Self {
            rate,
            limit_loopback,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Charges one unit to `addr`; `Err` with the milliseconds to wait if it is over.
    pub fn take(&self, addr: Option<IpAddr>, now: u64) -> Result<(), u64> {
        let Some(addr) = addr else { return Ok(()) };
        if addr.is_loopback() && !self.limit_loopback {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&addr) {
            buckets.retain(|_, b| !b.is_full(now));
        }
        buckets
            .entry(addr)
            .or_insert_with(|| TokenBucket::new(self.rate, now))
            .take(1.0, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_bucket_and_loopback_is_exempt_by_default() {
        let limit = PerAddress::new(Rate::new(1.0, 2.0), false);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(limit.take(Some(a), 0), Ok(()));
        assert_eq!(limit.take(Some(a), 0), Ok(()));
        assert_eq!(limit.take(Some(a), 0), Err(1_000));
        assert_eq!(limit.take(Some(b), 0), Ok(()));
        for _ in 0..10 {
            assert_eq!(limit.take(Some("127.0.0.1".parse().unwrap()), 0), Ok(()));
        }
        let strict = PerAddress::new(Rate::new(1.0, 1.0), true);
        let lo = Some("::1".parse().unwrap());
        assert_eq!(strict.take(lo, 0), Ok(()));
        assert!(strict.take(lo, 0).is_err());
    }
}

/// Caps on inbound connections: in total, and per client address (loopback exempt unless
/// told otherwise, like the HTTP limit). A connection holds its place until it ends.
#[derive(Debug)]
pub struct ConnectionCaps {
    total: usize,
    per_address: usize,
    limit_loopback: bool,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// A place among the open connections, given back when dropped.
#[derive(Debug)]
pub struct Place {
    caps: std::sync::Arc<ConnectionCaps>,
    addr: Option<IpAddr>,
}

impl ConnectionCaps {
    pub fn new(total: usize, per_address: usize, limit_loopback: bool) -> Self {
        Self {
            total,
            per_address,
            limit_loopback,
            open: Mutex::new((0, HashMap::new())),
        }
    }

    /// A place for a connection from `addr`, or why there is none.
    pub fn open(self: &std::sync::Arc<Self>, addr: Option<IpAddr>) -> Result<Place, String> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.0 >= self.total {
            return Err(format!(
                "this node holds its most connections ({}); try again later",
                self.total
            ));
        }
        let capped = addr.filter(|a| self.limit_loopback || !a.is_loopback());
        if let Some(a) = capped {
            let n = open.1.entry(a).or_default();
            if *n >= self.per_address {
                return Err(format!(
                    "too many connections from your address (at most {})",
                    self.per_address
                ));
            }
            *n += 1;
        }
        open.0 += 1;
        Ok(Place {
            caps: std::sync::Arc::clone(self),
            addr: capped,
        })
    }
}

impl Place {
    /// The client address this place is counted under (none if exempt), which per-kind caps
    /// count under too.
    pub fn address(&self) -> Option<IpAddr> {
        self.addr
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(a) = self.addr
            && let Some(n) = open.1.get_mut(&a)
        {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&a);
            }
        }
    }
}

#[cfg(test)]
mod caps_tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn places_are_capped_per_address_and_in_total_and_given_back() {
        let caps = Arc::new(ConnectionCaps::new(3, 2, false));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let p1 = caps.open(Some(a)).unwrap();
        let _p2 = caps.open(Some(a)).unwrap();
        assert!(caps.open(Some(a)).unwrap_err().contains("your address"));
        let _p3 = caps.open(Some(b)).unwrap();
        assert!(caps.open(Some(b)).unwrap_err().contains("most connections"));
        drop(p1);
        let _p4 = caps.open(Some(a)).unwrap();
    }
}
