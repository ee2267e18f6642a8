//! What `ras bench coordinator --s3` measures against: the project's test S3 server
//! (s3s-fs, a real S3 protocol server over a folder, installed by `make setup-s3`) on
//! loopback, behind a forwarder that delays every byte the client sends by a fixed
//! latency. A cloud object store is a round trip of tens of ms away; a loopback server
//! answers in well under one, which would hide what a sweep's store traffic costs.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Access key and secret of the bench's server (loopback only, a throwaway folder).
pub const KEY: &str = "ras-bench";
pub const SECRET: &str = "ras-bench-secret";
/// The bucket (a folder of the server's root).
pub const BUCKET: &str = "ras-bench";

#[derive(Debug, thiserror::Error)]
pub enum S3BenchError {
    #[error(
        "s3s-fs (the test S3 server) is not on PATH nor in ~/.cargo/bin: run `make setup-s3` \
         (scripts/setup-s3.sh installs it), or set RAS_S3S_FS to its path"
    )]
    NoServer,
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("s3s-fs did not listen on {0} within 20 s (its log: {1})")]
    NotListening(SocketAddr, PathBuf),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> S3BenchError {
    let what = what.into();
    move |source| S3BenchError::Io { what, source }
}

/// The s3s-fs binary: `RAS_S3S_FS`, PATH, or ~/.cargo/bin.
fn s3s_fs() -> Result<PathBuf, S3BenchError> {
    if let Some(p) = std::env::var_os("RAS_S3S_FS").map(PathBuf::from).filter(|p| p.is_file()) {
        return Ok(p);
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("s3s-fs")).find(|p| p.is_file()));
    let cargo = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/s3s-fs")).filter(|p| p.is_file());
    on_path.or(cargo).ok_or(S3BenchError::NoServer)
}

fn free_port() -> Result<u16, S3BenchError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io_err("binding a loopback port"))?;
    Ok(l.local_addr().map_err(io_err("binding a loopback port"))?.port())
}

/// A running s3s-fs over `root` with the latency forwarder in front; both stop on drop.
pub struct SlowS3 {
    server: Child,
    /// Where clients connect (the forwarder).
    pub endpoint: SocketAddr,
    pub latency: Duration,
    _forwarder: std::thread::JoinHandle<()>,
}

impl SlowS3 {
    /// Starts the server over `root` (created) and the forwarder adding `latency`.
    pub fn start(root: &Path, latency: Duration) -> Result<Self, S3BenchError> {
        let bin = s3s_fs()?;
        std::fs::create_dir_all(root.join(BUCKET)).map_err(io_err(format!("creating {}", root.display())))?;
        let port = free_port()?;
        let log_path = root.with_extension("log");
        let log = std::fs::File::create(&log_path).map_err(io_err(format!("creating {}", log_path.display())))?;
        let server = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", KEY, "--secret-key", SECRET])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io_err(format!("starting {}", bin.display())))?;
        let target: SocketAddr = ([127, 0, 0, 1], port).into();
        let t = Instant::now();
        while std::net::TcpStream::connect(target).is_err() {
            if t.elapsed() > Duration::from_secs(20) {
                return Err(S3BenchError::NotListening(target, log_path));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let (endpoint, forwarder) = forward_with_latency(target, latency)?;
        Ok(Self { server, endpoint, latency, _forwarder: forwarder })
    }

    /// The environment an S3 client (object_store's, ours) needs to reach it.
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT", format!("http://{}", self.endpoint)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false".into()),
        ]
    }
}

/// A bench's store: with `latency`, the test S3 server (files in `dir`) behind it, its
/// client settings put in this process's environment (the bench's own clients and the
/// `ras` commands it times read them), a line saying so in `out`, and the store URL
/// `s3://BUCKET/<prefix>`; without, None.
pub fn start_for_bench(
    latency: Option<Duration>,
    dir: &Path,
    prefix: &str,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<Option<(SlowS3, String)>> {
    let Some(latency) = latency else { return Ok(None) };
    let server = SlowS3::start(dir, latency)?;
    for (k, v) in server.client_env() {
        std::env::set_var(k, v);
    }
    writeln!(out, "test S3 server (s3s-fs) behind {} ms per request: {}", latency.as_millis(), server.endpoint)?;
    Ok(Some((server, format!("s3://{BUCKET}/{prefix}"))))
}

impl Drop for SlowS3 {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// A TCP forwarder on a free loopback port to `target`: what the client sends reaches
/// the server `latency` later (a delay line: bytes keep their order and the throughput
/// is not cut, as on a long link); answers come back at once. One request is thus one
/// `latency` slower, whatever its size. Runs on its own thread and runtime until the
/// process ends.
pub fn forward_with_latency(
    target: SocketAddr,
    latency: Duration,
) -> Result<(SocketAddr, std::thread::JoinHandle<()>), S3BenchError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io_err("binding the forwarder"))?;
    let addr = listener.local_addr().map_err(io_err("binding the forwarder"))?;
    listener.set_nonblocking(true).map_err(io_err("binding the forwarder"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io_err("starting the forwarder's runtime"))?;
    let handle = std::thread::spawn(move || {
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(server) = tokio::net::TcpStream::connect(target).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        pipe(client, server, latency).await;
                    }
                });
            }
        })
    });
    Ok((addr, handle))
}

/// Both directions of one connection: client -> server through the delay line.
async fn pipe(client: tokio::net::TcpStream, server: tokio::net::TcpStream, latency: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let read_client = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = cr.read(&mut buf).await {
            if n == 0 || tx.send((tokio::time::Instant::now() + latency, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    };
    let to_server = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if sw.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = sw.shutdown().await;
    };
    let to_client = async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    tokio::join!(read_client, to_server, to_client);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A loopback echo server behind the forwarder: each request's answer comes back
    /// one latency later, and bytes arrive whole and in order.
    #[test]
    fn the_forwarder_delays_each_request_by_the_latency() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = echo.accept().unwrap();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).unwrap();
            }
        });
        let latency = Duration::from_millis(40);
        let (addr, _h) = forward_with_latency(target, latency).unwrap();
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_nodelay(true).unwrap();
        for round in 0..3u8 {
            let msg = [round; 1000];
            let t = Instant::now();
            c.write_all(&msg).unwrap();
            let mut got = [0u8; 1000];
            c.read_exact(&mut got).unwrap();
            let took = t.elapsed();
            assert_eq!(got, msg);
            assert!(took >= latency && took < latency * 5, "round {round} took {took:?}");
        }
    }
}
