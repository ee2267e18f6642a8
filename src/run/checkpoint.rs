//! Checkpoints of a run, split the way burn-train splits them: a [`Checkpointer`] knows
//! *where and how* (store keys from [`RunPaths`], safetensors + a published record with
//! the sha256, verification on read), a [`CheckpointPolicy`] knows *when* (every K
//! epochs, at the end, on a stop signal) and *what to keep* (the newest `keep_last` plus
//! the best-scoring one). The training loop asks the policy and tells the checkpointer,
//! so either can change without touching the other, and the policy is a pure function
//! that unit tests can check without a store or a model.
//!
//! A checkpoint is "write then publish": the weights first, then the JSON record that
//! names them with their sha256. Readers only trust records, and skip a record whose
//! weights are missing or do not match (a run killed while writing), falling back to the
//! previous one. Deleting goes the other way round: unpublish (record) first.

use super::error::{Result, RunError};
use super::paths::RunPaths;
use crate::config::RunConfig;
use crate::store::{sha256_hex, tensors, Store};
use crate::train::Trainer;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::Tensor;

/// Everything stored at a checkpoint beside the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub model: String,
    /// Completed epochs.
    pub epoch: usize,
    /// Steps already done in epoch `epoch` (0 at an epoch boundary).
    pub step: usize,
    pub weights: String,
    pub sha256: String,
    pub bytes: usize,
    /// (mean image AUROC + mean pixel AUROC) / 2 at this epoch, when it was an eval epoch.
    pub score: Option<f64>,
    /// The token of the lease held by the process that wrote it (`lease::Lease::token`):
    /// with the lease's history, who wrote each checkpoint. None in records written
    /// before it existed, and by writers that hold no lease (`ras import`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
}

/// When a run checkpoints and which checkpoints it keeps (`[checkpoint]` of the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Checkpoint after every `every`-th epoch (`checkpoint.every`, default `train.eval_every`,
    /// so eval epochs carry a score and can be "the best").
    pub every: usize,
    /// The last epoch: always checkpointed (a finished model is a checkpoint).
    pub epochs: usize,
    /// How many of the newest checkpoints to keep (at least 1), besides the best one.
    pub keep_last: usize,
}

impl CheckpointPolicy {
    pub fn new(cfg: &RunConfig) -> Self {
        Self {
            every: cfg.checkpoint.every.unwrap_or(cfg.train.eval_every),
            epochs: cfg.train.epochs,
            keep_last: cfg.checkpoint.keep_last,
        }
    }

    /// Whether to checkpoint after completing epoch `done` (1-based): every K epochs, at
    /// the last epoch, and when a stop signal arrived during it (`stopped`). A stop in
    /// the middle of an epoch always checkpoints (that is how a preempted run resumes).
    pub fn save_after_epoch(&self, done: usize, stopped: bool) -> bool {
        done.is_multiple_of(self.every) || done == self.epochs || stopped
    }

    /// Retention: which of a model's records (oldest first, as `Checkpointer::records`
    /// lists them) to delete so that the newest `keep_last` and the best-scoring one
    /// remain. Among equal best scores the newest counts as the best.
    pub fn to_delete<'r>(&self, recs: &'r [CheckpointRecord]) -> Vec<&'r CheckpointRecord> {
        let best = recs
            .iter()
            .filter(|r| r.score.is_some())
            .max_by(|a, b| a.score.partial_cmp(&b.score).unwrap_or(std::cmp::Ordering::Equal))
            .map(|r| (r.epoch, r.step));
        let n = recs.len();
        recs.iter()
            .enumerate()
            .filter(|(i, r)| i + self.keep_last.max(1) < n && Some((r.epoch, r.step)) != best)
            .map(|(_, r)| r)
            .collect()
    }
}

/// Saves, lists, verifies and deletes the checkpoints of one run.
pub struct Checkpointer<'a> {
    store: &'a Store,
    paths: &'a RunPaths,
    /// The writer's lease token, put into every record it saves.
    lease: Option<String>,
}

