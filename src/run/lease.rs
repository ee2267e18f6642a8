//! One writer per run: a lease object in the run's prefix (`runs/<id>/lease.json`).
//!
//! A trainer takes the lease before it writes anything, with a create-if-absent put (the
//! store's conditional write: an atomic link on a local folder, `If-None-Match: *` on S3),
//! and renews it from a heartbeat thread every quarter of its time to live. A second
//! trainer of a live run, or `--force` on it, is refused with the holder (host, pid, job)
//! and when its lease expires. A holder that is gone can be replaced:
//! - after expiry (a crashed node: nobody renews it);
//! - at once when the holder ran on this host and its process no longer exists (kill -9
//!   and run again), or when it is this very Slurm job (a requeued job keeps its id).
//!
//! Replacing is itself exclusive: the taker first creates `lease-takeovers/<old
//! token>.<n>` with a create-if-absent put, so of two processes replacing the same dead
//! holder exactly one wins (a marker whose taker died is passed over, generation n + 1). A holder that finds another token in the lease when renewing
//! has lost it ([`Lease::lost`]); the run then stops before its next write.
//!
//! Every holder also writes its own record into the lease's history (`leases/`, create-only,
//! never overwritten: [`LeaseEvent`]), saying whose lease it replaced, and a `.released`
//! record when it lets go. With the holder's token in every checkpoint record
//! (`checkpoint::CheckpointRecord::lease`) and attempt record, the history shows after
//! the fact that the run never had two writers at once ([`history`]).
//!
//! The sweep coordinator reads leases too: a run whose lease is live is running, whatever
//! the scheduler says ([`live_holder`]).

use super::paths::RunPaths;
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Default time to live of a lease (`RAS_LEASE_TTL_S` overrides it): long enough that a
/// store hiccup does not expire a live run's lease, short enough that a crashed node's
/// run is taken over within minutes.
pub const DEFAULT_TTL_S: u64 = 300;

/// What `lease.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseRecord {
    /// Random; identifies this holder (a takeover replaces it).
    pub token: String,
    pub host: String,
    pub pid: u32,
    /// The Slurm job (`<job>` or `<array job>_<task>`), when under Slurm.
    pub job_id: Option<String>,
    pub acquired_unix: u64,
    pub expires_unix: u64,
}

impl LeaseRecord {
    /// Whether the holder may still be alive: not expired, and not a process of this host
    /// that no longer exists.
    pub fn is_live(&self, now: u64) -> bool {
        now < self.expires_unix && (self.host != crate::hostname() || crate::pid_alive(self.pid))
    }

    /// Who holds it, for messages: `host node7, pid 4242, job 1234_5`.
    pub fn holder(&self) -> String {
        let job = self.job_id.as_ref().map(|j| format!(", job {j}")).unwrap_or_default();
        format!("host {}, pid {}{job}", self.host, self.pid)
    }
}

/// One holder in the lease's history (`leases/<acquired unix>-<token>.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseEvent {
    pub holder: LeaseRecord,
    /// When it took the lease, in ms since the epoch (the history's order: a release and
    /// the next take often fall in one second).
    pub acquired_ms: u64,
    /// The token of the holder this one replaced (it was gone: see [`LeaseEvent::why`]);
    /// None when the lease was free.
    pub replaces: Option<String>,
    /// Why it could take the lease: "free", "expired", "holder process gone", "same Slurm job".
    pub why: String,
}

