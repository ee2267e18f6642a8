//! `ras bench plan`: how far `ras plan` is from what the runs then cost, on a real
//! cluster. A Table-5-shaped sweep (every T_e x T_d of the grid, tiny sizes) over a
//! synthetic dataset: one cell is run first (its own one-run sweep), the whole sweep is
//! planned again (the other cells now scaled from that measured run by FLOPs) and run,
//! and each other run's cost (the wall seconds of its attempt records, its feature-cache
//! job included) is set against that plan, and against the plan made before anything ran
//! (the device's default rates).
//!
//! Everything goes through the `ras` binary, as a person would type it: `ras data synth`,
//! `ras plan --json`, `ras sweep`. Measured, printed, never asserted.

use crate::run::cost::read_attempts;
use crate::run::RunPaths;
use crate::store::Store;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    pub cluster: PathBuf,
    /// The grid's T_e and T_d values.
    pub encoder_layers: Vec<usize>,
    pub decoder_layers: Vec<usize>,
    /// The cell run first (T_e, T_d).
    pub first: (usize, usize),
    pub epochs: usize,
    pub eval_every: usize,
    pub hidden_dim: usize,
    /// Training images per class of the synthetic dataset (2 classes).
    pub train_images: usize,
    /// Each job takes its node to itself (`#SBATCH --exclusive`, on a copy of the profile).
    pub exclusive: bool,
    /// Keep the folder with the data, store, sweep files and logs (else removed).
    pub keep: bool,
}

/// One run's plan, from `ras plan --json`.
#[derive(Debug, Clone)]
struct Planned {
    id: String,
    label: String,
    wall_s: f64,
    low_s: f64,
    high_s: f64,
    source: String,
}

