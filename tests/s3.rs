//! ras against a real S3 server: s3s-fs (an S3 protocol server over a folder, SigV4
//! signatures checked), started here on a free port, through the real `ras` binary.
//! - the quickstart sweep (local launcher) completes with its store on S3, and
//!   `ras report` reads it back;
//! - `ras train` killed with -9 and started again finishes with the final metrics of an
//!   undisturbed run; `ras eval RUN` reads it from S3;
//! - the server stopped (SIGSTOP: its connections hang) for 30 s mid-training, and
//!   separately killed and restarted on the same port and folder: the run rides both out
//!   (retries within RAS_STORE_RETRY_S) and ends with the same final metrics;
//! - past a short retry budget the run exits 74 (infrastructure), the message naming the
//!   key and RAS_STORE_RETRY_S; its status says `infra` when the store takes that write,
//!   and is left as it was (never corrupted) when the store is still down; started again,
//!   the run resumes and ends with the same final metrics.
//!
//! s3s-fs is installed by `make setup-s3` (scripts/setup-s3.sh, run by `make test`); without it these tests fail,
//! saying so: they never skip.

mod common;
use common::s3::*;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn quickstart_sweep_and_report_on_s3() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let s3 = S3::start(cwd);
    dataset_at(cwd, "out/demo-data");
    let (sweep, local) = (repo().join("jobs/quickstart.toml"), repo().join("cluster/local.toml"));
    let (sweep, local) = (sweep.to_str().unwrap(), local.to_str().unwrap());
    let store = "s3://ras/qs";
    let t = Instant::now();
    let out = s3.ras_ok(cwd, &["sweep", sweep, "--cluster", local, "--store", store]);
    eprintln!("quickstart sweep on S3 took {:.1} s", t.elapsed().as_secs_f64());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("4 runs: 4 complete"), "{stdout}");
    assert!(!cwd.join("ras-store").exists(), "nothing went to the configs' local store");
    let manifest = s3.json("qs/sweeps/quickstart/manifest.json");
    let ids: Vec<String> =
        manifest["runs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 4);
    for id in &ids {
        assert_eq!(s3.json(&format!("qs/runs/{id}/status.json"))["state"], "complete", "{id}");
    }
    // The report, read back from S3: the runs' final metrics.
    s3.ras_ok(cwd, &["report", sweep, "--cluster", local, "--store", store, "--out", "rep"]);
    let csv = std::fs::read_to_string(cwd.join("rep/demo.csv")).unwrap();
    for id in &ids {
        let fm = s3.json(&format!("qs/runs/{id}/final_metrics.json"));
        let auroc = fm["metrics"]["mean"]["image_auroc"].as_f64().unwrap();
        // The CSV's mean rows carry I-AUROC in percent with 4 decimals.
        let shown = format!(",mean,1,{:.4},", auroc * 100.0);
        assert!(csv.lines().any(|l| l.contains(&shown)), "run {id}: mean I-AUROC {auroc} not in the report:\n{csv}");
    }
    let st = s3.ras_ok(cwd, &["status", "quickstart", "--store", store]);
    assert_eq!(String::from_utf8_lossy(&st.stdout).matches(" complete ").count(), 4, "{}", text(&st));
}

/// A run config on `store`, long enough to be caught mid-training (a checkpoint every 10
/// of 120 epochs).
fn outage_config(d: &Path) -> PathBuf {
    let root = synth_dataset(d, 1, 5, 64, 8);
    small_config(d, &root, "s3run", "[checkpoint]\nevery = 10\n")
}

