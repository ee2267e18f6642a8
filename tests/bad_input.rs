//! Bad input: a catalogue of cases run through the real `ras` binary on real files. Each
//! case builds its inputs in its own temp folder and must end with a non-zero exit that is
//! not a panic (101), an error on stderr naming the file or key at fault, nothing
//! half-written (no `*.partial`, `*.tmp` or object-store staging file `name#N`) and no run
//! left "running".
//!
//! Most cases fail before training (config, dataset check, sweep expansion, cluster
//! profile). Those that need a finished run (corrupt checkpoints, truncated records,
//! export, predict) copy one tiny run made once (64-px synthetic data, 2 epochs).
//! A full store has its own test (`a_full_store_fails_cleanly`): the store on a 1 MiB
//! tmpfs mounted for it, which needs root (mount); without it that test fails, saying so.
//! `RAS_BAD_INPUT_CASE=substr` runs only the cases whose name contains it.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

struct Case {
    name: &'static str,
    /// Builds the inputs under the case's folder; returns the arguments of `ras`.
    setup: fn(&Path) -> Vec<String>,
    /// Substrings stderr must contain (the file or key at fault).
    expect: &'static [&'static str],
    /// Extra checks on the case's folder after the run.
    check: fn(&Path),
}

fn nothing(_: &Path) {}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn p(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

fn url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// `small_config` in `dir` on a dataset root, then `train CONFIG extra...`.
fn train_with(dir: &Path, root: &Path, name: &str, extra_toml: &str, args: &[&str]) -> Vec<String> {
    let cfg = small_config(dir, root, name, extra_toml);
    let mut v = vec!["train".to_string(), p(&cfg)];
    v.extend(args.iter().map(|a| a.to_string()));
    v
}

/// `ras train` of a small config (on no dataset: the case fails before reading it) with `--set`s.
fn train_set(dir: &Path, name: &str, sets: &[&str]) -> Vec<String> {
    let mut args = vec![];
    for x in sets {
        args.push("--set");
        args.push(x);
    }
    train_with(dir, dir, name, "", &args)
}

/// A small config whose text has `from` replaced by `to`.
fn edited_config(dir: &Path, name: &str, from: &str, to: &str) -> Vec<String> {
    let cfg = small_config(dir, dir, name, "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains(from), "{from:?} not in the config");
    std::fs::write(&cfg, text.replacen(from, to, 1)).unwrap();
    s(&["train", cfg.to_str().unwrap()])
}

/// A sweep over a small config in `dir` (not on a dataset: planned with --no-data-check).
fn sweep_file(dir: &Path, name: &str, body: &str) -> PathBuf {
    let base = small_config(dir, dir, "base", "");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, format!("name = \"{name}\"\nbase = \"{}\"\nmax_retries = 1\n{body}\n", base.display()))
        .unwrap();
    path
}

fn plan(_dir: &Path, sweep: &Path, cluster: &Path) -> Vec<String> {
    s(&["plan", sweep.to_str().unwrap(), "--cluster", cluster.to_str().unwrap(), "--no-data-check"])
}

fn local_profile() -> PathBuf {
    repo().join("cluster/local.toml")
}

const GOOD_GRID: &str = "[grid]\n\"model.encoder_layers\" = [0, 1]";

/// `ras plan` of a good sweep on a cluster profile with this text.
fn plan_profile(dir: &Path, profile: &str) -> Vec<String> {
    let sw = sweep_file(dir, "good", GOOD_GRID);
    let cl = dir.join("cl.toml");
    std::fs::write(&cl, profile).unwrap();
    plan(dir, &sw, &cl)
}

/// One tiny finished run (made once per test process): its folder holds `store/`.
fn fixture() -> &'static (PathBuf, String) {
    static F: OnceLock<(PathBuf, String)> = OnceLock::new();
    F.get_or_init(|| {
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap())).path().to_path_buf();
        let root = synth_dataset(&dir, 1, 2, 64, 2);
        let cfg = small_config(&dir, &root, "tiny", "");
        let sets = ["train.epochs=2", "train.eval_every=2", "model.hidden_dim=32", "model.ffn_dim=64"];
        let mut args = vec!["train", cfg.to_str().unwrap()];
        for x in &sets {
            args.extend(["--set", x]);
        }
        ok(&args, &dir);
        let runs = files(&dir.join("store/runs"));
        assert_eq!(runs.len(), 1, "{runs:?}");
        (dir, runs[0].clone())
    })
}

/// A copy of the tiny run's store (and dataset) in `dir`; the run id.
fn with_run(dir: &Path) -> String {
    let (src, id) = fixture();
    for sub in ["store", "data"] {
        let st = Command::new("cp").arg("-a").arg(src.join(sub)).arg(dir).status().unwrap();
        assert!(st.success());
    }
    id.clone()
}

fn ckpt(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("store/runs/{id}/checkpoints/unified/epoch_0002.safetensors"))
}

fn truncate(path: &Path, keep: usize) {
    let b = std::fs::read(path).unwrap();
    std::fs::write(path, &b[..keep.min(b.len())]).unwrap();
}

/// Replaces a PNG of the dataset with the first half of the same picture as a JPEG: its
/// header is fine, its data ends early.
fn half_a_jpeg(png: &Path) {
    let jpeg = png.with_extension("jpg");
    image::open(png).unwrap().to_rgb8().save(&jpeg).unwrap();
    std::fs::remove_file(png).unwrap();
    let n = std::fs::metadata(&jpeg).unwrap().len() as usize;
    truncate(&jpeg, n / 2);
}

fn store_url(dir: &Path) -> String {
    url(&dir.join("store"))
}

/// A regular file `dir/afile`: a store or output folder under it cannot be created. (The
/// tests run as root, which ignores `chmod 555`, so this stands for a read-only store.)
fn afile(dir: &Path) -> PathBuf {
    let f = dir.join("afile");
    std::fs::write(&f, "not a folder").unwrap();
    f
}

