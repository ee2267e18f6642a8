//! What must hold after the chaos, each checked from the store (the S3 server's folder,
//! read as files: what the server holds, not what a ras client says), Slurm, the process
//! table and the fault log.

use crate::common::walk;
use crate::faults::Log;
use crate::world::{World, EPOCHS};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

fn check(name: &'static str, problems: Vec<String>, fine: String) -> Check {
    let ok = problems.is_empty();
    let detail = if ok { fine } else { problems.join("; ") };
    Check { name, ok, detail }
}

pub fn check_all(w: &World, log: &Log) -> Vec<Check> {
    let runs = w.all_runs();
    vec![
        all_complete(w, log, &runs),
        one_writer(w, &runs),
        same_numbers(w, &runs),
        no_torn_object(w),
        nothing_left(w),
        cost_accounts(w, &runs),
    ]
}

fn all_complete(w: &World, log: &Log, runs: &[(usize, String)]) -> Check {
    let mut p = vec![];
    if let Some(why) = &log.unfinished {
        p.push(why.clone());
    }
    if runs.len() < 12 {
        p.push(format!("{} runs in the sweeps (at least 12 expected)", runs.len()));
    }
    for (_, r) in runs {
        if !w.complete(r) {
            p.push(format!("run {r} is not complete: {:?}", w.json(&format!("runs/{r}/status.json"))));
        }
    }
    check("every run complete", p, format!("{} runs of {} sweeps complete", runs.len(), w.sweeps.len()))
}

/// The JSON files directly under a folder of the bucket, by file name.
fn jsons(w: &World, folder: &str) -> BTreeMap<String, Value> {
    jsons_any(w, folder).into_iter().filter(|(n, _)| n.ends_with(".json")).collect()
}

/// Every file directly under a folder of the bucket parsed as JSON (Null if it is not),
/// by file name.
fn jsons_any(w: &World, folder: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(w.bucket().join(folder)).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Ok(v) = std::fs::read(e.path()) {
            out.insert(name, serde_json::from_slice(&v).unwrap_or(Value::Null));
        }
    }
    out
}

/// One holder of a run's lease, from its history (times in ms since the epoch).
struct Holder {
    token: String,
    acquired: u64,
    released: Option<u64>,
    replaces: Option<String>,
    why: String,
}

fn history(w: &World, run: &str) -> Vec<Holder> {
    let files = jsons(w, &format!("runs/{run}/leases"));
    let mut out: Vec<Holder> = files
        .iter()
        .filter(|(n, _)| !n.ends_with(".released.json"))
        .map(|(name, v)| {
            let token = v["holder"]["token"].as_str().unwrap_or_default().to_string();
            let released = files.get(&name.replace(".json", ".released.json")).and_then(|r| r["released_ms"].as_u64());
            Holder {
                acquired: v["acquired_ms"].as_u64().unwrap_or(0),
                released,
                replaces: v["replaces"].as_str().map(str::to_string),
                why: v["why"].as_str().unwrap_or_default().to_string(),
                token,
            }
        })
        .collect();
    out.sort_by_key(|h| h.acquired);
    out
}

/// Checkpoint records of a run, by (epoch, step).
fn checkpoints(w: &World, run: &str) -> Vec<Value> {
    let mut v: Vec<Value> = jsons(w, &format!("runs/{run}/checkpoints/unified")).into_values().collect();
    v.sort_by_key(|c| (c["epoch"].as_u64(), c["step"].as_u64()));
    v
}

