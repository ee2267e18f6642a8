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
}
