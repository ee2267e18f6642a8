//! The [`Dashboard`]: which part of the store each page depends on, how often it is read
//! again, and the pages built from it (kept until the copy changes).
//!
//! What a refresh reads, by page (each at most once per `refresh` interval, however many
//! browsers ask):
//! - home: one LIST of `sweeps/` and one of `runs/`;
//! - a sweep: one LIST of `sweeps/<name>/`, plus one LIST of `runs/<id>/` for each run
//!   that has been launched (a claim) and is not complete yet. The first view lists
//!   `runs/` once instead. A finished sweep: one LIST, and no GET when nothing changed;
//! - a run: one LIST of `runs/<id>/` (the first view also lists the sweeps' manifests,
//!   to find the run's sweep);
//! - compare: one LIST of `runs/<id>/` per run.
//!
//! Then every new or changed record is read (one batch), and nothing else.

use super::mirror::Mirror;
use super::pages::{self, Built, PageError};
use crate::run::{RunKey, RunPaths, RunState, RunStatus};
use crate::runs::Filter;
use crate::store::{Store, StoreError};
use crate::sweep::{Manifest, SweepKey, SweepPaths};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A page of the dashboard, as its URL names it.
#[derive(Debug, Clone)]
pub enum Route {
    Home(Vec<Filter>),
    Sweep(String),
    Run(String),
    Compare(Vec<String>),
}

impl Route {
    fn key(&self) -> String {
        match self {
            Route::Home(f) => {
                format!("home {}", f.iter().map(|f| format!("{}={}", f.key, f.value)).collect::<Vec<_>>().join(" "))
            }
            Route::Sweep(n) => format!("sweep {n}"),
            Route::Run(id) => format!("run {id}"),
            Route::Compare(ids) => format!("compare {}", ids.join(" ")),
        }
    }
}

/// A page as served: its `<main>` (with a note on top while the store does not answer),
/// its JSON, and a version that changes when either does.
#[derive(Debug)]
pub struct Rendered {
    pub title: String,
    pub main: String,
    pub json: String,
    pub version: String,
}

pub struct Dashboard {
    mirror: Mirror,
    refresh: Duration,
    last_sync: HashMap<String, Instant>,
    /// Sweeps whose runs were read in full once (from one LIST of `runs/`).
    sweeps_read: HashSet<String>,
    /// Whether `runs/` was listed in full (home) since the start.
    runs_read: bool,
    /// Whether the sweeps' manifests were listed (to find a run's sweep).
    manifests_read: bool,
    /// Runs seen complete: their folders are not listed again by a sweep's refresh.
    complete: HashSet<String>,
    /// Pages built at a generation of the copy, with the store problem shown on them.
    cache: HashMap<String, (u64, Option<String>, Arc<Rendered>)>,
    /// The last refresh that failed: what, and since when; None once one succeeds.
    outage: Option<String>,
    /// Sweeps' manifests as last read from the copy, with the version they were read at:
    /// parsed again only when the manifest changes (a big one takes a while to parse).
    manifests: HashMap<String, (String, Result<Arc<Manifest>, String>)>,
    /// Seconds the last `page` spent reading the store, and building the page (0 when
    /// it was kept from before): what `ras bench serve` prints.
    pub last_timing: (f64, f64),
}

impl Dashboard {
    pub fn new(store: Store, refresh: Duration) -> Result<Self, StoreError> {
        Ok(Self {
            mirror: Mirror::new(store)?,
            refresh,
            last_sync: HashMap::new(),
            sweeps_read: HashSet::new(),
            runs_read: false,
            manifests_read: false,
            complete: HashSet::new(),
            cache: HashMap::new(),
            outage: None,
            last_timing: (0.0, 0.0),
            manifests: HashMap::new(),
        })
    }

    pub fn store_url(&self) -> &str {
        self.mirror.real().url()
    }

