//! What this process asked of its stores: requests by kind, and how many were in flight
//! at once (`ras bench coordinator` prints both per cycle); and the bound on how many a
//! batch call keeps in flight.

/// Default of the most requests a batch keeps in flight (`RAS_STORE_CONCURRENCY`).
pub const DEFAULT_CONCURRENCY: usize = 32;

/// The most requests one batch call ([`Store::get_many`], ...) keeps in flight:
/// `RAS_STORE_CONCURRENCY` (1 makes batches sequential), else [`DEFAULT_CONCURRENCY`].
/// Bounded so that a 20,000-run sweep does not open 20,000 connections at once.
pub fn concurrency() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| match std::env::var("RAS_STORE_CONCURRENCY") {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                tracing::warn!("RAS_STORE_CONCURRENCY={v:?} is not a number above 0; using {DEFAULT_CONCURRENCY}");
                DEFAULT_CONCURRENCY
            }
        },
        Err(_) => DEFAULT_CONCURRENCY,
    })
}

/// One request in flight (a guard): counts how many are, and the most since
/// [`take_max_in_flight`].
pub(super) struct InFlight;

impl InFlight {
    pub(super) fn enter() -> Self {
        use std::sync::atomic::Ordering::SeqCst;
        let now = counters::IN_FLIGHT.fetch_add(1, SeqCst) + 1;
        counters::MAX_IN_FLIGHT.fetch_max(now, SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        counters::IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The most store requests this process had in flight at once since the last call (and
/// starts a new period): what `ras bench coordinator` prints per cycle.
pub fn take_max_in_flight() -> u64 {
    use std::sync::atomic::Ordering::SeqCst;
    counters::MAX_IN_FLIGHT.swap(counters::IN_FLIGHT.load(SeqCst), SeqCst)
}

/// Store calls made by this process, by kind (`ras bench coordinator` prints them per
/// poll cycle). A `list` counts once however many pages the backend returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestCounts {
    pub get: u64,
    pub put: u64,
    pub head: u64,
    pub list: u64,
    pub delete: u64,
}

impl RequestCounts {
    /// What was made between `earlier` and `self`.
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts {
            get: self.get - earlier.get,
            put: self.put - earlier.put,
            head: self.head - earlier.head,
            list: self.list - earlier.list,
            delete: self.delete - earlier.delete,
        }
    }
}

pub(super) mod counters {
    use std::sync::atomic::{AtomicU64, Ordering};
    pub static GET: AtomicU64 = AtomicU64::new(0);
    pub static PUT: AtomicU64 = AtomicU64::new(0);
    pub static HEAD: AtomicU64 = AtomicU64::new(0);
    pub static LIST: AtomicU64 = AtomicU64::new(0);
    pub static DELETE: AtomicU64 = AtomicU64::new(0);
    pub static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);
    pub static MAX_IN_FLIGHT: AtomicU64 = AtomicU64::new(0);
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Store calls made so far by this process.
pub fn request_counts() -> RequestCounts {
    use std::sync::atomic::Ordering::Relaxed;
    RequestCounts {
        get: counters::GET.load(Relaxed),
        put: counters::PUT.load(Relaxed),
        head: counters::HEAD.load(Relaxed),
        list: counters::LIST.load(Relaxed),
        delete: counters::DELETE.load(Relaxed),
    }
}