/// Deletes the takeover markers of a run's lease (`lease-takeovers/`): after a takeover,
/// and at release (markers of takers that died: nobody takes over a live lease). Best
/// effort: a marker left is passed over by the next taker, never a reason to fail.
fn clear_takeover_markers(store: &Store, paths: &RunPaths) {
    if let Ok(markers) = store.list(&format!("{}/", paths.lease_takeovers())) {
        let _ = store.delete_many(&markers);
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The lease's history of a run, oldest first: each holder, and whether it released the
/// lease (a holder that died did not).
pub fn history(store: &Store, paths: &RunPaths) -> Result<Vec<(LeaseEvent, bool)>, StoreError> {
    use super::paths::RunKey;
    let keys = store.list(&format!("{}/", paths.leases()))?;
    let mut released = std::collections::BTreeSet::new();
    let mut events = vec![];
    for k in &keys {
        match RunPaths::parse(k).map(|(_, kind)| kind) {
            Some(RunKey::LeaseReleased { token, .. }) => {
                released.insert(token);
            }
            Some(RunKey::LeaseEvent { .. }) => events.push(k.clone()),
            _ => {}
        }
    }
    let mut out: Vec<(LeaseEvent, bool)> = vec![];
    for ev in store.get_json_many::<LeaseEvent, _>(&events)?.into_iter().flatten() {
        let done = released.contains(&ev.holder.token);
        out.push((ev, done));
    }
    out.sort_by_key(|(e, _)| e.acquired_ms);
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "run {run} is being trained by another process ({holder}); its lease expires in {expires_in_s} s unless renewed. \
         Wait for it, or stop it (scancel / kill) and run again; --force does not override a live lease"
    )]
    Held { run: String, holder: String, expires_in_s: u64 },
    #[error("lost the run's lease ({key}): another process took the run over; stopping without writing")]
    Lost { key: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LeaseError {
    /// Whether the store stayed unreachable (see [`StoreError::is_outage`]).
    pub fn is_outage(&self) -> bool {
        matches!(self, LeaseError::Store(e) if e.is_outage())
    }
}

/// This process's Slurm job, if any (arrays as `<array job>_<task>`, as `squeue` names them).
fn this_job() -> Option<String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (var("SLURM_ARRAY_JOB_ID"), var("SLURM_ARRAY_TASK_ID")) {
        (Some(a), Some(t)) => Some(format!("{a}_{t}")),
        _ => var("SLURM_JOB_ID"),
    }
}

/// The lease's time to live: `RAS_LEASE_TTL_S`, else `DEFAULT_TTL_S`.
pub fn ttl() -> Duration {
    let s = std::env::var("RAS_LEASE_TTL_S")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&s| s >= 2)
        .unwrap_or(DEFAULT_TTL_S);
    Duration::from_secs(s)
}

/// The run's lease when it is live (see [`LeaseRecord::is_live`]).
pub fn live_holder(store: &Store, paths: &RunPaths) -> Result<Option<LeaseRecord>, StoreError> {
    Ok(live_holders(store, std::slice::from_ref(paths))?.remove(0))
}

/// [`live_holder`] of many runs, in one batch.
pub fn live_holders(store: &Store, runs: &[RunPaths]) -> Result<Vec<Option<LeaseRecord>>, StoreError> {
    let keys: Vec<String> = runs.iter().map(|p| p.lease()).collect();
    let now = crate::unix_now();
    Ok(store.get_json_many::<LeaseRecord, _>(&keys)?.into_iter().map(|l| l.filter(|l| l.is_live(now))).collect())
}

/// A held lease: renewed in the background until released or dropped.
pub struct Lease {
    store: Store,
    key: String,
    paths: RunPaths,
    token: String,
    /// Its `.released` history record.
    released: String,
    stop: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
}

impl Lease {
    /// Takes the run's lease (see the module doc), or says who holds it.
    pub fn acquire(store: &Store, paths: &RunPaths) -> Result<Lease, LeaseError> {
        Self::acquire_with_ttl(store, paths, ttl())
    }

