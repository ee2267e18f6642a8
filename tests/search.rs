//! Successive halving end to end (issue 21), with the local launcher on the synthetic
//! dataset: real `ras sweep` coordinators, real workers that pause at rungs and resume.
//! - a search pauses every run at the first rung, promotes the best third (checked here
//!   against the runs' own rung records, not the coordinator's arithmetic), stops the
//!   rest there, and the promoted run ends bit-identical to the same configuration of a
//!   grid trained straight through; every run of both sweeps held out the same images;
//!   each decision was written before the promoted attempt was claimed;
//! - two coordinators started together, one killed with -9 mid-search, then a third:
//!   one decision per run and rung, never rewritten, no attempt launched twice; runs of 2
//!   MPI ranks; a test-set metric is flagged at the top of the report and of `ras status`;
//! - a spent budget stops promotions and starts, and `ras status` says so.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

// The searches share the machine's two cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// A sweep over three encoder depths (2 epochs) with `[search]` rungs [1, 2], eta 3;
/// `top` goes before the grid (sweep keys), `search` into `[search]`.
fn search_sweep(dir: &Path, name: &str, method: &str, top: &str, search: &str) -> PathBuf {
    small_sweep(
        dir,
        name,
        &format!(
            "{top}\n[grid]\n\"model.encoder_layers\" = [0, 1, 2]\n[search]\nmethod = \"{method}\"\nrungs = [1, 2]\neta = 3\n{search}\n"
        ),
    )
}

fn read(path: &Path) -> serde_json::Value {
    json(path)
}

