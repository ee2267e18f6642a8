//! Evaluation metrics for anomaly detection: image-level AUROC, average precision and
//! F1-max, and pixel-level AUPRO (plus the same ranking metrics per pixel).
//!
//! Everything here is pure Rust over plain slices, so it can be unit-tested against
//! independent references (scikit-learn, the official MVTec AD evaluation code) without
//! libtorch.
//!
//! # Why one sort and integer counts
//! Pixel-level inputs reach ~10^8 values (1725 test images of 224x224). Every metric is
//! therefore computed from a single descending sort followed by one linear sweep over
//! the *distinct* scores (the thresholds); there is never a pass over all data per
//! threshold. True/false positive counts are kept as `u64` so nothing drifts, AUROC is
//! accumulated as an exact integer numerator, and the remaining floating-point sums
//! (average precision, the per-region-overlap sum, the AUPRO area) use compensated
//! (Neumaier) summation so 10^8 terms do not accumulate visible rounding error.
//!
//! # Ties
//! Samples with equal scores always move together: a threshold `t` predicts every sample
//! with `score >= t` as anomalous, and only distinct scores are thresholds. This is what
//! makes AUROC count ties as 1/2 and what scikit-learn and the MVTec code do.

use std::cmp::Ordering;

/// Why a metric could not be computed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricError {
    /// Only one class is present; the payload names the class that *was* present
    /// (`"normal"` or `"anomalous"`).
    #[error("metric needs both normal and anomalous samples, but only {0} were present")]
    SingleClass(&'static str),
    /// Scores and labels do not pair up. For pixel-level inputs this also reports a map
    /// or mask whose length is not `height * width` (the expected length is then the
    /// field on the other side).
    #[error("scores and labels differ in length ({scores} vs {labels})")]
    LengthMismatch { scores: usize, labels: usize },
    /// No samples at all (or images of zero pixels).
    #[error("empty input")]
    Empty,
    /// A NaN or infinite score: it has no place in a ranking, and silently dropping it
    /// would change the metric.
    #[error("score {0} is not finite")]
    NonFinite(f32),
}

/// The false-positive-rate limit for AUPRO used in the MVTec AD paper.
pub const DEFAULT_FPR_LIMIT: f64 = 0.3;

/// Threshold-free ranking metrics of one set of scored, labelled samples.
///
/// All three come out of the same sorted sweep, so asking for all of them costs no more
/// than asking for one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankingMetrics {
    /// Area under the ROC curve, ties counted 1/2 (= `sklearn.metrics.roc_auc_score`).
    pub auroc: f64,
    /// Step-wise average precision (= `sklearn.metrics.average_precision_score`).
    pub average_precision: f64,
    /// Best F1 score over all distinct thresholds.
    pub f1_max: f64,
    /// The threshold that achieves `f1_max` (a sample is anomalous when `score >= t`);
    /// the highest one when several tie, so fewer normal samples are flagged. Kept so
    /// that a deployed model can say "anomalous" at the operating point the metric
    /// reports (`ras predict`).
    pub f1_threshold: f64,
}

/// Pixel-level metrics of a set of anomaly maps: the ranking metrics of all pixels pooled
/// together, plus AUPRO. Computed from one shared sort of the pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelMetrics {
    /// AUROC / AP / F1-max over all pixels pooled together.
    pub ranking: RankingMetrics,
    /// Normalised area under the per-region-overlap curve up to the FPR limit.
    pub aupro: f64,
}

/// All metrics of one class (or of the whole dataset), image-level and pixel-level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AllMetrics {
    /// Metrics of the per-image anomaly scores against the per-image labels.
    pub image: RankingMetrics,
    /// Metrics of the anomaly maps against the ground-truth masks.
    pub pixel: PixelMetrics,
}

/// Area under the ROC curve, counting ties as 1/2; identical to scikit-learn's
/// `roc_auc_score`. A detector that ranks backwards gets a value below 0.5: it is never
/// flipped, because that would hide a sign error in the scoring.
///
/// `labels[i]` is `true` for an anomalous sample.
pub fn auroc(scores: &[f32], labels: &[bool]) -> Result<f64, MetricError> {
    ranking_metrics(scores, labels).map(|m| m.auroc)
}

/// Average precision as scikit-learn's `average_precision_score`: the step-wise sum
/// `sum_n (R_n - R_{n-1}) P_n` over distinct thresholds, with no interpolation (which
/// would be optimistic).
pub fn average_precision(scores: &[f32], labels: &[bool]) -> Result<f64, MetricError> {
    ranking_metrics(scores, labels).map(|m| m.average_precision)
}

/// The best F1 score `2PR/(P+R)` over all distinct thresholds `t`, where a sample is
/// predicted anomalous when `score >= t`. [`RankingMetrics::f1_threshold`] is that `t`.
pub fn f1_max(scores: &[f32], labels: &[bool]) -> Result<f64, MetricError> {
    ranking_metrics(scores, labels).map(|m| m.f1_max)
}