/// No run had two writers at once: in its lease history every holder took the lease when
/// the one before had released it or was gone (replaced, for a reason a dead holder
/// gives); each checkpoint names a holder of that history, and along the run's
/// checkpoints (by epoch and step) the holders follow the history's order, never back;
/// the training log has each epoch once.
fn one_writer(w: &World, runs: &[(usize, String)]) -> Check {
    let mut p = vec![];
    let (mut holders, mut takeovers) = (0, 0);
    for (_, run) in runs {
        let h = history(w, run);
        holders += h.len();
        if h.is_empty() {
            p.push(format!("{run}: no lease history"));
            continue;
        }
        for (i, cur) in h.iter().enumerate() {
            if let Some(old) = &cur.replaces {
                takeovers += 1;
                if !["expired", "holder process gone", "same Slurm job"].contains(&cur.why.as_str()) {
                    p.push(format!("{run}: holder {} replaced {old} because {:?}", cur.token, cur.why));
                }
            }
            for prev in &h[..i] {
                let replaced = h[..=i].iter().any(|x| x.replaces.as_deref() == Some(&prev.token));
                let released = prev.released.is_some_and(|r| r <= cur.acquired);
                if !replaced && !released {
                    p.push(format!(
                        "{run}: holder {} took the lease at {} while {} (from {}) held it, neither released nor replaced",
                        cur.token, cur.acquired, prev.token, prev.acquired
                    ));
                }
            }
        }
        let order: BTreeMap<&str, usize> = h.iter().enumerate().map(|(i, x)| (x.token.as_str(), i)).collect();
        let mut last = 0;
        for c in checkpoints(w, run) {
            let who = c["lease"].as_str().unwrap_or("<none>");
            match order.get(who) {
                None => {
                    p.push(format!("{run}: checkpoint epoch {} written by {who}, not in the lease history", c["epoch"]))
                }
                Some(&i) if i < last => p.push(format!(
                    "{run}: checkpoint epoch {} step {} by holder #{i} after one by holder #{last}",
                    c["epoch"], c["step"]
                )),
                Some(&i) => last = i,
            }
        }
        let text = std::fs::read_to_string(w.bucket().join(format!("runs/{run}/train_log.jsonl"))).unwrap_or_default();
        let epochs: Vec<u64> =
            text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()?["epoch"].as_u64()).collect();
        let want: Vec<u64> = (1..=EPOCHS as u64).collect();
        if epochs != want {
            p.push(format!("{run}: train_log epochs {epochs:?}, expected {want:?} (each once)"));
        }
    }
    check(
        "one writer at a time",
        p,
        format!("{holders} lease holders ({takeovers} takeovers of dead holders) over {} runs; checkpoint sequences in holder order", runs.len()),
    )
}

/// What of final_metrics.json must be the same bits (not the cache counts: a cache is
/// filled once, whoever reads it).
fn numbers(v: &Value) -> Value {
    json!({ "epoch": v["epoch"], "metrics": v["metrics"], "best_on_test_extra": v["best_on_test_extra"], "image_scores": v["image_scores"] })
}

