// TEMPORARY STUB (replaced by the metrics module)
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricError { #[error("stub")] Empty }
pub fn auroc(_s: &[f32], _l: &[bool]) -> Result<f64, MetricError> { Err(MetricError::Empty) }
pub fn average_precision(_s: &[f32], _l: &[bool]) -> Result<f64, MetricError> { Err(MetricError::Empty) }
pub fn f1_max(_s: &[f32], _l: &[bool]) -> Result<f64, MetricError> { Err(MetricError::Empty) }
pub fn aupro(_m: &[&[f32]], _k: &[&[bool]], _h: usize, _w: usize, _f: f64) -> Result<f64, MetricError> { Err(MetricError::Empty) }
