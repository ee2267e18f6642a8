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
    /// (anywhere in the error's chain), else `Failed`.
    pub fn of_error(err: &anyhow::Error) -> Self {
        if crate::store::is_outage(err) {
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
}