impl<'a> Checkpointer<'a> {
    pub fn new(store: &'a Store, paths: &'a RunPaths) -> Self {
        Self { store, paths, lease: None }
    }

    /// The same, for a writer holding the run's lease with this token.
    pub fn with_lease(self, token: Option<&str>) -> Self {
        Self { lease: token.map(str::to_string), ..self }
    }

    /// Writes the trainer's whole state (model, AdamW moments, step count) after `epoch`
    /// completed epochs and `step` steps of the next one, then publishes its record.
    pub fn save(
        &self,
        model: &str,
        epoch: usize,
        step: usize,
        score: Option<f64>,
        trainer: &Trainer,
    ) -> Result<CheckpointRecord> {
        self.save_state(model, epoch, step, score, &trainer.state_tensors())
    }

    /// [`Checkpointer::save`] of a training state given as its named tensors.
    pub fn save_state(
        &self,
        model: &str,
        epoch: usize,
        step: usize,
        score: Option<f64>,
        state: &[(String, Tensor)],
    ) -> Result<CheckpointRecord> {
        let list: Vec<(&String, &Tensor)> = state.iter().map(|(n, t)| (n, t)).collect();
        let bytes = tensors::encode(&list)?;
        let base = self.paths.checkpoint_base(model, epoch, step);
        let rec = CheckpointRecord {
            model: model.into(),
            epoch,
            step,
            weights: format!("{base}.safetensors"),
            sha256: sha256_hex(&bytes),
            bytes: bytes.len(),
            score,
            lease: self.lease.clone(),
        };
        self.store.put(&rec.weights, bytes)?;
        self.store.put_json(&format!("{base}.json"), &rec)?; // publish
        Ok(rec)
    }

    /// Deletes what `policy` does not keep of `model`'s checkpoints.
    pub fn prune(&self, model: &str, policy: &CheckpointPolicy) -> Result<()> {
        let recs = self.records(model)?;
        for r in policy.to_delete(&recs) {
            let base = self.paths.checkpoint_base(model, r.epoch, r.step);
            self.store.delete(&format!("{base}.json"))?; // unpublish first
            self.store.delete(&r.weights)?;
        }
        Ok(())
    }

    /// All checkpoint records of a model, oldest first (by epoch, then step); unreadable
    /// records are skipped with a warning.
    pub fn records(&self, model: &str) -> Result<Vec<CheckpointRecord>> {
        let mut recs = vec![];
        let keys: Vec<String> =
            self.store.list(&self.paths.checkpoints(model))?.into_iter().filter(|k| k.ends_with(".json")).collect();
        for (key, bytes) in keys.iter().zip(self.store.get_many(&keys)?) {
            match bytes.map(|b| serde_json::from_slice::<CheckpointRecord>(&b)) {
                Some(Ok(r)) => recs.push(r),
                None => {}
                Some(Err(e)) => {
                    tracing::warn!(key, "ignoring unreadable checkpoint record: {}", crate::error_text::chain(&e))
                }
            }
        }
        recs.sort_by_key(|r| (r.epoch, r.step));
        Ok(recs)
    }

    /// The newest checkpoint whose weights match their recorded sha256, with its bytes;
    /// corrupt or half-written ones are skipped (with a warning) in favour of the
    /// previous one. None when the model has no valid checkpoint.
    pub fn latest_valid(&self, model: &str) -> Result<Option<(CheckpointRecord, bytes::Bytes)>> {
        for rec in self.records(model)?.into_iter().rev() {
            match self.store.get_verified(&rec.weights, &rec.sha256) {
                Ok(Some(b)) => return Ok(Some((rec, b))),
                Ok(None) => tracing::warn!(key = rec.weights, "checkpoint weights missing; trying the previous one"),
                Err(e) => tracing::warn!("{}; trying the previous checkpoint", crate::error_text::chain(&e)),
            }
        }
        Ok(None)
    }

