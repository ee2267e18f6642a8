//! A sweep's stored manifest as other versions of `ras` leave it: `ras status NAME --store
//! URL` reads today's manifests (no `format_version`: format 1), and refuses one in a
//! newer format or with a run config this version cannot parse with a message naming the
//! key, the run and the fix: an error exit, never a panic. `ras report` and `ras cancel`
//! read the manifest the same way, and write nothing.
//!
//! A few seconds: no run is trained, the manifests are written by hand.

mod common;
use common::*;
use serde_json::json;
use std::path::Path;

/// A run config this version parses (the values are checked, the data is not read).
const CONFIG: &str = "name = \"a\"\n[dataset]\nroot = \"/nowhere\"\n";

/// A stored manifest of today's layout with one run per `(id, config)`; `extra` adds or
/// replaces top-level fields.
fn write_manifest(store: &Path, name: &str, runs: &[(&str, &str)], extra: serde_json::Value) {
    let runs: Vec<serde_json::Value> = runs
        .iter()
        .map(|(id, config)| {
            json!({
                "id": id, "label": format!("demo {id}"), "variant": "demo", "dataset": "demo",
                "config_toml": config, "ranks": 1, "train_images": 8, "test_images": 4, "cost": 1.0,
                "feature_key": "k",
            })
        })
        .collect();
    let mut m = json!({"name": name, "store": format!("file://{}", store.display()), "max_retries": 1, "note": null, "runs": runs});
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    let path = store.join(format!("sweeps/{name}/manifest.json"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

/// `ras args` must fail with an error (exit 1, not a panic's 101): its stderr.
fn refused(args: &[&str], cwd: &Path) -> String {
    let out = ras(args, cwd);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "ras {args:?} should fail\nstdout:\n{}", String::from_utf8_lossy(&out.stdout));
    assert!(!stderr.contains("panicked") && out.status.code() != Some(101), "ras {args:?} panicked:\n{stderr}");
    stderr
}

fn assert_names(stderr: &str, needles: &[&str]) {
    for n in needles {
        assert!(stderr.contains(n), "{n:?} not in:\n{stderr}");
    }
}

#[test]
fn status_reads_todays_manifests_and_refuses_other_versions_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let url = format!("file://{}", store.display());
    let cwd = dir.path();

    // Today's stores: no format_version, no written_by.
    write_manifest(&store, "old", &[("a-1234abcd", CONFIG)], json!({}));
    let out = ok(&["status", "old", "--store", &url], cwd);
    assert!(out.contains("a-1234abcd") && out.contains("pending"), "{out}");

    // A newer format, whatever else it holds.
    write_manifest(&store, "newer", &[], json!({"format_version": 7, "written_by": "9.9.9", "runs": "moved"}));
    let err = refused(&["status", "newer", "--store", &url], cwd);
    assert_names(&err, &["sweeps/newer/manifest.json", &url, "format 7", "ras 9.9.9", "reads format 1"]);

    // Format 1, but a run config with a key this version does not know.
    let future = format!("{CONFIG}[train]\nfuture_knob = 3\n");
    write_manifest(
        &store,
        "future",
        &[("a-1234abcd", CONFIG), ("b-5678abcd", &future)],
        json!({"format_version": 1, "written_by": "9.9.9"}),
    );
    for cmd in ["status", "report", "cancel"] {
        let err = refused(&[cmd, "future", "--store", &url], cwd);
        assert_names(&err, &["sweeps/future/manifest.json", "run b-5678abcd", "future_knob", "ras 9.9.9"]);
    }
    assert!(!store.join("sweeps/future/cancelled").exists(), "a refused cancel writes nothing");

    // JSON cut short.
    let cut = store.join("sweeps/cut/manifest.json");
    std::fs::create_dir_all(cut.parent().unwrap()).unwrap();
    std::fs::write(&cut, b"{\"name\": \"cut\", \"runs\": [").unwrap();
    let err = refused(&["status", "cut", "--store", &url], cwd);
    assert_names(&err, &["sweeps/cut/manifest.json", "not valid JSON"]);
}