/// Each run's config trained again, once, with no fault (its own ranks, CPU, one thread,
/// a store in a local folder): final metrics equal to the last bit.
fn same_numbers(w: &World, runs: &[(usize, String)]) -> Check {
    let mut p = vec![];
    let reference = w.dir.join("reference");
    let store_line = format!("store = \"file://{}/store\"", reference.display());
    std::fs::create_dir_all(reference.join("store")).unwrap();
    for (i, run) in runs {
        let Ok(cfg) = std::fs::read_to_string(w.bucket().join(format!("runs/{run}/config.toml"))) else {
            p.push(format!("{run}: no config.toml"));
            continue;
        };
        let cfg: String = cfg
            .lines()
            .map(|l| if l.starts_with("store = ") { store_line.clone() } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\n");
        let path = reference.join(format!("{run}.toml"));
        std::fs::write(&path, cfg).unwrap();
        let ras = env!("CARGO_BIN_EXE_ras");
        let before = dirs(&reference.join("store/runs"));
        let mut cmd = if w.sweeps[*i].ranks > 1 {
            let mut c = Command::new("mpirun");
            c.args(["--oversubscribe", "--bind-to", "none", "--allow-run-as-root", "-np"])
                .arg(w.sweeps[*i].ranks.to_string())
                .arg(ras);
            c
        } else {
            Command::new(ras)
        };
        let out = cmd
            .args(["--quiet", "train"])
            .arg(&path)
            .current_dir(&w.dir)
            .env("OMP_NUM_THREADS", "1")
            .env("RUST_LOG", "warn")
            .env_remove("RAS_STORE")
            .output()
            .unwrap();
        if !out.status.success() {
            p.push(format!("{run}: the reference training failed: {}", crate::common::text(&out)));
            continue;
        }
        // (Its run id differs: the store is part of the resolved config.)
        let after = dirs(&reference.join("store/runs"));
        let made: Vec<&String> = after.iter().filter(|d| !before.contains(*d)).collect();
        let [made] = made[..] else {
            p.push(format!("{run}: the reference training made runs {made:?}, not one"));
            continue;
        };
        let Some(got) = w.json(&format!("runs/{run}/final_metrics.json")) else {
            p.push(format!("{run}: no final metrics"));
            continue;
        };
        let want: Value = serde_json::from_slice(
            &std::fs::read(reference.join(format!("store/runs/{made}/final_metrics.json"))).unwrap(),
        )
        .unwrap();
        if numbers(&got) != numbers(&want) {
            p.push(format!(
                "{run}: final metrics differ from the fault-free run: mean {} vs {}",
                got["metrics"]["mean"], want["metrics"]["mean"]
            ));
        }
    }
    check(
        "final metrics bit-identical to a fault-free run",
        p,
        format!(
            "{} runs trained again without faults: final metrics, image scores and the extra equal bit for bit",
            runs.len()
        ),
    )
}

fn dirs(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn sha256_of(path: &Path) -> Option<String> {
    Some(ras::store::sha256_hex(&std::fs::read(path).ok()?))
}

/// No torn object: every JSON object and JSON line parses, every checkpoint and feature
/// shard matches the sha256 its record gives, no staging or half-written file is left.
fn no_torn_object(w: &World) -> Check {
    let mut p = vec![];
    let bucket = w.bucket();
    let mut files = vec![];
    walk(&bucket, &mut files);
    let (mut json_n, mut ckpt_n, mut shard_n) = (0, 0, 0);
    for f in &files {
        let key = f.strip_prefix(&bucket).unwrap().to_string_lossy().into_owned();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.')
            || name.contains('#')
            || name.contains(".tmp")
            || name.contains(".partial")
            || key.contains("/lease-takeovers/")
        {
            p.push(format!("staging or half-written file left: {key}"));
            continue;
        }
        let bytes = std::fs::read(f).unwrap_or_default();
        if name.ends_with(".json") {
            json_n += 1;
            let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
                p.push(format!("{key} does not parse as JSON"));
                continue;
            };
            if key.contains("/checkpoints/") {
                ckpt_n += 1;
                let weights = v["weights"].as_str().unwrap_or_default();
                if sha256_of(&bucket.join(weights)).as_deref() != v["sha256"].as_str() {
                    p.push(format!("{weights} does not match the sha256 of its record {key}"));
                }
            }
            if key.starts_with("features/") && name == "manifest.json" {
                for split in v["splits"].as_array().into_iter().flatten() {
                    for shard in split["shards"].as_array().into_iter().flatten() {
                        shard_n += 1;
                        let (k, sha) = (shard[0].as_str().unwrap_or_default(), shard[1].as_str());
                        if sha256_of(&bucket.join(k)).as_deref() != sha {
                            p.push(format!("feature shard {k} does not match the sha256 in {key}"));
                        }
                    }
                }
            }
        } else if name.ends_with(".jsonl") {
            for (n, l) in String::from_utf8_lossy(&bytes).lines().enumerate() {
                if serde_json::from_str::<Value>(l).is_err() {
                    p.push(format!("{key} line {}: not JSON: {l:?}", n + 1));
                }
            }
        }
    }
    if ckpt_n == 0 || shard_n == 0 {
        p.push(format!("nothing to check: {ckpt_n} checkpoint records, {shard_n} feature shards"));
    }
    check(
        "no torn object",
        p,
        format!("{} objects: {json_n} JSON parse; {ckpt_n} checkpoints and {shard_n} feature shards match their sha256; no staging file", files.len()),
    )
}

/// No lease left in the store, no job in Slurm, no process of this chaos on the machine
/// (jobs and processes given 60 s to end: a complete run's job may still be exiting).
fn nothing_left(w: &World) -> Check {
    let mut p = vec![];
    let t = Instant::now();
    let (mut jobs, mut procs);
    loop {
        let out = Command::new("squeue").args(["-h", "-o", "%i %j %T"]).output().unwrap();
        jobs = String::from_utf8_lossy(&out.stdout).trim().to_string();
        procs = w.processes().into_iter().map(|p| format!("{} {}", p.pid, p.argv.join(" "))).collect::<Vec<_>>();
        if (jobs.is_empty() && procs.is_empty()) || t.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if !jobs.is_empty() {
        p.push(format!("jobs left in Slurm: {jobs}"));
    }
    if !procs.is_empty() {
        p.push(format!("processes left: {procs:?}"));
    }
    let leases: Vec<String> = w.keys("runs").into_iter().filter(|k| k.ends_with("/lease.json")).collect();
    if !leases.is_empty() {
        p.push(format!("leases left: {leases:?}"));
    }
    check("no lease, job or process left", p, "none".into())
}

/// The cost records account for every attempt: each run's index (cost.json) holds
/// exactly its attempt records; every lease holder that wrote a checkpoint has an
/// attempt record with its token. A relaunch after an attempt the store cut off (or a
/// preemption whose job was not requeued) is marked as using no retry.
fn cost_accounts(w: &World, runs: &[(usize, String)]) -> Check {
    let mut p = vec![];
    let (mut attempts, mut outages, mut interrupted, mut free_relaunches) = (0, 0, 0, 0);
    for (i, run) in runs {
        let records = jsons(w, &format!("runs/{run}/attempts"));
        let key = |v: &Value| format!("{}-{}-{}", v["started_unix"], v["host"].as_str().unwrap_or(""), v["pid"]);
        let listed: BTreeSet<String> = records.values().map(key).collect();
        let index = w.json(&format!("runs/{run}/cost.json")).unwrap_or(Value::Null);
        let indexed: BTreeSet<String> = index["attempts"].as_array().into_iter().flatten().map(key).collect();
        if listed != indexed {
            p.push(format!("{run}: cost.json holds {indexed:?} but attempts/ holds {listed:?}"));
        }
        let runs_records: Vec<&Value> = records.values().filter(|r| r["job"] != "feature_cache").collect();
        attempts += runs_records.len();
        outages += runs_records.iter().filter(|r| r["outcome"] == "outage").count();
        interrupted += runs_records.iter().filter(|r| r["outcome"] == "interrupted").count();
        let tokens: BTreeSet<&str> = runs_records.iter().filter_map(|r| r["lease"].as_str()).collect();
        for c in checkpoints(w, run) {
            if let Some(t) = c["lease"].as_str() {
                if !tokens.contains(t) {
                    p.push(format!(
                        "{run}: holder {t} wrote checkpoint epoch {} but has no attempt record",
                        c["epoch"]
                    ));
                }
            }
        }
        // The coordinators' attempts (claims), in order; each one after the first follows
        // the attempt records written since the claim before it: when the last of those
        // ended cut off by the store or preempted, the new claim must say it uses no retry.
        let mut claims: Vec<(u64, Value)> = jsons_any(w, &format!("sweeps/{}/claims", w.sweeps[*i].name))
            .into_iter()
            .filter_map(|(name, v)| Some((name.strip_prefix(&format!("{run}."))?.parse::<u64>().ok()?, v)))
            .collect();
        claims.sort_by_key(|c| c.0);
        for pair in claims.windows(2) {
            let (from, to) = (pair[0].1["unix"].as_u64().unwrap_or(0), pair[1].1["unix"].as_u64().unwrap_or(0));
            let last = runs_records
                .iter()
                .filter(|r| r["started_unix"].as_u64().is_some_and(|s| s >= from && s <= to))
                .max_by_key(|r| r["started_unix"].as_u64());
            let ended = last.and_then(|r| r["outcome"].as_str()).unwrap_or("no record");
            if ended == "outage" || ended == "preempted" {
                free_relaunches += 1;
                if pair[1].1["free"] != true {
                    p.push(format!(
                        "{run}: attempt {} followed one that ended {ended} but counts against max_retries",
                        pair[1].0
                    ));
                }
            }
        }
    }
    check(
        "cost records account for every attempt; outages used no retry",
        p,
        format!(
            "{attempts} attempt records ({interrupted} of attempts killed outright, {outages} cut off by the store); \
             {free_relaunches} relaunches after an outage or a preemption, none counted as a retry"
        ),
    )
}

pub struct Summary {
    pub text: String,
    pub json: Value,
}

pub fn summary(seed: u64, w: &World, log: &Log, report: &[Check], sweep_s: f64) -> Summary {
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for f in &log.faults {
        *by_kind.entry(serde_json::to_value(f.kind).unwrap().as_str().unwrap().to_string()).or_default() += 1;
    }
    let slowest = log
        .faults
        .iter()
        .filter_map(|f| Some((log.recovery_s(f)?, f)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(s, f)| json!({ "seconds": (s * 10.0).round() / 10.0, "kind": f.kind, "target": f.target, "at_s": f.start_s.round() }));
    let json = json!({
        "seed": seed,
        "runs": w.all_runs().len(),
        "sweeps_s": sweep_s.round(),
        "faults": log.faults.len(),
        "faults_by_kind": by_kind,
        "overlapping": log.overlapping(),
        "slowest_recovery": slowest,
        "coordinator_starts": log.coordinator_starts,
        "operator": log.operator,
        "invariants": report.iter().map(|c| json!({ "name": c.name, "ok": c.ok, "detail": c.detail })).collect::<Vec<_>>(),
    });
    let mut text = format!(
        "chaos summary (seed {seed}): {} runs in {:.0} s, {} faults ({} overlapping another), {} coordinator starts\n  faults by kind: {}\n  slowest recovery: {}\n",
        json["runs"], sweep_s, log.faults.len(), log.overlapping(), log.coordinator_starts,
        by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", "),
        slowest.as_ref().map(|s| format!("{} s after {} ({}) at {} s", s["seconds"], s["kind"], s["target"], s["at_s"])).unwrap_or("-".into()),
    );
    if !log.operator.is_empty() {
        text += &format!("  operator: {}\n", log.operator.join("; "));
    }
    for c in report {
        text += &format!("  [{}] {}: {}\n", if c.ok { "ok" } else { "FAILED" }, c.name, c.detail);
    }
    Summary { text, json }
}