/// run id -> variant of a sweep's manifest.
fn variants(store: &Path, sweep: &str) -> Vec<(String, String)> {
    let m = manifest(store, sweep);
    m["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r["variant"].as_str().unwrap().to_string()))
        .collect()
}

/// The decision files of a sweep: name -> parsed.
fn decisions(store: &Path, sweep: &str) -> Vec<(String, serde_json::Value)> {
    let dir = store.join(format!("sweeps/{sweep}/search"));
    files(&dir).into_iter().map(|f| (f.clone(), read(&dir.join(&f)))).collect()
}

#[test]
fn a_search_promotes_the_best_third_and_its_winner_equals_the_straight_run() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    dataset_at(cwd, "out/demo-data");
    let local = repo().join("cluster/local.toml");
    let local = local.to_str().unwrap();
    let store = cwd.join("ras-store");
    let asha = search_sweep(cwd, "asha", "asha", "", "");
    let grid = search_sweep(cwd, "grid", "grid", "", "");
    // (One intra-op thread per job: the two sweeps' runs are compared bit for bit, see
    // common::one_intra_op_thread.)
    let sweep = |file: &Path| {
        let out = one_intra_op_thread(&mut sweep_cmd(cwd, &["sweep", file.to_str().unwrap(), "--cluster", local]))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = sweep(&asha);
    assert!(out.contains("3 runs: 1 complete") && out.contains("2 stopped by the search"), "{out}");
    sweep(&grid);

    // The rung-1 records, and the decisions made on them.
    let runs = variants(&store, "asha");
    let at_rung1: Vec<(String, f64)> = runs
        .iter()
        .map(|(id, _)| (id.clone(), read(&store.join(format!("runs/{id}/rungs/1.json")))["value"].as_f64().unwrap()))
        .collect();
    let best = at_rung1.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0.clone();
    let ds = decisions(&store, "asha");
    assert_eq!(ds.len(), 3, "one decision per run at rung 1 (none at the last rung): {ds:?}");
    for (name, d) in &ds {
        let id = d["run"].as_str().unwrap();
        assert_eq!(name, &format!("{id}.0.json"));
        assert_eq!(d["promoted"].as_bool().unwrap(), id == best, "only the lowest held-out loss goes on: {d}");
        let recorded = at_rung1.iter().find(|(r, _)| r == id).unwrap().1;
        assert_eq!(d["value"].as_f64().unwrap(), recorded, "the decision carries the run's own record");
    }
    // Stopped runs trained one epoch and stay paused there; the winner went on.
    for (id, _) in &runs {
        let st = status(&store, id);
        let ckpts = files(&store.join(format!("runs/{id}/checkpoints/unified")));
        let log = std::fs::read_to_string(store.join(format!("runs/{id}/train_log.jsonl"))).unwrap();
        if *id == best {
            assert_eq!(st["state"], "complete");
            assert!(store.join(format!("runs/{id}/rungs/2.json")).exists());
            assert_eq!(log.lines().count(), 2);
        } else {
            assert_eq!((st["state"].as_str(), st["epoch"].as_u64()), (Some("paused"), Some(1)), "{id}");
            assert!(ckpts.iter().all(|c| c.starts_with("epoch_0001")), "{id} trained past its rung: {ckpts:?}");
            assert_eq!(log.lines().count(), 1, "{id}");
        }
    }
    // Appended before acted on: the decision exists before the promoted attempt's claim.
    let mtime = |p: PathBuf| std::fs::metadata(&p).unwrap().modified().unwrap();
    let decided = mtime(store.join(format!("sweeps/asha/search/{best}.0.json")));
    let claimed = mtime(store.join(format!("sweeps/asha/claims/{best}.1")));
    assert!(decided <= claimed, "the promotion was acted on before it was recorded");

    // The winner against the same configuration trained straight through by the grid.
    let variant = &runs.iter().find(|(id, _)| *id == best).unwrap().1;
    let straight = variants(&store, "grid").into_iter().find(|(_, v)| v == variant).unwrap().0;
    let fm = |id: &str| read(&store.join(format!("runs/{id}/final_metrics.json")))["metrics"].clone();
    assert_eq!(fm(&best), fm(&straight), "paused and resumed must equal straight through, bit for bit");
    let losses = |id: &str| {
        std::fs::read_to_string(store.join(format!("runs/{id}/train_log.jsonl")))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&best), losses(&straight));
    // Every run of both sweeps held out the same images, and trained on the rest.
    let held: Vec<serde_json::Value> = runs
        .iter()
        .chain(variants(&store, "grid").iter())
        .map(|(id, _)| read(&store.join(format!("runs/{id}/holdout.json")))["held_out"].clone())
        .collect();
    assert!(held.iter().all(|h| *h == held[0]), "{held:?}");
    assert_eq!(held[0].as_object().unwrap().len(), 2, "a share of each class");
    assert!(held[0].as_object().unwrap().values().all(|v| v.as_array().unwrap().len() == 1), "10 % of 8, rounded: 1");

    // What a person reads.
    let st = String::from_utf8_lossy(&run_ok(cwd, &["status", asha.to_str().unwrap(), "--cluster", local]).stdout)
        .into_owned();
    assert!(st.contains("rung 1 (epoch 1): 3 decided: 1 promoted, 2 stopped"), "{st}");
    assert!(st.contains("rung 2 (epoch 2, the last): 1 trained to the end"), "{st}");
    let out_dir = cwd.join("report");
    let rep = String::from_utf8_lossy(
        &run_ok(cwd, &["report", asha.to_str().unwrap(), "--cluster", local, "--out", out_dir.to_str().unwrap()])
            .stdout,
    )
    .into_owned();
    assert!(rep.contains("## Search") && rep.contains(&format!("Selected: run {best}")), "{rep}");
    assert_eq!(rep.matches("| promoted |").count(), 1, "{rep}");
    assert_eq!(rep.matches("| stopped |").count(), 2, "{rep}");
    assert!(!rep.contains("selected on the test set"), "held-out loss is no test-set selection");

    // The sweep's page in `ras serve`: the same section, read from its copy of the store
    // (decisions, cost indexes, and the winner's rung record fetched when it completed).
    let served = Served::start(cwd, &["--store", store.to_str().unwrap()], &[], &cwd.join("serve.log"));
    let page = common::http::request("GET", &format!("{}/sweep/asha", served.url), &[], b"");
    let html = String::from_utf8_lossy(&page.body).into_owned();
    let section = html.split("<section id=\"search\">").nth(1).unwrap_or_else(|| panic!("no search section: {html}"));
    let section = section.split("</section>").next().unwrap();
    assert!(section.contains(&format!("Selected: run {best}")), "{section}");
    assert!(
        section.contains("<pre>") && section.contains("rung 1 (epoch 1): 3 decided: 1 promoted, 2 stopped"),
        "{section}"
    );
    assert_eq!(section.matches("<td>promoted</td>").count(), 1, "{section}");
    assert_eq!(section.matches("<td>stopped</td>").count(), 2, "{section}");
}