/// AUROC, average precision and F1-max from a single sort.
///
/// All three require both classes to be present (even though AP and F1 would be defined
/// without normal samples), so that a degenerate test split is reported rather than
/// scored.
pub fn ranking_metrics(scores: &[f32], labels: &[bool]) -> Result<RankingMetrics, MetricError> {
    if scores.len() != labels.len() {
        return Err(MetricError::LengthMismatch { scores: scores.len(), labels: labels.len() });
    }
    if scores.is_empty() {
        return Err(MetricError::Empty);
    }
    check_finite(scores)?;
    let n_pos = labels.iter().filter(|&&l| l).count() as u64;
    let n_neg = labels.len() as u64 - n_pos;
    check_both_classes(n_pos, n_neg)?;

    let mut pairs: Vec<(f32, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    sort_descending(&mut pairs);

    let mut acc = RankingAccumulator::new(n_pos, n_neg);
    let (mut tp, mut fp) = (0u64, 0u64);
    for group in TieGroups::new(&pairs) {
        for &(_, anomalous) in group {
            if anomalous {
                tp += 1;
            } else {
                fp += 1;
            }
        }
        acc.push(tp, fp, group[0].0);
    }
    Ok(acc.finish())
}

/// AUPRO: the per-region-overlap curve integrated up to `fpr_limit` (0.3 in the MVTec AD
/// paper, [`DEFAULT_FPR_LIMIT`]) and normalised by it, so a perfect detector scores 1.
///
/// `masks` are binary ground-truth masks and `maps` anomaly maps, each image
/// `height * width` long, row-major. Regions are the 8-connected components of each mask
/// (as the MVTec AD evaluation code, `scipy.ndimage.label` with structure
/// `np.ones((3, 3))`), so a defect touching only diagonally is still one defect.
///
/// This follows the official MVTec AD `compute_pro` + `trapezoid` semantics: the curve has
/// one point per distinct score `t` (over all pixels of all images), with FPR = normal
/// pixels scoring `>= t` / all normal pixels and PRO = mean over all regions of the
/// fraction of the region scoring `>= t`. It starts at (0, 0), ends at (1, 1), and is
/// trapezoid-integrated up to `fpr_limit`, interpolating linearly at the limit. Averaging
/// over regions (not pixels) is the point of the metric: small defects weigh as much as
/// large ones.
///
/// Errors: no anomalous pixel at all gives `SingleClass("normal")`, no normal pixel gives
/// `SingleClass("anomalous")`; see [`pixel_metrics`] for the others.
///
/// # Panics
/// If `fpr_limit` is not in `(0, 1]` (a caller bug, not a data problem), or if one image
/// has more than `u32::MAX` pixels.
pub fn aupro(
    maps: &[&[f32]],
    masks: &[&[bool]],
    height: usize,
    width: usize,
    fpr_limit: f64,
) -> Result<f64, MetricError> {
    pixel_metrics(maps, masks, height, width, fpr_limit).map(|m| m.aupro)
}

/// Pixel-level AUROC / AP / F1-max and AUPRO from one sort of all pixels.
///
/// Errors: `LengthMismatch` if `maps.len() != masks.len()` or any map or mask is not
/// `height * width` long; `Empty` if there are no images or no pixels; `NonFinite` for a
/// NaN/inf pixel score; `SingleClass` as for [`aupro`].
///
/// # Panics
/// As [`aupro`].
pub fn pixel_metrics(
    maps: &[&[f32]],
    masks: &[&[bool]],
    height: usize,
    width: usize,
    fpr_limit: f64,
) -> Result<PixelMetrics, MetricError> {
    assert!(fpr_limit > 0.0 && fpr_limit <= 1.0, "fpr_limit must be in (0, 1], got {fpr_limit}");
    if maps.len() != masks.len() {
        return Err(MetricError::LengthMismatch { scores: maps.len(), labels: masks.len() });
    }
    // Saturating: an overflowing product cannot match any real slice length, so it is
    // reported as a length mismatch below instead of wrapping around.
    let pixels = height.saturating_mul(width);
    for (map, mask) in maps.iter().zip(masks.iter()) {
        if map.len() != pixels {
            return Err(MetricError::LengthMismatch { scores: map.len(), labels: pixels });
        }
        if mask.len() != pixels {
            return Err(MetricError::LengthMismatch { scores: pixels, labels: mask.len() });
        }
    }
    if maps.is_empty() || pixels == 0 {
        return Err(MetricError::Empty);
    }
    assert!(u32::try_from(pixels).is_ok(), "an image of {pixels} pixels is too large (at most u32::MAX)");
    for map in maps {
        check_finite(map)?;
    }

    // Each pixel becomes (score, size of the region it belongs to), with size 0 for a
    // normal pixel. The size is all the sweep needs: a region pixel adds 1/size to the
    // sum of per-region overlaps. 8 bytes per pixel keeps 10^8 pixels under 1 GB.
    let total = pixels * maps.len();
    let mut pairs: Vec<(f32, u32)> = Vec::with_capacity(total);
    let mut region_size = vec![0u32; pixels];
    let mut stack = Vec::new();
    let mut n_regions = 0u64;
    for (map, mask) in maps.iter().zip(masks.iter()) {
        n_regions += label_region_sizes(mask, height, width, &mut region_size, &mut stack);
        pairs.extend(map.iter().copied().zip(region_size.iter().copied()));
    }
    let n_pos = masks.iter().map(|m| m.iter().filter(|&&p| p).count() as u64).sum::<u64>();
    let n_neg = total as u64 - n_pos;
    check_both_classes(n_pos, n_neg)?;

    sort_descending(&mut pairs);

    let mut ranking = RankingAccumulator::new(n_pos, n_neg);
    let mut pro_curve = ProIntegrator::new(fpr_limit);
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut overlap_sum = CompensatedSum::default();
    for group in TieGroups::new(&pairs) {
        for &(_, size) in group {
            if size == 0 {
                fp += 1;
            } else {
                tp += 1;
                overlap_sum.add(1.0 / f64::from(size));
            }
        }
        ranking.push(tp, fp, group[0].0);
        let fpr = fp as f64 / n_neg as f64;
        // Clipped at 1 as the MVTec code does; only rounding can push it above.
        let pro = (overlap_sum.value() / n_regions as f64).min(1.0);
        pro_curve.push(fpr, pro);
    }
    // The official code appends (1, 1); our last point already is (1, 1) up to rounding,
    // so this only matters at fpr_limit == 1 and then adds a zero-width segment.
    pro_curve.push(1.0, 1.0);

    Ok(PixelMetrics { ranking: ranking.finish(), aupro: pro_curve.finish() })
}

/// Image-level and pixel-level metrics of one class (or the whole dataset) at once.
///
/// `image_scores`/`image_labels` are one entry per image; `maps`/`masks` as in
/// [`pixel_metrics`]. The two levels are validated independently, so the image lists
/// need not be in the same order as the maps.
///
/// # Panics
/// As [`aupro`].
pub fn all_metrics(
    image_scores: &[f32],
    image_labels: &[bool],
    maps: &[&[f32]],
    masks: &[&[bool]],
    height: usize,
    width: usize,
    fpr_limit: f64,
) -> Result<AllMetrics, MetricError> {
    let image = ranking_metrics(image_scores, image_labels)?;
    let pixel = pixel_metrics(maps, masks, height, width, fpr_limit)?;
    Ok(AllMetrics { image, pixel })
}

fn check_finite(scores: &[f32]) -> Result<(), MetricError> {
    match scores.iter().find(|s| !s.is_finite()) {
        Some(&bad) => Err(MetricError::NonFinite(bad)),
        None => Ok(()),
    }
}

fn check_both_classes(n_pos: u64, n_neg: u64) -> Result<(), MetricError> {
    if n_pos == 0 {
        Err(MetricError::SingleClass("normal"))
    } else if n_neg == 0 {
        Err(MetricError::SingleClass("anomalous"))
    } else {
        Ok(())
    }
}

/// Sorts by score, highest first. Callers have rejected NaN, so `partial_cmp` is total
/// here; it also keeps -0.0 and +0.0 equal (one threshold), as numpy/sklearn do, which
/// `f32::total_cmp` would not.
fn sort_descending<T: Copy>(pairs: &mut [(f32, T)]) {
    pairs.sort_unstable_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal));
}

