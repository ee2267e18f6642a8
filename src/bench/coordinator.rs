//! `ras bench coordinator`: a synthetic sweep of N one-rank runs (random-init backbone,
//! a dataset folder that does not exist, so planning uses MVTec's published size and no
//! job would get far), for measuring what a coordinator's poll cycle costs at scale.

use crate::sweep::{expand, ExpandOptions, Manifest, SweepError};
use std::path::Path;

/// Writes the base config and sweep file into `dir` and expands them: `runs` runs that
/// differ by seed, state in `store_url`.
pub fn synthetic_sweep(runs: usize, store_url: &str, dir: &Path) -> Result<Manifest, SweepError> {
    let io = |path: &Path, e: std::io::Error| SweepError::Io { path: path.to_path_buf(), source: e };
    let base = dir.join("bench-base.toml");
    let text = format!(
        "name = \"bench\"\nstore = {store}\n[dataset]\nroot = {root}\n[backbone]\narch = \"efficientnet-b0\"\n\
         [model]\nhidden_dim = 64\nencoder_layers = 1\ndecoder_layers = 1\nheads = 4\nffn_dim = 128\n\
         [train]\nepochs = 1\nbatch_size = 8\ndevice = \"cpu\"\n",
        store = toml::Value::String(store_url.to_string()),
        root = toml::Value::String(dir.join("no-dataset").display().to_string()),
    );
    std::fs::write(&base, text).map_err(|e| io(&base, e))?;
    let seeds: Vec<String> = (0..runs).map(|i| i.to_string()).collect();
    let sweep = dir.join("bench-coordinator.toml");
    let text = format!(
        "name = \"bench-coordinator\"\nbase = {base}\nranks = 1\nmax_retries = 0\n[grid]\nseed = [{}]\n",
        seeds.join(", "),
        base = toml::Value::String(base.display().to_string())
    );
    std::fs::write(&sweep, text).map_err(|e| io(&sweep, e))?;
    expand(&sweep, &ExpandOptions { store: None, overrides: vec![], max_ranks: 1 })
}
