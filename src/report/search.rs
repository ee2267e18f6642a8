//! The search section of a sweep's report (`[search]`): what the search decided, what it
//! spent, and which configuration it selected, from the store alone.

use super::ReportError;
use crate::run::cost::{read_attempts_many, CostSummary};
use crate::run::search::{Decision, RungRecord};
use crate::run::RunPaths;
use crate::store::Store;
use crate::sweep::search::{render_decisions, render_search, Spend};
use crate::sweep::{Manifest, SweepKey, SweepPaths};
use std::collections::BTreeMap;

/// Every decision of the sweep's search, by (run, rung): one LIST and a GET each.
pub fn read_decisions(store: &Store, manifest: &Manifest) -> Result<BTreeMap<(String, usize), Decision>, ReportError> {
    let paths = SweepPaths::new(manifest.name.as_str());
    let keys: Vec<String> = store
        .list(&format!("{}/", paths.decisions()))?
        .into_iter()
        .filter(|k| matches!(SweepPaths::parse(k), Some((_, SweepKey::Decision { .. }))))
        .collect();
    let read = store.get_json_many::<Decision, _>(&keys)?;
    Ok(read.into_iter().flatten().map(|d| ((d.run.clone(), d.rung), d)).collect())
}

/// The search's section in Markdown (None for a sweep without `[search]`): the rungs,
/// the spend, the configuration selected at the last rung, and the decision log.
pub fn search_markdown(store: &Store, manifest: &Manifest) -> Result<Option<String>, ReportError> {
    let Some(search) = &manifest.search else { return Ok(None) };
    let decisions = read_decisions(store, manifest)?;
    let paths: Vec<RunPaths> = manifest.runs.iter().map(|r| RunPaths::new(r.id.as_str())).collect();
    let mut cost = CostSummary::default();
    for records in read_attempts_many(store, &paths)? {
        if !records.is_empty() {
            cost.add(&CostSummary::of(&records));
        }
    }
    // The selection metric of every run that reached the last rung.
    let last = *search.rungs.last().expect("a search has rungs");
    let keys: Vec<String> = paths.iter().map(|p| p.rung(last)).collect();
    let mut finals: Vec<(&str, &str, f64)> = manifest
        .runs
        .iter()
        .zip(store.get_json_many::<RungRecord, _>(&keys)?)
        .filter_map(|(r, rec)| Some((r.id.as_str(), r.label.as_str(), rec?.value)))
        .collect();
    finals.sort_by(|a, b| {
        let c = a.2.is_nan().cmp(&b.2.is_nan());
        c.then(if search.minimize() { a.2.total_cmp(&b.2) } else { b.2.total_cmp(&a.2) })
    });
    let spend = Spend { measured: cost.rank_hours, running: 0.0, per_epoch: 0.0 };
    let mut md = format!("## Search\n\n```\n{}```\n\n", render_search(search, &decisions, &spend, finals.len()));
    if let Some((id, label, v)) = finals.first() {
        md += &format!(
            "Selected: run {id} ({label}), {} = {v:.6} at epoch {last}, the best of the {} runs trained to the last rung.\n\n",
            search.metric,
            finals.len()
        );
    }
    let log = render_decisions(&decisions);
    if !log.is_empty() {
        md += &format!("Decisions, in the order made:\n\n{log}\n");
    }
    Ok(Some(md))
}
