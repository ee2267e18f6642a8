//! Reconstruction models: RAS (with its ablations) and the UniAD-style baseline.
pub mod dropout;
pub mod flops;
pub mod layers;
pub mod legacy;
pub mod ras;
pub mod uniad;

pub use dropout::Dropout;
pub use ras::{add_jitter, anomaly_map, image_scores, Ras, RasStep, StepOutput};
