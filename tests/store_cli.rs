//! The store as the place a researcher works from, on a real sweep of 2 tiny runs
//! (synthetic data from `ras data synth`, 64 px files, 2 epochs, the Local launcher):
//! - the sweep file names its base config and dataset relative to its own folder, and
//!   `ras sweep` runs from another folder;
//! - `ras status NAME --store URL`, `ras report NAME --store URL` and `ras cancel NAME
//!   --store URL` from a folder without cluster/ or the sweep file;
//! - `ras runs --filter`, `ras compare`, `ras eval` of an unknown run (creates nothing);
//! - `ras plan` refuses a typo'd class and a missing root naming the run and the key,
//!   and `--no-data-check` plans anyway, saying so.
//!
//! About a minute on 2 cores.

mod common;
use common::*;
use std::path::Path;

/// Fails, and returns stderr.
fn fails(args: &[&str], cwd: &Path) -> String {
    let out = ras(args, cwd);
    assert!(!out.status.success(), "ras {args:?} should fail\nstdout:\n{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const BASE: &str = r#"name = "ws"
seed = 333
store = "file://./not-this-store"
[dataset]
kind = "mvtec"
root = "not-this-data"
[backbone]
arch = "efficientnet-b0"
image_size = 224
batch_size = 16
[model]
hidden_dim = 32
encoder_layers = 1
decoder_layers = 2
heads = 4
ffn_dim = 64
[train]
epochs = 2
eval_every = 2
batch_size = 16
lr = 1e-3
device = "cpu"
[eval]
batch_size = 16
pictures = 0
"#;

#[test]
fn store_commands_work_from_anywhere_and_plan_refuses_bad_data() {
    let t = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (exp, work, elsewhere) = (dir.path().join("exp"), dir.path().join("work"), dir.path().join("elsewhere"));
    for d in [&exp, &work, &elsewhere] {
        std::fs::create_dir_all(d).unwrap();
    }
    let store = dir.path().join("store");
    let url = format!("file://{}", store.display());
    let local = repo().join("cluster/local.toml");
    let local = local.to_str().unwrap();
    ok(
        &[
            "data",
            "synth",
            "--out",
            "../exp/data",
            "--classes",
            "2",
            "--seed",
            "4242",
            "--train",
            "8",
            "--test-good",
            "6",
            "--test-defect",
            "2",
            "--image-size",
            "64",
        ],
        &work,
    );
    std::fs::write(exp.join("base.toml"), BASE).unwrap();
    // Relative paths: the base config and the data next to the sweep file.
    let sweep_text = |name: &str, extra: &str| {
        format!("name = \"{name}\"\nbase = \"base.toml\"\nmax_retries = 0\n[set]\nstore = \"{url}\"\n\"dataset.root\" = \"data\"\n{extra}[grid]\n\"model.decoder\" = [\"ras\", \"gate_only\"]\n")
    };
    std::fs::write(exp.join("s.toml"), sweep_text("s", "")).unwrap();
    std::fs::write(exp.join("typo.toml"), sweep_text("typo", "\"dataset.classes\" = [\"nope\"]\n")).unwrap();
    std::fs::write(
        exp.join("gone.toml"),
        sweep_text("gone", "").replace("\"dataset.root\" = \"data\"", "\"dataset.root\" = \"/no/such/root\""),
    )
    .unwrap();

    // Validation before submitting: the run and the key are named.
    let err = fails(&["plan", "../exp/typo.toml", "--cluster", local], &work);
    assert!(
        err.contains("typo.toml")
            && err.contains("run `base model.decoder=")
            && err.contains("dataset.classes")
            && err.contains("\"nope\""),
        "{err}"
    );
    let mut classes = ras::data::synth::class_names(2);
    classes.sort();
    assert!(err.contains(&classes.join(", ")), "the classes found are listed: {err}");
    let err = fails(&["sweep", "../exp/typo.toml", "--cluster", local], &work);
    assert!(err.contains("dataset.classes"), "{err}");
    assert!(!store.join("sweeps/typo").exists(), "nothing submitted");
    let err = fails(&["plan", "../exp/gone.toml", "--cluster", local], &work);
    assert!(err.contains("dataset.root") && err.contains("/no/such/root"), "{err}");
    let plan = ok(&["plan", "../exp/gone.toml", "--cluster", local, "--no-data-check"], &work);
    assert!(
        plan.contains("--no-data-check: 2 runs planned from their dataset's published sizes")
            && plan.contains("/no/such/root"),
        "{plan}"
    );

    // Planning is read-only: the sweep's store (named by the sweep, not there yet) and the
    // default one were not created.
    assert!(!store.exists(), "ras plan created the sweep's store folder");
    assert_eq!(files(&work), Vec::<String>::new(), "ras plan wrote into the folder it ran in");

    // The sweep, from a folder that is neither the repository nor the sweep file's.
    let out = ok(&["sweep", "../exp/s.toml", "--cluster", local], &work);
    assert!(out.contains("2 runs: 2 complete"), "{out}");
    let manifest = json(&store.join("sweeps/s/manifest.json"));
    let ids: Vec<String> =
        manifest["runs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 2);

    // By name, from a folder with no cluster/ and no sweep file.
    assert!(!elsewhere.join("cluster").exists());
    let st = ok(&["status", "s", "--store", &url], &elsewhere);
    assert!(st.contains("2 runs: 2 complete") && st.contains("model.decoder=\"gate_only\""), "{st}");
    let err = fails(&["status", "nosuch", "--store", &url], &elsewhere);
    assert!(err.contains(&format!("no sweep nosuch in {url}; sweeps there: s")), "{err}");
    let rep = ok(&["report", "s", "--store", &url, "--out", "rep"], &elsewhere);
    assert!(rep.contains("wrote rep/"), "{rep}");
    assert!(std::fs::read_dir(elsewhere.join("rep")).unwrap().count() > 0);
    // The sweep file still works too, from elsewhere, without a profile.
    let st = ok(&["status", "../exp/s.toml"], &elsewhere);
    assert!(st.contains("2 runs: 2 complete"), "{st}");

    // ras runs: every run, filters on config keys and state, JSON.
    let all = ok(&["runs", "--store", &url], &elsewhere);
    assert!(ids.iter().all(|id| all.contains(id.as_str())) && all.contains("2 runs in"), "{all}");
    // The backbone column: what each run recorded it learnt from (no weights: the seed).
    assert_eq!(all.matches("  b0 random-init-seed-0\n").count(), 2, "{all}");
    let gate = ok(&["runs", "--store", &url, "--filter", "model.decoder=gate_only"], &elsewhere);
    assert!(gate.contains("1 runs in") && gate.contains("gate_only") && gate.contains("complete"), "{gate}");
    let runs: serde_json::Value = serde_json::from_str(&ok(
        &["runs", "--store", &url, "--filter", "state=complete", "--filter", "T_e=1", "--json"],
        &elsewhere,
    ))
    .unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for r in runs {
        let i = r["mean_image_auroc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&i), "{r}");
        assert_eq!(r["values"]["train.epochs"], "2");
        assert!(r["rank_hours"].is_null() || r["rank_hours"].as_f64().is_some(), "{r}");
    }
    let err = fails(&["runs", "--store", &url, "--filter", "model.decodr=ras"], &elsewhere);
    assert!(err.contains("model.decodr"), "{err}");

    // ras compare: the differing key, then metrics side by side.
    let cmp = ok(&["compare", &ids[0], &ids[1], "--store", &url], &elsewhere);
    let decoder_line = cmp.lines().find(|l| l.starts_with("| model.decoder")).unwrap_or_else(|| panic!("{cmp}"));
    assert!(decoder_line.contains("ras") && decoder_line.contains("gate_only"), "{cmp}");
    assert!(!cmp.lines().any(|l| l.starts_with("| train.epochs")), "equal keys are not listed: {cmp}");
    assert!(
        cmp.contains("| mean")
            && classes.iter().all(|c| cmp.contains(&format!("| {c}")))
            && cmp.contains("I-AUROC [2]"),
        "{cmp}"
    );

    // ras eval of an unknown run: the message, and nothing created.
    let err = fails(&["eval", "nope-1234", "--store", &url], &elsewhere);
    assert!(err.contains(&format!("no run nope-1234 in the store {url}")), "{err}");
    assert!(err.contains("--store URL or RAS_STORE=URL"), "the error says how to name another store: {err}");
    assert!(!store.join("runs/nope-1234").exists());
    let absent = dir.path().join("absent-store");
    let err = fails(&["eval", "nope-1234", "--store", absent.to_str().unwrap()], &elsewhere);
    assert!(err.contains("no run nope-1234: no store at"), "{err}");
    assert!(!absent.exists(), "ras eval created the store folder");
    assert!(!elsewhere.join("ras-store").exists());

    // RAS_STORE names the store of every command that is given no --store.
    let env = [("RAS_STORE", url.as_str())];
    let by_env = ras_env(&["runs"], &elsewhere, &env);
    assert!(by_env.status.success(), "{}", text(&by_env));
    assert_eq!(String::from_utf8_lossy(&by_env.stdout), all, "ras runs with RAS_STORE = ras runs --store");
    let st = ras_env(&["status", "s"], &elsewhere, &env);
    assert!(String::from_utf8_lossy(&st.stdout).contains("2 runs: 2 complete"), "{}", text(&st));
    assert!(ras_env(&["eval", &ids[0]], &elsewhere, &env).status.success());
    let err = ras_env(&["compare", "nope-1234", &ids[0]], &elsewhere, &env);
    assert!(String::from_utf8_lossy(&err.stderr).contains(&format!("in the store {url}")), "{}", text(&err));
    assert!(!elsewhere.join("ras-store").exists());

    // ras cancel by name: no profile needed (no job is active here).
    let c = ok(&["cancel", "s", "--store", &url], &elsewhere);
    assert!(c.contains("cancelled 0 active jobs"), "{c}");
    eprintln!("store_cli test took {:.1} s", t.elapsed().as_secs_f64());
}
