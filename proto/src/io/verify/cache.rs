//! The checks' DNS cache: what mail-auth looked up and parsed, kept until the record's
//! TTL runs out, shared by every message's checks. Bounded: when one of its maps is
//! full, the entries that expired are dropped, and if none had, the whole map (a cache
//! may forget; it must not grow without end).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Instant;

use mail_auth::{MX, RecordSet, ResolverCache, Txt};

/// The most entries one map keeps.
const MAX_ENTRIES: usize = 50_000;

/// Entries with their expiry.
pub(crate) struct Ttl<K, V>(Mutex<HashMap<K, (V, Instant)>>);

impl<K, V> std::fmt::Debug for Ttl<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map_or(0, |m| m.len());
        write!(f, "Ttl({n} entries)")
    }
}

impl<K, V> Default for Ttl<K, V> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for Ttl<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = self.0.lock().ok()?;
        match map.get(name) {
            Some((v, until)) if *until > Instant::now() => Some(v.clone()),
            Some(_) => {
                map.remove(name);
                None
            }
            None => None,
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().ok()?.remove(name).map(|(v, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= MAX_ENTRIES {
                let now = Instant::now();
                map.retain(|_, (_, until)| *until > now);
                if map.len() >= MAX_ENTRIES {
                    map.clear();
                }
            }
            map.insert(key, (value, valid_until));
        }
    }
}

/// One cache per kind of record mail-auth asks for.
#[derive(Debug, Default)]
pub(crate) struct Caches {
    pub(crate) txt: Ttl<Box<str>, Txt>,
    pub(crate) mx: Ttl<Box<str>, RecordSet<MX>>,
    pub(crate) ipv4: Ttl<Box<str>, RecordSet<Ipv4Addr>>,
    pub(crate) ipv6: Ttl<Box<str>, RecordSet<Ipv6Addr>>,
    pub(crate) ptr: Ttl<IpAddr, RecordSet<Box<str>>>,
}