/// Iterates over runs of equal scores in a descending-sorted slice: one run per threshold.
struct TieGroups<'a, T> {
    rest: &'a [(f32, T)],
}

impl<'a, T> TieGroups<'a, T> {
    fn new(sorted: &'a [(f32, T)]) -> Self {
        Self { rest: sorted }
    }
}

impl<'a, T> Iterator for TieGroups<'a, T> {
    type Item = &'a [(f32, T)];

    fn next(&mut self) -> Option<Self::Item> {
        let (&(first, _), tail) = self.rest.split_first()?;
        // Searching only the tail makes every group at least one long, so even a NaN
        // (which equals nothing, itself included) could not stall the sweep.
        let len = 1 + tail.iter().position(|p| p.0 != first).unwrap_or(tail.len());
        let (group, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(group)
    }
}

/// Neumaier-compensated sum: with 10^8 terms a plain f64 sum can lose ~1e-8 relative,
/// which would already show in a 1e-9 comparison against sklearn.
#[derive(Debug, Default, Clone, Copy)]
struct CompensatedSum {
    sum: f64,
    compensation: f64,
}

impl CompensatedSum {
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// Consumes the cumulative (TP, FP) counts at each distinct threshold, highest threshold
/// first, and accumulates AUROC, AP and F1-max (with the threshold that reaches it).
struct RankingAccumulator {
    n_pos: u64,
    n_neg: u64,
    prev_tp: u64,
    prev_fp: u64,
    /// Twice the number of (anomalous, normal) pairs ranked correctly, ties counting 1:
    /// the trapezoid rule on integer counts, so AUROC is exact up to one final division.
    auc_twice: u128,
    ap: CompensatedSum,
    best_f1: f64,
    best_threshold: f32,
}

impl RankingAccumulator {
    fn new(n_pos: u64, n_neg: u64) -> Self {
        Self {
            n_pos,
            n_neg,
            prev_tp: 0,
            prev_fp: 0,
            auc_twice: 0,
            ap: CompensatedSum::default(),
            best_f1: 0.0,
            best_threshold: f32::INFINITY,
        }
    }

    /// `threshold`: the score of this tie group (everything `>=` it counted in tp, fp).
    fn push(&mut self, tp: u64, fp: u64, threshold: f32) {
        let d_fp = u128::from(fp - self.prev_fp);
        self.auc_twice += d_fp * u128::from(tp + self.prev_tp);
        let d_tp = tp - self.prev_tp;
        if d_tp > 0 {
            // (R_n - R_{n-1}) * P_n; tp + fp > 0 because every threshold admits a sample.
            self.ap.add((d_tp as f64 * tp as f64) / (self.n_pos as f64 * (tp + fp) as f64));
        }
        // 2PR/(P+R) = 2TP / (TP + FP + #anomalous); defined (0) even when TP = 0.
        let f1 = 2.0 * tp as f64 / (tp + fp + self.n_pos) as f64;
        // Strictly greater: thresholds come highest first, so among equal F1 the highest
        // threshold is kept.
        if f1 > self.best_f1 {
            self.best_f1 = f1;
            self.best_threshold = threshold;
        }
        self.prev_tp = tp;
        self.prev_fp = fp;
    }

    fn finish(&self) -> RankingMetrics {
        let denominator = 2.0 * self.n_pos as f64 * self.n_neg as f64;
        RankingMetrics {
            auroc: self.auc_twice as f64 / denominator,
            average_precision: self.ap.value(),
            f1_max: self.best_f1,
            f1_threshold: f64::from(self.best_threshold),
        }
    }
}

/// Trapezoid integration of the PRO curve up to the FPR limit, point by point, exactly as
/// the MVTec `trapezoid(x, y, x_max)`: all points with `x <= x_max` are integrated, and
/// if the limit falls strictly between two points the segment up to it is added with
/// the linearly interpolated height.
struct ProIntegrator {
    limit: f64,
    prev_x: f64,
    prev_y: f64,
    area: CompensatedSum,
    done: bool,
}

impl ProIntegrator {
    fn new(limit: f64) -> Self {
        Self { limit, prev_x: 0.0, prev_y: 0.0, area: CompensatedSum::default(), done: false }
    }

