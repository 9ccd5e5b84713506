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
