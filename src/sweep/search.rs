//! The coordinator's side of a search (`[search] method = "asha"`): each cycle it reads
//! the rung records of runs that paused, decides what can be decided (promotions as
//! results arrive, ASHA's rule in `asha`; the rest of a rung once no more results can
//! arrive there; everything once the budget is spent), appends each decision to the
//! sweep's state with a conditional create, and only then acts on it.
//!
//! The decision log is the search's whole state: a coordinator killed with -9 and
//! started again reads it back and goes on with the same decisions; two coordinators
//! racing on one decision both try the create and only one wins (the other reads the
//! winner's at its next pass); and a promoted run's worker reads its own decisions to
//! know how far it may train (`run::search::allowed_epoch`). Launching a promoted run
//! goes through the sweep's ordinary claims, so no attempt is launched twice either.

use super::asha::{Halving, RungResult};
use super::status::{RunPhase, RunView};
use super::tracker::Tracker;
use super::SweepError;
use crate::config::search::{Search, SearchMethod};
use crate::run::search::{Decision, RungRecord};
use crate::run::RunPaths;
use std::collections::{BTreeMap, BTreeSet};

/// What the search has cost so far, and what it has committed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spend {
    /// Rank-hours of every ended attempt of the sweep (its cost records).
    pub measured: f64,
    /// The estimate of what the active runs still spend up to the rung they train to.
    pub running: f64,
    /// Rank-hours per run-epoch so far (what an estimate multiplies).
    pub per_epoch: f64,
}

impl Spend {
    pub fn total(&self) -> f64 {
        self.measured + self.running
    }
}

/// The rung index each run may train to now: 1 + the rungs it was promoted from.
fn allowed_rung(decisions: &BTreeMap<(String, usize), Decision>, run: &str) -> usize {
    decisions.range((run.to_string(), 0)..).take_while(|((r, _), _)| r == run).filter(|(_, d)| d.promoted).count()
}

/// Measured cost plus the estimate of the active runs (each up to the rung it may reach).
pub fn spend(views: &[RunView], decisions: &BTreeMap<(String, usize), Decision>, rungs: &[usize]) -> Spend {
    let measured: f64 = views.iter().filter_map(|v| v.cost.as_ref()).map(|c| c.rank_hours).sum();
    let epochs: usize = views.iter().filter(|v| v.cost.is_some()).map(|v| v.epoch).sum();
    let per_epoch = if epochs > 0 { measured / epochs as f64 } else { 0.0 };
    let running = views
        .iter()
        .filter(|v| v.phase == RunPhase::Active)
        .map(|v| {
            let target = rungs.get(allowed_rung(decisions, &v.id)).copied().unwrap_or(v.epochs);
            target.saturating_sub(v.epoch) as f64 * per_epoch
        })
        .sum::<f64>()
        .max(0.0); // (an empty f64 sum is -0.0)
    Spend { measured: measured.max(0.0), running, per_epoch }
}

/// The coordinator's memory of a search between cycles: the rung records it read.
#[derive(Default)]
pub struct SearchDriver {
    /// By (run id, rung index); written once by the run, so read once.
    records: BTreeMap<(String, usize), RungRecord>,
    /// Said once: the budget is spent.
    budget_said: bool,
}