    fn push(&mut self, x: f64, y: f64) {
        if self.done {
            return;
        }
        if x <= self.limit {
            self.area.add(0.5 * (y + self.prev_y) * (x - self.prev_x));
            self.prev_x = x;
            self.prev_y = y;
        } else {
            // First point past the limit; prev_x <= limit < x, so x - prev_x > 0.
            let y_limit = self.prev_y + (y - self.prev_y) * (self.limit - self.prev_x) / (x - self.prev_x);
            self.area.add(0.5 * (y_limit + self.prev_y) * (self.limit - self.prev_x));
            self.done = true;
        }
    }

    fn finish(&self) -> f64 {
        self.area.value() / self.limit
    }
}

/// Labels the 8-connected components of one mask and writes, for every pixel, the size of
/// its component (0 for a normal pixel) into `sizes`. Returns the number of components.
///
/// Two passes: a flood fill (explicit stack, so a 224x224 defect cannot overflow the call
/// stack) records each pixel's component id, then ids are replaced by sizes.
fn label_region_sizes(mask: &[bool], height: usize, width: usize, sizes: &mut [u32], stack: &mut Vec<usize>) -> u64 {
    // Pass 1 stores component ids (1-based) in `sizes`; 0 = normal or not yet visited.
    sizes.fill(0);
    let mut component_sizes: Vec<u32> = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || sizes[start] != 0 {
            continue;
        }
        component_sizes.push(0);
        // Fits: the number of components is at most the pixel count, checked <= u32::MAX.
        let id = component_sizes.len() as u32;
        let mut size = 0u32;
        sizes[start] = id;
        stack.push(start);
        while let Some(p) = stack.pop() {
            size += 1;
            let (row, col) = (p / width, p % width);
            for nr in row.saturating_sub(1)..=(row + 1).min(height - 1) {
                for nc in col.saturating_sub(1)..=(col + 1).min(width - 1) {
                    let q = nr * width + nc;
                    if mask[q] && sizes[q] == 0 {
                        sizes[q] = id;
                        stack.push(q);
                    }
                }
            }
        }
        if let Some(last) = component_sizes.last_mut() {
            *last = size;
        }
    }
    // Pass 2: id -> size of that component.
    for s in sizes.iter_mut() {
        if *s != 0 {
            *s = component_sizes[*s as usize - 1];
        }
    }
    component_sizes.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AUROC and AP are exact rationals, so only rounding separates us from sklearn.
    const EXACT: f64 = 1e-9;
    /// The official AUPRO code keeps FPRs in float32; 1e-6 absorbs that.
    const PRO_TOL: f64 = 1e-6;

    fn close(actual: f64, expected: f64, tol: f64) {
        assert!(
            (actual - expected).abs() <= tol,
            "expected {expected}, got {actual} (diff {:e}, tolerance {tol:e})",
            (actual - expected).abs()
        );
    }

    fn check_ranking(m: RankingMetrics, auroc: f64, ap: f64, f1: f64) {
        close(m.auroc, auroc, EXACT);
        close(m.average_precision, ap, EXACT);
        close(m.f1_max, f1, EXACT);
    }

    fn bools(bits: &[u8]) -> Vec<bool> {
        bits.iter().map(|&b| b != 0).collect()
    }

    // ---------------------------------------------------------------- hand-worked ranking

    #[test]
    fn sklearn_documentation_example() {
        // The example in sklearn's docs for roc_auc_score / average_precision_score.
        // Thresholds 0.8, 0.4, 0.35, 0.1 give (TP, FP) = (1,0), (1,1), (2,1), (2,2).
        // AUROC: pairs (0.35 vs 0.1, 0.35 vs 0.4, 0.8 vs both) = 3 of 4 correct = 0.75.
        // AP = 1/2 * 1 + 1/2 * 2/3 = 5/6. F1 = 2TP/(TP+FP+2): 2/3, 1/2, 4/5, 2/3 -> 0.8.
        let scores = [0.1, 0.4, 0.35, 0.8];
        let labels = bools(&[0, 0, 1, 1]);
        let m = ranking_metrics(&scores, &labels).unwrap();
        check_ranking(m, 0.75, 5.0 / 6.0, 0.8);
        assert_eq!(auroc(&scores, &labels).unwrap(), m.auroc);
        assert_eq!(average_precision(&scores, &labels).unwrap(), m.average_precision);
        assert_eq!(f1_max(&scores, &labels).unwrap(), m.f1_max);
    }

    #[test]
    fn ties_count_half_and_move_together() {
        // Anomalous 0.9 beats all 3 normals (3); anomalous 0.5 ties two normals (2 * 1/2)
        // and beats 0.1 (1): AUROC = 5/6.
        // Thresholds: 0.9 -> (TP 1, FP 0), 0.5 -> (2, 2), 0.1 -> (2, 3).
        // AP = 1/2 * 1 + 1/2 * 2/4 = 3/4 (a tie block is one step, never split).
        // F1 = 2/(1+0+2) = 2/3, 4/(2+2+2) = 2/3, 4/7 -> 2/3.
        let m = ranking_metrics(&[0.9, 0.5, 0.5, 0.5, 0.1], &bools(&[1, 1, 0, 0, 0])).unwrap();
        check_ranking(m, 5.0 / 6.0, 0.75, 2.0 / 3.0);
    }

    #[test]
    fn all_equal_scores_give_chance_values() {
        // One threshold: everything predicted anomalous. AUROC = 1/2, AP = prevalence p,
        // F1 = 2p/(1+p). Here p = 1/4: F1 = 0.4.
        let m = ranking_metrics(&[0.3; 4], &bools(&[1, 0, 0, 0])).unwrap();
        check_ranking(m, 0.5, 0.25, 0.4);
        // -0.0 and +0.0 are the same score (one threshold), as in numpy.
        let m = ranking_metrics(&[0.0, -0.0, 0.0, -0.0], &bools(&[1, 0, 0, 0])).unwrap();
        check_ranking(m, 0.5, 0.25, 0.4);
        // p = 3/5: F1 = 1.2 / 1.6 = 0.75.
        let m = ranking_metrics(&[7.0; 5], &bools(&[1, 0, 1, 0, 1])).unwrap();
        check_ranking(m, 0.5, 0.6, 0.75);
    }

