//! The pages of `ras serve`, each built from the mirror's copy of the store by the
//! functions the command-line tools call (`ras status`'s tracker, `ras report`'s tables
//! and figures, `ras runs`, `ras compare`): a page is a view of what they print, never
//! a second computation of it. Each page is HTML (its `<main>`) and the same content as
//! JSON (`/api/...`).

use super::html::{self, esc, url_part};
use super::mirror::Mirror;
use crate::runs::Filter;
use crate::store::{Store, StoreError};
use crate::sweep::{Manifest, RunView, SweepPaths, Tracker};
use serde_json::json;
use std::collections::BTreeMap;

/// A page: its title, its `<main>` (HTML) and its JSON.
#[derive(Debug, Clone)]
pub struct Built {
    pub title: String,
    pub main: String,
    pub json: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// Shown as a plain 404 page.
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The error and its causes, once (the same text `ras` prints).
pub(super) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::error_text::chain(e)
}

/// Names of the sweeps whose manifest the copy holds.
pub fn sweep_names(copy: &Store) -> Result<Vec<String>, StoreError> {
    Ok(copy
        .list(SweepPaths::ROOT)?
        .iter()
        .filter_map(|k| k.strip_prefix(SweepPaths::ROOT)?.strip_suffix("/manifest.json").map(String::from))
        .filter(|n| !n.contains('/'))
        .collect())
}

/// The views `ras status` prints for a sweep (jobs polled from their records).
pub(super) fn views(copy: &Store, manifest: &Manifest) -> Result<Vec<RunView>, String> {
    let mut tracker = Tracker::new(copy, manifest).map_err(|e| chain(&e))?;
    tracker.refresh(&mut crate::launch::Records).map_err(|e| chain(&e))
}

/// A sum that is 0 (not -0, as f64's `Sum` of nothing is) when there is nothing to add.
pub(super) fn total(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, |a, b| a + b)
}

pub(super) fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{:.1}", 100.0 * v)).unwrap_or_else(|| "-".into())
}

pub(super) fn phase_name(v: &RunView) -> String {
    if v.unknown.is_some() {
        "unknown".into()
    } else {
        format!("{:?}", v.phase).to_lowercase()
    }
}

/// A checkbox to pick a run for the compare page.
pub(super) fn pick(id: &str) -> String {
    format!("<input type=\"checkbox\" name=\"run\" value=\"{}\" aria-label=\"compare {}\">", esc(id), esc(id))
}

pub(super) fn run_link(id: &str) -> String {
    format!("<a href=\"/run/{}\">{}</a>", url_part(id), esc(id))
}

/// A table of runs (first column: [`pick`] boxes) in a form that opens the compare page.
fn compare_form(header: &[&str], rows: &[Vec<String>]) -> String {
    format!(
        "<form method=\"get\" action=\"/compare\">{}<p><button type=\"submit\">Compare the runs picked</button></p></form>",
        html::table("runs", header, rows)
    )
}

// ---------------------------------------------------------------------------------------
// Home