fn no_runs(dir: &Path) {
    assert!(!dir.join("store/runs").exists(), "nothing may be written for an invalid config");
}

fn no_store(dir: &Path) {
    assert!(!dir.join("store").exists(), "nothing may run");
}

fn no_sweep_state(dir: &Path) {
    assert!(!dir.join("store/sweeps").exists(), "no sweep state for a sweep that cannot expand");
    no_runs(dir);
}

fn cases() -> Vec<Case> {
    vec![
        // ---- run config: malformed, unknown and mistyped keys -------------------------------
        Case {
            name: "unknown_config_key",
            setup: |d| train_with(d, d, "unknown", "learning_rate = 0.1\n", &[]),
            expect: &["learning_rate", "unknown.toml"],
            check: no_runs,
        },
        Case {
            // A list that is not TOML was read as a string: the error shows the TOML.
            name: "set_list_not_toml",
            setup: |d| train_set(d, "cls", &["dataset.classes=[bottle]"]),
            expect: &["dataset.classes", "expected a sequence", "--set 'dataset.classes=[\"bottle\"]'"],
            check: no_runs,
        },
        Case {
            name: "unknown_config_section",
            setup: |d| train_with(d, d, "section", "[bogus]\na = 1\n", &[]),
            expect: &["bogus", "section.toml"],
            check: no_runs,
        },
        Case {
            name: "mistyped_value_in_file",
            setup: |d| edited_config(d, "typed", "epochs = 40", "epochs = \"forty\""),
            expect: &["typed.toml", "epochs", "forty"],
            check: no_runs,
        },
        Case {
            name: "toml_syntax_error",
            setup: |d| edited_config(d, "syntax", "[dataset]", "[dataset"),
            expect: &["syntax.toml", "[dataset"],
            check: no_runs,
        },
        Case {
            name: "empty_config",
            setup: |d| {
                std::fs::write(d.join("empty.toml"), "").unwrap();
                s(&["train", "empty.toml"])
            },
            expect: &["empty.toml", "name"],
            check: no_store,
        },
        Case {
            name: "missing_config_file",
            setup: |_| s(&["train", "no-such-config.toml"]),
            expect: &["no-such-config.toml"],
            check: no_store,
        },
        Case {
            name: "nan_lr_in_file",
            setup: |d| edited_config(d, "nanlr", "lr = 1e-3", "lr = nan"),
            expect: &["train.lr", "nanlr.toml"],
            check: no_runs,
        },
        Case {
            name: "negative_learning_rate",
            setup: |d| train_set(d, "neglr", &["train.lr=-0.001"]),
            expect: &["train.lr", "-0.001", "neglr.toml"],
            check: no_runs,
        },
        Case {
            name: "set_lr_nan",
            setup: |d| train_set(d, "c", &["train.lr=nan"]),
            expect: &["train.lr", "NaN"],
            check: no_runs,
        },
        Case {
            name: "set_lr_inf",
            setup: |d| train_set(d, "c", &["train.lr=inf"]),
            expect: &["train.lr", "inf"],
            check: no_runs,
        },
        Case {
            name: "set_epochs_not_a_number",
            setup: |d| train_set(d, "c", &["train.epochs=abc"]),
            expect: &["train.epochs", "abc"],
            check: no_runs,
        },
        Case {
            name: "set_epochs_negative",
            setup: |d| train_set(d, "c", &["train.epochs=-1"]),
            expect: &["train.epochs", "-1"],
            check: no_runs,
        },
        Case {
            name: "set_unknown_key",
            setup: |d| train_set(d, "c", &["train.ranks=8"]),
            expect: &["train.ranks", "ranks"],
            check: no_runs,
        },
        Case {
            name: "set_without_equals",
            setup: |d| train_set(d, "c", &["noequals"]),
            expect: &["noequals", "key.path=value"],
            check: no_runs,
        },
        Case {
            name: "negative_jitter",
            setup: |d| train_set(d, "c", &["train.jitter_scale=-5"]),
            expect: &["train.jitter_scale"],
            check: no_runs,
        },
        Case {
            name: "zero_heads",
            setup: |d| train_set(d, "c", &["model.heads=0"]),
            expect: &["model.heads"],
            check: no_runs,
        },
        Case {
            name: "hidden_dim_not_a_multiple_of_heads",
            setup: |d| train_set(d, "c", &["model.hidden_dim=30"]),
            expect: &["model.heads", "hidden_dim 30"],
            check: no_runs,
        },
        Case {
            name: "unknown_decoder",
            setup: |d| train_set(d, "c", &["model.decoder=\"bogus\""]),
            expect: &["model.decoder", "bogus"],
            check: no_runs,
        },
        Case {
            name: "unknown_backbone",
            setup: |d| train_set(d, "c", &["backbone.arch=\"resnet\""]),
            expect: &["backbone.arch", "resnet"],
            check: no_runs,
        },
        Case {
            name: "unknown_device",
            setup: |d| train_set(d, "c", &["train.device=\"tpu\""]),
            expect: &["train.device", "tpu"],
            check: no_runs,
        },
        Case {
            name: "unknown_setting",
            setup: |d| train_set(d, "c", &["train.setting=\"both\""]),
            expect: &["train.setting", "both"],
            check: no_runs,
        },
        Case {
            name: "unknown_dataset_kind",
            setup: |d| train_set(d, "c", &["dataset.kind=\"coco\""]),
            expect: &["dataset.kind", "coco"],
            check: no_runs,
        },
        Case {
            name: "even_neighbor_size",
            setup: |d| train_set(d, "c", &["model.neighbor_size=[0,7]"]),
            expect: &["model.neighbor_size"],
            check: no_runs,
        },
        Case {
            name: "run_name_escapes_the_store",
            setup: |d| train_set(d, "c", &["name=\"../escape\""]),
            expect: &["name", "../escape"],
            check: |d| {
                no_runs(d);
                assert!(!d.join("escape").exists());
            },
        },
        Case {
            name: "zero_ranks_is_refused",
            setup: |d| train_with(d, d, "zeroranks", "", &["--ranks", "0"]),
            expect: &["--ranks", "0"],
            check: no_store,
        },
        // Issue 17: 64 over 3 ranks would train 63 per step under the same run id.
        Case {
            name: "ranks_that_do_not_divide_the_batch_are_refused",
            setup: |d| train_with(d, d, "threeranks", "", &["--ranks", "3", "--set", "train.batch_size=64"]),
            expect: &["train.batch_size", "64", "3 data-parallel ranks", "2 or 4 ranks"],
            check: no_store,
        },
        // ---- stores: unknown schemes, host parts, read-only, missing -------------------------
        Case {
            name: "unknown_store_scheme",
            setup: |d| train_set(d, "c", &["store=\"gopher://x/y\""]),
            expect: &["gopher://x/y", "gopher"],
            check: nothing,
        },
        // `file://tmp/x` is a URL whose host is "tmp"; it used to mean ./tmp/x silently.
        Case {
            name: "file_url_with_a_host_part_train",
            setup: |d| train_set(d, "hosturl", &["store=\"file://tmp/x\""]),
            expect: &["file:///tmp/x", "file://./tmp/x"],
            check: |d| assert!(!d.join("tmp").exists()),
        },
        Case {
            name: "file_url_with_a_host_part_eval",
            setup: |_| s(&["eval", "r-1", "--store", "file://tmp/x"]),
            expect: &["file:///tmp/x"],
            check: |d| assert!(!d.join("tmp").exists()),
        },
        Case {
            name: "eval_unknown_store_scheme",
            setup: |_| s(&["eval", "r-1", "--store", "s3x://foo"]),
            expect: &["s3x"],
            check: nothing,
        },
        // Root ignores chmod 555: a store under a regular file stands for a read-only store.
        Case {
            name: "read_only_store",
            setup: |d| {
                let f = afile(d);
                let store = format!("store=\"{}\"", url(&f.join("store")));
                let root = synth_dataset(d, 1, 2, 64, 2);
                train_with(d, &root, "ro", "", &["--set", &store])
            },
            expect: &["afile/store"],
            check: nothing,
        },
        // Reading commands do not create the store they read.
        Case {
            name: "eval_of_a_missing_store_creates_nothing",
            setup: |_| s(&["eval", "nosuchrun-12345678"]),
            // Readers say "no run RUN in STORE" for a missing store (src/runs.rs open_run).
            expect: &["no run nosuchrun-12345678: no store at file://./ras-store", "--store URL or RAS_STORE=URL"],
            check: |d| assert!(!d.join("ras-store").exists(), "eval created ./ras-store"),
        },
        Case {
            name: "eval_of_a_missing_named_store_creates_nothing",
            setup: |_| s(&["eval", "nosuchrun-12345678", "--store", "file://./other", "--test-jitter", "0"]),
            expect: &["file://./other"],
            check: |d| assert!(!d.join("other").exists()),
        },
        Case {
            name: "eval_run_id_escapes_the_store",
            setup: |d| {
                with_run(d);
                s(&["eval", "../../etc", "--store", &store_url(d)])
            },
            expect: &["../../etc"],
            check: nothing,
        },
        Case {
            name: "export_into_a_read_only_place",
            setup: |d| {
                let id = with_run(d);
                let out = afile(d).join("x.pth.tar");
                s(&["export", &id, "--store", &store_url(d), "--out", out.to_str().unwrap()])
            },
            expect: &["afile"],
            check: nothing,
        },
        Case {
            name: "predict_into_a_read_only_place",
            setup: |d| {
                let id = with_run(d);
                let out = afile(d).join("out");
                let imgs = d.join("data/weave/test");
                s(&["predict", &id, imgs.to_str().unwrap(), "--store", &store_url(d), "--out", out.to_str().unwrap()])
            },
            expect: &["afile/out"],
            check: nothing,
        },
        // ---- datasets: missing, empty, corrupt images and masks -----------------------------
        Case {
            name: "missing_dataset_folder",
            setup: |d| train_with(d, &d.join("no-such-data"), "missing", "", &[]),
            expect: &["no-such-data", "does not exist"],
            check: |d| {
                let st = statuses(&d.join("store"));
                assert_eq!(st.len(), 1);
                assert!(st[0].contains("\"failed\""), "{}", st[0]);
            },
        },
        Case {
            name: "class_without_training_images",
            setup: |d| {
                let root = synth_dataset(d, 2, 1, 64, 2);
                for f in std::fs::read_dir(root.join("grain/train/good")).unwrap() {
                    std::fs::remove_file(f.unwrap().path()).unwrap();
                }
                train_with(d, &root, "notrain", "", &[])
            },
            expect: &["grain", "no training images", "grain/train/good"],
            check: nothing,
        },
        Case {
            name: "truncated_png_train",
            setup: |d| {
                let root = synth_dataset(d, 1, 2, 64, 2);
                let img = root.join("weave/train/good/001.png");
                let n = std::fs::metadata(&img).unwrap().len() as usize;
                truncate(&img, n / 2); // header fine, data not
                train_with(d, &root, "corrupt", "", &[])
            },
            expect: &["weave/train/good/001.png"],
            check: nothing,
        },
        Case {
            name: "truncated_png_check",
            setup: |d| {
                let root = synth_dataset(d, 1, 2, 64, 2);
                let img = root.join("weave/train/good/001.png");
                let n = std::fs::metadata(&img).unwrap().len() as usize;
                truncate(&img, n / 2);
                s(&["data", "check", root.to_str().unwrap()])
            },
            expect: &["weave/train/good/001.png"],
            check: nothing,
        },
        Case {
            name: "truncated_jpeg_train",
            setup: |d| {
                let root = synth_dataset(d, 1, 2, 64, 2);
                half_a_jpeg(&root.join("weave/train/good/001.png"));
                train_with(d, &root, "corrupt", "", &[])
            },
            expect: &["weave/train/good/001.jpg", "Premature end of JPEG file"],
            check: nothing,
        },
        Case {
            name: "truncated_jpeg_check",
            setup: |d| {
                let root = synth_dataset(d, 1, 2, 64, 2);
                half_a_jpeg(&root.join("weave/test/good/000.png"));
                s(&["data", "check", root.to_str().unwrap()])
            },
            expect: &["weave/test/good/000.jpg", "Premature end of JPEG file"],
            check: nothing,
        },
        Case {
            name: "empty_test_image",
            setup: |d| {
                let root = synth_dataset(d, 1, 2, 64, 2);
                std::fs::write(root.join("weave/test/good/000.png"), b"").unwrap();
                s(&["data", "check", root.to_str().unwrap()])
            },
            expect: &["weave/test/good/000.png"],
            check: nothing,
        },
        Case {
            name: "garbage_mask",
            setup: |d| {
                let root = synth_dataset(d, 1, 2, 64, 2);
                std::fs::write(root.join("weave/ground_truth/scratch/000_mask.png"), b"not a png at all").unwrap();
                s(&["data", "check", root.to_str().unwrap()])
            },
            expect: &["weave/ground_truth/scratch/000_mask.png"],
            check: nothing,
        },
        Case {
            name: "mask_of_the_wrong_size",
            setup: |d| {
                let root = synth_dataset(d, 1, 3, 64, 2);
                let mask = root.join("weave/ground_truth/scratch/000_mask.png");
                image::GrayImage::from_pixel(10, 12, image::Luma([255u8])).save(&mask).unwrap();
                train_with(d, &root, "badmask", "", &[])
            },
            expect: &["000_mask.png", "10x12", "64x64"],
            check: nothing,
        },
        Case {
            name: "mask_of_the_wrong_size_check",
            setup: |d| {
                let root = synth_dataset(d, 1, 3, 64, 2);
                let mask = root.join("weave/ground_truth/hole/000_mask.png");
                image::GrayImage::from_pixel(32, 64, image::Luma([255u8])).save(&mask).unwrap();
                s(&["data", "check", root.to_str().unwrap()])
            },
            expect: &["hole/000_mask.png", "32x64"],
            check: nothing,
        },
        Case {
            name: "empty_dataset_folder",
            setup: |d| {
                std::fs::create_dir_all(d.join("emptyds")).unwrap();
                s(&["data", "check", "emptyds"])
            },
            expect: &["emptyds"],
            check: nothing,
        },
        Case {
            name: "check_unknown_class",
            setup: |d| {
                let root = synth_dataset(d, 1, 2, 64, 2);
                s(&["data", "check", root.to_str().unwrap(), "--classes", "nope"])
            },
            expect: &["\"nope\""],
            check: nothing,
        },
        Case {
            name: "jsonl_without_metadata",
            setup: |d| {
                let root = synth_dataset(d, 1, 2, 64, 2);
                s(&["data", "check", root.to_str().unwrap(), "--kind", "jsonl"])
            },
            expect: &["train_meta"],
            check: nothing,
        },
        // ---- sweeps: empty, misspelled and mistyped grids ----------------------------------
        Case {
            name: "sweep_empty_grid_axis",
            setup: |d| plan(d, &sweep_file(d, "sw", "[grid]\n\"model.encoder_layers\" = []"), &local_profile()),
            expect: &["sw.toml", "model.encoder_layers", "no values"],
            check: no_sweep_state,
        },
        Case {
            name: "sweep_misspelled_grid_key",
            setup: |d| plan(d, &sweep_file(d, "sw", "[grid]\n\"model.encoder_layer\" = [0, 1]"), &local_profile()),
            expect: &["model.encoder_layer", "encoder_layer"],
            check: no_sweep_state,
        },
        Case {
            name: "sweep_mistyped_grid_value",
            setup: |d| plan(d, &sweep_file(d, "sw", "[grid]\n\"model.encoder_layers\" = [0, \"x\"]"), &local_profile()),
            expect: &["model.encoder_layers", "\"x\""],
            check: no_sweep_state,
        },
        Case {
            name: "sweep_negative_lr",
            setup: |d| plan(d, &sweep_file(d, "sw", "[set]\n\"train.lr\" = -1.0"), &local_profile()),
            expect: &["train.lr"],
            check: no_sweep_state,
        },
        Case {
            name: "sweep_ranks_that_do_not_divide_the_batch",
            setup: |d| plan(d, &sweep_file(d, "sw", "ranks = 5\n[set]\n\"train.batch_size\" = 64"), &local_profile()),
            expect: &["sw.toml", "ranks = 5", "train.batch_size", "4 or 8 ranks"],
            check: no_sweep_state,
        },
        Case {
            name: "sweep_unknown_key",
            setup: |d| plan(d, &sweep_file(d, "sw", "bogus_key = 3"), &local_profile()),
            expect: &["sw.toml", "bogus_key"],
            check: no_sweep_state,
        },
        Case {
            name: "sweep_missing_base",
            setup: |d| {
                let sw = d.join("sw.toml");
                std::fs::write(&sw, "name = \"sw\"\nbase = \"no-such-base.toml\"\n").unwrap();
                plan(d, &sw, &local_profile())
            },
            expect: &["no-such-base.toml"],
            check: no_sweep_state,
        },
        Case {
            name: "sweep_name_escapes_the_store",
            setup: |d| {
                let sw = sweep_file(d, "sw", "");
                let text = std::fs::read_to_string(&sw).unwrap().replace("name = \"sw\"", "name = \"../sw\"");
                std::fs::write(&sw, text).unwrap();
                plan(d, &sw, &local_profile())
            },
            expect: &["sw.toml", "../sw"],
            check: no_sweep_state,
        },
        // `ras sweep --no-wait` on the local profile: these fail before anything launches.
        Case {
            name: "sweep_no_wait_misspelled_grid_key",
            setup: |d| {
                let sw = sweep_file(d, "sw", "[grid]\n\"model.encoder_layer\" = [0, 1]");
                s(&["sweep", sw.to_str().unwrap(), "--cluster", local_profile().to_str().unwrap(), "--no-wait"])
            },
            expect: &["model.encoder_layer"],
            check: no_sweep_state,
        },
        Case {
            name: "sweep_no_wait_empty_grid_axis",
            setup: |d| {
                let sw = sweep_file(d, "sw", "[grid]\n\"model.decoder\" = []");
                s(&["sweep", sw.to_str().unwrap(), "--cluster", local_profile().to_str().unwrap(), "--no-wait"])
            },
            expect: &["model.decoder", "no values"],
            check: no_sweep_state,
        },
        Case {
            name: "sweep_unknown_store_scheme",
            setup: |d| {
                let mut v = plan(d, &sweep_file(d, "sw", GOOD_GRID), &local_profile());
                v.extend(s(&["--store", "zzz://a"]));
                v
            },
            expect: &["zzz://a"],
            check: no_sweep_state,
        },
        // ---- cluster profiles that cannot be ---------------------------------------------
        Case {
            name: "profile_zero_nodes",
            setup: |d| plan_profile(d, "launcher = \"local\"\nnodes = 0\ngpus_per_node = 0\ncpus_per_gpu = 1\n"),
            expect: &["cl.toml", "nodes"],
            check: no_sweep_state,
        },
        Case {
            name: "profile_zero_cpus_per_gpu",
            setup: |d| plan_profile(d, "launcher = \"local\"\nnodes = 1\ngpus_per_node = 0\ncpus_per_gpu = 0\n"),
            expect: &["cl.toml", "cpus_per_gpu"],
            check: no_sweep_state,
        },
        Case {
            name: "profile_unknown_launcher",
            setup: |d| plan_profile(d, "launcher = \"pbs\"\nnodes = 1\n"),
            expect: &["cl.toml", "launcher", "pbs"],
            check: no_sweep_state,
        },
        Case {
            name: "profile_unknown_key",
            setup: |d| {
                plan_profile(d, "launcher = \"local\"\nnodes = 1\ngpus_per_node = 0\ncpus_per_gpu = 1\ngpus = 8\n")
            },
            expect: &["cl.toml", "gpus"],
            check: no_sweep_state,
        },
        Case {
            name: "profile_missing",
            setup: |d| plan(d, &sweep_file(d, "sw", GOOD_GRID), &d.join("no-such-profile.toml")),
            expect: &["no-such-profile.toml"],
            check: no_sweep_state,
        },
        Case {
            name: "sweep_no_wait_impossible_profile",
            setup: |d| {
                let sw = sweep_file(d, "sw", GOOD_GRID);
                let cl = d.join("cl.toml");
                std::fs::write(&cl, "launcher = \"local\"\nnodes = 0\ngpus_per_node = 0\ncpus_per_gpu = 1\n").unwrap();
                s(&["sweep", sw.to_str().unwrap(), "--cluster", cl.to_str().unwrap(), "--no-wait"])
            },
            expect: &["cl.toml", "nodes"],
            check: no_sweep_state,
        },
        Case {
            // A sweep file copied out of jobs/: its `base` is not found, and the error
            // lists where it looked.
            name: "sweep_base_not_found",
            setup: |d| {
                let sw = d.join("copied.toml");
                std::fs::write(&sw, "name = \"copied\"\nbase = \"configs/nowhere.toml\"\n").unwrap();
                plan(d, &sw, &local_profile())
            },
            expect: &[
                "copied.toml",
                "base = \"configs/nowhere.toml\" not found",
                "looked in",
                "relative to the sweep file's folder",
            ],
            check: no_sweep_state,
        },
        // ---- corrupt checkpoints and truncated records of a finished run -------------------
        Case {
            name: "eval_corrupt_checkpoint",
            setup: |d| {
                let id = with_run(d);
                truncate(&ckpt(d, &id), 1000);
                s(&["eval", &id, "--store", &store_url(d), "--test-jitter", "0"])
            },
            expect: &["epoch_0002.safetensors", "corrupt"],
            check: nothing,
        },
        Case {
            name: "eval_empty_checkpoint",
            setup: |d| {
                let id = with_run(d);
                truncate(&ckpt(d, &id), 0);
                s(&["eval", &id, "--store", &store_url(d), "--test-jitter", "0"])
            },
            expect: &["epoch_0002.safetensors", "corrupt"],
            check: nothing,
        },
        Case {
            name: "export_corrupt_checkpoint",
            setup: |d| {
                let id = with_run(d);
                truncate(&ckpt(d, &id), 1000);
                s(&["export", &id, "--store", &store_url(d), "--out", d.join("o.pth.tar").to_str().unwrap()])
            },
            expect: &["epoch_0002.safetensors", "checkpoints/unified"],
            check: |d| assert!(!d.join("o.pth.tar").exists()),
        },
        Case {
            name: "predict_corrupt_checkpoint",
            setup: |d| {
                let id = with_run(d);
                truncate(&ckpt(d, &id), 1000);
                let imgs = d.join("data/weave/test");
                s(&[
                    "predict",
                    &id,
                    imgs.to_str().unwrap(),
                    "--store",
                    &store_url(d),
                    "--out",
                    d.join("pr").to_str().unwrap(),
                ])
            },
            expect: &["epoch_0002.safetensors"],
            check: |d| assert!(!d.join("pr/predictions.csv").exists()),
        },
        Case {
            // A run that failed: eval says why (its status.json's reason), not only that
            // it is not trained to its last epoch.
            name: "eval_failed_run_says_why",
            setup: |d| {
                let fixture_run = with_run(d);
                // A run that diverges (lr 1e30) in its first epoch: status failed, with why.
                let cfg = small_config(d, &d.join("data"), "diverges", "");
                let sets = [
                    "train.epochs=2",
                    "train.eval_every=2",
                    "model.hidden_dim=32",
                    "model.ffn_dim=64",
                    "train.lr=1e30",
                ];
                let mut args = vec!["train", cfg.to_str().unwrap()];
                for x in &sets {
                    args.extend(["--set", x]);
                }
                let out = Command::new(env!("CARGO_BIN_EXE_ras")).args(&args).current_dir(d).output().unwrap();
                assert!(!out.status.success(), "lr 1e30 trained: {}", String::from_utf8_lossy(&out.stderr));
                let id = files(&d.join("store/runs")).into_iter().find(|r| *r != fixture_run).expect("the failed run");
                s(&["eval", &id, "--store", &store_url(d)])
            },
            expect: &[
                "not trained to its last epoch",
                "its last attempt failed at epoch ",
                ": training diverged",
                "finish it with `ras train`",
            ],
            check: nothing,
        },
        Case {
            name: "eval_missing_epoch",
            setup: |d| {
                let id = with_run(d);
                s(&["eval", &id, "--store", &store_url(d), "--test-jitter", "0", "--checkpoint", "7"])
            },
            expect: &["epoch_7", "checkpoints/unified"],
            check: nothing,
        },
        Case {
            name: "truncated_final_metrics",
            setup: |d| {
                let id = with_run(d);
                truncate(&d.join(format!("store/runs/{id}/final_metrics.json")), 50);
                s(&["eval", &id, "--store", &store_url(d)])
            },
            expect: &["final_metrics.json"],
            check: nothing,
        },
        Case {
            name: "truncated_checkpoint_record",
            setup: |d| {
                let id = with_run(d);
                truncate(&d.join(format!("store/runs/{id}/checkpoints/unified/epoch_0002.json")), 40);
                s(&["eval", &id, "--store", &store_url(d), "--test-jitter", "0"])
            },
            expect: &["epoch_0002.json"],
            check: nothing,
        },
        Case {
            name: "export_unknown_run",
            setup: |d| {
                with_run(d);
                s(&["export", "nosuch-1", "--store", &store_url(d)])
            },
            expect: &["no run nosuch-1 in the store file://", "--store URL or RAS_STORE=URL"],
            check: nothing,
        },
        Case {
            name: "predict_unknown_class",
            setup: |d| {
                let id = with_run(d);
                let imgs = d.join("data/weave/test");
                s(&["predict", &id, imgs.to_str().unwrap(), "--store", &store_url(d), "--class", "nope"])
            },
            expect: &["--class", "nope"],
            check: |d| assert!(!d.join("predictions").exists()),
        },
        Case {
            name: "predict_missing_images",
            setup: |d| {
                let id = with_run(d);
                s(&["predict", &id, d.join("no-such-images").to_str().unwrap(), "--store", &store_url(d)])
            },
            expect: &["no-such-images"],
            check: nothing,
        },
        Case {
            name: "import_missing_checkpoint",
            setup: |d| {
                let cfg = small_config(d, d, "imp", "");
                s(&["import", "no-such.safetensors", "--config", cfg.to_str().unwrap()])
            },
            expect: &["no-such.safetensors"],
            check: no_runs,
        },
        Case {
            name: "import_wrong_layout",
            setup: |d| {
                let id = with_run(d);
                let cfg = small_config(d, d, "imp", "");
                let c = ckpt(d, &id);
                let src = d.join("ours.safetensors");
                std::fs::copy(c, &src).unwrap();
                s(&[
                    "import",
                    src.to_str().unwrap(),
                    "--config",
                    cfg.to_str().unwrap(),
                    "--store",
                    &url(&d.join("istore")),
                ])
            },
            expect: &["ours.safetensors"],
            check: |d| assert!(statuses(&d.join("istore")).is_empty()),
        },
        Case {
            name: "import_truncated_safetensors",
            setup: |d| {
                let id = with_run(d);
                let cfg = small_config(d, d, "imp", "");
                let src = d.join("cut.safetensors");
                std::fs::copy(ckpt(d, &id), &src).unwrap();
                let n = std::fs::metadata(&src).unwrap().len() as usize;
                truncate(&src, n / 2);
                s(&["import", &p(&src), "--config", &p(&cfg), "--store", &url(&d.join("istore"))])
            },
            expect: &["cut.safetensors", "past the end of the file", "the header says", "truncated?"],
            check: |d| assert!(statuses(&d.join("istore")).is_empty()),
        },
        Case {
            name: "export_unwritable_path",
            setup: |d| {
                let id = with_run(d);
                s(&["export", &id, "--store", &store_url(d), "--out", &p(&d.join("no-such-dir/o.pth.tar"))])
            },
            expect: &["cannot write", "no-such-dir/o.pth.tar", "No such file"],
            check: |d| assert!(!d.join("no-such-dir").exists()),
        },
        // ---- flags the argument parser refuses ----------------------------------------------
        Case {
            name: "eval_jitter_not_a_number",
            setup: |_| s(&["eval", "r-1", "--test-jitter", "abc"]),
            expect: &["--test-jitter", "abc"],
            check: |d| assert!(!d.join("ras-store").exists()),
        },
        Case {
            name: "export_unknown_format",
            setup: |_| s(&["export", "r-1", "--format", "onnx"]),
            expect: &["--format", "onnx"],
            check: nothing,
        },
        Case {
            name: "predict_unknown_device",
            setup: |_| s(&["predict", "r-1", ".", "--device", "tpu"]),
            expect: &["--device", "tpu"],
            check: nothing,
        },
    ]
}