    /// `latest_valid`, where having none is an error.
    pub fn latest(&self, model: &str) -> Result<(CheckpointRecord, bytes::Bytes)> {
        self.latest_valid(model)?.ok_or_else(|| RunError::NoValidCheckpoint {
            folder: format!("{}/{}", self.store.url(), self.paths.checkpoints(model)),
        })
    }
}

/// Which checkpoint `ras eval` evaluates (`--checkpoint`): the run's final one (the
/// default: what its final metrics describe), the newest, the best-scoring, or the one
/// after a given epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckpointChoice {
    #[default]
    Final,
    Latest,
    Best,
    Epoch(usize),
}

impl std::str::FromStr for CheckpointChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "final" => Ok(Self::Final),
            "latest" => Ok(Self::Latest),
            "best" => Ok(Self::Best),
            _ => s
                .parse()
                .map(Self::Epoch)
                .map_err(|_| format!("{s:?} is not a checkpoint: use final, latest, best or an epoch number")),
        }
    }
}

impl std::fmt::Display for CheckpointChoice {
    /// As it appears in eval keys: `final`, `latest`, `best`, `epoch_<E>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Final => write!(f, "final"),
            Self::Latest => write!(f, "latest"),
            Self::Best => write!(f, "best"),
            Self::Epoch(e) => write!(f, "epoch_{e}"),
        }
    }
}

impl Checkpointer<'_> {
    /// Exactly the checkpoint `choice` names for `model` (`epochs`: the run's last epoch,
    /// for `Final`), with its verified bytes. Unlike [`Checkpointer::latest_valid`] (which
    /// a resuming run uses, where any valid checkpoint will do) a missing or corrupt one is
    /// an error, never a silent fall back to another: an evaluation must be of the model
    /// it says it is of.
    pub fn select(
        &self,
        model: &str,
        choice: CheckpointChoice,
        epochs: usize,
    ) -> Result<(CheckpointRecord, bytes::Bytes)> {
        let recs = self.records(model)?;
        let at = |epoch: usize| recs.iter().find(|r| r.epoch == epoch && r.step == 0);
        let rec = match choice {
            CheckpointChoice::Final => at(epochs),
            CheckpointChoice::Latest => recs.last(),
            // Among equal scores the newest, as retention keeps it.
            CheckpointChoice::Best => recs
                .iter()
                .filter(|r| r.score.is_some())
                .max_by(|a, b| a.score.partial_cmp(&b.score).unwrap_or(std::cmp::Ordering::Equal)),
            CheckpointChoice::Epoch(e) => at(e),
        };
        let folder = format!("{}/{}", self.store.url(), self.paths.checkpoints(model));
        let Some(rec) = rec else {
            let have: Vec<String> = recs
                .iter()
                .map(|r| if r.step == 0 { r.epoch.to_string() } else { format!("{} (+{} steps)", r.epoch, r.step) })
                .collect();
            return Err(RunError::NoSuchCheckpoint {
                model: model.into(),
                choice: choice.to_string(),
                folder,
                kept: if have.is_empty() { "none".to_string() } else { have.join(", ") },
            });
        };
        let bytes = self
            .store
            .get_verified(&rec.weights, &rec.sha256)
            .map_err(|source| RunError::CorruptCheckpoint {
                choice: choice.to_string(),
                model: model.into(),
                epoch: rec.epoch,
                source: Box::new(source),
            })?
            .ok_or_else(|| RunError::MissingCheckpoint {
                choice: choice.to_string(),
                model: model.into(),
                weights: rec.weights.clone(),
            })?;
        Ok((rec.clone(), bytes))
    }
}

// The three functions below are not called by ras itself: they are the small public API
// the integration tests read and write model weights through (tests/end_to_end.rs,
// interop.rs, model.rs, parity.rs), kept here so that the tests use the library's own
// checkpoint layout and legacy-name handling rather than a copy of them.

