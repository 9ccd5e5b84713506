//! What `/add` may pin. Every address `/add` names is dialed, and redialed with backoff for
//! as long as it stays pinned: a node anyone can make pin addresses becomes a dialer at
//! others' request, for ever. So one client pins at most [`PER_CLIENT`] addresses and all
//! clients together [`IN_ALL`], and an address that has not once been reached within
//! [`UNPIN_AFTER`] of being pinned is unpinned (and `/api/peers` says so, in `unpinned`).
//! The operator's `--peer` addresses are not counted and never unpinned.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// Most addresses one client pins through `/add`: a seed user adds a handful of nodes, an
/// operator with more uses `--peer` or the config file.
pub const PER_CLIENT: usize = 16;
/// Most addresses `/add` pins in all, from every client: beyond, the node would spend its
/// dials on what strangers named.
pub const IN_ALL: usize = 256;
/// How long an address pinned by `/add` has to be reached once before it is unpinned.
pub const UNPIN_AFTER: Duration = Duration::from_secs(10 * 60);
/// Unpinned addresses shown in `/api/peers` (the newest).
const UNPINNED_SHOWN: usize = 64;

#[derive(Debug)]
struct Pinned {
    client: IpAddr,
    at: u64,
}

/// An address `/add` pinned and the node let go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unpinned {
    pub address: String,
    pub at: u64,
    pub why: String,
}

#[derive(Debug, Default)]
struct Inner {
    /// The operator's: never counted, never unpinned.
    operator: HashSet<String>,
    pinned: BTreeMap<String, Pinned>,
    per_client: HashMap<IpAddr, usize>,
    unpinned: VecDeque<Unpinned>,
}

#[derive(Debug)]
pub struct Pins {
    inner: Mutex<Inner>,
    unpin_after: u64,
}

impl Pins {
    /// `operator`: the `--peer` addresses (canonical).
    pub fn new(operator: impl IntoIterator<Item = String>, unpin_after: Duration) -> Pins {
        Pins {
            inner: Mutex::new(Inner {
                operator: operator.into_iter().collect(),
                ..Inner::default()
            }),
            unpin_after: u64::try_from(unpin_after.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// `client` asks `/add` to pin `address` (canonical): `Ok(true)` to pin it, `Ok(false)`
    /// if it is pinned already (nothing to do), or why not.
    pub fn admit(&self, client: IpAddr, address: &str, now: u64) -> Result<bool, String> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.operator.contains(address) || inner.pinned.contains_key(address) {
            return Ok(false);
        }
        let mine = inner.per_client.get(&client).copied().unwrap_or(0);
        if mine >= PER_CLIENT {
            return Err(format!(
                "your address has pinned {PER_CLIENT} addresses through /add, the most one client may (an address that is never reached is let go after {} min); the operator can name more with --peer",
                self.unpin_after / 60_000
            ));
        }
        if inner.pinned.len() >= IN_ALL {
            return Err(format!(
                "this node holds {IN_ALL} addresses pinned through /add, the most it takes from everyone; try again later"
            ));
        }
        *inner.per_client.entry(client).or_default() += 1;
        inner
            .pinned
            .insert(address.to_owned(), Pinned { client, at: now });
        Ok(true)
    }

    /// The pin `admit` allowed was not made after all (the engine refused the address).
    pub fn forget(&self, address: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Self::release(&mut inner, address);
    }

    fn release(inner: &mut Inner, address: &str) {
        if let Some(p) = inner.pinned.remove(address)
            && let Some(n) = inner.per_client.get_mut(&p.client)
        {
            *n -= 1;
            if *n == 0 {
                inner.per_client.remove(&p.client);
            }
        }
    }

    /// The addresses to unpin at `now`: pinned longer than [`UNPIN_AFTER`] and never
    /// reached (`reached` tells, from the engine's links). They are counted no more.
    pub fn due(&self, now: u64, reached: impl Fn(&str) -> bool) -> Vec<String> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let late: Vec<String> = inner
            .pinned
            .iter()
            .filter(|(address, p)| now >= p.at + self.unpin_after && !reached(address))
            .map(|(a, _)| a.clone())
            .collect();
        for address in &late {
            Self::release(&mut inner, address);
            inner.unpinned.push_back(Unpinned {
                address: address.clone(),
                at: now,
                why: format!("not reached within {} s of /add", self.unpin_after / 1_000),
            });
            if inner.unpinned.len() > UNPINNED_SHOWN {
                inner.unpinned.pop_front();
            }
        }
        late
    }

    /// How often to look for pins to lift.
    pub fn every(&self) -> Duration {
        Duration::from_millis((self.unpin_after / 10).clamp(100, 30_000))
    }

    /// What was unpinned lately, oldest first.
    pub fn unpinned(&self) -> Vec<Unpinned> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.unpinned.iter().cloned().collect()
    }

    /// How many addresses `/add` holds pinned.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pinned
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_pins_its_share_and_what_is_never_reached_is_let_go() {
        let pins = Pins::new(["ws://op:1".to_owned()], Duration::from_secs(60));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(pins.admit(a, "ws://op:1", 0), Ok(false), "the operator's");
        for i in 0..PER_CLIENT {
            assert_eq!(pins.admit(a, &format!("ws://x:{i}"), 0), Ok(true));
        }
        assert_eq!(pins.admit(a, "ws://x:0", 0), Ok(false), "pinned already");
        assert!(pins.admit(a, "ws://x:99", 0).unwrap_err().contains("16"));
        assert_eq!(pins.admit(b, "ws://y:1", 0), Ok(true), "another client");
        // After a minute, what was never reached goes, and frees its client's share.
        let gone = pins.due(60_000, |address| address == "ws://x:3");
        assert_eq!(gone.len(), PER_CLIENT);
        assert!(!gone.contains(&"ws://x:3".to_owned()));
        assert_eq!(pins.len(), 1, "the one reached stays");
        assert_eq!(pins.admit(a, "ws://x:99", 60_000), Ok(true));
        assert_eq!(pins.unpinned().len(), PER_CLIENT);
    }
}