    #[test]
    fn backwards_ranking_is_not_flipped() {
        // The anomaly scores lowest. Thresholds 0.9 -> (0,1), 0.8 -> (0,2), 0.1 -> (1,2):
        // AUROC 0, AP = 1 * 1/3, F1 = 2/(1+2+1) = 1/2.
        let m = ranking_metrics(&[0.9, 0.8, 0.1], &bools(&[0, 0, 1])).unwrap();
        check_ranking(m, 0.0, 1.0 / 3.0, 0.5);
    }

    #[test]
    fn perfect_ranking_scores_one() {
        let m = ranking_metrics(&[-1.0, 5.0, 4.0, -3.0], &bools(&[0, 1, 1, 0])).unwrap();
        check_ranking(m, 1.0, 1.0, 1.0);
    }

    #[test]
    fn f1_threshold_is_the_score_that_reaches_f1_max() {
        // sklearn's example again: F1 at thresholds 0.8, 0.4, 0.35, 0.1 is 2/3, 1/2, 4/5,
        // 2/3, so the best is at 0.35 (the f32 score itself, widened exactly).
        let m = ranking_metrics(&[0.1, 0.4, 0.35, 0.8], &bools(&[0, 0, 1, 1])).unwrap();
        assert_eq!(m.f1_threshold, f64::from(0.35f32));
        // Equal F1 (2/3 at 0.9 and at 0.5): the highest threshold, fewer false alarms.
        let m = ranking_metrics(&[0.9, 0.5, 0.5, 0.5, 0.1], &bools(&[1, 1, 0, 0, 0])).unwrap();
        assert_eq!(m.f1_threshold, f64::from(0.9f32));
        // Backwards: only the lowest threshold catches the anomaly (F1 0, 0, 1/2).
        let m = ranking_metrics(&[0.9, 0.8, 0.1], &bools(&[0, 0, 1])).unwrap();
        assert_eq!(m.f1_threshold, f64::from(0.1f32));
        // Perfect separation: the lowest anomalous score; `score >= t` then classifies
        // every sample right.
        let (scores, labels) = ([-1.0, 5.0, 4.0, -3.0], bools(&[0, 1, 1, 0]));
        let m = ranking_metrics(&scores, &labels).unwrap();
        assert_eq!(m.f1_threshold, 4.0);
        for (s, l) in scores.iter().zip(&labels) {
            assert_eq!(f64::from(*s) >= m.f1_threshold, *l);
        }
    }

    #[test]
    fn f1_threshold_matches_brute_force_on_random_cases() {
        // Naive: for every distinct score t, F1 of "score >= t"; the threshold reported is
        // the highest t reaching the maximum.
        for seed in 1..=20 {
            // From 2 score levels (many ties) to 32 (few).
            let (scores, labels) = ranking_case(seed, 60, 2 + seed % 7 * 5, 30);
            let Ok(m) = ranking_metrics(&scores, &labels) else { continue };
            let n_pos = labels.iter().filter(|&&l| l).count() as f64;
            let f1_at = |t: f32| {
                let tp = scores.iter().zip(&labels).filter(|(s, l)| **s >= t && **l).count() as f64;
                let fp = scores.iter().zip(&labels).filter(|(s, l)| **s >= t && !**l).count() as f64;
                2.0 * tp / (tp + fp + n_pos)
            };
            let best = scores.iter().map(|&t| f1_at(t)).fold(0.0, f64::max);
            let highest = scores.iter().copied().filter(|&t| f1_at(t) == best).fold(f32::MIN, f32::max);
            assert_eq!(m.f1_threshold, f64::from(highest), "seed {seed}");
            close(f1_at(highest), m.f1_max, EXACT);
        }
    }

    #[test]
    fn ranking_errors() {
        assert_eq!(auroc(&[0.1, 0.2], &[false, false]), Err(MetricError::SingleClass("normal")));
        assert_eq!(average_precision(&[0.1, 0.2], &[true, true]), Err(MetricError::SingleClass("anomalous")));
        assert_eq!(f1_max(&[0.1, 0.2, 0.3], &[true, false]), Err(MetricError::LengthMismatch { scores: 3, labels: 2 }));
        assert_eq!(auroc(&[], &[]), Err(MetricError::Empty));
        let nan = auroc(&[0.1, f32::NAN], &[true, false]).unwrap_err();
        assert!(matches!(nan, MetricError::NonFinite(x) if x.is_nan()), "{nan:?}");
        assert_eq!(
            ranking_metrics(&[0.1, f32::NEG_INFINITY], &[true, false]),
            Err(MetricError::NonFinite(f32::NEG_INFINITY))
        );
        assert_eq!(
            MetricError::SingleClass("normal").to_string(),
            "metric needs both normal and anomalous samples, but only normal were present"
        );
    }

    // ---------------------------------------------------------------- sklearn reference

    /// xorshift64 (Marsaglia, shifts 13/7/17). The Python script that produced the
    /// expected values below ports exactly this generator and the two case builders.
    struct XorShift64(u64);

    impl XorShift64 {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// `n` samples; each is anomalous with probability `pos_pct`%, scored
    /// `(below(levels) + (anomalous ? below(levels/2) : 0)) / levels` (exact in f32 for a
    /// power-of-two `levels`, and coarse enough to create many ties).
    fn ranking_case(seed: u64, n: usize, levels: u64, pos_pct: u64) -> (Vec<f32>, Vec<bool>) {
        let mut rng = XorShift64(seed);
        let (mut scores, mut labels) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let anomalous = rng.below(100) < pos_pct;
            let v = rng.below(levels) + if anomalous { rng.below(levels / 2) } else { 0 };
            scores.push(v as f32 / levels as f32);
            labels.push(anomalous);
        }
        (scores, labels)
    }