/// Runs one case; `Err` with what went wrong.
fn run_case(case: &Case) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let args = (case.setup)(dir);
    let out =
        Command::new(env!("CARGO_BIN_EXE_ras")).args(&args).current_dir(dir).env("RUST_LOG", "warn").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ctx = || format!("ras {args:?}\nexit {:?}\nstderr:\n{stderr}", out.status.code());
    let mut problems = vec![];
    match out.status.code() {
        Some(0) => problems.push("exit 0".to_string()),
        Some(101) => problems.push("exit 101 (a panic)".to_string()),
        None => problems.push("killed by a signal".to_string()),
        _ => {}
    }
    if stderr.contains("panicked") {
        problems.push("stderr says panicked".into());
    }
    if !stderr.contains("error") {
        problems.push("stderr has no \"error\"".into());
    }
    for m in case.expect {
        if !stderr.contains(m) {
            problems.push(format!("stderr does not mention {m:?}"));
        }
    }
    // Said once: no clause of the error line repeated, one OS error at most.
    for line in stderr.lines().filter(|l| l.starts_with("error: ")) {
        let repeated = ras::error_text::repeated_clauses(line);
        if !repeated.is_empty() {
            problems.push(format!("the error repeats {repeated:?}"));
        }
        if line.matches("(os error").count() > 1 {
            problems.push("the error names its OS error more than once".into());
        }
    }
    let mut all = vec![];
    walk(dir, &mut all);
    for f in &all {
        let name = f.file_name().unwrap().to_string_lossy();
        if name.contains(".partial") || name.ends_with(".tmp") || name.contains('#') {
            problems.push(format!("half-written file left: {}", f.display()));
        }
        if name == "status.json" {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            if text.contains("\"running\"") {
                problems.push(format!("run left running: {}: {text}", f.display()));
            }
        }
    }
    if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (case.check)(dir))) {
        let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
        problems.push(format!("check failed: {}", msg.unwrap_or_default()));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {}\n{}", case.name, problems.join("; "), ctx()))
    }
}