/// The newest valid checkpoint of `model` in the run whose keys start with `prefix`
/// (`runs/<run id>`, as `RunOutcome::prefix` holds it); see `Checkpointer::latest`.
/// For tests and scripts: runs themselves go through [`Checkpointer`].
pub fn latest_checkpoint(store: &Store, prefix: &str, model: &str) -> Result<(CheckpointRecord, bytes::Bytes)> {
    let paths = RunPaths::from_prefix(prefix).ok_or_else(|| RunError::NotARunPrefix(prefix.to_string()))?;
    Checkpointer::new(store, &paths).latest(model)
}

/// Model weights, named by the module tree, as safetensors bytes (bit-exact). For tests
/// and scripts: checkpoints hold weights with the optimiser state (`Checkpointer::save`).
pub fn model_weights(vs: &tch::nn::VarStore) -> Result<Vec<u8>> {
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let list: Vec<(&String, &Tensor)> = names.into_iter().map(|n| (n, &vars[n])).collect();
    Ok(tensors::encode(&list)?)
}

/// Copies weights (as written by `model_weights`) into `vs`, refusing any mismatch. For
/// tests and scripts: inference loads go through `run::trained::load_trained`.
pub fn load_model_weights(vs: &mut tch::nn::VarStore, bytes: &[u8]) -> Result<()> {
    // (Files written with the names used before the public module tree load too.)
    let file: BTreeMap<String, Tensor> =
        crate::model::legacy::upgrade_all(tensors::decode(bytes)?).into_iter().collect();
    tensors::copy_matching(&mut vs.variables(), &file).map_err(RunError::ModelMismatch)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(epoch: usize, step: usize, score: Option<f64>) -> CheckpointRecord {
        CheckpointRecord {
            model: "unified".into(),
            epoch,
            step,
            weights: String::new(),
            sha256: String::new(),
            bytes: 0,
            score,
            lease: None,
        }
    }

    fn deleted(policy: &CheckpointPolicy, recs: &[CheckpointRecord]) -> Vec<(usize, usize)> {
        policy.to_delete(recs).into_iter().map(|r| (r.epoch, r.step)).collect()
    }

    #[test]
    fn retention_keeps_the_newest_and_an_older_best() {
        let policy = CheckpointPolicy { every: 2, epochs: 10, keep_last: 2 };
        // Epoch 4 scored best; 8 and 10 are the newest two; 6's mid-epoch one has no score.
        let recs = [
            rec(2, 0, Some(0.70)),
            rec(4, 0, Some(0.90)),
            rec(6, 0, Some(0.80)),
            rec(6, 7, None),
            rec(8, 0, Some(0.85)),
            rec(10, 0, Some(0.60)),
        ];
        assert_eq!(deleted(&policy, &recs), vec![(2, 0), (6, 0), (6, 7)]);
        // Nothing to delete while there are at most keep_last.
        assert!(deleted(&policy, &recs[..2]).is_empty());
        // The best among the newest is kept once: only the newest two remain.
        let recs = [rec(2, 0, Some(0.1)), rec(4, 0, Some(0.2)), rec(6, 0, Some(0.9))];
        assert_eq!(deleted(&policy, &recs), vec![(2, 0)]);
        // keep_last = 0 still keeps the newest (and the best).
        let none = CheckpointPolicy { keep_last: 0, ..policy };
        let recs = [rec(2, 0, Some(0.9)), rec(4, 0, Some(0.2)), rec(6, 0, None)];
        assert_eq!(deleted(&none, &recs), vec![(4, 0)]);
    }

    #[test]
    fn checkpoints_every_k_epochs_at_the_end_and_on_stop() {
        let policy = CheckpointPolicy { every: 3, epochs: 10, keep_last: 2 };
        let saved: Vec<usize> = (1..=10).filter(|&e| policy.save_after_epoch(e, false)).collect();
        assert_eq!(saved, vec![3, 6, 9, 10]);
        assert!(policy.save_after_epoch(4, true));
    }
}