impl SearchDriver {
    /// One pass over the views of this cycle: decides, appends, then marks the views
    /// (promoted: `Retry`, launched this cycle; stopped: `Stopped`). Returns the
    /// decisions this coordinator made.
    pub fn step(
        &mut self,
        tracker: &mut Tracker,
        views: &mut [RunView],
        search: &Search,
    ) -> Result<Vec<Decision>, SweepError> {
        if search.method != SearchMethod::Asha {
            return Ok(vec![]);
        }
        let rungs = &search.rungs;
        let top = rungs.len() - 1;
        let rung_of = |epoch: usize| rungs.iter().position(|&e| e == epoch);
        // The rung records of paused runs not decided yet.
        let waiting: Vec<(usize, usize)> = views
            .iter()
            .enumerate()
            .filter(|(_, v)| v.phase == RunPhase::Paused)
            .filter_map(|(i, v)| Some((i, rung_of(v.epoch)?)))
            .filter(|(i, k)| !tracker.decisions.contains_key(&(views[*i].id.clone(), *k)))
            .collect();
        let unread: Vec<(String, usize)> = waiting
            .iter()
            .map(|&(i, k)| (views[i].id.clone(), k))
            .filter(|key| !self.records.contains_key(key))
            .collect();
        let keys: Vec<String> = unread.iter().map(|(id, k)| RunPaths::new(id.as_str()).rung(rungs[*k])).collect();
        for (key, rec) in unread.into_iter().zip(tracker.state.store.get_json_many::<RungRecord, _>(&keys)?) {
            if let Some(rec) = rec {
                self.records.insert(key, rec);
            }
        }
        let decisions = &tracker.decisions;
        // Every result so far: decided ones carry their value, waiting ones their record.
        let mut results: Vec<RungResult> = decisions
            .values()
            .filter_map(|d| Some(RungResult { run: d.run.clone(), rung: d.rung, value: d.value? }))
            .collect();
        for &(i, k) in &waiting {
            // (A paused run without its record, written before "paused", is a run
            // written by hand: it ranks last.)
            let value = self.records.get(&(views[i].id.clone(), k)).map_or(f64::NAN, |r| r.value);
            results.push(RungResult { run: views[i].id.clone(), rung: k, value });
        }
        let promoted: BTreeSet<(String, usize)> =
            decisions.values().filter(|d| d.promoted).map(|d| (d.run.clone(), d.rung + 1)).collect();
        let halving = Halving { eta: search.eta, rungs: rungs.len(), minimize: search.minimize() };
        let mut spend = spend(views, decisions, rungs);
        let budget = search.budget_rank_hours.unwrap_or(f64::INFINITY);
        let value_of = |run: &str, k: usize| results.iter().find(|r| r.run == run && r.rung == k).map(|r| r.value);
        let by = format!("{}:{}", crate::hostname(), std::process::id());
        let decide = |run: &str, k: usize, value: Option<f64>, promoted: bool, why: String, spent: f64| Decision {
            run: run.to_string(),
            rung: k,
            epoch: rungs[k],
            metric: search.metric.clone(),
            value,
            promoted,
            why,
            spent_rank_hours: spent,
            unix: crate::unix_now(),
            by: by.clone(),
        };
        let waiting_ids: BTreeSet<(String, usize)> = waiting.iter().map(|&(i, k)| (views[i].id.clone(), k)).collect();
        let mut new: Vec<Decision> = vec![];
        let mut budget_spent = spend.total() >= budget;
        // Promotions as results arrive (ASHA), within the budget.
        for (run, next) in halving.promotions(&results, &promoted) {
            let k = next - 1;
            if !waiting_ids.contains(&(run.clone(), k)) {
                continue; // decided already (stopped when the budget ran out)
            }
            let cost = (rungs[next] - rungs[k]) as f64 * spend.per_epoch;
            if spend.total() + cost > budget {
                budget_spent = true;
                break;
            }
            let at_k = results.iter().filter(|r| r.rung == k).count();
            let why = format!(
                "among the best {} of the {at_k} runs at rung {} so far (eta {})",
                at_k / search.eta,
                k + 1,
                search.eta
            );
            new.push(decide(&run, k, value_of(&run, k), true, why, spend.total()));
            spend.running += cost;
        }
        // A rung no more results can reach: the runs waiting there that were not promoted
        // stop (or, when none of the rung went on at all, its best one goes on, so that a
        // search always trains one configuration to its last epoch).
        let reached = |v: &RunView| -> Option<usize> {
            let decided = decisions.keys().filter(|(r, _)| *r == v.id).map(|(_, k)| *k).max();
            let now = match v.phase {
                RunPhase::Complete => Some(top),
                RunPhase::Paused => rung_of(v.epoch),
                _ => None,
            };
            decided.max(now)
        };
        for k in 0..top {
            let closed = views.iter().all(|v| {
                reached(v).is_some_and(|r| r >= k)
                    || matches!(v.phase, RunPhase::Failed | RunPhase::Cancelled | RunPhase::Stopped)
            });
            if !closed {
                continue;
            }
            let at_k = halving.ranked(&results, k);
            let any_promoted =
                decisions.values().any(|d| d.rung == k && d.promoted) || new.iter().any(|d| d.rung == k && d.promoted);
            for (rank, r) in at_k.iter().enumerate() {
                if !waiting_ids.contains(&(r.run.clone(), k)) || new.iter().any(|d| d.run == r.run && d.rung == k) {
                    continue;
                }
                let cost = (rungs[k + 1] - rungs[k]) as f64 * spend.per_epoch;
                if rank == 0 && !any_promoted && !r.value.is_nan() && spend.total() + cost <= budget {
                    let why = format!(
                        "the best of rung {} ({} runs, fewer than eta {}): one goes on",
                        k + 1,
                        at_k.len(),
                        search.eta
                    );
                    new.push(decide(&r.run, k, Some(r.value), true, why, spend.total()));
                    spend.running += cost;
                    continue;
                }
                let why = format!(
                    "rank {} of the {} runs at rung {}: not among the best {} (eta {})",
                    rank + 1,
                    at_k.len(),
                    k + 1,
                    at_k.len() / search.eta,
                    search.eta
                );
                new.push(decide(&r.run, k, Some(r.value), false, why, spend.total()));
            }
        }
        // The budget spent: nothing more is promoted or started.
        if budget_spent {
            let why = format!(
                "budget reached: {:.4} rank-hours measured + {:.4} estimated for running runs of search.budget_rank_hours = {budget}",
                spend.measured, spend.running
            );
            if !self.budget_said {
                tracing::warn!("search {}: {why}; no more promotions or starts", tracker.state.manifest.name);
                self.budget_said = true;
            }
            for &(i, k) in &waiting {
                let id = &views[i].id;
                if !new.iter().any(|d| &d.run == id && d.rung == k) {
                    new.push(decide(id, k, value_of(id, k), false, why.clone(), spend.total()));
                }
            }
            for v in
                views.iter().filter(|v| v.phase == RunPhase::Pending && !decisions.contains_key(&(v.id.clone(), 0)))
            {
                new.push(decide(&v.id, 0, None, false, format!("not started: {why}"), spend.total()));
            }
        }
        if new.is_empty() {
            return Ok(new);
        }
        // Appended before acted on: only the decisions this coordinator created count.
        let items: Vec<(String, bytes::Bytes)> = new
            .iter()
            .map(|d| {
                let body = serde_json::to_vec_pretty(d).expect("a decision serialises");
                (tracker.state.paths().decision(&d.run, d.rung), body.into())
            })
            .collect();
        let won = tracker.state.store.put_new_many(items)?;
        let mut made = vec![];
        for (d, won) in new.into_iter().zip(won) {
            if !won {
                continue; // another coordinator decided first: read at the next pass
            }
            tracing::info!(run = d.run, rung = d.rung + 1, promoted = d.promoted, why = d.why, "search decision");
            if let Some(v) = views.iter_mut().find(|v| v.id == d.run) {
                if d.promoted {
                    v.phase = RunPhase::Retry;
                } else {
                    v.phase = RunPhase::Stopped;
                    v.error = Some(d.why.clone());
                }
            }
            tracker.decisions.insert((d.run.clone(), d.rung), d.clone());
            made.push(d);
        }
        Ok(made)
    }
}

