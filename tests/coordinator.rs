//! The sweep coordinator with the real engine: real `ras train` processes through the
//! Local launcher, real sbatch/srun through a single-node Slurm (cluster/slurm-up.sh).
//!
//! - quickstart sweep (jobs/quickstart.toml) runs every run; a resubmission launches
//!   nothing; the report's numbers equal the runs' final_metrics.json
//! - two coordinators started at once never launch a run twice (claims, job records)
//! - a coordinator SIGKILLed mid-sweep and restarted completes the sweep, adopting the
//!   job the dead one started instead of launching it again
//! - Slurm: 2-rank runs through sbatch + srun --mpi=pmix; a run whose dataset vanished
//!   after submission is retried max_retries times, then marked failed
//! - one run cancelled for good (`ras cancel --run`) stays cancelled, in status, report
//!   and `ras runs`, until `ras sweep --retry-cancelled`; a Slurm job scancel'ed by hand
//!   is that run's cancel, while a USR1 preemption still requeues
//!
//! The tests run one at a time (a lock): they share 2 cores and one Slurm controller.
//! About 6.5 minutes in all; 2 of them are Slurm's own delay before a requeued job is
//! eligible again (EligibleTime = requeue + 120 s), in the USR1 test.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// Each run of the sweep claimed exactly once and launched exactly once.
fn assert_launched_once(store: &Path, sweep: &str) {
    let ids = run_ids(store, sweep);
    let claims = files(&store.join(format!("sweeps/{sweep}/claims")));
    let jobs = files(&store.join(format!("sweeps/{sweep}/jobs")));
    let want_claims: Vec<String> = {
        let mut v: Vec<String> = ids.iter().map(|id| format!("{id}.0")).collect();
        v.sort();
        v
    };
    assert_eq!(claims, want_claims, "one claim per run");
    assert_eq!(jobs.len(), ids.len(), "one job record per run: {jobs:?}");
    let launches = files(&store.join(format!("sweeps/{sweep}/launches")));
    assert_eq!(launches.len(), ids.len(), "one submission per run: {launches:?}");
    for id in &ids {
        assert_eq!(status(store, id)["state"], "complete", "run {id}");
    }
}