/// Every sweep (its counts, spend, first and last change) and every run not in a sweep;
/// with filters (`ras runs --filter`), every run that matches, in a sweep or not.
pub fn home(m: &Mirror, filters: &[Filter]) -> Result<Built, PageError> {
    let copy = m.copy();
    let names = sweep_names(copy)?;
    let mut in_sweep: BTreeMap<String, String> = BTreeMap::new();
    let mut rows = vec![];
    let mut sweeps_json = vec![];
    for name in &names {
        let (started, changed) = m.modified_range(&format!("{}{name}/", SweepPaths::ROOT)).unwrap_or((0, 0));
        let link = format!("<a href=\"/sweep/{}\">{}</a>", url_part(name), esc(name));
        let manifest = match Manifest::read(copy, name) {
            Ok(Some(manifest)) => manifest,
            Ok(None) => continue,
            Err(e) => {
                let why = chain(&e);
                rows.push(vec![
                    link,
                    html::problem(&why),
                    "-".into(),
                    "-".into(),
                    html::when(started),
                    html::when(changed),
                ]);
                sweeps_json.push(json!({"name": name, "error": why}));
                continue;
            }
        };
        for r in &manifest.runs {
            in_sweep.insert(r.id.clone(), name.clone());
        }
        let (counts, rank_h, gpu_h) = match views(copy, &manifest) {
            Ok(v) => {
                let rank = total(v.iter().filter_map(|v| v.cost.as_ref()).map(|c| c.rank_hours));
                let gpu = total(v.iter().filter_map(|v| v.cost.as_ref()).map(|c| c.gpu_hours));
                (crate::sweep::status::phase_counts(&v, ""), rank, gpu)
            }
            Err(why) => (why, 0.0, 0.0),
        };
        rows.push(vec![
            link,
            esc(&counts),
            format!("{rank_h:.4}"),
            format!("{gpu_h:.4}"),
            html::when(started),
            html::when(changed),
        ]);
        sweeps_json.push(json!({"name": name, "state": counts, "rank_hours": rank_h, "gpu_hours": gpu_h,
            "started_unix": started, "last_change_unix": changed}));
    }
    // A record that does not read (a torn status) is said on the page, not a failed page.
    let (runs, runs_problem) = match crate::runs::list_runs(copy, filters) {
        Ok(r) => (r, None),
        Err(e) => (vec![], Some(chain(&e))),
    };
    let shown: Vec<_> = runs.iter().filter(|r| !filters.is_empty() || !in_sweep.contains_key(&r.id)).collect();
    let mut main = "<h1>Sweeps and runs</h1>".to_string();
    if names.is_empty() && runs.is_empty() && filters.is_empty() {
        main += &html::problem(&format!(
            "store {} holds no sweep and no run yet. Start one: `ras sweep jobs/quickstart.toml --cluster cluster/local.toml --store {}` (or `ras train CONFIG`); this page shows it as soon as it is written.",
            copy.url(),
            copy.url()
        ));
    }
    main += &format!("<h2>Sweeps ({})</h2>", names.len());
    main += &html::table("sweeps", &["sweep", "state", "rank-h", "GPU-h", "started", "last change"], &rows);
    let filter_text: Vec<String> = filters.iter().map(|f| format!("{}={}", f.key, f.value)).collect();
    main += &format!(
        "<h2>{}</h2><form class=\"filter\" method=\"get\" action=\"/\"><label>filter (like <code>ras runs --filter</code>, space-separated KEY=VALUE): \
         <input type=\"text\" name=\"filter\" value=\"{}\" placeholder=\"state=complete decoder=ras\"></label> <button type=\"submit\">Filter</button></form>",
        if filters.is_empty() { format!("Runs not in a sweep ({})", shown.len()) } else { format!("Runs matching the filter ({})", shown.len()) },
        esc(&filter_text.join(" "))
    );
    let run_rows: Vec<Vec<String>> = shown
        .iter()
        .map(|r| {
            vec![
                pick(&r.id),
                run_link(&r.id),
                in_sweep
                    .get(&r.id)
                    .map(|s| format!("<a href=\"/sweep/{}\">{}</a>", url_part(s), esc(s)))
                    .unwrap_or_default(),
                format!("<span class=\"phase-{0}\">{0}</span>", esc(&r.state)),
                r.epoch.map(|e| e.to_string()).unwrap_or_else(|| "-".into()),
                esc(&r.values.values().cloned().collect::<Vec<_>>().join(" ")),
                pct(r.mean_image_auroc),
                pct(r.mean_pixel_auroc),
                r.rank_hours.map(|h| format!("{h:.4}")).unwrap_or_else(|| "-".into()),
                esc(&r.backbone),
            ]
        })
        .collect();
    if let Some(why) = &runs_problem {
        main += &html::problem(&format!("cannot list the runs: {why}"));
    }
    main += &compare_form(
        &["", "run", "sweep", "state", "epoch", "config", "I-AUROC", "P-AUROC", "rank-h", "backbone"],
        &run_rows,
    );
    let json = json!({"store": copy.url(), "sweeps": sweeps_json, "runs": shown, "filters": filter_text});
    Ok(Built { title: "sweeps and runs".into(), main, json })
}

// ---------------------------------------------------------------------------------------
// Sweep

