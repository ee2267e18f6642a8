//! The pages of one run and of runs compared, built like the others (`pages`) from the
//! mirror's copy: the run's logs read by the function a resumed run reads them with, its
//! curves drawn by the report's plotting code, the comparison `ras compare` prints.

use super::html::{self, esc, url_part};
use super::mirror::Mirror;
use super::pages::{chain, run_link, strip_xml_prolog, Built, PageError};
use crate::report::plot::{Curves, Header, Series};
use crate::run::cost::read_attempts;
use crate::run::{FinalMetrics, RunPaths, RunStatus};
use crate::runs::flatten;
use crate::store::Store;
use crate::sweep::Manifest;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

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
    let mut series: Vec<Series> = names
        .iter()
        .enumerate()
        .map(|(k, n)| Series { label: n.to_string(), colour: k, points: vec![], paper: false })
        .collect();
    for (epoch, classes) in &logs.by_epoch {
        let mean = crate::eval::MetricsTable::new(classes.clone()).mean;
        let v = [
            mean.image_auroc,
            mean.pixel_auroc,
            mean.aupro,
            mean.image_ap,
            mean.pixel_ap,
            mean.image_f1_max,
            mean.pixel_f1_max,
        ];
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
/// `sweep`: the manifest of the sweep that lists the run, if any (the dashboard's, parsed
/// once per version).
pub fn run(m: &mut Mirror, id: &str, sweep: Option<std::sync::Arc<Manifest>>) -> Result<Built, PageError> {
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
    if let Some(mf) = &sweep {
        let label = mf.runs.iter().find(|r| r.id == id).map(|r| r.label.clone()).unwrap_or_default();
        main += &format!(
            "<p>in sweep <a href=\"/sweep/{}\">{}</a> as <code>{}</code></p>",
            url_part(&mf.name),
            esc(&mf.name),
            esc(&label)
        );
        json["sweep"] = json!(mf.name);
        if let Some(text) = &config_text {
            let diff = differs_from_sweep(mf, text);
            let rows: Vec<Vec<String>> =
                diff.iter().map(|(k, (mine, usual))| vec![esc(k), esc(mine), esc(usual)]).collect();
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
            json["loss"] =
                json!(loss.series.iter().map(|s| json!({"model": s.label, "points": s.points})).collect::<Vec<_>>());
        }
        Err(why) => main += &html::problem(&why),
    }
    match copy.get_json::<FinalMetrics>(&paths.final_metrics()) {
        Ok(Some(fm)) => {
            main += &format!("<h2>Final metrics (epoch {})</h2>", fm.epoch);
            let mut rows: Vec<Vec<String>> = fm.metrics.classes.iter().map(|(c, m)| metric_row(c, m)).collect();
            rows.push(metric_row("mean", &fm.metrics.mean));
            main += &html::table(
                "final",
                &["class", "I-AUROC", "P-AUROC", "AUPRO", "I-AP", "P-AP", "I-F1max", "P-F1max"],
                &rows,
            );
            json["final_metrics"] = json!(fm.metrics);
        }
        Ok(None) => {}
        Err(e) => main += &html::problem(&chain(&e)),
    }
    let pictures = m.keys_under(&format!("{}/pictures/", paths.prefix()));
    if !pictures.is_empty() {
        main += &format!("<h2>Anomaly maps ({})</h2><div class=\"pictures\">", pictures.len());
        for k in pictures.iter().take(24) {
            main += &format!(
                "<img src=\"/object/{}\" alt=\"{}\" loading=\"lazy\">",
                k.split('/').map(url_part).collect::<Vec<_>>().join("/"),
                esc(k)
            );
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
            main += &html::table(
                "attempts",
                &["started", "host:pid", "outcome", "device", "ranks", "wall s", "features / train / eval s", "rank-h"],
                &rows,
            );
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
        main += &format!(
            "<h2>Job log ({}, last {} lines)</h2><pre id=\"log-tail\">{}</pre>",
            esc(latest),
            lines.len().min(40),
            esc(&tail)
        );
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
        let main = format!(
            "<h1>Compare runs</h1>{}",
            html::problem("pick two or more runs (the boxes on the home or a sweep page), then Compare")
        );
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
    main += &c
        .runs
        .iter()
        .zip(&tags)
        .map(|(r, t)| format!("<p>{t} {} ({})</p>", run_link(&r.id), esc(&r.state)))
        .collect::<String>();
    main += "<h2>Config keys that differ</h2>";
    let mut header = vec!["key"];
    header.extend(tags.iter().map(String::as_str));
    let rows: Vec<Vec<String>> =
        c.differences.iter().map(|(k, v)| std::iter::once(esc(k)).chain(v.iter().map(|x| esc(x))).collect()).collect();
    main += &html::table("diff", &header, &rows);
    main += "<h2>Final metrics (I-AUROC / P-AUROC / AUPRO)</h2>";
    let classes: BTreeSet<String> =
        c.runs.iter().filter_map(|r| r.metrics.as_ref()).flat_map(|m| m.classes.keys().cloned()).collect();
    let mut rows = vec![];
    for class in std::iter::once("mean".to_string()).chain(classes) {
        let mut row = vec![esc(&class)];
        for r in &c.runs {
            let m =
                r.metrics.as_ref().and_then(|t| if class == "mean" { Some(&t.mean) } else { t.classes.get(&class) });
            row.push(
                m.map(|m| {
                    format!("{:.1} / {:.1} / {:.1}", 100.0 * m.image_auroc, 100.0 * m.pixel_auroc, 100.0 * m.aupro)
                })
                .unwrap_or_else(|| "-".into()),
            );
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
