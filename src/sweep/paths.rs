//! Where a sweep keeps its state in the store. This is the one place that describes the
//! layout, and [`SweepPaths`] is the one place that spells (and parses) its keys. The
//! coordinator keeps nothing in memory that matters: everything lives under
//! `sweeps/<name>/`, so that any number of coordinators can be started, killed and
//! restarted on one sweep:
//!
//! ```text
//! manifest.json             the expanded runs: id, label, resolved config, ranks, plan;
//!                           `format_version` says how to read it (see `Manifest::read`)
//! claims/<run id>.<attempt> conditional create (put_new): whoever writes it launches
//!                           that attempt, nobody else
//! jobs/<run id>.<attempt>.json  what the launcher started (pid or Slurm job id)
//! launches/<run id>.<attempt>.<host>.<pid>  one per submission, never overwritten: the
//!                           audit that shows no attempt was launched twice
//! features/<name>.claim|.json  the one job that fills a feature cache (dataset +
//!                           backbone) before the runs reading it: who submits it, and its
//!                           job record; <name> is `features-<12 hex digits>`
//! cancelled                 written by `ras cancel`: running coordinators launch nothing
//!                           more and exit; a coordinator started afterwards removes it
//!                           and resumes
//! cancelled-runs/<run id>.json  one run stopped for good (`ras cancel --run`, or its
//!                           Slurm job scancel'ed by a person): who, when, why; created
//!                           once (put_new); no coordinator launches the run again until
//!                           `ras sweep --retry-cancelled` removes it
//! stopped-jobs/<job id>     a job ras itself stopped to be resumed (`ras cancel` of the
//!                           whole sweep), or whose cancel `--retry-cancelled` undid: its
//!                           CANCELLED state is not a person's cancel of the run
//! search/<run id>.<rung>.json  a search's decision about a run at a rung (promoted or
//!                           not, why, the metric, the spend): created once (put_new)
//!                           before it is acted on; the runs read theirs to know how far
//!                           they may train (spelled by `RunPaths::decision`)
//! report.json               the job record of the report job `ras sweep --no-wait
//!                           --report` submits behind the runs
//! ```
//!
//! A run's own outcome is its `runs/<id>/status.json` (written by the run itself, see
//! `run::paths`), so the state of a sweep is a pure function of the store plus the
//! launcher's view of the jobs.
//!
//! Why one type: coordinators of other versions of `ras` read these keys while this one
//! writes them, so they are a file format. The unit tests below pin every key to its
//! literal string and parse each one back.

/// The store keys of one sweep (see the module doc for the layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepPaths {
    name: String,
}

/// What a key under `sweeps/<name>/` is, as [`SweepPaths::parse`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepKey {
    Manifest,
    Cancelled,
    Report,
    /// `claims/<run>.<attempt>`.
    Claim {
        run: String,
        attempt: usize,
    },
    /// `jobs/<run>.<attempt>.json`.
    Job {
        run: String,
        attempt: usize,
    },
    /// `launches/<entry>`: the entry is kept whole. Its parts are not split because run
    /// ids and host names may both contain dots, so `<run>.<attempt>.<host>.<pid>` has
    /// no single reading; the audit is only ever counted.
    Launch(String),
    /// `features/<name>.claim`.
    FeatureClaim(String),
    /// `features/<name>.json`.
    FeatureJob(String),
    /// `cancelled-runs/<run>.json`.
    CancelledRun(String),
    /// `stopped-jobs/<job id>`.
    StoppedJob(String),
    /// `search/<run>.<rung>.json`.
    Decision {
        run: String,
        rung: usize,
    },
}

/// `<run id>.<attempt>`, the name of a claim and of a job record, split at the last dot
/// (a run id may contain dots; the attempt is a number).
fn run_attempt(name: &str) -> Option<(String, usize)> {
    let (id, attempt) = name.rsplit_once('.')?;
    if id.is_empty() {
        return None;
    }
    Some((id.to_string(), attempt.parse().ok()?))
}

impl SweepPaths {
    /// Folder of every sweep: `sweeps/` (a LIST of it finds the sweeps of a store).
    pub const ROOT: &'static str = "sweeps/";

    /// The keys of the sweep named `name` (the sweep file's stem).
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `sweeps/<name>`: every key of the sweep starts with it.
    pub fn prefix(&self) -> String {
        format!("sweeps/{}", self.name)
    }