    /// One image per entry of `densities`: first the mask (each pixel anomalous with
    /// probability density%), then the map, scored like `ranking_case`. Random masks at
    /// 25-45% density have many diagonal-only contacts, so 4- and 8-connectivity differ.
    fn pixel_case(
        seed: u64,
        height: usize,
        width: usize,
        densities: &[u64],
        levels: u64,
    ) -> (Vec<Vec<f32>>, Vec<Vec<bool>>) {
        let mut rng = XorShift64(seed);
        let (mut maps, mut masks) = (Vec::new(), Vec::new());
        for &density in densities {
            let mask: Vec<bool> = (0..height * width).map(|_| rng.below(100) < density).collect();
            let map = mask
                .iter()
                .map(|&m| {
                    let v = rng.below(levels) + if m { rng.below(levels / 2) } else { 0 };
                    v as f32 / levels as f32
                })
                .collect();
            maps.push(map);
            masks.push(mask);
        }
        (maps, masks)
    }

    struct SklearnCase {
        seed: u64,
        n: usize,
        levels: u64,
        pos_pct: u64,
        first_scores: [f32; 4],
        n_anomalous: usize,
        auroc: f64,
        ap: f64,
        f1: f64,
    }

    #[test]
    fn random_cases_match_sklearn() {
        // Expected values printed by scikit-learn 1.9.1 (numpy 2.4.6) on the same inputs:
        //   auroc = sklearn.metrics.roc_auc_score(labels, scores)
        //   ap    = sklearn.metrics.average_precision_score(labels, scores)
        //   f1    = max over sklearn.metrics.precision_recall_curve(labels, scores) of
        //           2PR/(P+R) (0 where P+R = 0)
        // `first_scores` and `n_anomalous` check that the generator port matches Python.
        let cases = [
            SklearnCase {
                seed: 1,
                n: 50,
                levels: 16,
                pos_pct: 30,
                first_scores: [0.0625, 0.3125, 0.0625, 1.25],
                n_anomalous: 19,
                auroc: 0.8005093378607809,
                ap: 0.7393727491120997,
                f1: 0.6938775510204083,
            },
            SklearnCase {
                seed: 42,
                n: 500,
                levels: 64,
                pos_pct: 10,
                first_scores: [0.984375, 0.625, 0.546875, 0.78125],
                n_anomalous: 62,
                auroc: 0.7053137428192664,
                ap: 0.5061065983623554,
                f1: 0.5581395348837209,
            },
            SklearnCase {
                seed: 7,
                n: 20,
                levels: 4,
                pos_pct: 50,
                first_scores: [0.25, 0.75, 0.0, 0.25],
                n_anomalous: 12,
                auroc: 0.8541666666666667,
                ap: 0.8562834224598931,
                f1: 0.8695652173913043,
            },
            SklearnCase {
                seed: 2024,
                n: 1000,
                levels: 1024,
                pos_pct: 5,
                first_scores: [476.0 / 1024.0, 782.0 / 1024.0, 974.0 / 1024.0, 543.0 / 1024.0],
                n_anomalous: 44,
                auroc: 0.7007536135412704,
                ap: 0.3102150061184402,
                f1: 0.4,
            },
        ];
        for c in &cases {
            let (scores, labels) = ranking_case(c.seed, c.n, c.levels, c.pos_pct);
            assert_eq!(scores[..4], c.first_scores, "generator drifted (seed {})", c.seed);
            assert_eq!(labels.iter().filter(|&&l| l).count(), c.n_anomalous, "seed {}", c.seed);
            let m = ranking_metrics(&scores, &labels).unwrap();
            check_ranking(m, c.auroc, c.ap, c.f1);
        }
    }

    struct ProCase {
        seed: u64,
        height: usize,
        width: usize,
        densities: &'static [u64],
        levels: u64,
        fpr_limit: f64,
        regions: u64,
        aupro: f64,
        pixel_auroc: f64,
        pixel_ap: f64,
        pixel_f1: f64,
    }

    #[test]
    fn random_pixel_cases_match_scipy_and_sklearn() {
        // Expected values from Python (scipy 1.17.1, scikit-learn 1.9.1, numpy 2.4.6):
        //   regions: sum of scipy.ndimage.label(mask, structure=np.ones((3, 3)))[1]
        //            (4-connectivity would give 17 and 65 regions instead);
        //   aupro:   brute force in float64, one full pass per distinct threshold t:
        //            FPR = ((map >= t) & ~mask).sum() / (~mask).sum(), PRO = mean over the
        //            scipy regions of ((map >= t) & region).sum() / region.sum(), points
        //            (0,0) + curve + (1,1), trapezoid up to fpr_limit with linear
        //            interpolation at the limit, / fpr_limit. The official MVTec
        //            compute_pro + trapezoid (float32 FPRs) agreed within 2e-9:
        //            0.22224497718157327, 0.39838004943233163, 0.2766644945683611;
        //   pixel_*: roc_auc_score / average_precision_score / precision_recall_curve
        //            F1-max on all pixels flattened.
        let cases = [
            ProCase {
                seed: 3,
                height: 8,
                width: 8,
                densities: &[0, 25, 40],
                levels: 16,
                fpr_limit: 0.3,
                regions: 9,
                aupro: 0.22224497724497727,
                pixel_auroc: 0.6900226757369614,
                pixel_ap: 0.4834822754647086,
                pixel_f1: 0.47904191616766467,
            },
            ProCase {
                seed: 11,
                height: 12,
                width: 16,
                densities: &[10, 30, 0, 45],
                levels: 32,
                fpr_limit: 0.3,
                regions: 30,
                aupro: 0.3983800478436883,
                pixel_auroc: 0.7352197247462671,
                pixel_ap: 0.5189443652525112,
                pixel_f1: 0.45333333333333337,
            },
            ProCase {
                seed: 11,
                height: 12,
                width: 16,
                densities: &[10, 30, 0, 45],
                levels: 32,
                fpr_limit: 0.05,
                regions: 30,
                aupro: 0.27666449385453445,
                pixel_auroc: 0.7352197247462671,
                pixel_ap: 0.5189443652525112,
                pixel_f1: 0.45333333333333337,
            },
        ];
        for c in &cases {
            let (maps, masks) = pixel_case(c.seed, c.height, c.width, c.densities, c.levels);
            let mut sizes = vec![0; c.height * c.width];
            let regions: u64 =
                masks.iter().map(|m| label_region_sizes(m, c.height, c.width, &mut sizes, &mut Vec::new())).sum();
            assert_eq!(regions, c.regions, "seed {}", c.seed);

            let map_refs: Vec<&[f32]> = maps.iter().map(Vec::as_slice).collect();
            let mask_refs: Vec<&[bool]> = masks.iter().map(Vec::as_slice).collect();
            let m = pixel_metrics(&map_refs, &mask_refs, c.height, c.width, c.fpr_limit).unwrap();
            close(m.aupro, c.aupro, PRO_TOL);
            check_ranking(m.ranking, c.pixel_auroc, c.pixel_ap, c.pixel_f1);
            let alone = aupro(&map_refs, &mask_refs, c.height, c.width, c.fpr_limit).unwrap();
            assert_eq!(alone, m.aupro);
        }
    }

