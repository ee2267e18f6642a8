//! `ras serve` in a real browser: Debian's headless Chromium driven through chromedriver
//! (WebDriver, `make setup-browser` installs both). The quickstart sweep runs while its
//! page is open; the test checks that the page fills in by itself (no reload), that every
//! cell of the paper layout equals the one `ras report` writes for the same sweep, that a
//! run's loss chart has one point per logged epoch, that runs picked on the page compare,
//! that the sweep page weighs under 300 kB, and that the browser's console has no error.
//! It saves a screenshot of each page (target/tmp/serve-screenshots).

mod common;

use common::http::{free_port, request, Answer};
use common::{dataset_at, repo, Served};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One chromedriver and one browser session (deleted, and the driver stopped, on drop:
/// no browser process is left behind).
struct Browser {
    driver: Child,
    base: String,
    session: String,
}

impl Browser {
    fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver) is not installed: run `make setup-browser`");
        let base = format!("http://127.0.0.1:{port}");
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(20), "chromedriver did not listen within 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"args": ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600"]},
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let a = request(
            "POST",
            &format!("{base}/session"),
            &[("Content-Type", "application/json")],
            caps.to_string().as_bytes(),
        );
        let v = a.json();
        let session =
            v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {v}")).to_string();
        Browser { driver, base, session }
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let body = if body.is_null() { String::new() } else { body.to_string() };
        let a: Answer = request(method, &url, &[("Content-Type", "application/json")], body.as_bytes());
        let v = a.json();
        assert!(a.status == 200, "WebDriver {method} {path}: {} {v}", a.status);
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    fn js(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", json!({"script": script, "args": []}))
    }

    fn click(&self, css: &str, nth: usize) {
        let els = self.call("POST", "/elements", json!({"using": "css selector", "value": css}));
        let id = els[nth]["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css} #{nth}: {els}"))
            .to_string();
        self.call("POST", &format!("/element/{id}/click"), json!({}));
    }

    /// A PNG of the window, saved to `path`.
    fn screenshot(&self, path: &Path) {
        let png = base64_decode(self.call("GET", "/screenshot", Value::Null).as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "not a screenshot");
        std::fs::write(path, png).unwrap();
    }

    /// The browser console's errors since the last call.
    fn console_errors(&self) -> Vec<String> {
        let log = self.call("POST", "/se/log", json!({"type": "browser"}));
        log.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = request("DELETE", &format!("{}/session/{}", self.base, self.session), &[], b"");
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (WebDriver's screenshots), without a crate for it.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = vec![];
    for chunk in bytes.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|c| u32::from(val(*c))).collect();
        let n = v.iter().enumerate().fold(0u32, |acc, (i, x)| acc | (x << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// The paper-layout tables of `ras report`'s `<sweep>-paper.md`: (title, rows of cells).
fn report_tables(md: &str) -> Vec<(String, Vec<Vec<String>>)> {
    let mut out: Vec<(String, Vec<Vec<String>>)> = vec![];
    for line in md.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            out.push((title.to_string(), vec![]));
        } else if line.starts_with('|') && !line.starts_with("|---") {
            let cells = line.trim().trim_matches('|').split(" | ").map(|c| c.trim().to_string()).collect();
            out.last_mut().expect("a table under a heading").1.push(cells);
        }
    }
    out
}

/// The same tables as the sweep page shows them.
const PAGE_TABLES: &str = r#"
  var out = [];
  var sec = document.getElementById('paper-layout');
  if (!sec) { return out; }
  var hs = sec.querySelectorAll('h3');
  for (var i = 0; i < hs.length; i++) {
    var rows = [];
    var trs = hs[i].nextElementSibling.querySelectorAll('tr');
    for (var j = 0; j < trs.length; j++) {
      var cells = [];
      var cs = trs[j].querySelectorAll('th, td');
      for (var k = 0; k < cs.length; k++) { cells.push(cs[k].textContent); }
      rows.push(cells);
    }
    out.push([hs[i].textContent, rows]);
  }
  return out;"#;

fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < Duration::from_secs(secs), "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn the_quickstart_sweep_fills_its_page_live_with_the_cells_ras_report_writes() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    dataset_at(cwd, "out/demo-data");
    let store = cwd.join("ras-store");
    std::fs::create_dir_all(&store).unwrap();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let served =
        Served::start(cwd, &["--store", store.to_str().unwrap(), "--refresh", "1"], &[], &cwd.join("serve.log"));
    let browser = Browser::start();

    // The sweep starts; its page is opened as soon as the sweep is in the store.
    let sweep_file = repo().join("jobs/quickstart.toml");
    let local = repo().join("cluster/local.toml");
    let mut sweep = Command::new(env!("CARGO_BIN_EXE_ras"))
        .args(["sweep", sweep_file.to_str().unwrap(), "--cluster", local.to_str().unwrap()])
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .env_remove("RAS_STORE")
        .stdout(std::fs::File::create(cwd.join("sweep.log")).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(60, "the sweep's manifest in the store", || {
        store.join("sweeps/quickstart/manifest.json").exists().then_some(())
    });
    browser.go(&format!("{}/sweep/quickstart", served.url));
    browser.js("window.__ras_not_reloaded = 42;");
    let state = |b: &Browser| {
        b.js("return document.getElementById('state-line').textContent;").as_str().unwrap_or("").to_string()
    };
    let first = state(&browser);
    assert!(
        first.starts_with("4 runs:") && !first.starts_with("4 runs: 4 complete"),
        "opened before the runs completed: {first}"
    );
    let status = sweep.wait().unwrap();
    assert!(
        status.success(),
        "the sweep failed: {}",
        std::fs::read_to_string(cwd.join("sweep.log")).unwrap_or_default()
    );

    // Filled in by itself, within a few seconds, without a reload.
    let t = Instant::now();
    eventually(15, "the page shows 4 complete runs", || {
        state(&browser).starts_with("4 runs: 4 complete").then_some(())
    });
    eprintln!("page updated {:.1} s after the sweep ended", t.elapsed().as_secs_f64());
    assert_eq!(browser.js("return window.__ras_not_reloaded;"), json!(42), "the page was reloaded");
    browser.screenshot(&shots.join("sweep.png"));

    // Every cell as `ras report` writes it.
    let report = common::run_ok(cwd, &["report", "quickstart", "--out", cwd.join("report").to_str().unwrap()]);
    assert!(report.status.success());
    let md = std::fs::read_to_string(cwd.join("report/quickstart-paper.md")).unwrap();
    let expected = report_tables(&md);
    assert!(!expected.is_empty() && expected.iter().all(|(_, rows)| rows.len() > 1), "{md}");
    let shown: Vec<(String, Vec<Vec<String>>)> = serde_json::from_value(browser.js(PAGE_TABLES)).unwrap();
    assert_eq!(shown, expected, "the page's cells differ from ras report's");
    let cells: usize = shown.iter().map(|(_, rows)| rows.iter().skip(1).map(|r| r.len() - 1).sum::<usize>()).sum();
    eprintln!("{cells} cells equal to ras report's in {} tables", shown.len());

    // Weight: the page and everything it loads.
    let bytes = browser.js("var n = performance.getEntriesByType('navigation')[0].decodedBodySize; \
         performance.getEntriesByType('resource').forEach(function (r) { n += r.decodedBodySize; }); return n;");
    let bytes = bytes.as_f64().unwrap();
    eprintln!("sweep page weight: {bytes} bytes (HTML, style, script)");
    assert!(bytes > 1000.0 && bytes < 300_000.0, "the sweep page weighs {bytes} bytes");

    // Two runs picked on the page, compared.
    browser.click("input[name=run]", 0);
    browser.click("input[name=run]", 1);
    browser.click("form[action='/compare'] button", 0);
    let url = eventually(10, "the compare page", || {
        let u = browser.js("return location.href;").as_str().unwrap_or("").to_string();
        u.contains("/compare?run=").then_some(u)
    });
    let differ = browser.js("return document.querySelectorAll('table.diff tbody tr').length;");
    assert!(differ.as_u64().unwrap() >= 1, "the compare page at {url} lists no differing key");
    assert_eq!(browser.js("return document.querySelectorAll('#compare-loss svg').length;"), json!(1));
    browser.screenshot(&shots.join("compare.png"));

    // A run's loss chart: one point per logged epoch (the legend draws one more marker a line).
    let id = url.split("run=").nth(1).unwrap().split('&').next().unwrap().to_string();
    browser.go(&format!("{}/run/{id}", served.url));
    let log = std::fs::read_to_string(store.join("runs").join(&id).join("train_log.jsonl")).unwrap();
    let epochs = log.lines().filter(|l| !l.trim().is_empty()).count();
    let models: std::collections::BTreeSet<String> =
        log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).map(|v| v["model"].to_string()).collect();
    let circles =
        browser.js("return document.querySelectorAll('#loss-chart svg circle').length;").as_u64().unwrap() as usize;
    assert!(epochs >= 2);
    assert_eq!(circles - models.len(), epochs, "loss chart points vs lines of {id}'s train_log.jsonl");
    browser.screenshot(&shots.join("run.png"));

    browser.go(&format!("{}/", served.url));
    let home = browser.js("return document.body.textContent;");
    assert!(home.as_str().unwrap().contains("4 runs: 4 complete"), "{home}");
    browser.screenshot(&shots.join("home.png"));

    let errors = browser.console_errors();
    assert!(errors.is_empty(), "the browser console has errors: {errors:?}");
    // The check above can fail: an error logged now is read back.
    browser.js("console.error('ras-test-probe');");
    assert!(browser.console_errors().iter().any(|e| e.contains("ras-test-probe")), "the console log is not read");
    eprintln!("screenshots in {}", shots.display());
}
