//! Exit codes of the `ras` binary, one list for the binary, the launchers and the job
//! templates (`{{ exit_requeue }}`, `{{ exit_infra }}` in cluster/templates/run.sbatch.tmpl).

/// How a `ras` process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Ok,
    /// Something failed; the error was printed (and recorded in the run's status).
    Failed,
    /// Done, but some inputs were skipped (`ras predict`: images that do not decode or do
    /// not exist); the outputs cover the rest and the skipped ones were listed on stderr.
    Partial,
    /// A sweep stopped by `ras cancel` with runs still open (their checkpoints stay).
    Cancelled,
    /// A run checkpointed on SIGTERM/SIGUSR1 and stopped: start it again to resume
    /// (EX_TEMPFAIL; the sbatch template requeues the job on it).
    Requeue,
    /// The store stayed unreachable past its retry budget (`RAS_STORE_RETRY_S`): an
    /// infrastructure failure, not the run's (EX_IOERR). A run records it in its status
    /// (state `infra`) when the store lets it; started again, it resumes from its last
    /// checkpoint, and the sweep coordinator requeues it without using up an attempt.
    Infra,
}

impl ExitStatus {
    pub const fn code(self) -> u8 {
        match self {
            ExitStatus::Ok => 0,
            ExitStatus::Failed => 1,
            ExitStatus::Partial => 2,
            ExitStatus::Cancelled => 3,
            ExitStatus::Requeue => 75,
            ExitStatus::Infra => 74,
        }
    }

    /// How a process that failed with `err` exits: `Infra` when the store was unreachable
    /// (the library error it holds, under any `.context()` layers, says it is an outage),
    /// else `Failed`.
    pub fn of_error(err: &anyhow::Error) -> Self {
        if is_outage(err) {
            ExitStatus::Infra
        } else {
            ExitStatus::Failed
        }
    }

    /// The status a process exit code stands for (None: a code ras does not use).
    pub fn from_code(code: i32) -> Option<Self> {
        [
            ExitStatus::Ok,
            ExitStatus::Failed,
            ExitStatus::Partial,
            ExitStatus::Cancelled,
            ExitStatus::Requeue,
            ExitStatus::Infra,
        ]
        .into_iter()
        .find(|s| s.code() as i32 == code)
    }
}

/// Whether `err` holds (under any `.context()` layers: anyhow's downcast sees through
/// them) a library error that is a store outage.
fn is_outage(err: &anyhow::Error) -> bool {
    macro_rules! asks {
        ($($t:ty),*) => { $(err.downcast_ref::<$t>().is_some_and(|e| e.is_outage()))||* };
    }
    asks!(
        crate::run::RunError,
        crate::store::StoreError,
        crate::features::FeatureError,
        crate::run::lease::LeaseError,
        crate::sweep::SweepError,
        crate::runs::RunsError,
        crate::report::ReportError,
        crate::launch::LaunchError
    )
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(s: ExitStatus) -> Self {
        std::process::ExitCode::from(s.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_round_trip() {
        let all = [
            ExitStatus::Ok,
            ExitStatus::Failed,
            ExitStatus::Partial,
            ExitStatus::Cancelled,
            ExitStatus::Requeue,
            ExitStatus::Infra,
        ];
        for s in all {
            assert_eq!(ExitStatus::from_code(s.code() as i32), Some(s));
        }
        let mut codes: Vec<u8> = all.iter().map(|s| s.code()).collect();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert_eq!(ExitStatus::Infra.code(), 74);
    }

    #[test]
    fn a_store_outage_anywhere_in_the_chain_is_infra() {
        let outage = crate::store::Outage {
            waited_s: 3.2,
            budget_s: 3.0,
            source: Box::new(object_store::Error::Generic { store: "S3", source: "connection refused".into() }),
        };
        let err = crate::store::StoreError::Unavailable {
            url: "s3://b/p".into(),
            op: "write",
            key: "runs/x/status.json".into(),
            source: outage,
        };
        let wrapped = anyhow::Error::new(err).context("saving a checkpoint").context("run from cfg.toml failed");
        assert_eq!(ExitStatus::of_error(&wrapped), ExitStatus::Infra);
        let text = format!("{wrapped:#}");
        assert!(text.contains("runs/x/status.json") && text.contains("RAS_STORE_RETRY_S"), "{text}");
        assert_eq!(ExitStatus::of_error(&anyhow::anyhow!("training diverged")), ExitStatus::Failed);
    }

    fn outage() -> crate::store::StoreError {
        crate::store::StoreError::Unavailable {
            url: "s3://b/p".into(),
            op: "read",
            key: "features/x/0.safetensors".into(),
            source: crate::store::Outage {
                waited_s: 3.2,
                budget_s: 3.0,
                source: Box::new(object_store::Error::Generic { store: "S3", source: "timed out".into() }),
            },
        }
    }

    #[test]
    fn an_outage_inside_a_library_error_is_infra_by_its_type() {
        use crate::run::RunError;
        let run = RunError::Feature(crate::features::FeatureError::Store(outage()));
        assert!(run.is_outage());
        let wrapped = anyhow::Error::new(run).context("run from cfg.toml failed");
        assert_eq!(ExitStatus::of_error(&wrapped), ExitStatus::Infra);
        let sweep = anyhow::Error::new(crate::sweep::SweepError::Store(outage())).context("sweep s");
        assert_eq!(ExitStatus::of_error(&sweep), ExitStatus::Infra);
        // Another error, in the same wrapping, is the run's failure.
        let other = RunError::Diverged { loss: f64::NAN, epoch: 3, model: "unified".into() };
        assert!(!other.is_outage());
        let wrapped = anyhow::Error::new(other).context("run from cfg.toml failed");
        assert_eq!(ExitStatus::of_error(&wrapped), ExitStatus::Failed);
        let not_found = crate::store::StoreError::Url { url: "x://".into(), message: "unknown scheme".into() };
        assert_eq!(ExitStatus::of_error(&anyhow::Error::new(not_found).context("c")), ExitStatus::Failed);
    }
}