    // ---------------------------------------------------------------- hand-worked AUPRO

    /// 4x4 image, row-major indices:
    /// ```text
    ///  mask        map
    ///  A A . .     .7 .6 .1 .8      A = {0, 1, 6}: 0-1 side by side, 1-6 only diagonal,
    ///  . . A .     .1 .1 .4 .1          so one 8-connected region of 3 pixels
    ///  . . . .     .1 .5 .4 .1      B = {12}: one pixel
    ///  B . . .     .9 .1 .1 .7      12 normal pixels
    /// ```
    fn hand_image() -> (Vec<f32>, Vec<bool>) {
        let mut map = vec![0.1f32; 16];
        for (i, v) in [(12, 0.9), (3, 0.8), (0, 0.7), (15, 0.7), (1, 0.6), (9, 0.5), (6, 0.4), (10, 0.4)] {
            map[i] = v;
        }
        let mut mask = vec![false; 16];
        for i in [0, 1, 6, 12] {
            mask[i] = true;
        }
        (map, mask)
    }

    #[test]
    fn hand_checked_aupro() {
        // Curve, one point per distinct score (FPR = FP/12, PRO = (hit_A/3 + hit_B/1) / 2):
        //   start             (0,    0)
        //   t=.9  B           (0,    1/2)
        //   t=.8  normal      (1/12, 1/2)
        //   t=.7  A0 + normal (2/12, 2/3)
        //   t=.6  A1          (2/12, 5/6)
        //   t=.5  normal      (3/12, 5/6)
        //   t=.4  A6 + normal (4/12, 1)
        //   t=.1  8 normals   (1,    1)
        // Areas: 0 + 1/24 + 7/144 + 0 + 5/72 = 23/144 up to FPR 3/12.
        // Limit 0.3 lies inside (3/12, 5/6)-(4/12, 1): height there 5/6 + 1/6 * 0.6 = 14/15,
        // extra area (5/6 + 14/15)/2 * 0.05 = 53/1200; total 367/1800, / 0.3 = 367/540.
        // Limit 0.25 is exactly a curve point: 23/144 / 0.25 = 23/36.
        // Limit 1: 23/144 + 11/144 + 8/12 = 130/144, = 65/72.
        // (scipy/MVTec-style Python gave 0.6796296296296296, 0.6388888888888888,
        // 0.9027777777777778.) With 4-connectivity A would split and the value change.
        let (map, mask) = hand_image();
        let (maps, masks) = ([map.as_slice()], [mask.as_slice()]);
        close(aupro(&maps, &masks, 4, 4, 0.3).unwrap(), 367.0 / 540.0, 1e-12);
        close(aupro(&maps, &masks, 4, 4, 0.25).unwrap(), 23.0 / 36.0, 1e-12);
        close(aupro(&maps, &masks, 4, 4, 1.0).unwrap(), 65.0 / 72.0, 1e-12);
        close(aupro(&maps, &masks, 4, 4, DEFAULT_FPR_LIMIT).unwrap(), 367.0 / 540.0, 1e-12);
    }

    #[test]
    fn hand_image_region_sizes() {
        let (_, mask) = hand_image();
        let mut sizes = vec![7; 16];
        let n = label_region_sizes(&mask, 4, 4, &mut sizes, &mut Vec::new());
        assert_eq!(n, 2);
        let mut expected = vec![0; 16];
        for i in [0, 1, 6] {
            expected[i] = 3;
        }
        expected[12] = 1;
        assert_eq!(sizes, expected);
    }

    #[test]
    fn regions_are_8_connected_and_wrap_nothing() {
        // Rectangular 3x5 image: the diagonal chain is one region; pixels in the last
        // column of one row and the first column of the next are not neighbours.
        // ```text
        // X . . . X
        // . X . . .
        // X . X . .
        // ```
        let mask = bools(&[1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0]);
        let mut sizes = vec![0; 15];
        let n = label_region_sizes(&mask, 3, 5, &mut sizes, &mut Vec::new());
        assert_eq!(n, 2);
        assert_eq!(sizes, vec![4, 0, 0, 0, 1, 0, 4, 0, 0, 0, 4, 0, 4, 0, 0]);
    }

    #[test]
    fn aupro_weights_regions_not_pixels() {
        // 1x6: a 3-pixel region found entirely (scores 1) and a 1-pixel region missed
        // (score 0, below the normals at 0.5). Up to FPR 0.3 the curve is flat at
        // PRO = (1 + 0)/2 = 1/2 (first point (0, 1/2), next one (1, 1/2)), so AUPRO = 1/2,
        // although 3 of 4 anomalous pixels are found.
        let map = [1.0, 1.0, 1.0, 0.5, 0.5, 0.0];
        let mask = bools(&[1, 1, 1, 0, 0, 1]);
        let value = aupro(&[&map], &[&mask], 1, 6, 0.3).unwrap();
        close(value, 0.5, 1e-12);
    }

