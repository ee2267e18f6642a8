//! The pages of `ras serve`, each built from the mirror's copy of the store by the
//! functions the command-line tools call (`ras status`'s tracker, `ras report`'s tables
//! and figures, `ras runs`, `ras compare`): a page is a view of what they print, never
//! a second computation of it. Each page is HTML (its `<main>`) and the same content as
//! JSON (`/api/...`).

use super::html::{self, esc, url_part};
use super::mirror::Mirror;
use crate::report::plot::{Curves, Header, Series};
use crate::run::cost::read_attempts;
use crate::run::{FinalMetrics, RunPaths, RunStatus};
use crate::runs::{flatten, Filter};
use crate::store::{Store, StoreError};
use crate::sweep::{Manifest, RunView, SweepPaths, Tracker};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

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
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
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
fn views(copy: &Store, manifest: &Manifest) -> Result<Vec<RunView>, String> {
    let mut tracker = Tracker::new(copy, manifest).map_err(|e| chain(&e))?;
    tracker.refresh(&mut crate::launch::Records).map_err(|e| chain(&e))
}

/// A sum that is 0 (not -0, as f64's `Sum` of nothing is) when there is nothing to add.
fn total(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, |a, b| a + b)
}

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{:.1}", 100.0 * v)).unwrap_or_else(|| "-".into())
}

fn phase_name(v: &RunView) -> String {
    if v.unknown.is_some() {
        "unknown".into()
    } else {
        format!("{:?}", v.phase).to_lowercase()
    }
}

/// A checkbox to pick a run for the compare page.
fn pick(id: &str) -> String {
    format!("<input type=\"checkbox\" name=\"run\" value=\"{}\" aria-label=\"compare {}\">", esc(id), esc(id))
}

fn run_link(id: &str) -> String {
    format!("<a href=\"/run/{}\">{}</a>", url_part(id), esc(id))
}

const COMPARE_BUTTON: &str = "<p><button type=\"submit\">Compare the runs picked</button></p>";

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
                rows.push(vec![link, html::problem(&why), "-".into(), "-".into(), html::when(started), html::when(changed)]);
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
                in_sweep.get(&r.id).map(|s| format!("<a href=\"/sweep/{}\">{}</a>", url_part(s), esc(s))).unwrap_or_default(),
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
    main += "<form method=\"get\" action=\"/compare\">";
    main += &html::table(
        "runs",
        &["", "run", "sweep", "state", "epoch", "config", "I-AUROC", "P-AUROC", "rank-h", "backbone"],
        &run_rows,
    );
    main += COMPARE_BUTTON;
    main += "</form>";
    let json = json!({"store": copy.url(), "sweeps": sweeps_json, "runs": shown, "filters": filter_text});
    Ok(Built { title: "sweeps and runs".into(), main, json })
}

// ---------------------------------------------------------------------------------------
// Sweep

