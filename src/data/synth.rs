// TEMPORARY STUB (replaced by the generator)
#[derive(Debug, Clone)]
pub struct SynthSpec { pub classes: usize, pub train_per_class: usize, pub test_good_per_class: usize, pub test_defect_per_kind: usize, pub image_size: u32, pub seed: u64 }
#[derive(Debug, thiserror::Error)]
pub enum SynthError { #[error("stub")] Spec(String) }
#[derive(Debug, Clone)] pub struct SynthSummary { pub classes: Vec<String>, pub train_images: usize, pub test_images: usize, pub anomalous_images: usize }
pub fn generate(_out: &std::path::Path, _spec: &SynthSpec, _progress: &mut dyn FnMut(usize, usize)) -> Result<SynthSummary, SynthError> { Err(SynthError::Spec("stub".into())) }
