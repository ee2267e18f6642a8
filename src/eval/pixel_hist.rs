//! Per test image, how many of its normal and its anomalous pixels fall in each bin of
//! one score grid per class: what the bootstrap of a P-AUROC verdict resamples
//! (`report::verdict`). A run keeps these beside its final metrics, where a
//! full-resolution map per image (224 x 224 floats) would be the size of the test set.
//!
//! Why bins lose almost nothing: the pixel AUROC is the probability that an anomalous
//! pixel scores above a normal one (ties count half). On a grid, only pairs in the same
//! bin are unresolved, and they count half. The grid's edges are quantiles of the
//! class's normal pixel scores and of its anomalous ones ([`EDGES_PER_SIDE`] each), so
//! no bin holds more than 1/64 of either side: the unresolved pairs are under 1/64 of
//! all pairs, an error under 0.8 points at most, and in practice far less. The verdict
//! then centres every replicate on the run's full-resolution value (it only takes the
//! spread from the bins), which removes what error is left in the value itself.

use std::collections::BTreeMap;

/// Each side's scores (normal pixels, anomalous pixels) give their 1/64, 2/64, ...,
/// 63/64 quantiles as edges.
pub const EDGES_PER_SIDE: usize = 64;
/// At most this many scores of a side are sorted to find its quantiles (an even stride
/// through them: quantiles of a million scores are the quantiles to well under a bin).
const QUANTILE_SAMPLE: usize = 1 << 20;

/// One class's histograms: image `i`'s normal pixels per bin are
/// `normal[i * bins..(i + 1) * bins]`, its anomalous pixels the same of `anomalous`;
/// bins in increasing score order.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelHistograms {
    pub bins: usize,
    /// Image labels (true: anomalous image), in the order of the class's test set.
    pub labels: Vec<bool>,
    pub normal: Vec<u32>,
    pub anomalous: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum PixelHistogramError {
    #[error("invalid pixel histograms: {0}")]
    Format(String),
}

impl PixelHistograms {
    /// Histograms of one class: `maps` and `masks` are its images' pixels (image after
    /// image, `pixels` each), `labels` its images' labels. Non-finite scores have been
    /// refused by the metrics before this is called; here they would fall in the last bin.
    pub fn build(maps: &[f32], masks: &[bool], pixels: usize, labels: &[bool]) -> Self {
        assert_eq!(maps.len(), masks.len(), "one mask value per map value");
        assert_eq!(maps.len(), pixels * labels.len(), "one map of `pixels` values per image");
        let side = |anomalous: bool| -> Vec<f32> {
            let n = masks.iter().filter(|&&m| m == anomalous).count();
            let stride = n.div_ceil(QUANTILE_SAMPLE).max(1);
            let mut v: Vec<f32> =
                maps.iter().zip(masks).filter(|(_, &m)| m == anomalous).map(|(&s, _)| s).step_by(stride).collect();
            v.sort_unstable_by(f32::total_cmp);
            (1..EDGES_PER_SIDE).filter_map(|k| v.get(k * v.len() / EDGES_PER_SIDE).copied()).collect()
        };
        let mut edges = side(false);
        edges.extend(side(true));
        edges.sort_unstable_by(f32::total_cmp);
        edges.dedup();
        let bins = edges.len() + 1;
        let mut normal = vec![0u32; labels.len() * bins];
        let mut anomalous = vec![0u32; labels.len() * bins];
        for (i, (map, mask)) in maps.chunks(pixels.max(1)).zip(masks.chunks(pixels.max(1))).enumerate() {
            for (&s, &m) in map.iter().zip(mask) {
                // Bin b holds edges[b-1] <= s < edges[b]: equal scores share a bin.
                let b = edges.partition_point(|&e| e <= s);
                let counts = if m { &mut anomalous } else { &mut normal };
                counts[i * bins + b] += 1;
            }
        }
        Self { bins, labels: labels.to_vec(), normal, anomalous }
    }

    pub fn images(&self) -> usize {
        self.labels.len()
    }