/// A sweep: state line, the paper's layout as `ras report` computes it, caveats, cost
/// against the plan, figures, and every run.
pub fn sweep(m: &Mirror, name: &str, manifest: Option<Result<std::sync::Arc<Manifest>, String>>) -> Result<Built, PageError> {
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
    let retried = views.iter().filter(|v| v.attempts > 1).count();
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
    main += "<h2>The paper's layout</h2>";
    match crate::report::sweep_report(copy, &manifest) {
        Ok(rep) => {
            if !rep.caveats.is_empty() {
                main += &format!("<div class=\"caveats\">{}</div>", html::markdown(&crate::report::layout::caveat_block(&rep.caveats, "> ")));
            }
            main += "<p>Cells: ours (mean ± std over seeds when several) (paper, ours − paper), in percent, as <code>ras report</code> writes them; green within 1 point of the paper, amber within 3, red further; grey: no paper row.</p>";
            main += &format!("<section id=\"paper-layout\">{}</section>", rep.grids.iter().map(html::grid).collect::<String>());
            if !rep.recipes.is_empty() {
                main += &format!("<p>Training recipe: {}</p>", esc(&rep.recipes.join("; ")));
            }
            let figures = crate::report::figures(&rep.plots, name, &rep.caveats);
            if !figures.is_empty() {
                main += "<h2>Figures</h2>";
                for f in &figures {
                    match f.render_svg() {
                        Ok(svg) => main += &format!("<figure id=\"fig-{}\">{}</figure>", esc(&f.base), strip_xml_prolog(&svg)),
                        Err(e) => main += &html::problem(&format!("figure {}: {e}", f.base)),
                    }
                }
            }
            json["caveats"] = json!(rep.caveats);
            json["grids"] = json!(rep.grids.iter().map(|g| json!({"title": g.title, "header": g.header, "rows": g.rows})).collect::<Vec<_>>());
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
    main += &format!("<h2>Runs ({})</h2><form method=\"get\" action=\"/compare\">", views.len());
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
    main += &html::table(
        "runs",
        &["", "run", "label", "state", "epoch", "attempts", "I-AUROC", "P-AUROC", "rank-h", "error"],
        &rows,
    );
    main += COMPARE_BUTTON;
    main += "</form>";
    Ok(Built { title: format!("sweep {name}"), main, json })
}

/// An SVG document without its XML prolog and comments (they are not allowed inline).
fn strip_xml_prolog(svg: &str) -> &str {
    svg.find("<svg").map(|i| &svg[i..]).unwrap_or(svg)
}

// ---------------------------------------------------------------------------------------
// Run

/// `runs/<id>/...` keys of the run (a run with none is not in the store).
fn run_known(m: &Mirror, id: &str) -> bool {
    !m.keys_under(&format!("{}/", RunPaths::new(id).prefix())).is_empty()
}

/// Training loss (a line per model) and every evaluated metric (mean over classes, in
/// percent) against epoch, from the run's logs.
fn run_curves(copy: &Store, paths: &RunPaths) -> Result<(Curves, Curves), String> {
    let logs = crate::run::records::RunLogs::load(copy, paths).map_err(|e| chain(&e))?;
    let mut by_model: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for v in &logs.train_log {
        if let (Some(e), Some(l)) = (v["epoch"].as_f64(), v["loss"].as_f64()) {
            by_model.entry(v["model"].as_str().unwrap_or("model").to_string()).or_default().push((e, l));
        }
    }
    let loss = Curves {
        header: Header { title: format!("training loss of {}", paths.id()), caveats: vec![] },
        x_label: "epoch".into(),
        y_label: "loss".into(),
        series: by_model
            .into_iter()
            .enumerate()
            .map(|(k, (model, points))| Series { label: model, colour: k, points, paper: false })
            .collect(),
    };
    let names = ["I-AUROC", "P-AUROC", "AUPRO", "I-AP", "P-AP", "I-F1max", "P-F1max"];
    let mut series: Vec<Series> =
        names.iter().enumerate().map(|(k, n)| Series { label: n.to_string(), colour: k, points: vec![], paper: false }).collect();
    for (epoch, classes) in &logs.by_epoch {
        let mean = crate::eval::MetricsTable::new(classes.clone()).mean;
        let v = [mean.image_auroc, mean.pixel_auroc, mean.aupro, mean.image_ap, mean.pixel_ap, mean.image_f1_max, mean.pixel_f1_max];
        for (s, x) in series.iter_mut().zip(v) {
            s.points.push((*epoch as f64, 100.0 * x));
        }
    }
    let metrics = Curves {
        header: Header { title: format!("metrics of {} (mean over classes)", paths.id()), caveats: vec![] },
        x_label: "epoch".into(),
        y_label: "%".into(),
        series,
    };
    Ok((loss, metrics))
}

fn chart(id: &str, c: &Curves, empty: &str) -> String {
    if c.series.iter().all(|s| s.points.is_empty()) {
        return format!("<p id=\"{id}\" class=\"empty\">{}</p>", esc(empty));
    }
    match c.render_svg() {
        Ok(svg) => format!("<figure id=\"{id}\">{}</figure>", strip_xml_prolog(&svg)),
        Err(e) => html::problem(&format!("chart {id}: {e}")),
    }
}

/// A run: status and attempts, config and how it differs from its sweep's other runs,
/// loss and metric charts, per-class final metrics, pictures, job log tail, cost records.
pub fn run(m: &mut Mirror, id: &str) -> Result<Built, PageError> {
    if !run_known(m, id) {
        return Err(PageError::NotFound(format!("no run {id} in store {}", m.real().url())));
    }
    let paths = RunPaths::new(id);
    let copy = m.copy().clone();
    let mut main = format!("<h1>Run {}</h1>", esc(id));
    let mut json = json!({"run": id, "store": copy.url()});
    match copy.get_json::<RunStatus>(&paths.status()) {
        Ok(Some(s)) => {
            main += &format!(
                "<p class=\"state\" id=\"run-state\"><span class=\"phase-{0}\">{0}</span> at epoch {1}, updated {2}{3}</p>",
                esc(&format!("{:?}", s.state).to_lowercase()),
                s.epoch,
                html::when(s.updated_unix as i64),
                s.error.as_deref().map(|e| format!(": {}", esc(e))).unwrap_or_default()
            );
            json["status"] = json!(s);
        }
        Ok(None) => main += "<p class=\"state\" id=\"run-state\">no status yet (not started)</p>",
        Err(e) => main += &html::problem(&chain(&e)),
    }
    // Its sweep, and the keys where it differs from the sweep's most common values.
    let config_text = copy.get(&paths.config())?.map(|b| String::from_utf8_lossy(&b).into_owned());
    let sweep = sweep_names(&copy)?
        .into_iter()
        .find_map(|n| Manifest::read(&copy, &n).ok().flatten().filter(|mf| mf.runs.iter().any(|r| r.id == id)));
    if let Some(mf) = &sweep {
        let label = mf.runs.iter().find(|r| r.id == id).map(|r| r.label.clone()).unwrap_or_default();
        main += &format!("<p>in sweep <a href=\"/sweep/{}\">{}</a> as <code>{}</code></p>", url_part(&mf.name), esc(&mf.name), esc(&label));
        json["sweep"] = json!(mf.name);
        if let Some(text) = &config_text {
            let diff = differs_from_sweep(mf, text);
            let rows: Vec<Vec<String>> = diff.iter().map(|(k, (mine, usual))| vec![esc(k), esc(mine), esc(usual)]).collect();
            main += "<h2>Config: where it differs from the sweep's other runs</h2>";
            main += &html::table("diff", &["key", "this run", "most runs of the sweep"], &rows);
            json["config_differences"] = json!(diff);
        }
    }
    main += "<h2>Training and evaluation</h2>";
    match run_curves(&copy, &paths) {
        Ok((loss, metrics)) => {
            main += &chart("loss-chart", &loss, "no epoch logged yet");
            main += &chart("metrics-chart", &metrics, "no evaluation logged yet");
            json["loss"] = json!(loss.series.iter().map(|s| json!({"model": s.label, "points": s.points})).collect::<Vec<_>>());
        }
        Err(why) => main += &html::problem(&why),
    }
    match copy.get_json::<FinalMetrics>(&paths.final_metrics()) {
        Ok(Some(fm)) => {
            main += &format!("<h2>Final metrics (epoch {})</h2>", fm.epoch);
            let mut rows: Vec<Vec<String>> = fm.metrics.classes.iter().map(|(c, m)| metric_row(c, m)).collect();
            rows.push(metric_row("mean", &fm.metrics.mean));
            main += &html::table("final", &["class", "I-AUROC", "P-AUROC", "AUPRO", "I-AP", "P-AP", "I-F1max", "P-F1max"], &rows);
            json["final_metrics"] = json!(fm.metrics);
        }
        Ok(None) => {}
        Err(e) => main += &html::problem(&chain(&e)),
    }
    let pictures = m.keys_under(&format!("{}/pictures/", paths.prefix()));
    if !pictures.is_empty() {
        main += &format!("<h2>Anomaly maps ({})</h2><div class=\"pictures\">", pictures.len());
        for k in pictures.iter().take(24) {
            main += &format!("<img src=\"/object/{}\" alt=\"{}\" loading=\"lazy\">", k.split('/').map(url_part).collect::<Vec<_>>().join("/"), esc(k));
        }
        main += "</div>";
        json["pictures"] = json!(pictures);
    }
    match read_attempts(&copy, &paths) {
        Ok(records) if !records.is_empty() => {
            main += "<h2>Attempts and their cost</h2>";
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    vec![
                        html::when(r.started_unix as i64),
                        esc(&format!("{}:{}", r.host, r.pid)),
                        esc(&format!("{:?}", r.outcome).to_lowercase()),
                        esc(&r.device),
                        r.ranks.to_string(),
                        format!("{:.1}", r.wall_s),
                        format!("{:.1} / {:.1} / {:.1}", r.phases.features_s, r.phases.train_s, r.phases.eval_s),
                        format!("{:.4}", r.rank_hours),
                    ]
                })
                .collect();
            main += &html::table("attempts", &["started", "host:pid", "outcome", "device", "ranks", "wall s", "features / train / eval s", "rank-h"], &rows);
            json["attempts"] = json!(records);
        }
        Ok(_) => {}
        Err(e) => main += &html::problem(&chain(&e)),
    }
    let logs = m.keys_under(&format!("{}/logs/", paths.prefix()));
    if let Some(latest) = logs.iter().max_by_key(|k| m.modified_range(k).map(|r| r.1).unwrap_or(0)) {
        let text = m.read_on_demand(latest)?.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        main += &format!("<h2>Job log ({}, last {} lines)</h2><pre id=\"log-tail\">{}</pre>", esc(latest), lines.len().min(40), esc(&tail));
    }
    if let Some(text) = &config_text {
        main += &format!("<h2>Resolved config</h2><pre>{}</pre>", esc(text));
        json["config"] = json!(text);
    }
    Ok(Built { title: format!("run {id}"), main, json })
}

