//! `ras serve` over HTTP (the browser test is tests/browser.rs): who may read (a token for
//! anything but loopback, 401 without it), what may be asked (names checked against the
//! store layout: traversal attempts and unknown runs are 404), what is never shown (the
//! store's credentials, on a real S3 server), that it never writes to the store, and that
//! odd stores (empty, a manifest of another version, torn records, a store that stops
//! answering) give pages that say what is wrong while the server keeps serving.

mod common;

use common::http::{get, request};
use common::Served;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token-0123456789abcdef";

/// A finished synthetic sweep of `runs` runs in `dir/store` (the records `ras train`
/// leaves), plus a training log of 3 epochs for its first run. Returns (store, sweep name,
/// run ids).
fn finished_store(dir: &Path, runs: usize) -> (PathBuf, String, Vec<String>) {
    let store = dir.join("store");
    let url = format!("file://{}", store.display());
    let m = ras::bench::serve::synthetic_finished_sweep(&url, runs, dir).expect("synthetic sweep");
    let ids: Vec<String> = m.runs.iter().map(|r| r.id.clone()).collect();
    let log: String =
        (1..=3).map(|e| format!("{{\"model\":\"unified\",\"epoch\":{e},\"loss\":{}}}\n", 1.0 / e as f64)).collect();
    std::fs::write(store.join("runs").join(&ids[0]).join("train_log.jsonl"), log).unwrap();
    (store, m.name, ids)
}

/// Every file under `dir` with its size and modification time.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let md = e.metadata().unwrap();
            if md.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), md.len(), md.modified().unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Waits (at most `secs`) for `f` to hold.
fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(secs), "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_bind_other_machines_can_reach_needs_a_token() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("store")).unwrap();
    let store = d.path().join("store");
    let store = store.to_str().unwrap();
    let out = common::ras(&["serve", "--store", store, "--bind", "0.0.0.0:0"], d.path());
    assert!(!out.status.success());
    let err = common::text(&out);
    assert!(err.contains("without a token") && err.contains("RAS_SERVE_TOKEN"), "{err}");
    let out = common::ras(&["serve", "--store", store, "--bind", "0.0.0.0:0", "--token", "short"], d.path());
    assert!(!out.status.success() && common::text(&out).contains("at least 16 characters"), "{}", common::text(&out));
    let out = common::ras(&["serve", "--store", store, "--bind", "localhost"], d.path());
    assert!(!out.status.success() && common::text(&out).contains("is not ADDRESS:PORT"), "{}", common::text(&out));
    // A store that is not there is an error naming it, not an empty store created.
    let missing = d.path().join("nope");
    let out = common::ras(&["serve", "--store", missing.to_str().unwrap()], d.path());
    assert!(!out.status.success() && common::text(&out).contains("does not exist"), "{}", common::text(&out));
    assert!(!missing.exists());
}

