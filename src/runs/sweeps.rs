//! The sweep a command names: a sweep file expanded (`ras sweep`, `plan`), or a sweep file
//! or a sweep's name read from its store (`ras status`, `report`, `cancel`).

use super::RunsError;
use crate::config::{ClusterProfile, ProfileError};
use crate::store::{Store, StoreError};
use crate::sweep::{expand, expand_checked, DataIssue, ExpandOptions, Manifest, SweepError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("no sweep file {0}")]
    NoFile(String),
    #[error("--set applies to sweep files; sweep {0} is read from its store as it ran")]
    OverridesOnName(String),
    #[error("no sweep {name}: no store at {url}; {}", super::OTHER_STORE)]
    NoStore { name: String, url: String },
    #[error("{}", path.display())]
    Path {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Sweep(#[from] SweepError),
    #[error(transparent)]
    Runs(#[from] RunsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A sweep file expanded for a cluster profile, with its store.
pub struct LoadedSweep {
    pub manifest: Manifest,
    pub store: Store,
    pub profile: ClusterProfile,
    /// Unchecked (`check` false): what of the runs' data could not be read, to be shown.
    pub unchecked: Vec<DataIssue>,
}

/// Expands `sweep` (with `--store` and `--set`) for the profile `cluster`, for `ras sweep`
/// and `ras plan`. `check`: refuse a run whose dataset does not hold what it names
/// (missing root, unknown class, empty split). `launching` (`ras sweep`): the store is
/// created if missing, and runs this sweep already launched are not checked (a resumed
/// sweep retries them, and their jobs say what is wrong); without it (`ras plan`) the
/// store is only read and never created.
pub fn load_sweep(
    sweep: &Path,
    cluster: &Path,
    store: Option<String>,
    overrides: &[String],
    check: bool,
    launching: bool,
) -> Result<LoadedSweep, OpenError> {
    let profile = ClusterProfile::load(cluster)?;
    let opts = ExpandOptions { store, overrides: overrides.to_vec(), max_ranks: profile.slots(), check_data: check };
    let (manifest, mut issues) = expand_checked(sweep, &opts)?;
    // `ras plan` only reads (its estimates' measurements), and a sweep that fails its
    // checks submits nothing: neither creates a store folder. Only a sweep that passed
    // opens its store for writing (below).
    let store = Store::open_for_reading(&manifest.store)?;
    if !check {
        let store = if launching { Store::open(&manifest.store)? } else { store };
        return Ok(LoadedSweep { manifest, store, profile, unchecked: issues });
    }
    if launching && !issues.is_empty() {
        let claimed = crate::sweep::SweepState { store: &store, manifest: &manifest }.claimed_runs()?;
        issues.retain(|i| !claimed.contains(&i.run_id));
    }
    if let Some(i) = issues.into_iter().next() {
        return Err(i.into_error(sweep).into());
    }
    let store = if launching { Store::open(&manifest.store)? } else { store };
    Ok(LoadedSweep { manifest, store, profile, unchecked: vec![] })
}

/// The sweep `ras status`, `report` and `cancel` name: a sweep file (expanded as `ras
/// sweep` does, without checking data; the profile `cluster`, else cluster/local.toml if
/// present, only sizes ranks), or else a sweep's name, whose manifest is read from the
/// store (`store`, else `config::default_store`: $RAS_STORE or file://./ras-store).
pub fn find_sweep(
    sweep: &Path,
    cluster: Option<&Path>,
    store: Option<String>,
    overrides: &[String],
) -> Result<(Manifest, Store), OpenError> {
    if sweep.is_file() {
        let cluster =
            cluster.map(PathBuf::from).or_else(|| Some(PathBuf::from("cluster/local.toml")).filter(|p| p.is_file()));
        let max_ranks = match &cluster {
            Some(c) => ClusterProfile::load(c)?.slots(),
            None => 1,
        };
        let opts = ExpandOptions { store, overrides: overrides.to_vec(), max_ranks, check_data: false };
        let manifest = expand(sweep, &opts)?;
        // Reading a sweep must not create its store: a mistyped URL is an error.
        let store = Store::open_existing(&manifest.store)?;
        if cluster.is_none() {
            // No profile to size ranks with: what the coordinator saved, if it ran. A
            // saved manifest this version cannot read is an error, not skipped: the
            // expansion here would show a plan other than the one that ran.
            match super::saved_sweep(&store, &manifest.name) {
                Ok(saved) => return Ok((saved, store)),
                Err(RunsError::NoSweep { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        return Ok((manifest, store));
    }
    let name = sweep.to_string_lossy().to_string();
    if name.ends_with(".toml") || name.contains('/') {
        return Err(OpenError::NoFile(name));
    }
    if !overrides.is_empty() {
        return Err(OpenError::OverridesOnName(name));
    }
    let url = store.unwrap_or_else(crate::config::default_store);
    let store = match super::open_existing(&url) {
        Err(RunsError::NoStore { .. }) => return Err(OpenError::NoStore { name, url }),
        r => r?,
    };
    let manifest = super::saved_sweep(&store, &name)?;
    Ok((manifest, store))
}

/// Local folder for the resolved configs and logs a sweep's jobs use (under the current
/// one, which jobs also run in, so relative dataset paths mean the same thing).
pub fn work_dir(manifest: &Manifest) -> PathBuf {
    PathBuf::from(".ras-sweeps").join(&manifest.name)
}

/// The `ras report` arguments of the report job `ras sweep --no-wait --report OUT` submits:
/// the same manifest as the coordinator's (same sweep file, profile, store and `--set`),
/// with absolute paths.
pub fn report_job_command(
    sweep: &Path,
    cluster: &Path,
    store: Option<&str>,
    overrides: &[String],
    out: &Path,
) -> Result<Vec<String>, OpenError> {
    let abs = |p: &Path| {
        std::fs::canonicalize(p)
            .map(|p| p.display().to_string())
            .map_err(|source| OpenError::Path { path: p.to_path_buf(), source })
    };
    let mut cmd = vec!["report".to_string(), abs(sweep)?, "--cluster".into(), abs(cluster)?];
    if let Some(url) = store {
        cmd.extend(["--store".to_string(), url.to_string()]);
    }
    for o in overrides {
        cmd.extend(["--set".to_string(), o.clone()]);
    }
    cmd.extend(["--out".to_string(), std::path::absolute(out)?.display().to_string()]);
    Ok(cmd)
}