    /// The pixel AUROC (fraction) of these images together, on the grid.
    pub fn auroc(&self) -> Option<f64> {
        let sum = |counts: &[u32]| -> Vec<f64> {
            let mut total = vec![0.0; self.bins];
            for row in counts.chunks(self.bins) {
                for (t, &c) in total.iter_mut().zip(row) {
                    *t += c as f64;
                }
            }
            total
        };
        binned_auroc(&sum(&self.normal), &sum(&self.anomalous))
    }
}

/// The AUROC of pixel counts per bin (bins in increasing score order): the share of
/// (anomalous, normal) pairs where the anomalous one is in a higher bin, pairs in one
/// bin counting half. None without pixels of both kinds.
pub fn binned_auroc(normal: &[f64], anomalous: &[f64]) -> Option<f64> {
    let (n, p): (f64, f64) = (normal.iter().sum(), anomalous.iter().sum());
    if n <= 0.0 || p <= 0.0 {
        return None;
    }
    let mut below = 0.0;
    let mut pairs = 0.0;
    for (&nb, &pb) in normal.iter().zip(anomalous) {
        pairs += pb * (below + 0.5 * nb);
        below += nb;
    }
    Some(pairs / (n * p))
}

/// Every class's histograms as one safetensors object: per class `<class>/normal` and
/// `<class>/anomalous` (u32, images x bins) and `<class>/labels` (u8).
pub fn encode(classes: &BTreeMap<String, PixelHistograms>) -> Result<Vec<u8>, PixelHistogramError> {
    use safetensors::tensor::{Dtype, TensorView};
    let u32_bytes = |v: &[u32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mut raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = vec![];
    for (class, h) in classes {
        let shape = vec![h.images(), h.bins];
        raw.push((format!("{class}/normal"), Dtype::U32, shape.clone(), u32_bytes(&h.normal)));
        raw.push((format!("{class}/anomalous"), Dtype::U32, shape, u32_bytes(&h.anomalous)));
        raw.push((format!("{class}/labels"), Dtype::U8, vec![h.images()], h.labels.iter().map(|&l| l as u8).collect()));
    }
    let views = raw
        .iter()
        .map(|(name, dt, shape, bytes)| {
            TensorView::new(*dt, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| PixelHistogramError::Format(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, None).map_err(|e| PixelHistogramError::Format(e.to_string()))
}

/// Reads back what [`encode`] wrote, checking every class has its three tensors of
/// agreeing shapes.
pub fn decode(bytes: &[u8]) -> Result<BTreeMap<String, PixelHistograms>, PixelHistogramError> {
    use safetensors::tensor::{Dtype, SafeTensors};
    let bad = |why: String| PixelHistogramError::Format(why);
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    // Per class: normal, anomalous, labels, each as (shape, bytes).
    type Part = Option<(Vec<usize>, Vec<u8>)>;
    let mut parts: BTreeMap<String, [Part; 3]> = BTreeMap::new();
    for (name, view) in st.tensors() {
        let (class, part) = name.rsplit_once('/').ok_or_else(|| bad(format!("tensor {name}: no class/part name")))?;
        let (slot, dtype) = match part {
            "normal" => (0, Dtype::U32),
            "anomalous" => (1, Dtype::U32),
            "labels" => (2, Dtype::U8),
            other => return Err(bad(format!("tensor {name}: unknown part {other}"))),
        };
        if view.dtype() != dtype {
            return Err(bad(format!("tensor {name}: dtype {:?}, expected {dtype:?}", view.dtype())));
        }
        parts.entry(class.to_string()).or_default()[slot] = Some((view.shape().to_vec(), view.data().to_vec()));
    }
    let mut out = BTreeMap::new();
    for (class, [normal, anomalous, labels]) in parts {
        let missing = || bad(format!("class {class}: normal, anomalous and labels are not all there"));
        let ((ns, nb), (as_, ab), (ls, lb)) =
            (normal.ok_or_else(missing)?, anomalous.ok_or_else(missing)?, labels.ok_or_else(missing)?);
        if ns.len() != 2 || ns != as_ || ls != [ns[0]] || ns[1] == 0 {
            return Err(bad(format!("class {class}: shapes {ns:?}, {as_:?}, {ls:?} do not agree")));
        }
        let u32s = |b: &[u8]| b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        out.insert(
            class,
            PixelHistograms {
                bins: ns[1],
                labels: lb.iter().map(|&l| l != 0).collect(),
                normal: u32s(&nb),
                anomalous: u32s(&ab),
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::eval::metrics::auroc;
    use rand::{Rng, SeedableRng};

    /// Maps of `images` images of `pixels` pixels: anomalous images have a defect of
    /// random size scoring higher on average; scores rounded to 1/256 so that ties occur.
    pub(crate) fn simulated(images: usize, pixels: usize, seed: u64) -> (Vec<f32>, Vec<bool>, Vec<bool>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (mut maps, mut masks, mut labels) = (vec![], vec![], vec![]);
        for i in 0..images {
            let anomalous = i % 3 != 0;
            labels.push(anomalous);
            let defect = if anomalous { rng.random_range(1..pixels / 4) } else { 0 };
            let start = rng.random_range(0..pixels - defect);
            let hard = rng.random_range(0.0..1.0f32);
            for p in 0..pixels {
                let m = p >= start && p < start + defect;
                let s: f32 = rng.random_range(0.0..1.0f32) + if m { 0.6 * hard + 0.2 } else { 0.0 };
                maps.push((s * 256.0).round() / 256.0);
                masks.push(m);
            }
        }
        (maps, masks, labels)
    }

    #[test]
    fn the_grid_auroc_is_the_full_resolution_one_within_its_bound() {
        let (pixels, images) = (400, 30);
        let (maps, masks, labels) = simulated(images, pixels, 7);
        let h = PixelHistograms::build(&maps, &masks, pixels, &labels);
        assert!(h.bins > EDGES_PER_SIDE && h.bins < 2 * EDGES_PER_SIDE, "{} bins", h.bins);
        let exact = auroc(&maps, &masks).unwrap();
        let grid = h.auroc().unwrap();
        // The bound of the module doc (1/64 of pairs, counted half): the measured error is
        // far smaller on these maps; this asserts the bound, printing the error.
        assert!((grid - exact).abs() < 0.5 / EDGES_PER_SIDE as f64, "grid {grid} exact {exact}");
        assert!((grid - exact).abs() < 0.002, "grid {grid} exact {exact}: more than 0.2 points apart");
        let total: u64 = h.normal.iter().chain(&h.anomalous).map(|&c| c as u64).sum();
        assert_eq!(total, (pixels * images) as u64, "every pixel counted once");
        for (i, &l) in labels.iter().enumerate() {
            let pos: u32 = h.anomalous[i * h.bins..(i + 1) * h.bins].iter().sum();
            assert_eq!(pos > 0, l, "image {i}: anomalous pixels exactly in anomalous images");
        }
    }

    #[test]
    fn ties_share_a_bin_and_count_half() {
        // Every score equal: one bin, AUROC 0.5, as the full-resolution metric says.
        let h =
            PixelHistograms::build(&[0.3; 8], &[false, false, true, true, false, false, false, true], 4, &[true, true]);
        assert_eq!(h.auroc(), Some(0.5));
        assert_eq!(auroc(&[0.3; 8], &[false, false, true, true, false, false, false, true]).unwrap(), 0.5);
        assert_eq!(binned_auroc(&[1.0, 0.0], &[0.0, 0.0]), None, "no anomalous pixel");
        assert_eq!(binned_auroc(&[1.0, 0.0], &[0.0, 2.0]), Some(1.0));
    }

    #[test]
    fn encoding_round_trips_and_refuses_damage() {
        let (maps, masks, labels) = simulated(6, 50, 1);
        let h = PixelHistograms::build(&maps, &masks, 50, &labels);
        let classes: BTreeMap<String, PixelHistograms> =
            [("bottle".to_string(), h.clone()), ("metal_nut".to_string(), h)].into();
        let bytes = encode(&classes).unwrap();
        assert_eq!(decode(&bytes).unwrap(), classes);
        assert!(decode(&bytes[..bytes.len() - 3]).is_err(), "a torn object");
        let mut one = classes.clone();
        one.get_mut("bottle").unwrap().labels.pop();
        let e = encode(&one).map(|b| decode(&b));
        assert!(matches!(e, Err(_) | Ok(Err(_))), "labels of another length than the histograms");
    }
}