    fn key(&self, rest: &str) -> String {
        format!("sweeps/{}/{rest}", self.name)
    }

    /// The expanded runs (`Manifest`).
    pub fn manifest(&self) -> String {
        self.key("manifest.json")
    }

    /// Present while `ras cancel` stops the sweep.
    pub fn cancelled(&self) -> String {
        self.key("cancelled")
    }

    /// Folder of the runs cancelled for good (a LIST of it: which).
    pub fn cancelled_runs(&self) -> String {
        self.key("cancelled-runs")
    }

    /// The marker of run `run`, cancelled for good (`state::CancelMark`).
    pub fn cancelled_run(&self, run: &str) -> String {
        self.key(&format!("cancelled-runs/{run}.json"))
    }

    /// A job ras stopped itself, to be resumed (its CANCELLED state is no person's cancel).
    pub fn stopped_job(&self, job_id: &str) -> String {
        self.key(&format!("stopped-jobs/{job_id}"))
    }

    /// The report job's record.
    pub fn report(&self) -> String {
        self.key("report.json")
    }

    /// Folder of the claims (a LIST of it: which runs were ever claimed).
    pub fn claims(&self) -> String {
        self.key("claims")
    }

    /// The claim of attempt `attempt` of run `run` (created once, by whoever launches it).
    pub fn claim(&self, run: &str, attempt: usize) -> String {
        self.key(&format!("claims/{run}.{attempt}"))
    }

    /// The job record of attempt `attempt` of run `run`.
    pub fn job(&self, run: &str, attempt: usize) -> String {
        self.key(&format!("jobs/{run}.{attempt}.json"))
    }

    /// Folder of the launch audit (a LIST of it counts the submissions).
    pub fn launches(&self) -> String {
        self.key("launches")
    }

    /// One submission of attempt `attempt` of run `run` by process `pid` of `host`: a
    /// distinct key per submitting process, so no entry is ever overwritten.
    pub fn launch(&self, run: &str, attempt: usize, host: &str, pid: u32) -> String {
        self.key(&format!("launches/{run}.{attempt}.{host}.{pid}"))
    }

    /// Who submits the job filling feature cache `name` (`SweepState::feature_name`).
    pub fn feature_claim(&self, name: &str) -> String {
        self.key(&format!("features/{name}.claim"))
    }

    /// The job record of the job filling feature cache `name`.
    /// The search's decision about `run` at rung `rung` (spelled by `RunPaths::decision`).
    pub fn decision(&self, run: &str, rung: usize) -> String {
        crate::run::RunPaths::new(run).decision(&self.name, rung)
    }

    /// Folder of the search's decisions.
    pub fn decisions(&self) -> String {
        self.key("search")
    }

    pub fn feature_job(&self, name: &str) -> String {
        self.key(&format!("features/{name}.json"))
    }