    pub fn acquire_with_ttl(store: &Store, paths: &RunPaths, ttl: Duration) -> Result<Lease, LeaseError> {
        let key = paths.lease();
        let now = crate::unix_now();
        let mine = LeaseRecord {
            token: format!("{:032x}", rand::random::<u128>()),
            host: crate::hostname(),
            pid: std::process::id(),
            job_id: this_job(),
            acquired_unix: now,
            expires_unix: now + ttl.as_secs(),
        };
        let body = serde_json::to_vec_pretty(&mine).expect("serialisable");
        for _ in 0..3 {
            match store.put_new(&key, body.clone()) {
                Ok(()) => return Self::start(store, paths, &mine, None, "free", ttl),
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let Some(old) = store.get_json::<LeaseRecord>(&key)? else { continue }; // released meanwhile
            let now = crate::unix_now();
            let why = if now >= old.expires_unix {
                "expired"
            } else if !old.is_live(now) {
                "holder process gone"
            } else if old.job_id.is_some() && old.job_id == mine.job_id {
                "same Slurm job"
            } else {
                ""
            };
            if why.is_empty() {
                return Err(LeaseError::Held {
                    run: paths.id().into(),
                    holder: old.holder(),
                    expires_in_s: old.expires_unix.saturating_sub(crate::unix_now()),
                });
            }
            // Exactly one taker per dead holder: the one that creates the takeover marker.
            if Self::take_over(store, paths, &old.token, &mine)? {
                store.put(&key, body.clone())?;
                tracing::warn!(run = paths.id(), "took over the lease of a holder that is gone ({})", old.holder());
                clear_takeover_markers(store, paths);
                return Self::start(store, paths, &mine, Some(old.token), why, ttl);
            }
            return Err(LeaseError::Held {
                run: paths.id().into(),
                holder: "another process taking it over".into(),
                expires_in_s: ttl.as_secs(),
            });
        }
        Err(LeaseError::Held {
            run: paths.id().into(),
            holder: "processes racing for it".into(),
            expires_in_s: ttl.as_secs(),
        })
    }

    /// Whether `mine` wins the takeover of the dead holder `old`: it creates marker
    /// `lease-takeovers/<old>.<n>` (create-if-absent, holding `mine`). A marker whose taker
    /// died before finishing (found by tests/chaos: killed between the marker and the
    /// lease, it blocked every later attempt for good) is passed over like a dead holder:
    /// the next generation's marker decides among the takers that remain.
    fn take_over(store: &Store, paths: &RunPaths, old: &str, mine: &LeaseRecord) -> Result<bool, LeaseError> {
        let body = serde_json::to_vec(mine).expect("serialisable");
        for generation in 0..64 {
            let marker = paths.lease_takeover(old, generation);
            match store.put_new(&marker, body.clone()) {
                Ok(()) => return Ok(true),
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let taker = match store.get_json::<LeaseRecord>(&marker) {
                Ok(t) => t,
                Err(StoreError::Corrupt { .. }) => None, // not a taker's record: passed over
                Err(e) => return Err(e.into()),
            };
            if taker.is_some_and(|t| t.is_live(crate::unix_now())) {
                return Ok(false);
            }
        }
        Ok(false)
    }

    /// Records the new holder in the history, then starts the heartbeat. A history that
    /// cannot be written gives the lease back: an unrecorded holder must not write.
    fn start(
        store: &Store,
        paths: &RunPaths,
        mine: &LeaseRecord,
        replaces: Option<String>,
        why: &str,
        ttl: Duration,
    ) -> Result<Lease, LeaseError> {
        let key = paths.lease();
        let token = mine.token.clone();
        let acquired_ms = unix_ms();
        let event = LeaseEvent { holder: mine.clone(), acquired_ms, replaces, why: why.into() };
        let released = paths.lease_released(acquired_ms, &token);
        let history = paths.lease_event(acquired_ms, &token);
        if let Err(e) = store.put_new(&history, serde_json::to_vec_pretty(&event).expect("serialisable")) {
            let _ = store.delete(&key);
            return Err(e.into());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let (stop, lost, key, token, url) =
                (stop.clone(), lost.clone(), key.clone(), token.clone(), store.url().to_string());
            std::thread::spawn(move || renew(&url, &key, &token, ttl, &stop, &lost))
        };
        Ok(Lease {
            store: store.clone(),
            key,
            paths: paths.clone(),
            token,
            released,
            stop,
            lost,
            heartbeat: Some(heartbeat),
        })
    }

    /// This holder's token (in its history record, checkpoints and attempt record).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Another process took the lease over (this one was thought dead): stop writing.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// An error when the lease was lost, to stop before the next write.
    pub fn check(&self) -> Result<(), LeaseError> {
        if self.lost() {
            return Err(LeaseError::Lost { key: self.key.clone() });
        }
        Ok(())
    }
}

/// The heartbeat: every ttl/4 (checking for stop every 200 ms), rewrite the lease with a
/// new expiry if it is still ours; mark it lost if it is not. Store errors are retried
/// at the next beat (the lease outlives 3 missed beats).
fn renew(url: &str, key: &str, token: &str, ttl: Duration, stop: &AtomicBool, lost: &AtomicBool) {
    // Its own store handle: the heartbeat must not wait on the training thread's I/O.
    let Ok(store) = Store::open(url) else { return };
    let beat = ttl / 4;
    let mut last = std::time::Instant::now();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200).min(beat));
        if last.elapsed() < beat {
            continue;
        }
        last = std::time::Instant::now();
        match store.get_json::<LeaseRecord>(key) {
            Ok(Some(mut rec)) if rec.token == token => {
                rec.expires_unix = crate::unix_now() + ttl.as_secs();
                if let Err(e) = store.put_json(key, &rec) {
                    tracing::warn!(
                        "renewing the run's lease failed (retrying at the next beat): {}",
                        crate::error_text::chain(&e)
                    );
                }
            }
            Ok(_) => {
                tracing::error!(key, "the run's lease was taken over by another process");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) => tracing::warn!(
                "reading the run's lease failed (retrying at the next beat): {}",
                crate::error_text::chain(&e)
            ),
        }
    }
}