#[test]
fn bad_input_catalogue() {
    let cases = cases();
    assert!(cases.len() >= 40, "the catalogue has {} cases", cases.len());
    let mut names: Vec<_> = cases.iter().map(|c| c.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names must be unique");
    let only = std::env::var("RAS_BAD_INPUT_CASE").ok();
    let mut failures = vec![];
    let mut ran = 0;
    for case in cases.iter().filter(|c| only.as_deref().is_none_or(|o| c.name.contains(o))) {
        ran += 1;
        if let Err(e) = run_case(case) {
            eprintln!("FAIL {e}\n");
            failures.push(case.name);
        } else {
            eprintln!("ok   {}", case.name);
        }
    }
    assert!(failures.is_empty(), "{} of {ran} bad-input cases failed: {failures:?}", failures.len());
}

/// The store on a 1 MiB tmpfs: the run fills it (its feature cache alone is larger). It must
/// end non-zero with an error naming the key and the cause (no space), leave no staging
/// file and no torn object, and not say "running".
#[test]
fn a_full_store_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = dir.join("store");
    let _mounted = Tmpfs::mount(&store, "1m", "this test mounts a 1 MiB tmpfs as the store");
    let root = synth_dataset(dir, 1, 11, 64, 8);
    let cfg = small_config(dir, &root, "full", "");
    let out = ras(&["train", cfg.to_str().unwrap(), "--set", "train.epochs=2", "--set", "train.eval_every=2"], dir);
    let t = text(&out);
    assert!(!out.status.success() && out.status.code() != Some(101), "a full store fails, without a panic:\n{t}");
    assert_eq!(out.status.code(), Some(1), "a full disk is not an outage (no requeue):\n{t}");
    assert!(t.contains("No space left on device"), "the cause is named:\n{t}");
    assert!(t.contains("cannot write features/") || t.contains("cannot write runs/"), "the key is named:\n{t}");
    let mut all = vec![];
    walk(&store, &mut all);
    for f in &all {
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(
            !(name.contains('#') || name.ends_with(".tmp") || name.contains(".partial")),
            "half-written file left: {}\n{t}",
            f.display()
        );
        if name.ends_with(".json") {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(
                serde_json::from_str::<serde_json::Value>(&text).is_ok(),
                "torn JSON object {}: {text:?}",
                f.display()
            );
        }
    }
    // The status: "failed" when the store still took that small write; if not even that
    // fits, it stays as the run started it, and stderr says the write failed.
    let status: Vec<String> = statuses(&store);
    eprintln!("full store: statuses {status:?}\n{t}");
    assert!(
        status.iter().all(|s| !s.contains("\"running\"")) || t.contains("status"),
        "run left running with no word about it:\n{status:?}\n{t}"
    );
}