    #[test]
    fn aupro_of_constant_maps_is_half_the_limit() {
        // One threshold: the curve jumps from (0,0) straight to (1,1); the area up to L
        // is L^2/2, normalised L/2. Several images with masks of different shapes.
        let (h, w) = (5, 7);
        let (_, masks) = pixel_case(99, h, w, &[0, 20, 50], 2);
        let maps = vec![vec![0.25f32; h * w]; 3];
        let map_refs: Vec<&[f32]> = maps.iter().map(Vec::as_slice).collect();
        let mask_refs: Vec<&[bool]> = masks.iter().map(Vec::as_slice).collect();
        close(aupro(&map_refs, &mask_refs, h, w, 0.3).unwrap(), 0.15, 1e-12);
        close(aupro(&map_refs, &mask_refs, h, w, 0.1).unwrap(), 0.05, 1e-12);
    }

    #[test]
    fn perfect_maps_score_one() {
        let (h, w) = (6, 6);
        let (_, masks) = pixel_case(5, h, w, &[30, 0, 60], 2);
        let maps: Vec<Vec<f32>> =
            masks.iter().map(|m| m.iter().map(|&a| if a { 2.0 } else { -1.0 }).collect()).collect();
        let map_refs: Vec<&[f32]> = maps.iter().map(Vec::as_slice).collect();
        let mask_refs: Vec<&[bool]> = masks.iter().map(Vec::as_slice).collect();
        let m = pixel_metrics(&map_refs, &mask_refs, h, w, 0.3).unwrap();
        close(m.aupro, 1.0, 1e-12);
        check_ranking(m.ranking, 1.0, 1.0, 1.0);
    }

    #[test]
    fn pixel_ranking_equals_ranking_of_pooled_pixels() {
        let (h, w) = (9, 11);
        let (maps, masks) = pixel_case(123, h, w, &[15, 35, 5], 8);
        let map_refs: Vec<&[f32]> = maps.iter().map(Vec::as_slice).collect();
        let mask_refs: Vec<&[bool]> = masks.iter().map(Vec::as_slice).collect();
        let pixel = pixel_metrics(&map_refs, &mask_refs, h, w, 0.3).unwrap();
        let pooled = ranking_metrics(&maps.concat(), &masks.concat()).unwrap();
        assert_eq!(pixel.ranking, pooled);
    }

    #[test]
    fn aupro_errors() {
        let map = [0.1f32, 0.2, 0.3, 0.4];
        let none = [false; 4];
        let all = [true; 4];
        let some = [true, false, false, false];
        assert_eq!(aupro(&[&map], &[&none], 2, 2, 0.3), Err(MetricError::SingleClass("normal")));
        assert_eq!(aupro(&[&map], &[&all], 2, 2, 0.3), Err(MetricError::SingleClass("anomalous")));
        assert_eq!(
            aupro(&[&map, &map], &[&some], 2, 2, 0.3),
            Err(MetricError::LengthMismatch { scores: 2, labels: 1 })
        );
        assert_eq!(aupro(&[&map[..3]], &[&some], 2, 2, 0.3), Err(MetricError::LengthMismatch { scores: 3, labels: 4 }));
        assert_eq!(aupro(&[&map], &[&some[..3]], 2, 2, 0.3), Err(MetricError::LengthMismatch { scores: 4, labels: 3 }));
        assert_eq!(aupro(&[], &[], 2, 2, 0.3), Err(MetricError::Empty));
        assert_eq!(aupro(&[&[]], &[&[]], 0, 5, 0.3), Err(MetricError::Empty));
        let bad = [0.1f32, f32::INFINITY, 0.3, 0.4];
        assert_eq!(aupro(&[&map, &bad], &[&some, &some], 2, 2, 0.3), Err(MetricError::NonFinite(f32::INFINITY)));
    }

    #[test]
    #[should_panic(expected = "fpr_limit")]
    fn aupro_rejects_a_limit_outside_the_unit_interval() {
        let _ = aupro(&[&[0.1, 0.2]], &[&[true, false]], 1, 2, 0.0);
    }

    #[test]
    fn class_metrics_combines_both_levels() {
        let (map, mask) = hand_image();
        let m = all_metrics(&[0.1, 0.4, 0.35, 0.8], &bools(&[0, 0, 1, 1]), &[&map], &[&mask], 4, 4, DEFAULT_FPR_LIMIT)
            .unwrap();
        check_ranking(m.image, 0.75, 5.0 / 6.0, 0.8);
        close(m.pixel.aupro, 367.0 / 540.0, 1e-12);
        // Image-level problems are reported even when the pixel level is fine.
        let err = all_metrics(&[0.1], &[true], &[&map], &[&mask], 4, 4, 0.3).unwrap_err();
        assert_eq!(err, MetricError::SingleClass("anomalous"));
    }

    #[test]
    fn many_samples_stay_exact() {
        // 200_000 samples in 1000 tie blocks of 200 (block k has score k), each with the
        // same mix of 50 anomalous and 150 normal. At every threshold P = 1/4 and
        // TPR = FPR: the ROC curve is the diagonal (AUROC exactly 1/2), AP = 1/4 summed
        // over 1000 steps, F1 = 2TP/(TP+FP+#anomalous) grows with recall, so its maximum
        // is at the lowest threshold: 2*(1/4)/(1 + 1/4) = 0.4.
        let mut scores = Vec::new();
        let mut labels = Vec::new();
        for k in 0..1000 {
            for j in 0..200 {
                scores.push(k as f32);
                labels.push(j % 4 == 0);
            }
        }
        let m = ranking_metrics(&scores, &labels).unwrap();
        check_ranking(m, 0.5, 0.25, 0.4);
    }
}