fn train_args<'a>(cfg: &'a str, store: &'a str) -> Vec<String> {
    ["train", cfg, "--set", &format!("store=\"{store}\""), "--set", "train.epochs=120", "--set", "train.eval_every=60"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// The single run under `prefix` (bucket-relative), once its prefix appears.
fn run_prefix(s3: &S3, prefix: &str, child: &mut Child) -> String {
    let t = Instant::now();
    loop {
        if let Some(k) = s3.keys(&format!("{prefix}/runs")).into_iter().find(|k| k.ends_with("/config.toml")) {
            return k.trim_end_matches("/config.toml").to_string();
        }
        assert!(t.elapsed() < Duration::from_secs(180), "no run appeared under {prefix}");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it was caught");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the run under `run` (bucket-relative) has a checkpoint.
fn wait_checkpoint(s3: &S3, run: &str, child: &mut Child) {
    let t = Instant::now();
    while !s3.keys(&format!("{run}/checkpoints")).iter().any(|k| k.ends_with(".json")) {
        assert!(t.elapsed() < Duration::from_secs(180), "no checkpoint of {run}");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its first checkpoint");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn(cmd: &mut Command, log: &Path) -> Child {
    let f = std::fs::File::create(log).unwrap();
    cmd.stdout(Stdio::null()).stderr(f).spawn().unwrap()
}

/// What must not change between an undisturbed run and a disturbed one.
fn final_numbers(s3: &S3, run: &str) -> (serde_json::Value, serde_json::Value) {
    let fm = s3.json(&format!("{run}/final_metrics.json"));
    (fm["metrics"].clone(), fm["best_on_test_extra"].clone())
}

#[test]
fn kill9_resume_eval_and_outages_end_with_identical_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut s3 = S3::start(d);
    s3.one_thread = true;
    let cfg = outage_config(d);
    let cfg = cfg.to_str().unwrap();
    let args = |store: &str| train_args(cfg, store);
    let refs = |v: &Vec<String>| v.clone();

    // The undisturbed run.
    let t = Instant::now();
    let a = refs(&args("s3://ras/ref"));
    s3.ras_ok(d, &a.iter().map(String::as_str).collect::<Vec<_>>());
    eprintln!("undisturbed run on S3: {:.1} s", t.elapsed().as_secs_f64());
    let ref_run = s3
        .keys("ref/runs")
        .into_iter()
        .find(|k| k.ends_with("/final_metrics.json"))
        .unwrap()
        .trim_end_matches("/final_metrics.json")
        .to_string();
    let reference = final_numbers(&s3, &ref_run);

    // kill -9 after the first checkpoint, then the same command: resumes, same numbers.
    let a = args("s3://ras/kill");
    let mut child = spawn(&mut s3.ras(d, &a.iter().map(String::as_str).collect::<Vec<_>>()), &d.join("kill.log"));
    let run = run_prefix(&s3, "kill", &mut child);
    wait_checkpoint(&s3, &run, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(s3.object(&format!("{run}/final_metrics.json")).is_none(), "killed before the end");
    let out = s3.ras_ok(d, &a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        final_numbers(&s3, &run),
        reference,
        "kill -9 and resume on S3: final metrics differ from the undisturbed run"
    );
    // Both attempts are in the cost records and the lease history: the killed one as
    // "interrupted" (written when it took the lease), replaced because its process was
    // gone; the second complete, its lease released.
    let cost = s3.json(&format!("{run}/cost.json"));
    let attempts = cost["attempts"].as_array().unwrap();
    let outcomes: Vec<&str> = attempts.iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, vec!["interrupted", "complete"], "{cost}");
    let history: Vec<String> =
        s3.keys(&format!("{run}/leases")).into_iter().filter(|k| !k.ends_with(".released.json")).collect();
    assert_eq!(history.len(), 2, "{history:?}");
    let (first, second) = (s3.json(&history[0]), s3.json(&history[1]));
    assert_eq!(first["holder"]["token"], attempts[0]["lease"], "{first}\n{cost}");
    assert_eq!(second["holder"]["token"], attempts[1]["lease"], "{second}\n{cost}");
    assert_eq!((&second["replaces"], second["why"].as_str()), (&first["holder"]["token"], Some("holder process gone")));
    assert!(s3.object(&history[1].replace(".json", ".released.json")).is_some(), "the second released its lease");
    assert!(s3.object(&history[0].replace(".json", ".released.json")).is_none(), "the killed one did not");
    // ras eval RUN against S3 prints the stored table.
    let id = run.rsplit('/').next().unwrap();
    let ev = s3.ras_ok(d, &["eval", id, "--store", "s3://ras/kill"]);
    let ev = String::from_utf8_lossy(&ev.stdout);
    let mean = reference.0["mean"]["image_auroc"].as_f64().unwrap();
    assert!(ev.contains(id) && ev.contains("mean"), "{ev}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("mean"))
            .eq(ev.lines().filter(|l| l.contains("mean"))),
        "train and eval print the same mean row ({mean}):\n{ev}"
    );

    // The server stopped for 30 s mid-training: connections hang, requests time out
    // (RAS_STORE_TIMEOUT_S=5) and are retried; the run finishes with the same numbers.
    let a = args("s3://ras/stop");
    let mut cmd = s3.ras(d, &a.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.env("RAS_STORE_TIMEOUT_S", "5");
    let log = d.join("stop.log");
    let mut child = spawn(&mut cmd, &log);
    let run = run_prefix(&s3, "stop", &mut child);
    wait_checkpoint(&s3, &run, &mut child);
    s3.signal("-STOP");
    std::thread::sleep(Duration::from_secs(30));
    let alive = child.try_wait().unwrap().is_none();
    s3.signal("-CONT");
    let st = child.wait().unwrap();
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(st.success(), "the run must ride out a 30 s stop:\n{err}");
    assert!(alive, "the run was still waiting on the store when the server came back");
    assert!(err.contains("backing off") || err.contains("retrying"), "the outage was retried:\n{err}");
    assert_eq!(final_numbers(&s3, &run), reference, "SIGSTOP 30 s: final metrics differ");

    // The server killed and restarted on the same port and folder 10 s later.
    let a = args("s3://ras/restart");
    let log = d.join("restart.log");
    let mut child = spawn(&mut s3.ras(d, &a.iter().map(String::as_str).collect::<Vec<_>>()), &log);
    let run = run_prefix(&s3, "restart", &mut child);
    wait_checkpoint(&s3, &run, &mut child);
    s3.kill();
    std::thread::sleep(Duration::from_secs(10));
    let alive = child.try_wait().unwrap().is_none();
    s3.spawn();
    let st = child.wait().unwrap();
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(st.success(), "the run must ride out a server restart:\n{err}");
    assert!(alive, "the run was still waiting on the store when the server came back");
    assert!(err.contains("backing off") || err.contains("retrying"), "the outage was retried:\n{err}");
    assert_eq!(final_numbers(&s3, &run), reference, "server restart: final metrics differ");
}

#[test]
fn past_the_retry_budget_a_run_exits_74_and_resumes_later() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut s3 = S3::start(d);
    s3.one_thread = true;
    let cfg = outage_config(d);
    let cfg = cfg.to_str().unwrap();
    let a = train_args(cfg, "s3://ras/down");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();

    // The server goes away after the first checkpoint and stays away until ras gives up.
    let mut cmd = s3.ras(d, &a);
    cmd.env("RAS_STORE_RETRY_S", "3").env("RAS_STORE_TIMEOUT_S", "2");
    let log = d.join("down.log");
    let t = Instant::now();
    let mut child = spawn(&mut cmd, &log);
    let run = run_prefix(&s3, "down", &mut child);
    wait_checkpoint(&s3, &run, &mut child);
    let status_before = s3.object(&format!("{run}/status.json"));
    s3.kill();
    let gave_up = Instant::now();
    let st = child.wait().unwrap();
    eprintln!(
        "gave up {:.1} s after the server went away (run {:.1} s)",
        gave_up.elapsed().as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    let err = std::fs::read_to_string(&log).unwrap();
    assert_eq!(st.code(), Some(74), "exit 74 (infrastructure):\n{err}");
    assert!(
        err.contains("RAS_STORE_RETRY_S") && err.contains(&format!("{}/", run.trim_start_matches("down/"))),
        "the error names the key and the knob:\n{err}"
    );
    assert!(err.contains("status could not be recorded"), "says the status was not written:\n{err}");
    assert!(gave_up.elapsed() < Duration::from_secs(60), "gave up within a few budgets: {:?}", gave_up.elapsed());
    // Honest: the store was down, so the status is what it was before (never a torn write).
    s3.spawn();
    // (It may have been rewritten between our look and the kill: still "running".)
    let status_after = s3.object(&format!("{run}/status.json")).expect("status.json");
    let status: serde_json::Value = serde_json::from_slice(&status_after).expect("status.json is whole JSON");
    assert_eq!(status["state"], "running", "before: {}", String::from_utf8_lossy(&status_before.unwrap_or_default()));
    // Started again with the store back: resumes and completes.
    let out = s3.ras_ok(d, &a);
    assert!(String::from_utf8_lossy(&out.stdout).contains("mean"), "{}", text(&out));
    assert_eq!(s3.json(&format!("{run}/status.json"))["state"], "complete");
    let resumed = final_numbers(&s3, &run);

    // A store that answers but keeps failing one key (5xx: the key's path is a folder on
    // the server's disk) past the budget: exit 74 and, the status write going through,
    // state "infra" naming the key. Fixed, the run resumes.
    let a = train_args(cfg, "s3://ras/broken");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut cmd = s3.ras(d, &a);
    cmd.env("RAS_STORE_RETRY_S", "3");
    let log = d.join("broken.log");
    let mut child = spawn(&mut cmd, &log);
    let run = run_prefix(&s3, "broken", &mut child);
    let blocked = s3.root.join(BUCKET).join(&run).join("final_metrics.json");
    std::fs::create_dir_all(blocked.join("x")).unwrap();
    let st = child.wait().unwrap();
    let err = std::fs::read_to_string(&log).unwrap();
    assert_eq!(st.code(), Some(74), "exit 74:\n{err}");
    let status = s3.json(&format!("{run}/status.json"));
    assert_eq!(status["state"], "infra", "{status}");
    let why = status["error"].as_str().unwrap();
    assert!(why.contains("final_metrics.json") && why.contains("RAS_STORE_RETRY_S"), "{why}");
    std::fs::remove_dir_all(&blocked).unwrap();
    s3.ras_ok(d, &a);
    assert_eq!(s3.json(&format!("{run}/status.json"))["state"], "complete");
    assert_eq!(final_numbers(&s3, &run), resumed, "same config, same numbers");
}
