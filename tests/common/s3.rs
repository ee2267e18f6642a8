//! One s3s-fs server (an S3 protocol server over a folder, SigV4 signatures checked) for
//! the tests that put the store on S3 (tests/s3.rs, tests/chaos): started on a port of its
//! own, restartable on that port and folder.

use super::one_intra_op_thread;
use super::text;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BUCKET: &str = "ras";
pub const KEY: &str = "rastestkey";
pub const SECRET: &str = "rastestsecret0123456789";

/// The s3s-fs binary: on PATH or in ~/.cargo/bin; a clear failure otherwise.
pub fn s3s_fs() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("s3s-fs")).find(|p| p.is_file()));
    let cargo_bin =
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/s3s-fs")).filter(|p| p.is_file());
    on_path.or(cargo_bin).unwrap_or_else(|| {
        panic!("s3s-fs (the S3 server these tests run against) is not on PATH nor in ~/.cargo/bin: run `make setup-s3` (scripts/setup-s3.sh installs it)")
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One s3s-fs server over `root` (bucket `ras` = folder `root/ras`), on a fixed port so
/// that it can be restarted where the clients expect it.
pub struct S3 {
    pub bin: PathBuf,
    pub root: PathBuf,
    pub port: u16,
    pub child: Option<Child>,
    /// Runs `ras` on one intra-op thread, for runs compared bit for bit (see
    /// [`one_intra_op_thread`]).
    pub one_thread: bool,
}

impl S3 {
    pub fn start(dir: &Path) -> S3 {
        let root = dir.join("s3");
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let mut s = S3 { bin: s3s_fs(), root, port: free_port(), child: None, one_thread: false };
        s.spawn();
        s
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.root.with_extension("log")).unwrap();
        let child = Command::new(&self.bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--access-key",
                KEY,
                "--secret-key",
                SECRET,
            ])
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        self.child = Some(child);
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(20), "s3s-fs did not listen on port {} within 20 s", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> String {
        self.child.as_ref().expect("server running").id().to_string()
    }

    pub fn signal(&self, sig: &str) {
        assert!(Command::new("kill").args([sig, &self.pid()]).status().unwrap().success());
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-CONT", &c.id().to_string()]).status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// An object's bytes as the server keeps them (its folder), None when absent.
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.join(BUCKET).join(key)).ok()
    }

    pub fn json(&self, key: &str) -> serde_json::Value {
        let b = self.object(key).unwrap_or_else(|| panic!("no object {key}"));
        serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{key}: {e}"))
    }

    /// Keys under `prefix` (relative to the bucket).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let base = self.root.join(BUCKET);
        let mut files = vec![];
        super::walk(&base.join(prefix), &mut files);
        let mut out: Vec<String> =
            files.iter().map(|p| p.strip_prefix(&base).unwrap().to_string_lossy().into_owned()).collect();
        out.sort();
        out
    }

    /// `ras ARGS` in `cwd` with this server's endpoint and credentials.
    pub fn ras(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ras"));
        c.args(args)
            .current_dir(cwd)
            .env("RUST_LOG", "warn,object_store=info")
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port))
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("RAS_STORE_RETRY_S")
            .env_remove("RAS_STORE_TIMEOUT_S");
        if self.one_thread {
            one_intra_op_thread(&mut c);
        }
        c
    }

    pub fn ras_ok(&self, cwd: &Path, args: &[&str]) -> Output {
        let out = self.ras(cwd, args).output().unwrap();
        assert!(out.status.success(), "ras {args:?} failed:\n{}", text(&out));
        out
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.kill();
    }
}