#[test]
fn token_names_and_live_fragments_over_http_and_the_store_is_never_written() {
    let d = tempfile::tempdir().unwrap();
    let (store, sweep, ids) = finished_store(d.path(), 3);
    let before = snapshot(&store);
    let s = Served::start(
        d.path(),
        &["--store", store.to_str().unwrap(), "--token", TOKEN, "--refresh", "0.2"],
        &[],
        &d.path().join("serve.log"),
    );
    let auth = format!("Bearer {TOKEN}");
    let with = |path: &str| get(&format!("{}{path}", s.url), &[("Authorization", &auth)]);

    // Who may read.
    let a = get(&format!("{}/", s.url), &[]);
    assert_eq!(a.status, 401, "{}", a.text());
    assert!(a.text().contains("token") && !a.text().contains(TOKEN));
    assert_eq!(get(&format!("{}/", s.url), &[("Authorization", "Bearer wrong-token-0123456789ab")]).status, 401);
    assert_eq!(get(&format!("{}/api/home", s.url), &[]).status, 401, "the JSON needs the token too");
    assert_eq!(get(&format!("{}/?token=wrong", s.url), &[]).status, 401);
    let a = get(&format!("{}/?token={TOKEN}", s.url), &[]);
    assert_eq!(a.status, 200);
    let cookie = a.header("set-cookie").expect("the token is kept in a cookie").to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let cookie = cookie.split(';').next().unwrap().to_string();
    assert_eq!(get(&format!("{}/sweep/{sweep}", s.url), &[("Cookie", &cookie)]).status, 200);
    assert!(!a.text().contains(TOKEN), "the page does not show the token");

    // What may be asked: names against the store layout.
    for path in [
        "/run/..",
        "/run/%2e%2e",
        "/run/..%2f..%2fetc%2fpasswd",
        "/sweep/..%2fruns",
        "/sweep/.hidden",
        "/object/runs/x/../../../etc/passwd.png",
        "/object/runs/x/pictures/..%2f..%2fstatus.json",
        "/object/features/x/pictures/a.png",
        "/object/runs/x/checkpoints/unified/epoch_0001.png",
        "/object/%2fetc%2fpasswd",
        "/etc/passwd",
        "/run/a/b",
        "/api/../run/x",
    ] {
        let a = with(path);
        assert_eq!(a.status, 404, "{path}: {}", a.text());
        assert!(!a.text().contains("root:"), "{path} read a file outside the store");
    }
    let a = with("/run/no-such-run-1234");
    assert_eq!(a.status, 404);
    assert!(a.text().contains("no run no-such-run-1234 in store"), "{}", a.text());
    let a = with("/sweep/no-such-sweep");
    assert_eq!(a.status, 404);
    assert!(a.text().contains("no sweep no-such-sweep"), "{}", a.text());
    assert_eq!(request("POST", &format!("{}/", s.url), &[("Authorization", &auth)], b"x").status, 405);

    // The pages and their JSON.
    let home = with("/api/home").json();
    assert_eq!(home["sweeps"].as_array().unwrap().len(), 1, "{home}");
    let page = with(&format!("/api/sweep/{sweep}")).json();
    assert_eq!(page["runs"].as_array().unwrap().len(), 3);
    assert!(page["state"].as_str().unwrap().starts_with("3 runs: 3 complete"), "{page}");
    assert!(!page["grids"].as_array().unwrap().is_empty(), "the report's tables: {page}");
    let run = with(&format!("/api/run/{}", ids[0])).json();
    assert_eq!(run["loss"][0]["points"].as_array().unwrap().len(), 3, "{run}");
    let cmp = with(&format!("/api/compare?run={}&run={}", ids[0], ids[1])).json();
    assert_eq!(cmp["runs"].as_array().unwrap().len(), 2);
    assert!(cmp["differences"].get("seed").is_some(), "the runs differ by seed: {cmp}");

    // Live: a fragment is 204 while nothing changed, and the new content once it has.
    let page = with(&format!("/run/{}", ids[0])).text();
    let version = page.split("data-etag=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let frag = |since: &str| with(&format!("/run/{}?fragment=1&since={since}", ids[0]));
    assert_eq!(frag(&version).status, 204);
    let log = store.join("runs").join(&ids[0]).join("train_log.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text += "{\"model\":\"unified\",\"epoch\":4,\"loss\":0.2}\n";
    std::fs::write(&log, text).unwrap();
    let before_change = snapshot(&store);
    eventually(5, "the run page shows the 4th epoch", || {
        let a = frag(&version);
        a.status == 200 && a.header("x-ras-version").is_some_and(|v| v != version)
    });
    assert_eq!(with(&format!("/api/run/{}", ids[0])).json()["loss"][0]["points"].as_array().unwrap().len(), 4);

    // Nothing the server did wrote to the store.
    assert_eq!(snapshot(&store), before_change);
    assert_eq!(before.len(), before_change.len());
    assert!(!s.log_text().contains(TOKEN), "the token reached the log");
}

#[test]
fn odd_stores_give_pages_that_say_what_is_wrong() {
    let d = tempfile::tempdir().unwrap();
    // An empty store.
    let empty = d.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let s = Served::start(d.path(), &["--store", empty.to_str().unwrap()], &[], &d.path().join("empty.log"));
    let a = get(&format!("{}/", s.url), &[]);
    assert_eq!(a.status, 200);
    assert!(a.text().contains("holds no sweep and no run yet"), "{}", a.text());
    drop(s);

    let (store, _sweep, ids) = finished_store(d.path(), 2);
    // A manifest from another version.
    let other = store.join("sweeps/other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("manifest.json"), r#"{"format_version": 99, "written_by": "9.0.0", "name": "other"}"#)
        .unwrap();
    // A metrics log torn in its middle (not a torn last line, which is dropped).
    let torn = store.join("runs").join(&ids[1]).join("metrics.jsonl");
    std::fs::write(&torn, "{\"epoch\": 1, \"metr\n{\"epoch\": 2, \"metrics\": {}}\n").unwrap();
    // A status that is not JSON.
    std::fs::write(store.join("runs").join(&ids[0]).join("status.json"), "{\"state\": \"compl").unwrap();
    let s = Served::start(
        d.path(),
        &["--store", store.to_str().unwrap(), "--refresh", "0.2"],
        &[],
        &d.path().join("odd.log"),
    );
    let a = get(&format!("{}/sweep/other", s.url), &[]);
    assert_eq!(a.status, 200);
    assert!(a.text().contains("format") && a.text().contains("9.0.0"), "{}", a.text());
    let a = get(&format!("{}/run/{}", s.url, ids[1]), &[]);
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().contains("class=\"problem\"") && a.text().contains("metrics.jsonl"), "{}", a.text());
    let a = get(&format!("{}/run/{}", s.url, ids[0]), &[]);
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().contains("class=\"problem\"") && a.text().contains("status.json"), "{}", a.text());
    // The home page lists the unreadable sweep with its reason, and the server still serves.
    let a = get(&format!("{}/", s.url), &[]);
    assert_eq!(a.status, 200);
    assert!(a.text().contains("other") && a.text().contains("class=\"problem\""), "{}", a.text());
    assert_eq!(get(&format!("{}/api/home", s.url), &[]).status, 200);
}

const S3_KEY: &str = "serve-test-access";
const S3_SECRET: &str = "serve-test-secret-Zq8fW2";
const BUCKET: &str = "serve";

/// s3s-fs over `root` on a free port (killed on drop, continued first if stopped).
struct S3(std::process::Child, u16);

impl S3 {
    fn start(root: &Path) -> S3 {
        let bin =
            ["s3s-fs".into(), std::env::var("HOME").map(|h| format!("{h}/.cargo/bin/s3s-fs")).unwrap_or_default()]
                .into_iter()
                .find(|b: &String| {
                    Command::new(b).arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
                })
                .expect("s3s-fs (the test S3 server) is not installed: run `make setup-s3`");
        let port = common::http::free_port();
        let child = Command::new(bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                S3_KEY,
                "--secret-key",
                S3_SECRET,
            ])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        eventually(20, "s3s-fs listens", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        S3(child, port)
    }

    fn signal(&self, sig: &str) {
        assert!(Command::new("kill").args([sig, &self.0.id().to_string()]).status().unwrap().success());
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0.id().to_string()]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn on_s3_no_secret_is_shown_and_an_outage_is_said_then_recovered() {
    let d = tempfile::tempdir().unwrap();
    let (store, sweep, ids) = finished_store(d.path(), 2);
    // A job log that printed the credentials (as a careless job script might).
    let logs = store.join("runs").join(&ids[0]).join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("1.log"), format!("starting\nAWS_SECRET_ACCESS_KEY={S3_SECRET}\ndone\n")).unwrap();
    // The same objects on the S3 server (a bucket is a folder of s3s-fs).
    let root = d.path().join("s3");
    copy_dir(&store, &root.join(BUCKET).join("ras"));
    let s3 = S3::start(&root);
    let endpoint = format!("http://127.0.0.1:{}", s3.1);
    let env = [
        ("AWS_ACCESS_KEY_ID", S3_KEY),
        ("AWS_SECRET_ACCESS_KEY", S3_SECRET),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false"),
    ];
    let url = format!("s3://{BUCKET}/ras");
    let s = Served::start(d.path(), &["--store", &url, "--refresh", "0.2"], &env, &d.path().join("s3serve.log"));
    let mut answers = vec![];
    for path in [
        "/".to_string(),
        format!("/sweep/{sweep}"),
        format!("/run/{}", ids[0]),
        format!("/compare?run={}&run={}", ids[0], ids[1]),
        "/api/home".into(),
        format!("/api/sweep/{sweep}"),
        format!("/api/run/{}", ids[0]),
        "/run/nope".into(),
    ] {
        let a = get(&format!("{}{path}", s.url), &[]);
        assert!(a.status == 200 || path == "/run/nope", "{path}: {} {}", a.status, a.text());
        answers.push((path, a.text()));
    }
    let (_, run_page) = &answers[2];
    assert!(run_page.contains("AWS_SECRET_ACCESS_KEY=[redacted]"), "the log tail is shown, redacted: {run_page}");
    for (path, text) in &answers {
        assert!(!text.contains(S3_SECRET), "{path} shows the store's secret key");
    }
    assert!(answers[1].1.contains("2 runs: 2 complete"), "{}", answers[1].1);

    // The store stops answering: the page says so (within the serve's short retry budget)
    // and keeps what it showed; once it answers again, the note goes.
    s3.signal("-STOP");
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let a = get(&format!("{}/sweep/{sweep}", s.url), &[]);
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().contains("did not answer") && a.text().contains("2 runs: 2 complete"), "{}", a.text());
    assert!(t.elapsed() < Duration::from_secs(30), "a page waited {:?} on a stopped store", t.elapsed());
    assert_eq!(get(&format!("{}/assets/live.js", s.url), &[]).status, 200, "the server keeps serving");
    s3.signal("-CONT");
    eventually(30, "the note goes once the store answers", || {
        let a = get(&format!("{}/sweep/{sweep}", s.url), &[]);
        a.status == 200 && !a.text().contains("did not answer")
    });
    assert!(!s.log_text().contains(S3_SECRET), "the secret reached the log");
}