/// The runs of a `ras plan --json` output, by id.
fn parse_plan(json: &str) -> Result<Vec<Planned>> {
    let v: serde_json::Value = serde_json::from_str(json).context("ras plan --json printed no JSON")?;
    let runs = v["runs"].as_array().context("no runs in the plan")?;
    runs.iter()
        .map(|r| {
            let e = &r["estimate"];
            let num = |k: &str| e[k].as_f64().with_context(|| format!("no {k} in {e}"));
            Ok(Planned {
                id: r["id"].as_str().context("no id")?.to_string(),
                label: r["label"].as_str().unwrap_or_default().to_string(),
                wall_s: num("wall_s")?,
                low_s: num("low_s")?,
                high_s: num("high_s")?,
                source: r["source"].as_str().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

/// How `ras` is started: the binary, the folder, the torch threads of each rank.
struct Ras<'a> {
    exe: &'a Path,
    dir: &'a Path,
    threads: String,
}

/// `ras ARGS` in `dir`; its stdout, or an error with all it printed. Each rank gets as
/// many torch threads as the profile gives it cores (`OMP_NUM_THREADS`, passed on by the
/// local launcher and by sbatch): with torch's default (every core of the machine), two
/// runs on the test cluster's 2 cores ran 4 threads, and their training times varied 3x
/// at equal FLOPs.
fn ras(r: &Ras, args: &[&str]) -> Result<String> {
    let out = Command::new(r.exe)
        .arg("--quiet")
        .args(args)
        .current_dir(r.dir)
        .env("RUST_LOG", "warn")
        .env("OMP_NUM_THREADS", &r.threads)
        .output()?;
    if !out.status.success() {
        bail!(
            "ras {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The base config of the sweep: a tiny RAS on the synthetic data, CPU, random-init
/// EfficientNet-B0.
fn base_config(o: &Options, data: &Path, store: &Path) -> String {
    format!(
        r#"name = "planbench"
store = "file://{store}"
[dataset]
kind = "mvtec"
root = "{data}"
[backbone]
arch = "efficientnet-b0"
image_size = 224
[model]
hidden_dim = {h}
heads = 4
ffn_dim = {f}
[train]
epochs = {e}
eval_every = {every}
batch_size = 16
lr = 1e-3
device = "cpu"
[eval]
batch_size = 16
pictures = 0
"#,
        store = store.display(),
        data = data.display(),
        h = o.hidden_dim,
        f = 2 * o.hidden_dim,
        e = o.epochs,
        every = o.eval_every,
    )
}

fn sweep_file(name: &str, base: &Path, te: &[usize], td: &[usize]) -> String {
    let list = |v: &[usize]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ");
    format!(
        "name = \"{name}\"\nbase = \"{}\"\nmax_retries = 1\n[grid]\n\"model.encoder_layers\" = [{}]\n\"model.decoder_layers\" = [{}]\n",
        base.display(),
        list(te),
        list(td)
    )
}

/// The profile the sweep runs on: `o.cluster`, or with `o.exclusive` a copy in `dir` whose
/// jobs take their node to themselves (`#SBATCH --exclusive`). On a Slurm that packs jobs
/// onto shared cores (the test Slurm's partition is OverSubscribe=FORCE:4: it ran 8 of
/// these runs at once on 2 cores, where the profile plans 2), a run then gets the cores
/// the profile plans for it, as the measured run did.
fn profile_path(o: &Options, dir: &Path) -> Result<PathBuf> {
    let path = std::fs::canonicalize(&o.cluster).with_context(|| format!("{}", o.cluster.display()))?;
    if !o.exclusive {
        return Ok(path);
    }
    let profile = crate::config::ClusterProfile::load(&path)?;
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(&path)?)?;
    let mut extra = t.get("extra").and_then(|e| e.as_array()).cloned().unwrap_or_default();
    extra.push("#SBATCH --exclusive".into());
    t.insert("extra".into(), extra.into());
    if let Some(tpl) = profile.template {
        t.insert("template".into(), std::fs::canonicalize(&tpl)?.display().to_string().into());
    }
    let copy = dir.join("profile.toml");
    std::fs::write(&copy, toml::to_string(&t)?)?;
    Ok(copy)
}

/// Runs the benchmark, printing as it goes; returns the summary line.
pub fn run(o: &Options, out: &mut dyn Write) -> Result<String> {
    let exe = std::env::current_exe()?;
    let profile = crate::config::ClusterProfile::load(&o.cluster)?;
    let dir = std::env::temp_dir().join(format!("ras-bench-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cluster = profile_path(o, &dir)?.to_str().context("cluster profile path")?.to_string();
    let r = Ras { exe: &exe, dir: &dir, threads: profile.cpus_per_gpu.to_string() };
    let (data, store) = (dir.join("data"), dir.join("store"));
    let n = o.train_images.to_string();
    let synth = ["data", "synth", "--out", "data", "--classes", "2", "--seed", "4242", "--train", &n];
    ras(&r, &[&synth[..], &["--test-good", "6", "--test-defect", "2", "--image-size", "64"]].concat())?;
    let base = dir.join("base.toml");
    std::fs::write(&base, base_config(o, &data, &store))?;
    std::fs::write(dir.join("first.toml"), sweep_file("plan-first", &base, &[o.first.0], &[o.first.1]))?;
    std::fs::write(dir.join("table.toml"), sweep_file("plan-table", &base, &o.encoder_layers, &o.decoder_layers))?;
    let cells = o.encoder_layers.len() * o.decoder_layers.len();
    writeln!(
        out,
        "ras bench plan: {cells} runs (T_e {:?} x T_d {:?}, hidden {}, {} epochs), 2 synthetic classes of {} train images, on {} (OMP_NUM_THREADS={}{}); folder {}",
        o.encoder_layers,
        o.decoder_layers,
        o.hidden_dim,
        o.epochs,
        o.train_images,
        o.cluster.display(),
        r.threads,
        if o.exclusive { ", every job --exclusive" } else { "" },
        dir.display()
    )?;

    // 1. The plan before anything ran: the device's default rates.
    let before = parse_plan(&ras(&r, &["plan", "table.toml", "--cluster", &cluster, "--json"])?)?;
    // 2. One cell, run on its own.
    let t = std::time::Instant::now();
    ras(&r, &["sweep", "first.toml", "--cluster", &cluster])?;
    writeln!(out, "ran T_e={} T_d={} first: {:.1} s", o.first.0, o.first.1, t.elapsed().as_secs_f64())?;
    // 3. The plan now: the other cells scaled from the measured one. `ras sweep` makes
    //    the same plan when it starts and stores it in the manifest.
    let plan = ras(&r, &["plan", "table.toml", "--cluster", &cluster])?;
    write!(out, "{plan}")?;
    let after = parse_plan(&ras(&r, &["plan", "table.toml", "--cluster", &cluster, "--json"])?)?;
    // 4. The whole sweep (the measured cell is complete already).
    let t = std::time::Instant::now();
    ras(&r, &["sweep", "table.toml", "--cluster", &cluster])?;
    writeln!(out, "ran the sweep: {:.1} s", t.elapsed().as_secs_f64())?;

    let store_h = Store::open(&format!("file://{}", store.display()))?;
    let first_id = {
        let first = parse_plan(&ras(&r, &["plan", "first.toml", "--cluster", &cluster, "--json"])?)?;
        first.first().map(|r| r.id.clone()).unwrap_or_default()
    };
    writeln!(
        out,
        "{:<40} {:>8} {:>17} {:>8} {:>9}  {:<32} {:>8} {:>9}",
        "run", "planned", "range", "actual", "act/plan", "planned from", "default", "act/def"
    )?;
    let (mut ratios, mut default_ratios, mut inside) = (vec![], vec![], 0);
    for p in after.iter().filter(|p| p.id != first_id) {
        let actual: f64 = read_attempts(&store_h, &RunPaths::new(p.id.as_str()))?.iter().map(|r| r.wall_s).sum();
        let default = before.iter().find(|b| b.id == p.id).map(|b| b.wall_s).unwrap_or(f64::NAN);
        let (r, d) = (actual / p.wall_s, actual / default);
        inside += usize::from(p.low_s <= actual && actual <= p.high_s);
        ratios.push(r);
        default_ratios.push(d);
        writeln!(
            out,
            "{:<40} {:>7.1}s {:>7.1}s-{:>7.1}s {:>7.1}s {:>8.2}x  {:<32} {:>7.1}s {:>8.2}x",
            p.label, p.wall_s, p.low_s, p.high_s, actual, r, p.source, default, d
        )?;
    }
    let span = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{lo:.2}x-{hi:.2}x")
    };
    let summary = format!(
        "after one measured run: actual/planned {} over {} runs, {inside} inside their planned range; the default rates' plan (before any run): {}",
        span(&ratios),
        ratios.len(),
        span(&default_ratios)
    );
    writeln!(out, "{summary}")?;
    if !o.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(summary)
}
