//! `ras report` plots and the noise table, from a real sweep: a synthetic dataset made by
//! `ras data synth`, a 2 x 2 grid over T_e x T_d on the Local launcher, each run trained
//! for 2 epochs and then evaluated again at test-time noise 20 (`eval.noise_scales`)
//! without retraining. Checks: the heat maps decode, and the noise table's numbers are
//! the runs' own records (scale 0 = final_metrics.json, 20 = evals/test_jitter_20.json).
//! About a minute on 2 cores.

mod common;
use common::*;
use std::path::Path;

fn ok(args: &[&str], cwd: &Path) -> String {
    let out = ras(args, cwd);
    assert!(
        out.status.success(),
        "ras {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Mean (I-AUROC, P-AUROC) in percent of a MetricsTable as JSON.
fn mean_pct(table: &serde_json::Value) -> (f64, f64) {
    (100.0 * table["mean"]["image_auroc"].as_f64().unwrap(), 100.0 * table["mean"]["pixel_auroc"].as_f64().unwrap())
}

#[test]
fn layer_sweep_with_noise_scales_reports_heat_maps_and_noise_table() {
    let t = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    let store = cwd.join("store");
    ok(&["data", "synth", "--out", data.to_str().unwrap(), "--classes", "2", "--seed", "4242", "--train", "8", "--test-good", "6", "--test-defect", "2", "--image-size", "64"], cwd);
    let sweep = cwd.join("layers.toml");
    std::fs::write(
        &sweep,
        format!(
            r#"name = "layers"
base = "{base}"
max_retries = 0
[set]
store = "file://{store}"
"dataset.root" = "{data}"
"train.epochs" = 2
"train.eval_every" = 2
"model.hidden_dim" = 32
"model.ffn_dim" = 64
"eval.pictures" = 0
"eval.noise_scales" = [20.0]
[grid]
"model.encoder_layers" = [0, 1]
"model.decoder_layers" = [1, 2]
"#,
            base = repo().join("configs/demo.toml").display(),
            store = store.display(),
            data = data.display()
        ),
    )
    .unwrap();
    let (sweep, local) = (sweep.to_str().unwrap().to_string(), repo().join("cluster/local.toml"));
    let local = local.to_str().unwrap();
    let out = ok(&["sweep", &sweep, "--cluster", local], cwd);
    assert!(out.contains("4 runs: 4 complete"), "{out}");
    let report = ok(&["report", &sweep, "--cluster", local, "--out", "rep"], cwd);
    eprintln!("{report}");

    // Heat maps (T_e x T_d both vary) and noise curves: written, listed, and real PNGs.
    let rep = cwd.join("rep");
    for name in ["demo-heatmap-i-auroc.png", "demo-heatmap-p-auroc.png", "demo-noise-i-auroc.png", "demo-noise-p-auroc.png", "demo-noise.md"] {
        assert!(report.contains(&format!("wrote rep/{name}")), "{name} not listed:\n{report}");
    }
    for name in ["demo-heatmap-i-auroc.png", "demo-heatmap-p-auroc.png", "demo-noise-i-auroc.png"] {
        let img = image::open(rep.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(img.width() >= 200 && img.height() >= 100, "{name}: {}x{}", img.width(), img.height());
    }

    // The noise table: one row per run (variant) and scale, numbers from its records.
    let csv = std::fs::read_to_string(rep.join("demo-noise.csv")).unwrap();
    let manifest = json(&store.join("sweeps/layers/manifest.json"));
    let runs = manifest["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    let mut changed = 0;
    for run in runs {
        let (id, variant) = (run["id"].as_str().unwrap(), run["variant"].as_str().unwrap());
        let at0 = mean_pct(&json(&store.join(format!("runs/{id}/final_metrics.json")))["metrics"]);
        let at20 = mean_pct(&json(&store.join(format!("runs/{id}/evals/test_jitter_20.json"))));
        for (scale, want) in [("0", at0), ("20", at20)] {
            let prefix = format!("\"{}\",{scale},1,", variant.replace('"', "\"\""));
            let line = csv.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no row {prefix} in\n{csv}"));
            let f: Vec<f64> = line[prefix.len()..].split(',').map(|x| x.parse().unwrap()).collect();
            assert!((f[0] - want.0).abs() < 1e-3 && (f[1] - want.1).abs() < 1e-3, "{line} vs {want:?}");
        }
        if at0 != at20 {
            changed += 1;
        }
    }
    assert!(changed > 0, "test-time noise 20 changed no run's metrics: is the noise applied?");
    assert_eq!(csv.lines().count(), 1 + 4 * 2, "{csv}");
    eprintln!("report_plots test took {:.1} s", t.elapsed().as_secs_f64());
}