fn profile(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn quickstart_sweep_runs_resubmission_skips_and_report_matches() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    dataset_at(cwd, "out/demo-data");
    let sweep = repo().join("jobs/quickstart.toml");
    let local = repo().join("cluster/local.toml");
    let (sweep, local) = (sweep.to_str().unwrap(), local.to_str().unwrap());
    let store = cwd.join("ras-store");

    let plan = run_ok(cwd, &["plan", sweep, "--cluster", local]);
    let plan = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.contains("4 runs") && plan.contains("fills feature cache"), "{plan}");

    let t = Instant::now();
    let out = run_ok(cwd, &["sweep", sweep, "--cluster", local]);
    eprintln!("quickstart sweep took {:.1} s", t.elapsed().as_secs_f64());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("4 runs: 4 complete"), "{text}");
    assert_launched_once(&store, "quickstart");
    // Off a terminal: the table once, at the end, after one line per state change (each
    // run: pending, active, complete at least).
    assert_eq!(text.matches("total cost:").count(), 1, "the table is printed once:\n{text}");
    assert_eq!(text.matches(": active -> complete").count(), 4, "{text}");
    // The last table is the final one: its cost line is what `ras status` says now.
    let st = run_ok(cwd, &["status", sweep, "--cluster", local]);
    let cost = |t: &str| t.lines().find(|l| l.starts_with("total cost:")).map(str::to_string);
    assert_eq!(cost(&text), cost(&String::from_utf8_lossy(&st.stdout)), "{text}");
    // The feature cache was filled once, by its own job, before the runs: the runs (two
    // of which ran at once) computed nothing.
    let fjobs = files(&store.join("sweeps/quickstart/features"));
    assert_eq!(fjobs.iter().filter(|f| f.ends_with(".json")).count(), 1, "one feature-cache job: {fjobs:?}");
    for id in run_ids(&store, "quickstart") {
        let env: serde_json::Value = json(&store.join(format!("runs/{id}/env.json")));
        assert_eq!(env["feature_cache"]["classes_computed"], 0, "run {id}: {env}");
    }

    // Each run's log is kept in the store under its own prefix, and beside it the job's
    // record and command line (the coordinator records them for the local launcher too).
    for id in run_ids(&store, "quickstart") {
        let logs = files(&store.join(format!("runs/{id}/logs")));
        assert_eq!(logs.len(), 1, "run {id}: {logs:?}");
        let text = std::fs::read_to_string(store.join(format!("runs/{id}/logs/{}", logs[0]))).unwrap();
        assert!(text.contains(&id), "run {id}'s log names it: {text}");
        let job = logs[0].trim_end_matches(".log");
        let record = json(&store.join(format!("runs/{id}/jobs/{job}.json")));
        assert_eq!(
            (record["kind"].as_str(), record["run_id"].as_str()),
            (Some("local"), Some(id.as_str())),
            "{record}"
        );
        let line = std::fs::read_to_string(store.join(format!("runs/{id}/jobs/{job}.sh"))).unwrap();
        assert!(line.contains(" train ") && line.contains(&format!("{id}.toml")), "{line}");
    }

    // Resubmission: everything complete, nothing launched again.
    let out = run_ok(cwd, &["sweep", sweep, "--cluster", local]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 runs: 4 complete"));
    assert_launched_once(&store, "quickstart");
    let st = run_ok(cwd, &["status", sweep, "--cluster", local]);
    assert_eq!(
        String::from_utf8_lossy(&st.stdout).matches(" complete ").count(),
        4,
        "{}",
        String::from_utf8_lossy(&st.stdout)
    );

    // The report's numbers are the runs' final metrics.
    run_ok(cwd, &["report", sweep, "--cluster", local, "--out", "rep"]);
    let csv = std::fs::read_to_string(cwd.join("rep/demo.csv")).unwrap();
    assert!(cwd.join("rep/demo.md").exists());
    let m = manifest(&store, "quickstart");
    let mut checked = 0;
    for run in m["runs"].as_array().unwrap() {
        let id = run["id"].as_str().unwrap();
        let variant = run["variant"].as_str().unwrap();
        let fm: serde_json::Value = json(&store.join(format!("runs/{id}/final_metrics.json")));
        let mut classes: Vec<(String, serde_json::Value)> =
            fm["metrics"]["classes"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        classes.push(("mean".into(), fm["metrics"]["mean"].clone()));
        for (class, m) in classes {
            let prefix = format!("\"{}\",{class},1,", variant.replace('"', "\"\""));
            let line =
                csv.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no row {prefix} in\n{csv}"));
            let f: Vec<&str> = line[prefix.len()..].split(',').collect();
            let i: f64 = f[0].parse().unwrap();
            let p: f64 = f[4].parse().unwrap();
            assert!((i - 100.0 * m["image_auroc"].as_f64().unwrap()).abs() < 1e-3, "{line}");
            assert!((p - 100.0 * m["pixel_auroc"].as_f64().unwrap()).abs() < 1e-3, "{line}");
            checked += 1;
        }
    }
    assert_eq!(checked, 4 * 3, "4 runs x (2 classes + mean)");
}

#[test]
fn two_coordinators_racing_never_launch_a_run_twice() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    dataset_at(cwd, "out/demo-data");
    let sweep = small_sweep(cwd, "race", "[grid]\n\"model.encoder_layers\" = [0, 1]\n\"seed\" = [1, 2]\n");
    let local = profile(cwd, "two", "launcher = \"local\"\ncpus_per_node = 2\n");
    let args = ["sweep", sweep.to_str().unwrap(), "--cluster", local.to_str().unwrap()];
    let a = sweep_cmd(cwd, &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let b = sweep_cmd(cwd, &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    for c in [a, b] {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let store = cwd.join("ras-store");
    assert_eq!(run_ids(&store, "race").len(), 4);
    assert_launched_once(&store, "race");
    // The report: runs that differ only by seed are one variant, mean ± std over seeds.
    run_ok(cwd, &["report", sweep.to_str().unwrap(), "--cluster", local.to_str().unwrap(), "--out", "rep"]);
    let csv = std::fs::read_to_string(cwd.join("rep/demo.csv")).unwrap();
    let m = manifest(&store, "race");
    for layers in [0, 1] {
        let ids: Vec<&str> = m["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["label"].as_str().unwrap().contains(&format!("model.encoder_layers={layers} ")))
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 2, "two seeds");
        let vals: Vec<f64> = ids
            .iter()
            .map(|id| {
                let fm: serde_json::Value = json(&store.join(format!("runs/{id}/final_metrics.json")));
                100.0 * fm["metrics"]["mean"]["image_auroc"].as_f64().unwrap()
            })
            .collect();
        let mean = (vals[0] + vals[1]) / 2.0;
        let std = ((vals[0] - mean).powi(2) + (vals[1] - mean).powi(2)).sqrt(); // n - 1 = 1
        let prefix = format!("\"demo model.encoder_layers={layers}\",mean,2,");
        let line = csv.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {prefix} in\n{csv}"));
        let f: Vec<f64> = line[prefix.len()..].split(',').take(2).map(|x| x.parse().unwrap()).collect();
        assert!((f[0] - mean).abs() < 1e-3 && (f[1] - std).abs() < 1e-3, "{line} vs {mean} ± {std}");
    }
    assert!(std::fs::read_to_string(cwd.join("rep/demo.md")).unwrap().contains(" ± "));
    // And no run trained twice: each run's log holds each epoch once.
    for id in run_ids(&store, "race") {
        let log = std::fs::read_to_string(store.join(format!("runs/{id}/train_log.jsonl"))).unwrap();
        assert_eq!(log.lines().count(), 2, "{id}: {log}");
    }
}

#[test]
fn killed_coordinator_restarted_completes_the_sweep() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    dataset_at(cwd, "out/demo-data");
    let sweep = small_sweep(cwd, "killme", "[grid]\n\"model.encoder_layers\" = [0, 1, 2]\n");
    // One slot: runs go one after the other, so the kill lands mid-sweep.
    let local = profile(cwd, "one", "launcher = \"local\"\ncpus_per_node = 1\n");
    let args = ["sweep", sweep.to_str().unwrap(), "--cluster", local.to_str().unwrap()];
    let mut first = sweep_cmd(cwd, &args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let store = cwd.join("ras-store");
    let jobs = store.join("sweeps/killme/jobs");
    let t = Instant::now();
    while files(&jobs).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(60), "no job launched");
        std::thread::sleep(Duration::from_millis(50));
    }
    first.kill().unwrap(); // SIGKILL: no chance to clean up
    first.wait().unwrap();
    assert_eq!(files(&jobs).len(), 1, "killed before the second launch");
    let out = run_ok(cwd, &args);
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 runs: 3 complete"));
    assert_launched_once(&store, "killme");
}

/// Starts the project's single-node Slurm (idempotent).
fn slurm_up() {
    let out = Command::new("bash").arg(repo().join("cluster/slurm-up.sh")).output().unwrap();
    assert!(
        out.status.success(),
        "cluster/slurm-up.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn slurm_two_rank_runs_through_sbatch_and_srun() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    slurm_up();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    dataset_at(cwd, "out/demo-data");
    let sweep = small_sweep(cwd, "slurm2", "ranks = 2\n[grid]\n\"model.encoder_layers\" = [0, 1]\n");
    let prof = repo().join("cluster/ci-slurm.toml");
    // Submit and leave, with a report job behind the runs (afterok); then wait with a
    // second coordinator, which adopts the jobs.
    let (sweep_s, prof_s) = (sweep.to_str().unwrap(), prof.to_str().unwrap());
    let out = run_ok(cwd, &["sweep", sweep_s, "--cluster", prof_s, "--no-wait", "--report", "rep"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("report job"), "{}", String::from_utf8_lossy(&out.stdout));
    let out = run_ok(cwd, &["sweep", sweep_s, "--cluster", prof_s]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 runs: 2 complete"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let store = cwd.join("ras-store");
    assert_launched_once(&store, "slurm2");
    // The report job ran after both runs, and its table holds their final metrics.
    let report = json(&store.join("sweeps/slurm2/report.json"));
    let report_job = report["id"].as_str().unwrap().to_string();
    let sc = finished_job(&report_job);
    let log = std::fs::read_to_string(report["log"].as_str().unwrap()).unwrap_or_default();
    assert!(sc.contains("JobState=COMPLETED"), "{sc}\nlog:\n{log}");
    let script = std::fs::read_to_string(cwd.join(".ras-sweeps/slurm2/logs/report-slurm2.sbatch")).unwrap();
    assert!(
        script.contains("#SBATCH --dependency=afterok:") && script.contains("--kill-on-invalid-dep=yes"),
        "{script}"
    );
    let csv = std::fs::read_to_string(cwd.join("rep/demo.csv")).unwrap_or_else(|e| panic!("rep/demo.csv: {e}\n{sc}"));
    for run in manifest(&store, "slurm2")["runs"].as_array().unwrap() {
        let fm = json(&store.join(format!("runs/{}/final_metrics.json", run["id"].as_str().unwrap())));
        let prefix = format!("\"{}\",mean,1,", run["variant"].as_str().unwrap().replace('"', "\"\""));
        let line = csv.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {prefix} in\n{csv}"));
        let i: f64 = line[prefix.len()..].split(',').next().unwrap().parse().unwrap();
        assert!((i - 100.0 * fm["metrics"]["mean"]["image_auroc"].as_f64().unwrap()).abs() < 1e-3, "{line}");
    }
    // The two alike runs went out as one job array: tasks <array>_0 and <array>_1.
    let mut array_ids = vec![];
    for id in run_ids(&store, "slurm2") {
        let env: serde_json::Value = json(&store.join(format!("runs/{id}/env.json")));
        assert_eq!(env["world"]["world_size"], 2, "{id} ran on 2 ranks: {env}");
        let slurm = files(&store.join(format!("runs/{id}/jobs")));
        assert_eq!(slurm.len(), 2, "script + record: {slurm:?}");
        let script_name = slurm.iter().find(|f| f.ends_with(".sbatch")).unwrap();
        let script = std::fs::read_to_string(store.join(format!("runs/{id}/jobs/{script_name}"))).unwrap();
        assert!(script.contains("#SBATCH --signal=USR1@60") && script.contains("#SBATCH --requeue"), "{script}");
        assert!(script.contains("srun --mpi=pmix -n 2 ") && script.contains("scontrol requeue"), "{script}");
        let record: serde_json::Value =
            json(&store.join(format!("runs/{id}/jobs/{}", script_name.replace(".sbatch", ".json"))));
        let job_id = record["id"].as_str().unwrap();
        let sc = finished_job(job_id);
        assert!(sc.contains("JobState=COMPLETED") && sc.contains("NumTasks=2"), "{sc}");
        assert!(script.contains("#SBATCH --array=0-1"), "{script}");
        let (array, task) = job_id.split_once('_').unwrap_or_else(|| panic!("{job_id} is not an array task"));
        assert!(sc.contains(&format!("ArrayJobId={array} ArrayTaskId={task}")), "{sc}");
        array_ids.push((array.to_string(), task.to_string()));
    }
    array_ids.sort();
    assert_eq!(array_ids.len(), 2);
    assert_eq!(array_ids[0].0, array_ids[1].0, "one array: {array_ids:?}");
    assert_ne!(array_ids[0].1, array_ids[1].1, "two tasks: {array_ids:?}");
}

#[test]
fn slurm_failed_run_is_retried_then_marked_failed() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    slurm_up();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = dataset_at(cwd, "vanishing");
    let sweep = small_sweep(cwd, "failing", "ranks = 1\n");
    // The file ends in its [set] table: point the run at the doomed dataset.
    let text = std::fs::read_to_string(&sweep).unwrap() + &format!("\"dataset.root\" = \"{}\"\n", data.display());
    std::fs::write(&sweep, text).unwrap();
    // Jobs start 3 s after submission: time to remove the dataset deterministically.
    let prof = profile(
        cwd,
        "slow-slurm",
        &format!(
            "launcher = \"slurm\"\npartition = \"debug\"\nmem_per_gpu = \"1500M\"\nextra = [\"#SBATCH --begin=now+3\"]\npoll_max_s = 2\ntemplate = \"{}\"\n",
            repo().join("cluster/templates/run.sbatch.tmpl").display()
        ),
    );
    let args = ["sweep", sweep.to_str().unwrap(), "--cluster", prof.to_str().unwrap()];
    let mut no_wait = args.to_vec();
    no_wait.push("--no-wait");
    run_ok(cwd, &no_wait);
    std::fs::remove_dir_all(&data).unwrap();
    let out = sweep_cmd(cwd, &args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the sweep must fail: {stderr}");
    assert!(stderr.contains("failed after 2 attempts"), "{stderr}");
    let store = cwd.join("ras-store");
    let ids = run_ids(&store, "failing");
    assert_eq!(ids.len(), 1);
    assert_eq!(files(&store.join("sweeps/failing/claims")), vec![format!("{}.0", ids[0]), format!("{}.1", ids[0])]);
    assert_eq!(files(&store.join("sweeps/failing/launches")).len(), 2, "launched twice (max_retries = 1), not more");
    let st = status(&store, &ids[0]);
    assert_eq!(st["state"], "failed", "{st}");
    assert!(st["error"].as_str().unwrap_or("").contains("vanishing"), "the error names the missing folder: {st}");
    // Both attempts' job logs were kept in the store, and they say why they failed.
    let logs = files(&store.join(format!("runs/{}/logs", ids[0])));
    assert_eq!(logs.len(), 2, "{logs:?}");
    for l in &logs {
        let text = std::fs::read_to_string(store.join(format!("runs/{}/logs/{l}", ids[0]))).unwrap();
        assert!(text.contains("vanishing"), "{l}: {text}");
    }
    // Once failed for good, a resubmission launches nothing more.
    let again = sweep_cmd(cwd, &args).output().unwrap();
    assert!(!again.status.success());
    assert_eq!(files(&store.join("sweeps/failing/launches")).len(), 2);
}

#[test]
fn sweep_files_expand_and_errors_name_the_key() {
    let opts = ras::sweep::ExpandOptions { max_ranks: 8, ..Default::default() };
    let jobs = repo().join("jobs");
    for (file, runs) in
        [("quickstart", 4), ("table1-2", 16), ("table3", 3), ("table4", 3), ("table5", 12), ("table6", 2)]
    {
        let m = ras::sweep::expand(&jobs.join(format!("{file}.toml")), &opts).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(m.runs.len(), runs, "{file}");
        assert_eq!(m.name, file);
        // Stable ids: the same file expands to the same runs.
        assert_eq!(ras::sweep::expand(&jobs.join(format!("{file}.toml")), &opts).unwrap(), m);
    }
    // Table 6: one training per decoder, each evaluated again at noise 10..50 (no retraining).
    let t6 = ras::sweep::expand(&jobs.join("table6.toml"), &opts).unwrap();
    for r in &t6.runs {
        assert_eq!(r.config().unwrap().eval.noise_scales, vec![10.0, 20.0, 30.0, 40.0, 50.0], "{}", r.label);
    }
    let t12 = ras::sweep::expand(&jobs.join("table1-2.toml"), &opts).unwrap();
    let separate: Vec<_> = t12.runs.iter().filter(|r| r.label.contains("class=")).collect();
    assert_eq!(separate.len(), 15, "one run per MVTec class");
    assert!(separate.iter().all(|r| r.config().unwrap().dataset.classes.len() == 1
        && r.config().unwrap().train.setting == ras::config::Setting::Separate));

    let dir = tempfile::tempdir().unwrap();
    let bad = small_sweep(dir.path(), "bad", "");
    std::fs::write(&bad, std::fs::read_to_string(&bad).unwrap() + "\"train.learning_rate\" = 0.1\n").unwrap();
    let err = ras::error_text::chain(&ras::sweep::expand(&bad, &opts).unwrap_err());
    assert!(err.contains("learning_rate") && err.contains("bad"), "{err}");
    let typo = small_sweep(dir.path(), "typo", "max_retires = 2\n");
    let err = ras::error_text::chain(&ras::sweep::expand(&typo, &opts).unwrap_err());
    assert!(err.contains("max_retires") && err.contains("typo.toml"), "{err}");
    let grid = small_sweep(dir.path(), "grid", "[grid]\n\"model.nope\" = [1, 2]\n");
    let err = ras::error_text::chain(&ras::sweep::expand(&grid, &opts).unwrap_err());
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn cancelled_sweep_stops_and_resumes_from_checkpoints() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    dataset_at(cwd, "out/demo-data");
    let sweep = small_sweep(cwd, "stopme", "[grid]\n\"model.encoder_layers\" = [0, 1]\n");
    let local = profile(cwd, "one", "launcher = \"local\"\ncpus_per_node = 1\n");
    let mut args = vec!["sweep", sweep.to_str().unwrap(), "--cluster", local.to_str().unwrap()];
    let long = ["--set", "train.epochs=60", "--set", "train.eval_every=30", "--set", "checkpoint.every=2"];
    args.extend(long);
    let coord = sweep_cmd(cwd, &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let store = cwd.join("ras-store");
    let t = Instant::now();
    // Wait for the first run's first checkpoint, then cancel.
    let first = loop {
        assert!(t.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        if let Some(id) = std::fs::read_dir(store.join("runs")).ok().and_then(|rd| {
            rd.flatten().find(|r| {
                r.path().join("checkpoints/unified").read_dir().map(|mut d| d.next().is_some()).unwrap_or(false)
            })
        }) {
            break id.file_name().to_string_lossy().into_owned();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut cancel = vec!["cancel", sweep.to_str().unwrap(), "--cluster", local.to_str().unwrap()];
    cancel.extend(long);
    let out = run_ok(cwd, &cancel);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("cancelled 1 active jobs"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = coord.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status(&store, &first)["state"], "preempted");
    assert_eq!(files(&store.join("sweeps/stopme/launches")).len(), 1, "nothing launched after the cancel");
    // Again: resumes the preempted run (a second attempt, not counted as a failure) and runs the other.
    let out = run_ok(cwd, &args);
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 runs: 2 complete"));
    let log = std::fs::read_to_string(store.join(format!("runs/{first}/train_log.jsonl"))).unwrap();
    assert_eq!(log.lines().count(), 60, "each epoch once: resumed, not restarted");
    assert_eq!(files(&store.join("sweeps/stopme/claims")).len(), 3);
}

#[test]
fn slurm_usr1_checkpoints_and_the_job_requeues_itself() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    slurm_up();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    dataset_at(cwd, "out/demo-data");
    let sweep = small_sweep(cwd, "requeue", "ranks = 1\n");
    let prof = repo().join("cluster/ci-slurm.toml");
    let args = [
        "sweep",
        sweep.to_str().unwrap(),
        "--cluster",
        prof.to_str().unwrap(),
        "--set",
        "train.epochs=60",
        "--set",
        "train.eval_every=30",
        "--set",
        "checkpoint.every=2",
    ];
    let coord = sweep_cmd(cwd, &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let store = cwd.join("ras-store");
    let t = Instant::now();
    let id = loop {
        assert!(t.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        if let Some(id) = std::fs::read_dir(store.join("runs")).ok().and_then(|rd| {
            rd.flatten().find(|r| {
                r.path().join("checkpoints/unified").read_dir().map(|mut d| d.next().is_some()).unwrap_or(false)
            })
        }) {
            break id.file_name().to_string_lossy().into_owned();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let rec = files(&store.join(format!("runs/{id}/jobs"))).into_iter().find(|f| f.ends_with(".json")).unwrap();
    let job = rec.trim_end_matches(".json").to_string();
    // What Slurm does 60 s before the time limit: USR1 to the job's steps.
    let st = Command::new("scancel").args(["--signal=USR1", &job]).status().unwrap();
    assert!(st.success());
    let out = coord.wait_with_output().unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(status(&store, &id)["state"], "complete");
    let sc = finished_job(&job);
    assert!(sc.contains("Restarts=1") && sc.contains("JobState=COMPLETED"), "requeued once, same job id: {sc}");
    let log = std::fs::read_to_string(store.join(format!("runs/{id}/train_log.jsonl"))).unwrap();
    assert_eq!(log.lines().count(), 60, "resumed from the checkpoint");
    assert_eq!(files(&store.join("sweeps/requeue/launches")).len(), 1, "the coordinator did not launch it again");
}

/// Stops or starts the test Slurm's controller (slurmd and its jobs keep running).
fn slurmctld(up: bool) {
    let dir = std::env::var("TMPDIR").map(|t| format!("{t}/ras-slurm")).unwrap_or_else(|_| "/tmp/ras-slurm".into());
    let script = if up {
        "slurmctld; for _ in $(seq 1 100); do squeue -h >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1".to_string()
    } else {
        format!(". {}; stop {dir}/run/slurmctld.pid slurmctld", repo().join("cluster/slurm-lib.sh").display())
    };
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "slurmctld up={up}: {}", String::from_utf8_lossy(&out.stderr));
}

/// An unreachable controller is not an ended job. slurmctld is stopped for 30 s while a
/// run's job runs (slurmd keeps running it): the coordinator shows the run as unknown and
/// launches nothing; with the controller back, the run completes, launched once.
#[test]
fn slurm_controller_outage_is_unknown_not_ended() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    slurm_up();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    dataset_at(cwd, "out/demo-data");
    let sweep = small_sweep(cwd, "outage", "ranks = 1\n");
    let prof = repo().join("cluster/ci-slurm.toml");
    let log = cwd.join("coordinator.out");
    let coord = sweep_cmd(
        cwd,
        &[
            "sweep",
            sweep.to_str().unwrap(),
            "--cluster",
            prof.to_str().unwrap(),
            "--set",
            "train.epochs=400",
            "--set",
            "train.eval_every=400",
        ],
    )
    .stdout(std::fs::File::create(&log).unwrap())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Wait until the run itself is training (its status says running).
    let store = cwd.join("ras-store");
    let t = Instant::now();
    let running = || statuses(&store).iter().any(|s| s.contains("\"running\""));
    while !running() {
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "the run never started: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    slurmctld(false);
    std::thread::sleep(Duration::from_secs(30));
    let during = std::fs::read_to_string(&log).unwrap();
    let launches_during = files(&store.join("sweeps/outage/launches")).len();
    slurmctld(true);
    let out = coord.wait_with_output().unwrap();
    let stdout = std::fs::read_to_string(&log).unwrap();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        during.contains("unknown") && during.contains("Slurm unreachable"),
        "the table said unknown while slurmctld was down:\n{during}"
    );
    assert_eq!(launches_during, 1, "nothing launched while the controller was down");
    assert!(stdout.contains("1 runs: 1 complete"), "{stdout}");
    assert_launched_once(&store, "outage");
    // A job step that ended while the controller was away stays COMPLETING for about a
    // minute after it is back (measured: 50-60 s); the next test needs the node idle.
    let t = Instant::now();
    let idle = || {
        String::from_utf8_lossy(&Command::new("sinfo").args(["-h", "-o", "%T"]).output().unwrap().stdout).trim()
            == "idle"
    };
    while !idle() {
        assert!(t.elapsed() < Duration::from_secs(300), "the node never became idle after the outage");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `ras bench coordinator --json ARGS` on the test Slurm with its partition DOWN (every
/// job stays pending; set UP again and the jobs cancelled however the test ends): its
/// output, and its cycles as JSON.
fn bench_on_a_down_partition(args: &[&str]) -> (String, Vec<serde_json::Value>) {
    slurm_up();
    struct PartitionUp;
    impl Drop for PartitionUp {
        fn drop(&mut self) {
            let _ = Command::new("scancel").args(["--state=PENDING", "--partition=debug"]).status();
            let _ = Command::new("scontrol").args(["update", "PartitionName=debug", "State=UP"]).status();
        }
    }
    let _up = PartitionUp;
    let st = Command::new("scontrol").args(["update", "PartitionName=debug", "State=DOWN"]).status().unwrap();
    assert!(st.success());
    let dir = tempfile::tempdir().unwrap();
    let prof = repo().join("cluster/ci-slurm.toml");
    let base = ["bench", "coordinator", "--json", "--cluster", prof.to_str().unwrap()];
    let out = run_ok(dir.path(), &[&base[..], args].concat());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let cycles = stdout.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    (stdout, cycles)
}

/// The bench's `ras status`, `ras report` and `ras runs` of the finished sweep all worked.
fn finished_sweep_commands_worked(stdout: &str) {
    for cmd in ["ras status", "ras report", "ras runs"] {
        let line = stdout.lines().find(|l| l.starts_with(cmd)).unwrap_or_else(|| panic!("no {cmd} line: {stdout}"));
        assert!(line.ends_with("(ok)"), "{line}");
    }
}

/// The coordinator's cost per poll cycle does not grow with the runs that did not change:
/// 300 runs queued behind a DOWN partition cost, per steady cycle, one scheduler call
/// (squeue for every job) and one store request (the LIST of the sweep's prefix). Counts,
/// not times (`ras bench coordinator` prints the times).
#[test]
fn coordinator_cycle_costs_one_scheduler_call_and_one_listing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (stdout, cycles) = bench_on_a_down_partition(&["--runs", "300", "--cycles", "4"]);
    assert_eq!(cycles.len(), 4, "{stdout}");
    // The first cycle submits the feature-cache job and 300 runs (as job arrays).
    assert_eq!(cycles[0]["submitted"], 301, "{stdout}");
    assert!(cycles[0]["scheduler_calls"].as_u64().unwrap() <= 4, "sbatch for the cache job and one array: {stdout}");
    // Its writes and reads went out in batches, many at once; per run: a claim, the
    // launch audit, the job record and script beside the run, the sweep's job record.
    let first = &cycles[0];
    assert!(first["max_in_flight"].as_u64().unwrap() >= 8, "the submission's requests went one at a time: {first}");
    let put = first["store"]["put"].as_u64().unwrap();
    assert!((5 * 300..5 * 300 + 10).contains(&put), "5 writes a run, and a few for the sweep: {first}");
    for c in &cycles[1..] {
        assert_eq!(c["submitted"], 0, "{c}");
        assert_eq!(c["scheduler_calls"], 1, "one squeue for all jobs: {c}");
        assert_eq!(
            (c["store"]["list"].as_u64(), c["store"]["get"].as_u64(), c["store"]["put"].as_u64()),
            (Some(1), Some(0), Some(0)),
            "one LIST: {c}"
        );
    }
    // Then the finished sweep's status, report and runs all worked.
    finished_sweep_commands_worked(&stdout);
}

/// The same bench on the test S3 server behind the latency forwarder (5 ms here): the
/// path `make bench-coordinator-s3` measures works, and over S3 too the submission keeps
/// many requests in flight (a sequential one would take 5 ms x 5 writes x 60 runs more).
#[test]
fn coordinator_bench_on_slow_s3_batches_its_requests() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (stdout, cycles) = bench_on_a_down_partition(&["--runs", "60", "--cycles", "2", "--s3", "--latency-ms", "5"]);
    assert!(stdout.contains("test S3 server (s3s-fs) behind 5 ms per request"), "{stdout}");
    assert_eq!(cycles[0]["submitted"], 61, "{stdout}");
    assert!(cycles[0]["max_in_flight"].as_u64().unwrap() >= 8, "{stdout}");
    assert_eq!(cycles[1]["store"]["list"], 1, "{stdout}");
    finished_sweep_commands_worked(&stdout);
}

/// The first run of the store with a checkpoint (waits up to 2 minutes for one).
fn wait_for_checkpoint(store: &Path) -> String {
    let t = Instant::now();
    loop {
        assert!(t.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        if let Some(id) = std::fs::read_dir(store.join("runs")).ok().and_then(|rd| {
            rd.flatten().find(|r| {
                r.path().join("checkpoints/unified").read_dir().map(|mut d| d.next().is_some()).unwrap_or(false)
            })
        }) {
            return id.file_name().to_string_lossy().into_owned();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The manifest's variant of run `id`.
fn variant_of(store: &Path, sweep: &str, id: &str) -> String {
    let m = manifest(store, sweep);
    let run = m["runs"].as_array().unwrap().iter().find(|r| r["id"] == id).unwrap().clone();
    run["variant"].as_str().unwrap().to_string()
}

/// `ras cancel SWEEP --run ID` mid-training: the run stops for good (its checkpoint
/// stays), the other completes, the sweep ends with it cancelled; a second coordinator
/// does not relaunch it; status, report and `ras runs` say cancelled; `ras sweep
/// --retry-cancelled` resumes it from its checkpoint.
#[test]
fn one_run_cancelled_for_good_stays_cancelled_until_retried() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    dataset_at(cwd, "out/demo-data");
    let sweep = small_sweep(cwd, "prune", "[grid]\n\"model.encoder_layers\" = [0, 1]\n");
    let local = profile(cwd, "one", "launcher = \"local\"\ncpus_per_node = 1\n");
    let mut args = vec!["sweep", sweep.to_str().unwrap(), "--cluster", local.to_str().unwrap()];
    args.extend(["--set", "train.epochs=60", "--set", "train.eval_every=30", "--set", "checkpoint.every=2"]);
    let coord = sweep_cmd(cwd, &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let store = cwd.join("ras-store");
    let weak = wait_for_checkpoint(&store);
    // By the sweep's name (read from the store), with a reason.
    let out = run_ok(cwd, &["cancel", "prune", "--run", &weak, "--reason", "weak config"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("run {weak} (")) && said.contains("cancelled, job "), "{said}");
    let out = coord.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("2 runs: 1 complete, 0 active, 0 pending, 0 to retry, 0 failed, 1 cancelled"), "{text}");
    assert!(text.contains(&format!("run {weak} (")) && text.contains("cancelled: weak config ("), "{text}");
    assert_eq!(status(&store, &weak)["state"], "preempted", "stopped after a checkpoint");
    let marker = json(&store.join(format!("sweeps/prune/cancelled-runs/{weak}.json")));
    assert_eq!(marker["reason"], "weak config", "{marker}");
    assert_eq!(files(&store.join("sweeps/prune/launches")).len(), 2, "each run launched once");
    // A second coordinator launches nothing; status, report and runs say cancelled.
    let again = run_ok(cwd, &args);
    assert!(String::from_utf8_lossy(&again.stdout)
        .contains("1 complete, 0 active, 0 pending, 0 to retry, 0 failed, 1 cancelled"));
    assert_eq!(files(&store.join("sweeps/prune/launches")).len(), 2, "not relaunched");
    let st = String::from_utf8_lossy(&run_ok(cwd, &["status", "prune"]).stdout).into_owned();
    let line = st.lines().find(|l| l.starts_with(&weak)).unwrap_or_else(|| panic!("{st}"));
    assert!(line.contains(" cancelled "), "{st}");
    run_ok(cwd, &["report", "prune", "--out", "rep"]);
    let csv = std::fs::read_to_string(cwd.join("rep/demo.csv")).unwrap();
    let variant = variant_of(&store, "prune", &weak);
    let row = format!("\"{}\",mean,0,,", variant.replace('"', "\"\""));
    assert!(csv.lines().any(|l| l.starts_with(&row) && l.ends_with(",1")), "no {row}...,1 in\n{csv}");
    let md = std::fs::read_to_string(cwd.join("rep/prune-paper.md")).unwrap();
    assert!(md.contains("| cancelled | cancelled |"), "{md}");
    let runs = String::from_utf8_lossy(&run_ok(cwd, &["runs"]).stdout).into_owned();
    assert!(runs.lines().any(|l| l.starts_with(&weak) && l.contains(" cancelled ")), "{runs}");
    // --retry-cancelled: resumed from its checkpoint, to the end.
    let mut retry = args.clone();
    retry.push("--retry-cancelled");
    let out = run_ok(cwd, &retry);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 cancelled runs to launch again") && text.contains("2 runs: 2 complete"), "{text}");
    let log = std::fs::read_to_string(store.join(format!("runs/{weak}/train_log.jsonl"))).unwrap();
    assert_eq!(log.lines().count(), 60, "each epoch once: resumed, not restarted");
    assert!(files(&store.join("sweeps/prune/cancelled-runs")).is_empty());
}

/// A Slurm job scancel'ed by hand is the run's cancel, as `ras cancel --run` would be:
/// the coordinator marks the run cancelled and does not launch it again, while the other
/// run of the same job array completes.
#[test]
fn slurm_scancel_by_hand_cancels_the_run_for_good() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    slurm_up();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    dataset_at(cwd, "out/demo-data");
    let sweep = small_sweep(cwd, "byhand", "ranks = 1\n[grid]\n\"model.encoder_layers\" = [0, 1]\n");
    let prof = repo().join("cluster/ci-slurm.toml");
    let mut args = vec!["sweep", sweep.to_str().unwrap(), "--cluster", prof.to_str().unwrap()];
    args.extend(["--set", "train.epochs=60", "--set", "train.eval_every=30", "--set", "checkpoint.every=2"]);
    let coord = sweep_cmd(cwd, &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let store = cwd.join("ras-store");
    let id = wait_for_checkpoint(&store);
    let rec = files(&store.join(format!("runs/{id}/jobs"))).into_iter().find(|f| f.ends_with(".json")).unwrap();
    let job = rec.trim_end_matches(".json").to_string();
    let st = Command::new("scancel").arg(&job).status().unwrap();
    assert!(st.success());
    let out = coord.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("2 runs: 1 complete, 0 active, 0 pending, 0 to retry, 0 failed, 1 cancelled"), "{text}");
    let marker = json(&store.join(format!("sweeps/byhand/cancelled-runs/{id}.json")));
    assert_eq!((marker["by"].as_str(), marker["job"].as_str()), (Some("slurm"), Some(job.as_str())), "{marker}");
    assert!(marker["reason"].as_str().unwrap().starts_with("cancelled in Slurm"), "{marker}");
    assert!(finished_job(&job).contains("JobState=CANCELLED"), "{}", finished_job(&job));
    assert_eq!(files(&store.join("sweeps/byhand/launches")).len(), 2, "not relaunched");
    // Nor by a later coordinator.
    let again = run_ok(cwd, &args);
    assert!(String::from_utf8_lossy(&again.stdout).contains("1 cancelled"));
    assert_eq!(files(&store.join("sweeps/byhand/launches")).len(), 2, "not relaunched");
}
