//! `ras report` plots and the noise table, from a real sweep: a synthetic dataset made by
//! `ras data synth`, a 2 x 2 grid over T_e x T_d on the Local launcher, each run trained
//! for 2 epochs and then evaluated again at test-time noise 20 (`eval.noise_scales`)
//! without retraining. Checks: the figures are SVGs (parsed as XML: axis labels, tick
//! labels, colour-bar ticks, readable legend labels, the caveat as a comment and a visible
//! note) with PNGs at twice their size, and the noise table's numbers are the runs' own
//! records (scale 0 = final_metrics.json, 20 = evals/test_jitter_20.json). The sweep has
//! no [paper]: the heat maps show only ours. About a minute on 2 cores.

mod common;
use common::*;

/// The text of every `<text>` of an SVG (parsed as XML), trimmed.
fn svg_texts(svg: &str, name: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{name} is not XML: {e}"));
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(|t| t.trim().to_string())
        .collect()
}

/// An SVG's width and height attributes.
fn svg_size(svg: &str) -> (u32, u32) {
    let doc = roxmltree::Document::parse(svg).unwrap();
    let root = doc.root_element();
    (root.attribute("width").unwrap().parse().unwrap(), root.attribute("height").unwrap().parse().unwrap())
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
    ok(
        &[
            "data",
            "synth",
            "--out",
            data.to_str().unwrap(),
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
        cwd,
    );
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

    // Heat maps (T_e x T_d both vary) and noise curves: written, listed, SVG and PNG.
    let rep = cwd.join("rep");
    for name in ["demo-heatmap-i-auroc", "demo-heatmap-p-auroc", "demo-noise-i-auroc", "demo-noise-p-auroc"] {
        for ext in ["svg", "png"] {
            assert!(report.contains(&format!("wrote rep/{name}.{ext}")), "{name}.{ext} not listed:\n{report}");
        }
        let svg = std::fs::read_to_string(rep.join(format!("{name}.svg"))).unwrap();
        let texts = svg_texts(&svg, name);
        // The caveats (random-init backbone, synthetic classes, 2 epochs): a comment before
        // the figure and a visible note under its title.
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let first = doc.root().children().find(|n| n.is_comment() || n.is_element()).unwrap();
        assert!(
            first.is_comment() && first.text().unwrap().contains("NOT COMPARABLE TO THE PAPER"),
            "{name}: no caveat comment first"
        );
        assert!(
            texts.iter().any(|t| t.starts_with("not comparable to the paper: ")),
            "{name}: no visible caveat: {texts:?}"
        );
        assert!(texts.join(" ").contains("random-init backbone"), "{name}: the note names the cause: {texts:?}");
        // No raw config keys anywhere a reader looks.
        assert!(texts.iter().all(|t| !t.contains("model.") && !t.contains('"')), "{name}: raw keys in {texts:?}");
        let (w, h) = svg_size(&svg);
        let img = image::open(rep.join(format!("{name}.png"))).unwrap_or_else(|e| panic!("{name}.png: {e}"));
        assert_eq!((img.width(), img.height()), (2 * w, 2 * h), "{name}.png is the SVG at 2x");
    }
    for metric in ["I-AUROC", "P-AUROC"] {
        let name = format!("demo-heatmap-{}.svg", metric.to_lowercase());
        let texts = svg_texts(&std::fs::read_to_string(rep.join(&name)).unwrap(), &name);
        for label in ["T_d (decoder steps)", "T_e (encoder layers)", "ours", "0", "1", "2", &format!("{metric} (%)")] {
            assert!(texts.iter().any(|t| t == label), "{name}: no {label:?} in {texts:?}");
        }
        assert!(
            texts.iter().any(|t| t.starts_with(metric) && t.contains("on demo")),
            "{name}: title names metric and dataset: {texts:?}"
        );
        assert!(!texts.iter().any(|t| t.starts_with("paper")), "{name}: no [paper], no paper panel: {texts:?}");
        // Cells: one value each, as the runs' means (one decimal); the colour bar's ticks
        // are the other numbers: 4 to 6 of them.
        let numbers: Vec<&String> = texts.iter().filter(|t| t.parse::<f64>().is_ok()).collect();
        let cells = numbers.iter().filter(|t| t.contains('.') && t.split('.').nth(1).unwrap().len() == 1).count();
        assert!(cells >= 4, "{name}: 4 cell values expected: {numbers:?}");
        let bar = numbers.len() - 4 /* tick labels 0, 1 and 1, 2 */ - 4 /* cells */;
        assert!((4..=6).contains(&bar), "{name}: {bar} colour-bar ticks in {numbers:?}");
    }
    for metric in ["I-AUROC", "P-AUROC"] {
        let name = format!("demo-noise-{}.svg", metric.to_lowercase());
        let texts = svg_texts(&std::fs::read_to_string(rep.join(&name)).unwrap(), &name);
        // Axes with ticks at the noise scales; a legend entry per variant, as T_e/T_d.
        for label in ["test-time noise alpha", &format!("{metric} (%)"), "0", "20", "T_d=1 T_e=0", "T_d=2 T_e=1"] {
            assert!(texts.iter().any(|t| t == label), "{name}: no {label:?} in {texts:?}");
        }
        assert!(!texts.iter().any(|t| t.ends_with("(paper)")), "{name}: no [paper], no paper points: {texts:?}");
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
            let line =
                csv.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no row {prefix} in\n{csv}"));
            let f: Vec<f64> = line[prefix.len()..].split(',').map(|x| x.parse().unwrap()).collect();
            assert!((f[0] - want.0).abs() < 1e-3 && (f[1] - want.1).abs() < 1e-3, "{line} vs {want:?}");
        }
        if at0 != at20 {
            changed += 1;
        }
    }
    assert!(changed > 0, "test-time noise 20 changed no run's metrics: is the noise applied?");
    // The header and a row per variant and scale, after the caveats (`# ` lines).
    assert_eq!(csv.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count(), 1 + 4 * 2, "{csv}");
    eprintln!("report_plots test took {:.1} s", t.elapsed().as_secs_f64());
}