/// What `ras status` and `ras report` print of a search: per rung, how many runs were
/// decided there (promoted, stopped); how many trained to the end; the spend against the
/// budget.
pub fn render_search(
    search: &Search,
    decisions: &BTreeMap<(String, usize), Decision>,
    spend: &Spend,
    complete: usize,
) -> String {
    let mut s = format!(
        "search: {}, eta {}, rungs (epochs) {:?}, selected on {} ({})\n",
        if search.method == SearchMethod::Asha { "successive halving (asha)" } else { "grid" },
        search.eta,
        search.rungs,
        search.metric,
        if search.minimize() { "lower is better" } else { "higher is better" }
    );
    if search.on_test_set {
        s = format!("{}{s}", test_set_banner(search));
    }
    for (k, epoch) in search.rungs.iter().enumerate() {
        let at_k: Vec<&Decision> = decisions.values().filter(|d| d.rung == k && d.value.is_some()).collect();
        let promoted = at_k.iter().filter(|d| d.promoted).count();
        if k + 1 < search.rungs.len() {
            s += &format!(
                "  rung {} (epoch {epoch}): {} decided: {promoted} promoted, {} stopped\n",
                k + 1,
                at_k.len(),
                at_k.len() - promoted
            );
        } else {
            s += &format!("  rung {} (epoch {epoch}, the last): {complete} trained to the end\n", k + 1);
        }
    }
    let budget = search.budget_rank_hours.map(|b| format!(" (budget {b})")).unwrap_or_default();
    s += &format!(
        "  spend: {:.4} rank-hours measured + {:.4} estimated for running runs{budget}\n",
        spend.measured, spend.running
    );
    let not_started = decisions.values().filter(|d| d.value.is_none()).count();
    if not_started > 0 {
        s += &format!("  {not_started} runs not started: the budget was reached\n");
    }
    s
}

/// `ras status`'s lines about the sweep's search (empty without `[search]`).
pub fn status_section(tracker: &Tracker, views: &[RunView]) -> String {
    let Some(search) = &tracker.state.manifest.search else { return String::new() };
    let spend = spend(views, &tracker.decisions, &search.rungs);
    let complete = views.iter().filter(|v| v.phase == RunPhase::Complete).count();
    render_search(search, &tracker.decisions, &spend, complete)
}

/// The line every table, report and page of a sweep selected on a test-set metric
/// starts with.
pub fn test_set_banner(search: &Search) -> String {
    format!(
        "WARNING: configurations of this sweep were selected on the test set (search.metric = {}): its numbers are optimistic, not a held-out result\n",
        search.metric
    )
}

/// The decision log, one line per decision in the order made.
pub fn render_decisions(decisions: &BTreeMap<(String, usize), Decision>) -> String {
    let mut all: Vec<&Decision> = decisions.values().collect();
    all.sort_by(|a, b| a.unix.cmp(&b.unix).then(a.rung.cmp(&b.rung)).then(a.run.cmp(&b.run)));
    let mut s = String::new();
    for d in all {
        let value = d.value.map(|v| format!("{v:.6}")).unwrap_or_else(|| "-".into());
        let verb = if d.promoted { "promoted" } else { "stopped" };
        s += &format!(
            "| {} | {} (epoch {}) | {} = {value} | {verb} | {} | {:.4} |\n",
            d.run,
            d.rung + 1,
            d.epoch,
            d.metric,
            d.why,
            d.spent_rank_hours
        );
    }
    if s.is_empty() {
        return s;
    }
    format!("| run | rung | metric | decision | why | rank-h spent then |\n|---|---|---|---|---|---|\n{s}")
}