// ---- files as PyTorch makes them (needs .venv-ref: `make setup-python`) ------------------

/// An EfficientNet-B0 weights file as people make one: efficientnet_pytorch's own state
/// dict saved with torch.save (tests/reference/ras_ref.py make-effnet, as the published
/// efficientnet-b0-355c32eb.pth is), converted by tools/convert_weights.py. Made once.
fn pytorch_b0() -> &'static Path {
    static F: OnceLock<PathBuf> = OnceLock::new();
    F.get_or_init(|| {
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap())).path().to_path_buf();
        let py = python();
        for args in [
            vec![p(&repo().join("tests/reference/ras_ref.py")), "make-effnet".into(), p(&dir)],
            vec![
                p(&repo().join("tools/convert_weights.py")),
                p(&dir.join("efficientnet-b0.pth")),
                p(&dir.join("b0.safetensors")),
                "--strict".into(),
            ],
        ] {
            let out = Command::new(&py).args(&args).output().unwrap();
            assert!(out.status.success(), "{args:?}:\n{}", text(&out));
        }
        dir.join("b0.safetensors")
    })
}

/// The command: `ras train configs/demo.toml --set backbone.arch=efficientnet-b4
/// --set backbone.weights=<a B0 file>`. The first line says what the file is and which key
/// to change; then the count and at most 10 examples; the full list in the file it names,
/// and in the log with RUST_LOG=debug.
#[test]
fn backbone_weights_of_another_variant_name_the_key_first() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let root = synth_dataset(d, 1, 5, 64, 2);
    let b0 = pytorch_b0();
    let (demo, root_set, weights) = (
        p(&repo().join("configs/demo.toml")),
        format!("dataset.root={}", root.display()),
        format!("backbone.weights={}", b0.display()),
    );
    let args = ["train", &demo, "--set", &root_set, "--set", "backbone.arch=efficientnet-b4", "--set", &weights];
    let out = ras(&args, d);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines[0].starts_with("error: ")
            && lines[0].contains(&format!("backbone weights {} look like efficientnet-b0", b0.display()))
            && lines[0].contains("set backbone.arch = \"efficientnet-b0\""),
        "the first line says what is wrong and which key to change:\n{err}"
    );
    assert_eq!(ras::error_text::repeated_clauses(lines[0]), Vec::<String>::new(), "{err}");
    assert!(lines.len() <= 13, "{} lines: at most 10 examples\n{err}", lines.len());
    let n: usize = lines[1].split(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("the count:\n{err}"));
    assert!(lines[1].starts_with(&format!("{n} tensors differ (")) && n > 500, "{err}");
    let examples: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("  ")).collect();
    assert_eq!(examples.len(), 10, "{err}");
    assert!(examples.iter().any(|e| e.starts_with("shape _conv_stem.weight: file [32, 3, 3, 3]")), "{err}");
    let last = lines.last().unwrap();
    let list = last
        .strip_prefix(&format!("all {n}: "))
        .and_then(|l| l.strip_suffix(" (or run with RUST_LOG=debug)"))
        .unwrap_or_else(|| panic!("the file with the full list is named:\n{err}"));
    assert!(list.starts_with(&p(&std::env::temp_dir().join("ras-backbone-efficientnet-b4-"))), "{list}");
    let full = std::fs::read_to_string(list).unwrap();
    let listed: Vec<&str> = full.lines().skip(1).collect();
    assert_eq!(listed.len(), n, "{list}: every difference");
    assert!(examples.iter().all(|e| listed.contains(e)), "the examples are among them");
    for status in statuses(&d.join("ras-store")) {
        let state = serde_json::from_str::<serde_json::Value>(&status).unwrap()["state"].clone();
        assert_eq!(state, "failed", "the run is not left running: {status}");
    }

    // RUST_LOG=debug: every difference in the log too.
    let out = ras_env(&args, d, &[("RUST_LOG", "ras=debug")]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(listed.iter().all(|l| log.contains(l)), "RUST_LOG=debug lists all {n}");
}

