//! How a failed `ras` process exits: [`ExitStatus::Infra`] (74) when the error is a store
//! that stayed unreachable, as the library's own error types say (`is_outage`), else
//! [`ExitStatus::Failed`]. It names every library error that can carry an outage, so it
//! sits above them all; nothing in the library imports it (the binary's `main` does).

use crate::exit::ExitStatus;

/// How a process that failed with `err` exits: `Infra` when the store was unreachable
/// (the library error it holds, under any `.context()` layers, says it is an outage),
/// else `Failed`.
pub fn exit_status(err: &anyhow::Error) -> ExitStatus {
    if is_outage(err) {
        ExitStatus::Infra
    } else {
        ExitStatus::Failed
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(exit_status(&wrapped), ExitStatus::Infra);
        let text = format!("{wrapped:#}");
        assert!(text.contains("runs/x/status.json") && text.contains("RAS_STORE_RETRY_S"), "{text}");
        assert_eq!(exit_status(&anyhow::anyhow!("training diverged")), ExitStatus::Failed);
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
        assert_eq!(exit_status(&wrapped), ExitStatus::Infra);
        let sweep = anyhow::Error::new(crate::sweep::SweepError::Store(outage())).context("sweep s");
        assert_eq!(exit_status(&sweep), ExitStatus::Infra);
        // Another error, in the same wrapping, is the run's failure.
        let other = RunError::Diverged { loss: f64::NAN, epoch: 3, model: "unified".into() };
        assert!(!other.is_outage());
        let wrapped = anyhow::Error::new(other).context("run from cfg.toml failed");
        assert_eq!(exit_status(&wrapped), ExitStatus::Failed);
        let not_found = crate::store::StoreError::Url { url: "x://".into(), message: "unknown scheme".into() };
        assert_eq!(exit_status(&anyhow::Error::new(not_found).context("c")), ExitStatus::Failed);
    }
}