    /// What a listed key is: its sweep and its kind; None for a key outside `sweeps/` or
    /// one this version does not write (kept, not an error: a newer `ras` may add keys).
    pub fn parse(key: &str) -> Option<(SweepPaths, SweepKey)> {
        let (name, rest) = key.strip_prefix(Self::ROOT)?.split_once('/')?;
        if name.is_empty() {
            return None;
        }
        let kind = match rest {
            "manifest.json" => SweepKey::Manifest,
            "cancelled" => SweepKey::Cancelled,
            "report.json" => SweepKey::Report,
            _ => {
                let (folder, entry) = rest.split_once('/')?;
                if entry.is_empty() || entry.contains('/') {
                    return None;
                }
                match folder {
                    "claims" => run_attempt(entry).map(|(run, attempt)| SweepKey::Claim { run, attempt })?,
                    "jobs" => run_attempt(entry.strip_suffix(".json")?)
                        .map(|(run, attempt)| SweepKey::Job { run, attempt })?,
                    "launches" => SweepKey::Launch(entry.to_string()),
                    "cancelled-runs" => match entry.strip_suffix(".json") {
                        Some(run) if !run.is_empty() => SweepKey::CancelledRun(run.to_string()),
                        _ => return None,
                    },
                    "stopped-jobs" => SweepKey::StoppedJob(entry.to_string()),
                    "search" => {
                        run_attempt(entry.strip_suffix(".json")?).map(|(run, rung)| SweepKey::Decision { run, rung })?
                    }
                    "features" => match (entry.strip_suffix(".claim"), entry.strip_suffix(".json")) {
                        (Some(n), _) if !n.is_empty() => SweepKey::FeatureClaim(n.to_string()),
                        (_, Some(n)) if !n.is_empty() => SweepKey::FeatureJob(n.to_string()),
                        _ => return None,
                    },
                    _ => return None,
                }
            }
        };
        Some((SweepPaths::new(name), kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_todays_literal() {
        let p = SweepPaths::new("table3");
        assert_eq!(p.name(), "table3");
        assert_eq!(SweepPaths::ROOT, "sweeps/");
        assert_eq!(p.prefix(), "sweeps/table3");
        assert_eq!(p.manifest(), "sweeps/table3/manifest.json");
        assert_eq!(p.cancelled(), "sweeps/table3/cancelled");
        assert_eq!(p.report(), "sweeps/table3/report.json");
        assert_eq!(p.claims(), "sweeps/table3/claims");
        assert_eq!(p.claim("mvtec-1a2b3c4d", 0), "sweeps/table3/claims/mvtec-1a2b3c4d.0");
        assert_eq!(p.claim("mvtec-1a2b3c4d", 12), "sweeps/table3/claims/mvtec-1a2b3c4d.12");
        assert_eq!(p.job("mvtec-1a2b3c4d", 1), "sweeps/table3/jobs/mvtec-1a2b3c4d.1.json");
        assert_eq!(p.launches(), "sweeps/table3/launches");
        assert_eq!(p.launch("mvtec-1a2b3c4d", 1, "node7", 4242), "sweeps/table3/launches/mvtec-1a2b3c4d.1.node7.4242");
        assert_eq!(p.feature_claim("features-0123456789ab"), "sweeps/table3/features/features-0123456789ab.claim");
        assert_eq!(p.feature_job("features-0123456789ab"), "sweeps/table3/features/features-0123456789ab.json");
        assert_eq!(p.cancelled_runs(), "sweeps/table3/cancelled-runs");
        assert_eq!(p.cancelled_run("mvtec-1a2b3c4d"), "sweeps/table3/cancelled-runs/mvtec-1a2b3c4d.json");
        assert_eq!(p.stopped_job("1234_5"), "sweeps/table3/stopped-jobs/1234_5");
        assert_eq!(p.decision("mvtec-1a2b3c4d", 2), "sweeps/table3/search/mvtec-1a2b3c4d.2.json");
        assert_eq!(p.decisions(), "sweeps/table3/search");
    }

    #[test]
    fn every_key_parses_back() {
        let p = SweepPaths::new("table3");
        let run = "v1.2-1a2b3c4d"; // config names may contain dots
        let cases = [
            (p.manifest(), SweepKey::Manifest),
            (p.cancelled(), SweepKey::Cancelled),
            (p.report(), SweepKey::Report),
            (p.claim(run, 3), SweepKey::Claim { run: run.into(), attempt: 3 }),
            (p.job(run, 3), SweepKey::Job { run: run.into(), attempt: 3 }),
            (p.launch(run, 3, "node7.cluster", 42), SweepKey::Launch(format!("{run}.3.node7.cluster.42"))),
            (p.feature_claim("features-abc"), SweepKey::FeatureClaim("features-abc".into())),
            (p.feature_job("features-abc"), SweepKey::FeatureJob("features-abc".into())),
            (p.cancelled_run(run), SweepKey::CancelledRun(run.into())),
            (p.stopped_job("1234_5"), SweepKey::StoppedJob("1234_5".into())),
            (p.decision(run, 1), SweepKey::Decision { run: run.into(), rung: 1 }),
        ];
        for (key, kind) in cases {
            assert_eq!(SweepPaths::parse(&key), Some((p.clone(), kind)), "{key}");
        }
        for key in [
            "runs/x/status.json",
            "sweeps/manifest.json",
            "sweeps//manifest.json",
            "sweeps/s/claims/run-without-attempt",
            "sweeps/s/claims/run.x",
            "sweeps/s/jobs/run.0",
            "sweeps/s/features/features-abc.txt",
            "sweeps/s/claims/",
            "sweeps/s/claims/a/b.0",
            "sweeps/s/unknown.json",
            "sweeps/s/cancelled-runs/.json",
            "sweeps/s/cancelled-runs/run-without-json",
        ] {
            assert_eq!(SweepPaths::parse(key), None, "{key}");
        }
    }
}