impl Drop for Lease {
    /// Stops the heartbeat and deletes the lease if it is still this holder's.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.heartbeat.take() {
            // With the store down, the heartbeat may be inside a store call retrying for a
            // whole budget: leave it (it stops at its next look at `stop`, or with the
            // process) rather than wait.
            if !crate::store::known_down() || h.is_finished() {
                let _ = h.join();
            }
        }
        if let Ok(Some(rec)) = self.store.get_json::<LeaseRecord>(&self.key) {
            if rec.token == self.token {
                // The history first: a lease deleted without it would read as a holder that died.
                let _ = self.store.put_json(&self.released, &serde_json::json!({ "released_ms": unix_ms() }));
                clear_takeover_markers(&self.store, &self.paths);
                let _ = self.store.delete(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&format!("file://{}", dir.path().display())).unwrap();
        (dir, s)
    }

    #[test]
    fn a_live_lease_is_exclusive_and_released_on_drop() {
        let (_d, s) = store();
        let paths = RunPaths::new("r-1");
        let a = Lease::acquire(&s, &paths).unwrap();
        // The same process again (another trainer in this pid) is refused: the holder is alive.
        match Lease::acquire(&s, &paths) {
            Err(LeaseError::Held { holder, .. }) => {
                assert!(holder.contains(&format!("pid {}", std::process::id())), "{holder}")
            }
            other => panic!("expected Held, got {:?}", other.map(|_| ())),
        }
        assert!(live_holder(&s, &paths).unwrap().is_some());
        let first = a.token().to_string();
        drop(a);
        assert!(s.get(&paths.lease()).unwrap().is_none(), "released");
        let b = Lease::acquire(&s, &paths).unwrap();
        // The history: both holders in order, the first released, the second took a free lease.
        let h = history(&s, &paths).unwrap();
        let tokens: Vec<&str> = h.iter().map(|(e, _)| e.holder.token.as_str()).collect();
        assert_eq!(tokens, vec![first.as_str(), b.token()]);
        assert_eq!(h.iter().map(|(_, released)| *released).collect::<Vec<_>>(), vec![true, false]);
        assert!(h.iter().all(|(e, _)| e.replaces.is_none() && e.why == "free"), "{h:?}");
    }

    #[test]
    fn dead_or_expired_holders_are_replaced_and_the_replaced_holder_learns_it() {
        let (_d, s) = store();
        let paths = RunPaths::new("r-2");
        let write = |host: &str, pid: u32, expires: u64| {
            let rec = LeaseRecord {
                token: format!("{host}{pid}"),
                host: host.into(),
                pid,
                job_id: None,
                acquired_unix: 0,
                expires_unix: expires,
            };
            s.put_json(&paths.lease(), &rec).unwrap();
        };
        let far = crate::unix_now() + 3600;
        // Another host, not expired: refused, named.
        write("elsewhere", 1, far);
        let err = Lease::acquire(&s, &paths).err().expect("refused").to_string();
        assert!(err.contains("host elsewhere, pid 1"), "{err}");
        // Another host, expired: replaced.
        write("elsewhere", 1, 10);
        drop(Lease::acquire(&s, &paths).unwrap());
        // This host, a pid that does not exist: replaced at once.
        write(&crate::hostname(), u32::MAX - 1, far);
        let lease = Lease::acquire(&s, &paths).unwrap();
        assert!(!lease.lost());
        // Each takeover is in the history with whom it replaced and why.
        let h = history(&s, &paths).unwrap();
        let whys: Vec<(Option<&str>, &str)> = h.iter().map(|(e, _)| (e.replaces.as_deref(), e.why.as_str())).collect();
        let dead = format!("{}{}", crate::hostname(), u32::MAX - 1);
        assert_eq!(whys, vec![(Some("elsewhere1"), "expired"), (Some(dead.as_str()), "holder process gone")]);
        assert_eq!(h[1].0.holder.token, lease.token());
        // A takeover behind its back: the heartbeat notices within a beat.
        let paths3 = RunPaths::new("r-3");
        let held = Lease::acquire_with_ttl(&s, &paths3, Duration::from_secs(2)).unwrap();
        let rec = LeaseRecord {
            token: "thief".into(),
            host: "x".into(),
            pid: 1,
            job_id: None,
            acquired_unix: 0,
            expires_unix: far,
        };
        s.put_json(&paths3.lease(), &rec).unwrap();
        let t = std::time::Instant::now();
        while !held.lost() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(held.lost() && held.check().is_err());
        drop(held);
        assert_eq!(
            s.get_json::<LeaseRecord>(&paths3.lease()).unwrap().unwrap().token,
            "thief",
            "a lost lease is not deleted"
        );
    }

    /// Found by tests/chaos (seed 1796404057): a taker killed between its takeover marker
    /// and the lease left the marker, and every later attempt was refused ("another process
    /// taking it over") until the run's retries were used up. A dead taker's marker is now
    /// passed over, and markers are deleted once a takeover is done; a live taker's still
    /// wins.
    #[test]
    fn a_takeover_marker_whose_taker_died_does_not_block_the_run() {
        let (_d, s) = store();
        let paths = RunPaths::new("r-4");
        let far = crate::unix_now() + 3600;
        let dead = LeaseRecord {
            token: "dead".into(),
            host: crate::hostname(),
            pid: u32::MAX - 1,
            job_id: None,
            acquired_unix: 0,
            expires_unix: far,
        };
        s.put_json(&paths.lease(), &dead).unwrap();
        let gone_taker = LeaseRecord { token: "taker".into(), pid: u32::MAX - 2, ..dead.clone() };
        s.put_json(&paths.lease_takeover("dead", 0), &gone_taker).unwrap();
        let lease = Lease::acquire(&s, &paths).unwrap();
        assert!(s.list(&format!("{}/", paths.lease_takeovers())).unwrap().is_empty(), "markers deleted");
        let h = history(&s, &paths).unwrap();
        assert_eq!((h.len(), h[0].0.replaces.as_deref()), (1, Some("dead")));
        drop(lease);
        // A taker that is alive (this process) still wins: the run is refused.
        s.put_json(&paths.lease(), &dead).unwrap();
        let live_taker = LeaseRecord { token: "live".into(), pid: std::process::id(), ..dead.clone() };
        s.put_json(&paths.lease_takeover("dead", 0), &live_taker).unwrap();
        match Lease::acquire(&s, &paths) {
            Err(LeaseError::Held { holder, .. }) => assert!(holder.contains("taking it over"), "{holder}"),
            other => panic!("expected Held, got {:?}", other.map(|_| ())),
        }
    }
}