    /// A page, refreshed from the store first if its last refresh is older than the
    /// interval. A store that does not answer leaves the page as last read, with a note
    /// saying so; a store error never ends the server.
    pub fn page(&mut self, route: &Route) -> Result<Arc<Rendered>, PageError> {
        let key = route.key();
        let started = Instant::now();
        self.last_timing = (0.0, 0.0);
        let due = self.last_sync.get(&key).is_none_or(|t| t.elapsed() >= self.refresh);
        if due {
            match self.sync(route) {
                Ok(()) => self.outage = None,
                Err(e) => {
                    let why = crate::error_text::chain(&e);
                    tracing::warn!("refresh of {key}: {why}");
                    self.outage = Some(format!(
                        "store {} did not answer when this page was refreshed at {}: {why}. Showing what was read before; the page updates by itself when the store answers again.",
                        self.store_url(),
                        super::html::when(crate::unix_now() as i64)
                    ));
                }
            }
            self.last_sync.insert(key.clone(), Instant::now());
        }
        let generation = self.mirror.generation();
        self.last_timing.0 = started.elapsed().as_secs_f64();
        if let Some((g, o, r)) = self.cache.get(&key) {
            if *g == generation && *o == self.outage {
                return Ok(r.clone());
            }
        }
        let built = match route {
            Route::Home(filters) => pages::home(&self.mirror, filters),
            Route::Sweep(name) => {
                let manifest = self.manifest(name);
                pages::sweep(&self.mirror, name, manifest)
            }
            Route::Run(id) => {
                let sweep = self.sweep_of(id);
                super::run_pages::run(&mut self.mirror, id, sweep)
            }
            Route::Compare(ids) => super::run_pages::compare(&self.mirror, ids),
        };
        let Built { title, mut main, json } = built?;
        if let Some(o) = &self.outage {
            main = super::html::problem(o) + &main;
        }
        let json = serde_json::to_string(&json).unwrap_or_default();
        let version = format!("{:016x}", fnv(main.as_bytes()));
        let r = Arc::new(Rendered { title, main, json, version });
        self.cache.insert(key, (generation, self.outage.clone(), r.clone()));
        self.last_timing.1 = started.elapsed().as_secs_f64() - self.last_timing.0;
        Ok(r)
    }

    /// A picture of a run (`runs/<id>/pictures/...png`) as the store holds it; None if
    /// no listing showed it.
    pub fn picture(&mut self, key: &str) -> Result<Option<bytes::Bytes>, StoreError> {
        self.mirror.read_on_demand(key)
    }

    fn sync(&mut self, route: &Route) -> Result<(), StoreError> {
        let all = |_: &str| true;
        match route {
            Route::Home(_) => {
                self.mirror.sync(&[SweepPaths::ROOT.into(), RunPaths::ROOT.into()], &all)?;
                self.runs_read = true;
                self.manifests_read = true;
            }
            Route::Sweep(name) => self.sync_sweep(name)?,
            Route::Run(id) => {
                if !self.manifests_read {
                    let manifests = |k: &str| matches!(SweepPaths::parse(k), Some((_, SweepKey::Manifest)));
                    self.mirror.sync(&[SweepPaths::ROOT.into()], &manifests)?;
                    self.manifests_read = true;
                }
                self.mirror.sync(&[format!("{}/", RunPaths::new(id.as_str()).prefix())], &all)?;
            }
            Route::Compare(ids) => {
                let prefixes: Vec<String> =
                    ids.iter().map(|id| format!("{}/", RunPaths::new(id.as_str()).prefix())).collect();
                self.mirror.sync(&prefixes, &all)?;
            }
        }
        Ok(())
    }