#[test]
fn racing_and_killed_coordinators_decide_each_rung_once() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    dataset_at(cwd, "out/demo-data");
    let local = repo().join("cluster/local.toml");
    let store = cwd.join("ras-store");
    // Two MPI ranks per run; selected on a test-set metric.
    let sweep = search_sweep(cwd, "race", "asha", "ranks = 2", "metric = \"image_auroc\"");
    let args = ["sweep", sweep.to_str().unwrap(), "--cluster", local.to_str().unwrap()];
    let spawn = || sweep_cmd(cwd, &args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let (mut first, mut second) = (spawn(), spawn());
    // Killed once the search has decided something (mid-search: a promoted run is still
    // to train).
    let t = Instant::now();
    while decisions(&store, "race").is_empty() {
        assert!(t.elapsed() < Duration::from_secs(240), "no decision made");
        std::thread::sleep(Duration::from_millis(50));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(second.wait().unwrap().success(), "the surviving coordinator finishes the search");
    let before = decisions(&store, "race");
    let out = run_ok(cwd, &args);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 complete"), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(decisions(&store, "race"), before, "a later coordinator rewrites no decision");
    // One decision per run at rung 1, one promotion; attempts = 1 + promotions, each
    // launched once.
    assert_eq!(before.len(), 3, "{before:?}");
    assert_eq!(before.iter().filter(|(_, d)| d["promoted"] == true).count(), 1);
    let claims = files(&store.join("sweeps/race/claims"));
    let launches = files(&store.join("sweeps/race/launches"));
    for (id, _) in variants(&store, "race") {
        let promoted = before.iter().filter(|(_, d)| d["run"] == id.as_str() && d["promoted"] == true).count();
        let mine = claims.iter().filter(|c| c.starts_with(&format!("{id}."))).count();
        assert_eq!(mine, 1 + promoted, "run {id}: {claims:?}");
        for a in 0..mine {
            let n = launches.iter().filter(|l| l.starts_with(&format!("{id}.{a}."))).count();
            assert_eq!(n, 1, "run {id} attempt {a} launched {n} times: {launches:?}");
        }
        let rec = read(&store.join(format!("runs/{id}/rungs/1.json")));
        assert_eq!(rec["on_test_set"], true);
        let env = read(&store.join(format!("runs/{id}/env.json")));
        assert_eq!(env["world"]["world_size"], 2, "run {id} trained on 2 ranks");
    }
    // A test-set selection says so at the top of what people read.
    let st = String::from_utf8_lossy(
        &run_ok(cwd, &["status", sweep.to_str().unwrap(), "--cluster", local.to_str().unwrap()]).stdout,
    )
    .into_owned();
    assert!(st.contains("selected on the test set (search.metric = image_auroc)"), "{st}");
    let out_dir = cwd.join("report");
    run_ok(
        cwd,
        &["report", sweep.to_str().unwrap(), "--cluster", local.to_str().unwrap(), "--out", out_dir.to_str().unwrap()],
    );
    for f in ["race-paper.md", "demo.md", "race-search.md"] {
        let text = std::fs::read_to_string(out_dir.join(f)).unwrap();
        let head: String = text.lines().take(6).collect::<Vec<_>>().join("\n");
        assert!(head.contains("selected on the test set"), "{f} does not say so at the top:\n{head}");
    }
}

#[test]
fn a_spent_budget_stops_promotions_and_starts_and_says_so() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    dataset_at(cwd, "out/demo-data");
    let local = repo().join("cluster/local.toml");
    let store = cwd.join("ras-store");
    let sweep = search_sweep(cwd, "broke", "asha", "", "budget_rank_hours = 0.000001\nmax_concurrent = 1");
    let args = ["sweep", sweep.to_str().unwrap(), "--cluster", local.to_str().unwrap()];
    let out = run_ok(cwd, &args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("3 stopped by the search"), "{text}");
    // One run started (nothing was spent yet), reached its rung, and nothing more ran.
    let trained: Vec<String> = variants(&store, "broke")
        .into_iter()
        .filter(|(id, _)| store.join(format!("runs/{id}/rungs/1.json")).exists())
        .map(|(id, _)| id)
        .collect();
    assert_eq!(trained.len(), 1, "{trained:?}");
    let ds = decisions(&store, "broke");
    assert_eq!(ds.len(), 3);
    assert!(ds.iter().all(|(_, d)| d["promoted"] == false && d["why"].as_str().unwrap().contains("budget reached")));
    assert_eq!(ds.iter().filter(|(_, d)| d["value"].is_null()).count(), 2, "two never started");
    let st = String::from_utf8_lossy(
        &run_ok(cwd, &["status", sweep.to_str().unwrap(), "--cluster", local.to_str().unwrap()]).stdout,
    )
    .into_owned();
    assert!(st.contains("2 runs not started: the budget was reached") && st.contains("(budget 0.000001)"), "{st}");
}
