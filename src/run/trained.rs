//! A trained model for inference: the model and its weights, nothing of training (no
//! optimiser state, no gradient buffers, no backward pass). `ras eval`, `ras predict` and
//! `ras import` load models this way; training builds a [`crate::train::Trainer`].
//!
//! The model is built exactly as a trainer builds it (same seeded init, the same thread
//! and precision settings for the process) and then takes the given weights, so what it
//! computes is bit for bit what the trainer's model computes with those weights.

use crate::config::RunConfig;
use crate::model::Ras;
use crate::train::{precision, Precision};
use std::collections::BTreeMap;
use tch::{nn, Device, Tensor};

/// Where the weights of a [`load_trained`] model come from.
pub enum TrainedWeights {
    /// A checkpoint's tensors (`Trainer::state_tensors`): the `model.*` ones are read, the
    /// optimiser's (`optim.*`) ignored.
    Checkpoint(Vec<(String, Tensor)>),
    /// The model's tensors by their names in the model (`input_proj.weight`, ...).
    Model(Vec<(String, Tensor)>),
}

/// Why weights do not fit the model a config builds: every missing, mis-shaped or
/// unexpected tensor, sorted.
#[derive(Debug, thiserror::Error)]
#[error("the weights do not fit the model of the config:\n  {}", .0.join("\n  "))]
pub struct WeightsMismatch(pub Vec<String>);

/// A model with its weights, ready for `forward_t(.., false)`.
pub struct TrainedModel {
    pub vs: nn::VarStore,
    pub model: Ras,
}

/// The model `cfg` describes, reading `channels` feature channels on a `grid` x `grid`
/// token grid, on `device`, with `weights` (see the module doc). Names written before
/// the public module tree load too (`model::legacy`).
pub fn load_trained(
    cfg: &RunConfig,
    channels: i64,
    grid: i64,
    device: Device,
    weights: TrainedWeights,
) -> Result<TrainedModel, WeightsMismatch> {
    let (mut vs, model) = crate::train::seeded_model(&cfg.model, cfg.seed, channels, grid, device);
    // TF32 on or off is process-wide: set as training sets it, so that evaluating here
    // computes what the run's own evaluation computed.
    precision::apply(Precision::resolve(cfg.train.precision, device));
    vs.freeze();
    let named = match weights {
        TrainedWeights::Model(named) => named,
        TrainedWeights::Checkpoint(state) => {
            let mut named = vec![];
            let mut unexpected = vec![];
            for (name, t) in state {
                if let Some(n) = name.strip_prefix("model.") {
                    named.push((n.to_string(), t));
                } else if !name.starts_with("optim.") {
                    unexpected.push(format!("unexpected {name}"));
                }
            }
            if !unexpected.is_empty() {
                return Err(WeightsMismatch(unexpected));
            }
            named
        }
    };
    let named: BTreeMap<String, Tensor> = crate::model::legacy::upgrade_all(named).into_iter().collect();
    crate::store::tensors::copy_matching(&mut vs.variables(), &named).map_err(WeightsMismatch)?;
    Ok(TrainedModel { vs, model })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Trainer;
    use tch::Kind;

    fn tiny() -> RunConfig {
        let text = "name = \"t\"\nseed = 5\n[dataset]\nroot = \"/nonexistent\"\n[model]\nhidden_dim = 16\n\
                    encoder_layers = 1\ndecoder_layers = 2\nheads = 2\nffn_dim = 32\nneighbor_mask = false\n\
                    [train]\nbatch_size = 4\nlr = 1e-2\ndevice = \"cpu\"\n";
        RunConfig::from_toml(text, std::path::Path::new("tiny.toml")).unwrap()
    }

    /// A trained trainer's checkpoint state, loaded for inference, gives bit for bit the
    /// trainer's own reconstruction; the same weights by model names give it too.
    #[test]
    fn a_checkpoint_loads_into_the_same_model_as_the_trainer() {
        let cfg = tiny();
        let feats = Tensor::randn([4, 8, 4, 4], (Kind::Float, Device::Cpu));
        let mut t = Trainer::new(&cfg.model, &cfg.train, 9, 8, 4, Device::Cpu).unwrap();
        for epoch in 0..2 {
            let _ = t.step(&feats, &[0, 1, 2, 3], epoch, None, &crate::dist::SingleProcess, false).unwrap();
        }
        let want = tch::no_grad(|| t.model.forward_t(&feats, false));
        let state: Vec<(String, Tensor)> = t.state_tensors().into_iter().map(|(n, x)| (n, x.copy())).collect();
        let model_only: Vec<(String, Tensor)> =
            state.iter().filter_map(|(n, x)| n.strip_prefix("model.").map(|n| (n.to_string(), x.copy()))).collect();
        for weights in [TrainedWeights::Checkpoint(state), TrainedWeights::Model(model_only)] {
            let m = load_trained(&cfg, 8, 4, Device::Cpu, weights).unwrap();
            let got = tch::no_grad(|| m.model.forward_t(&feats, false));
            assert!(got.equal(&want), "inference load differs from the trainer's model");
        }
    }

    /// What `ras import` writes for a model it did not train is, name for name and bit for
    /// bit, the state of a new trainer with those weights: resuming reads it as such.
    #[test]
    fn the_initial_state_of_some_weights_is_a_new_trainers_state() {
        let cfg = tiny();
        let t = Trainer::new(&cfg.model, &cfg.train, 9, 8, 4, Device::Cpu).unwrap();
        let m = load_trained(&cfg, 8, 4, Device::Cpu, TrainedWeights::Checkpoint(t.state_tensors())).unwrap();
        let ours = crate::train::initial_state(&m.vs);
        let theirs = t.state_tensors();
        assert_eq!(ours.iter().map(|(n, _)| n).collect::<Vec<_>>(), theirs.iter().map(|(n, _)| n).collect::<Vec<_>>());
        for ((n, a), (_, b)) in ours.iter().zip(&theirs) {
            assert!(a.kind() == b.kind() && a.equal(b), "{n} differs");
        }
        let mut resumed = Trainer::new(&cfg.model, &cfg.train, 1, 8, 4, Device::Cpu).unwrap();
        resumed.load_state(ours).unwrap();
    }

    #[test]
    fn weights_that_do_not_fit_are_listed() {
        let cfg = tiny();
        let t = Trainer::new(&cfg.model, &cfg.train, 9, 8, 4, Device::Cpu).unwrap();
        let without_bias = || t.state_tensors().into_iter().filter(|(n, _)| n != "model.input_proj.bias");
        let mut state: Vec<(String, Tensor)> = without_bias().collect();
        state.push(("extra.thing".into(), Tensor::zeros([1], (Kind::Float, Device::Cpu))));
        let err = load_trained(&cfg, 8, 4, Device::Cpu, TrainedWeights::Checkpoint(state)).err().unwrap();
        assert_eq!(err.0, vec!["unexpected extra.thing".to_string()]);
        let err =
            load_trained(&cfg, 8, 4, Device::Cpu, TrainedWeights::Checkpoint(without_bias().collect())).err().unwrap();
        assert_eq!(err.0, vec!["missing input_proj.bias [16]".to_string()]);
        // Features with another channel count: every tensor that reads them is mis-shaped.
        let named =
            t.state_tensors().into_iter().filter_map(|(n, x)| n.strip_prefix("model.").map(|n| (n.to_string(), x)));
        let err = load_trained(&cfg, 6, 4, Device::Cpu, TrainedWeights::Model(named.collect())).err().unwrap();
        assert!(err.0.iter().any(|d| d.starts_with("shape input_proj.weight")), "{err}");
    }
}