    fn sync_sweep(&mut self, name: &str) -> Result<(), StoreError> {
        let all = |_: &str| true;
        let prefix = format!("{}/", SweepPaths::new(name).prefix());
        self.mirror.sync(std::slice::from_ref(&prefix), &all)?;
        // A manifest this version cannot read is shown as such by the page.
        let Some(Ok(manifest)) = self.manifest(name) else { return Ok(()) };
        let ids: BTreeSet<String> = manifest.runs.iter().map(|r| r.id.clone()).collect();
        let first = !self.sweeps_read.contains(name);
        let open: Vec<String> = if first {
            // What the sweep page reads of a run: its status, final metrics, cost index and
            // evaluations at test-time noise (the rest is read when its run page is opened).
            // Known by name: one batch of GETs, no listing of `runs/` (thousands of keys,
            // a page of 1000 a round trip), except where the runs evaluate at test-time
            // noise, whose results can only be found by listing.
            if manifest.configs().is_ok_and(|c| noise_evaluated(&c)) {
                let of_sweep = |k: &str| {
                    RunPaths::parse(k).is_some_and(|(p, kind)| {
                        ids.contains(p.id())
                            && matches!(
                                kind,
                                RunKey::Status
                                    | RunKey::FinalMetrics
                                    | RunKey::CostIndex
                                    | RunKey::EvalNoise { .. }
                                    | RunKey::EvalNoiseOther { .. }
                            )
                    })
                };
                self.mirror.sync(&[RunPaths::ROOT.into()], &of_sweep)?;
            } else {
                let keys: Vec<String> = ids
                    .iter()
                    .flat_map(|id| {
                        let p = RunPaths::new(id.as_str());
                        [p.status(), p.final_metrics(), p.cost_index()]
                    })
                    .collect();
                self.mirror.fetch(&keys)?;
            }
            ids.iter().filter(|id| !self.complete.contains(*id)).cloned().collect()
        } else {
            // Launched runs not complete yet: their folders can have changed.
            let claimed: BTreeSet<String> = self
                .mirror
                .keys_under(&format!("{prefix}claims/"))
                .iter()
                .filter_map(|k| match SweepPaths::parse(k) {
                    Some((_, SweepKey::Claim { run, .. })) => Some(run),
                    _ => None,
                })
                .collect();
            let open: Vec<String> =
                ids.iter().filter(|id| !self.complete.contains(*id) && claimed.contains(*id)).cloned().collect();
            let prefixes: Vec<String> =
                open.iter().map(|id| format!("{}/", RunPaths::new(id.as_str()).prefix())).collect();
            self.mirror.sync(&prefixes, &all)?;
            open
        };
        self.sweeps_read.insert(name.to_string());
        let keys: Vec<String> = open.iter().map(|id| RunPaths::new(id.as_str()).status()).collect();
        // A status that does not parse is shown by the page; here it only keeps the run open.
        let statuses = self.mirror.copy().get_many(&keys)?;
        let mut completed = vec![];
        for (id, st) in open.iter().zip(statuses) {
            let done = st
                .and_then(|b| serde_json::from_slice::<RunStatus>(&b).ok())
                .is_some_and(|s| s.state == RunState::Complete);
            if done {
                self.complete.insert(id.clone());
                completed.push(id.as_str());
            }
        }
        // What a complete run adds to the page and does not change again, read once by
        // name: for the verdicts of a sweep compared with the paper, its pixel histograms
        // (and those of the test-time noise scales its config names: `ras eval` adds others
        // the page does not look for); for a search's section, its rung records.
        let mut once = vec![];
        if manifest.paper.is_some() && !completed.is_empty() {
            let by_id: std::collections::HashMap<&str, &crate::sweep::PlannedRun> =
                manifest.runs.iter().map(|r| (r.id.as_str(), r)).collect();
            for id in &completed {
                let paths = RunPaths::new(*id);
                once.push(paths.pixel_histograms());
                let scales = by_id.get(id).and_then(|r| r.config().ok()).map(|c| c.eval.noise_scales);
                once.extend(scales.unwrap_or_default().iter().map(|&s| paths.eval_noise_pixels(s)));
            }
        }
        if let Some(search) = &manifest.search {
            for id in &completed {
                once.extend(search.rungs.iter().map(|&e| RunPaths::new(*id).rung(e)));
            }
        }
        if !once.is_empty() {
            self.mirror.fetch(&once)?;
        }
        Ok(())
    }
}

impl Dashboard {
    /// The sweep whose manifest lists run `id` (the first by name), from the manifests
    /// as parsed once per version: a run page's rebuild parses none again.
    fn sweep_of(&mut self, id: &str) -> Option<Arc<Manifest>> {
        let names = super::pages::sweep_names(self.mirror.copy()).ok()?;
        names.into_iter().find_map(|n| self.manifest(&n)?.ok().filter(|m| m.runs.iter().any(|r| r.id == id)))
    }

    /// Sweep `name`'s manifest as the copy holds it (None: there is none; Err: what makes
    /// it unreadable), parsed once per version.
    fn manifest(&mut self, name: &str) -> Option<Result<Arc<Manifest>, String>> {
        let key = SweepPaths::new(name).manifest();
        let version = self.mirror.version(&key)?.to_string();
        if let Some((v, m)) = self.manifests.get(name) {
            if *v == version {
                return Some(m.clone());
            }
        }
        let read = match Manifest::read(self.mirror.copy(), name) {
            Ok(Some(m)) => Ok(Arc::new(m)),
            Ok(None) => return None,
            Err(e) => Err(crate::error_text::chain(&e)),
        };
        self.manifests.insert(name.to_string(), (version, read.clone()));
        Some(read)
    }
}

/// Whether a sweep's runs evaluate at test-time noise (`eval.noise_scales`, or runs that
/// differ in `eval.test_jitter_scale`): the report's noise tables then need their
/// `evals/` records, found by listing.
fn noise_evaluated(configs: &[crate::config::RunConfig]) -> bool {
    configs.iter().any(|c| !c.eval.noise_scales.is_empty())
        || configs.windows(2).any(|w| w[0].eval.test_jitter_scale != w[1].eval.test_jitter_scale)
}

/// FNV-1a: a page's version (not a security measure, only "did it change").
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}