fn metric_row(class: &str, m: &crate::eval::ClassMetrics) -> Vec<String> {
    let mut row = vec![esc(class)];
    for v in [m.image_auroc, m.pixel_auroc, m.aupro, m.image_ap, m.pixel_ap, m.image_f1_max, m.pixel_f1_max] {
        row.push(format!("{:.1}", 100.0 * v));
    }
    row
}

/// Keys whose value in `config` differs from the value most runs of the sweep have:
/// key -> (this run's, the usual).
fn differs_from_sweep(mf: &Manifest, config: &str) -> BTreeMap<String, (String, String)> {
    let flat = |t: &str| toml::from_str::<toml::Value>(t).map(|v| flatten(&v)).unwrap_or_default();
    let mine = flat(config);
    let all: Vec<BTreeMap<String, String>> = mf.runs.iter().map(|r| flat(&r.config_toml)).collect();
    let keys: BTreeSet<&String> = all.iter().flat_map(|c| c.keys()).chain(mine.keys()).collect();
    let mut out = BTreeMap::new();
    for k in keys {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for c in &all {
            *counts.entry(c.get(k).map(String::as_str).unwrap_or("-")).or_default() += 1;
        }
        let usual = counts.iter().max_by_key(|(_, n)| **n).map(|(v, _)| v.to_string()).unwrap_or_default();
        let value = mine.get(k).cloned().unwrap_or_else(|| "-".into());
        if value != usual {
            out.insert(k.clone(), (value, usual));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Compare

/// Runs side by side (`ras compare`): the config keys that differ, the final metrics,
/// and their loss and mean I-AUROC curves on one chart each.
pub fn compare(m: &Mirror, ids: &[String]) -> Result<Built, PageError> {
    if ids.len() < 2 {
        let main = format!("<h1>Compare runs</h1>{}", html::problem("pick two or more runs (the boxes on the home or a sweep page), then Compare"));
        return Ok(Built { title: "compare".into(), main, json: json!({"error": "pick two or more runs"}) });
    }
    for id in ids {
        if !run_known(m, id) {
            return Err(PageError::NotFound(format!("no run {id} in store {}", m.real().url())));
        }
    }
    let copy = m.copy();
    let c = crate::runs::compare(copy, ids).map_err(|e| match e {
        crate::runs::RunsError::Store(s) => PageError::Store(s),
        other => PageError::NotFound(chain(&other)),
    })?;
    let mut main = "<h1>Compare runs</h1>".to_string();
    let tags: Vec<String> = (1..=ids.len()).map(|i| format!("[{i}]")).collect();
    main += &c.runs.iter().zip(&tags).map(|(r, t)| format!("<p>{t} {} ({})</p>", run_link(&r.id), esc(&r.state))).collect::<String>();
    main += "<h2>Config keys that differ</h2>";
    let mut header = vec!["key"];
    header.extend(tags.iter().map(String::as_str));
    let rows: Vec<Vec<String>> = c.differences.iter().map(|(k, v)| std::iter::once(esc(k)).chain(v.iter().map(|x| esc(x))).collect()).collect();
    main += &html::table("diff", &header, &rows);
    main += "<h2>Final metrics (I-AUROC / P-AUROC / AUPRO)</h2>";
    let classes: BTreeSet<String> = c.runs.iter().filter_map(|r| r.metrics.as_ref()).flat_map(|m| m.classes.keys().cloned()).collect();
    let mut rows = vec![];
    for class in std::iter::once("mean".to_string()).chain(classes) {
        let mut row = vec![esc(&class)];
        for r in &c.runs {
            let m = r.metrics.as_ref().and_then(|t| if class == "mean" { Some(&t.mean) } else { t.classes.get(&class) });
            row.push(m.map(|m| format!("{:.1} / {:.1} / {:.1}", 100.0 * m.image_auroc, 100.0 * m.pixel_auroc, 100.0 * m.aupro)).unwrap_or_else(|| "-".into()));
        }
        rows.push(row);
    }
    let mut header = vec!["class"];
    header.extend(tags.iter().map(String::as_str));
    main += &html::table("compare", &header, &rows);
    let mut loss = vec![];
    let mut iauroc = vec![];
    for (k, (id, tag)) in ids.iter().zip(&tags).enumerate() {
        if let Ok((l, metrics)) = run_curves(copy, &RunPaths::new(id.as_str())) {
            for s in l.series {
                loss.push(Series { label: format!("{tag} {}", s.label), colour: k, points: s.points, paper: false });
            }
            if let Some(s) = metrics.series.into_iter().next() {
                iauroc.push(Series { label: format!("{tag} I-AUROC"), colour: k, points: s.points, paper: false });
            }
        }
    }
    main += "<h2>Curves</h2>";
    let curves = |title: &str, y: &str, series: Vec<Series>| Curves {
        header: Header { title: title.into(), caveats: vec![] },
        x_label: "epoch".into(),
        y_label: y.into(),
        series,
    };
    main += &chart("compare-loss", &curves("training loss", "loss", loss), "no epoch logged yet");
    main += &chart("compare-iauroc", &curves("mean I-AUROC", "%", iauroc), "no evaluation logged yet");
    Ok(Built { title: "compare".into(), main, json: json!(c) })
}