/// A sweep: state line, the paper's layout as `ras report` computes it, caveats, cost
/// against the plan, figures, and every run.
pub fn sweep(
    m: &Mirror,
    name: &str,
    manifest: Option<Result<std::sync::Arc<Manifest>, String>>,
) -> Result<Built, PageError> {
    let copy = m.copy();
    let manifest = match manifest {
        Some(Ok(manifest)) => manifest,
        None => {
            return Err(PageError::NotFound(format!(
                "no sweep {name} in store {}: the home page lists the sweeps it holds",
                copy.url()
            )))
        }
        Some(Err(why)) => {
            let main = format!("<h1>Sweep {}</h1>{}", esc(name), html::problem(&why));
            return Ok(Built { title: format!("sweep {name}"), main, json: json!({"sweep": name, "error": why}) });
        }
    };
    let mut main = format!("<h1>Sweep {}</h1>", esc(name));
    let mut json = json!({"sweep": name, "store": copy.url()});
    let views = match views(copy, &manifest) {
        Ok(v) => v,
        Err(why) => {
            main += &html::problem(&why);
            vec![]
        }
    };
    let state = crate::sweep::status::phase_counts(&views, "");
    let retried = views.iter().filter(|v| v.attempts > 1 + v.promotions).count();
    main += &format!("<p class=\"state\" id=\"state-line\">{}; {retried} retried</p>", esc(&state));
    let running: Vec<String> = views
        .iter()
        .filter(|v| v.phase == crate::sweep::RunPhase::Active)
        .map(|v| format!("{} epoch {}/{}", run_link(&v.id), v.epoch, v.epochs))
        .collect();
    if !running.is_empty() {
        main += &format!("<p>running: {}</p>", running.join(", "));
    }
    json["state"] = json!(state);
    json["retried"] = json!(retried);
    json["runs"] = json!(views);
    // A search: its rungs, spend, selection and decision log, as `ras report` writes them.
    match crate::report::search::search_markdown(copy, &manifest) {
        Ok(Some(md)) => main += &format!("<section id=\"search\">{}</section>", html::markdown(&md)),
        Ok(None) => {}
        Err(e) => main += &html::problem(&chain(&e)),
    }
    main += "<h2>The paper's layout</h2>";
    match crate::report::sweep_report(copy, &manifest) {
        Ok(rep) => {
            if !rep.caveats.is_empty() {
                main += &format!(
                    "<div class=\"caveats\">{}</div>",
                    html::markdown(&crate::report::layout::caveat_block(&rep.caveats, "> "))
                );
            }
            main += "<p>Cells: ours (mean ± std over seeds when several) (paper, ours − paper), in percent, as <code>ras report</code> writes them; green within 1 point of the paper, amber within 3, red further; grey: no paper row.</p>";
            main += &format!(
                "<section id=\"paper-layout\">{}</section>",
                rep.grids.iter().map(html::grid).collect::<String>()
            );
            if !rep.recipes.is_empty() {
                main += &format!("<p>Training recipe: {}</p>", esc(&rep.recipes.join("; ")));
            }
            let figures = crate::report::figures(&rep.plots, name, &rep.caveats);
            if !figures.is_empty() {
                main += "<h2>Figures</h2>";
                for f in &figures {
                    match f.render_svg() {
                        Ok(svg) => {
                            main += &format!("<figure id=\"fig-{}\">{}</figure>", esc(&f.base), strip_xml_prolog(&svg))
                        }
                        Err(e) => main += &html::problem(&format!("figure {}: {e}", f.base)),
                    }
                }
            }
            json["caveats"] = json!(rep.caveats);
            json["grids"] = json!(rep
                .grids
                .iter()
                .map(|g| json!({"title": g.title, "header": g.header, "rows": g.rows}))
                .collect::<Vec<_>>());
            json["recipes"] = json!(rep.recipes);
            json["figures"] = json!(figures.iter().map(|f| f.base.clone()).collect::<Vec<_>>());
        }
        Err(crate::report::ReportError::NoCompleteRun { .. }) => {
            main += "<p id=\"no-complete-run\">No run is complete yet: the tables fill in here as runs complete.</p>";
        }
        Err(e) => main += &html::problem(&chain(&e)),
    }
    main += "<h2>Cost so far</h2>";
    let planned = total(manifest.runs.iter().filter_map(|r| r.estimate.as_ref()).map(|e| e.rank_hours));
    let spent = total(views.iter().filter_map(|v| v.cost.as_ref()).map(|c| c.rank_hours));
    main += &format!("<p id=\"cost-line\">{spent:.4} rank-h measured of {planned:.4} rank-h planned (the plan stored with the sweep)</p>");
    json["rank_hours"] = json!(spent);
    json["planned_rank_hours"] = json!(planned);
    match crate::report::cost::cost_markdown_of_stored(copy, &manifest) {
        Ok(Some(md)) => main += &html::markdown(&md),
        Ok(None) => main += "<p>No attempt has ended yet.</p>",
        Err(e) => main += &html::problem(&chain(&e)),
    }
    main += &format!("<h2>Runs ({})</h2>", views.len());
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            vec![
                pick(&v.id),
                run_link(&v.id),
                esc(&v.label),
                format!("<span class=\"phase-{0}\">{0}</span>", esc(&phase_name(v))),
                format!("{}/{}", v.epoch, v.epochs),
                v.attempts.to_string(),
                pct(v.mean_iauroc),
                pct(v.mean_pauroc),
                v.cost.as_ref().map(|c| format!("{:.4}", c.rank_hours)).unwrap_or_else(|| "-".into()),
                esc(v.error.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    main += &compare_form(
        &["", "run", "label", "state", "epoch", "attempts", "I-AUROC", "P-AUROC", "rank-h", "error"],
        &rows,
    );
    Ok(Built { title: format!("sweep {name}"), main, json })
}

/// An SVG document without its XML prolog and comments (they are not allowed inline).
pub(super) fn strip_xml_prolog(svg: &str) -> &str {
    svg.find("<svg").map(|i| &svg[i..]).unwrap_or(svg)
}