/// A safetensors file that PyTorch's safetensors wrote, cut short, is read natively
/// (never handed to the converter of pickles: no word of Python) and refused with what is
/// wrong: the header length against the file's size, or the data against it. Also when
/// its name does not say safetensors: its shape does.
#[test]
fn a_truncated_safetensors_file_is_named_with_its_lengths() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let whole = std::fs::read(pytorch_b0()).unwrap();
    let header = u64::from_le_bytes(whole[..8].try_into().unwrap());
    let cfg = small_config(d, d, "imp", "");
    let n = whole.len() as u64;
    for (name, keep, want) in [
        (
            "data.safetensors",
            n / 2,
            format!("past the end of the file: file is {} bytes, the header says {n}: truncated?", n / 2),
        ),
        (
            "header.safetensors",
            header / 2,
            format!(
                "its header length (first 8 bytes) is {header} bytes, larger than the {} bytes that follow it: file \
                 is {} bytes, the header says at least {}: truncated?",
                header / 2 - 8,
                header / 2,
                header + 8
            ),
        ),
        (
            "header.bin",
            header / 2,
            format!("file is {} bytes, the header says at least {}: truncated?", header / 2, header + 8),
        ),
    ] {
        let f = d.join(name);
        std::fs::write(&f, &whole[..keep as usize]).unwrap();
        let out = ras(&["import", &p(&f), "--config", &p(&cfg), "--python", "/nonexistent/python"], d);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("{} is not a whole safetensors file: ", f.display())) && err.contains(&want),
            "{name}: {want}\n{err}"
        );
        assert!(!err.contains("python"), "{name}: read natively\n{err}");
        assert_eq!(ras::error_text::repeated_clauses(&err), Vec::<String>::new(), "{err}");
    }
    no_runs(d);
}

/// `ras export` to a path it cannot write fails on the path, before it builds the run's
/// backbone: one line, the error, and no word about the random-init backbone (a warning
/// that does not concern the command).
#[test]
fn export_to_an_unwritable_path_says_only_that() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let id = with_run(d);
    let out_file = afile(d).join("o.pth.tar");
    let out = ras(&["export", &id, "--store", &store_url(d), "--out", &p(&out_file)], d);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "the error alone:\n{err}");
    assert!(err.starts_with(&format!("error: cannot write {}: ", out_file.display())), "{err}");
    // The same export to a writable path works, and it too is free of the warning: its
    // summary says what was exported.
    let good = d.join("o.pth.tar");
    let out = ras(&["export", &id, "--store", &store_url(d), "--out", &p(&good)], d);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).trim().is_empty(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("NOTE: the backbone is a seeded random init"),
        "{}",
        text(&out)
    );
}
