//! Throughput measurements (`ras bench train-step`), and how good the plan is (`ras bench
//! plan`, plan.rs): measured, printed, never asserted.

pub mod coordinator;
pub mod plan;
pub mod ranks;
pub mod s3;
pub mod search;
pub mod serve;
pub mod verdicts;

use crate::backbone::FeatureExtractor;
use crate::config::{BackboneConfig, ModelConfig, TrainConfig};
use crate::data::{imageio, synth};
use crate::dist::SingleProcess;
use crate::train::{Precision, Trainer};
use anyhow::Result;
use std::fmt::Write;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Shapes and sizes of the measurement (defaults: the paper's training shapes).
#[derive(Debug, Clone)]
pub struct TrainStepOptions {
    pub batch: usize,
    pub channels: i64,
    pub grid: i64,
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    pub hidden_dim: i64,
    pub steps: usize,
    /// Images in the cached-vs-uncached epoch comparison.
    pub epoch_images: usize,
    pub arch: crate::config::BackboneArch,
    pub threads: Option<i32>,
    /// Where `train_step` measures (the data-parallel bench is CPU-only).
    pub device: crate::config::DeviceSpec,
    /// Also time the PyTorch reference training step (tests/reference/ras_ref.py in
    /// .venv-ref) on the same shapes, steps and thread count, in two attention variants.
    pub pytorch: bool,
    /// None: the device's default (tf32 on CUDA, fp32 on a CPU).
    pub precision: Option<Precision>,
}

impl TrainStepOptions {
    fn model(&self) -> ModelConfig {
        ModelConfig {
            encoder_layers: self.encoder_layers,
            decoder_layers: self.decoder_layers,
            hidden_dim: self.hidden_dim,
            ..Default::default()
        }
    }

    fn train(&self) -> TrainConfig {
        TrainConfig { batch_size: self.batch, precision: self.precision, ..Default::default() }
    }

    /// Training FLOPs of one sample at these shapes (the model's FLOP count).
    fn flops_per_sample(&self) -> f64 {
        crate::model::flops::train_flops_per_image(&self.model(), self.channels, self.grid)
    }
}

/// The reference environment's python and script, if `make setup-python` made them.
pub fn pytorch_reference() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let roots = [std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")), std::env::current_dir().ok()?];
    roots
        .into_iter()
        .map(|r| (r.join(".venv-ref/bin/python"), r.join("tests/reference/ras_ref.py")))
        .find(|(p, s)| p.exists() && s.exists())
}

/// Samples/s of the PyTorch reference training step: (a) nn.MultiheadAttention as the
/// public code calls it (need_weights=True), (b) F.scaled_dot_product_attention, (c) (a)
/// with AdamW(foreach=True) and foreach clipping (PyTorch's multi-tensor path, its
/// default on GPUs).
fn pytorch_train_step(o: &TrainStepOptions, threads: i32) -> Result<(f64, f64, f64, String)> {
    let (python, script) = pytorch_reference()
        .ok_or_else(|| anyhow::anyhow!("--pytorch needs the reference environment: run `make setup-python`"))?;
    let dir = tempfile_dir()?.join("pytorch");
    std::fs::create_dir_all(&dir)?;
    let args = serde_json::json!({
        "decoder": "ras", "encoder_layers": o.encoder_layers, "decoder_layers": o.decoder_layers,
        "neighbor_mask": true, "neighbor_size": [7, 7], "hidden_dim": o.hidden_dim, "heads": 8,
        "ffn_dim": 1024, "in_channels": o.channels, "grid": o.grid, "batch": o.batch,
        "steps": o.steps, "threads": threads,
    });
    std::fs::write(dir.join("args.json"), args.to_string())?;
    let out = std::process::Command::new(&python).arg(&script).arg("bench").arg(&dir).output()?;
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(out.status.success(), "PyTorch reference bench failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or_default())?;
    let get = |k: &str| v[k].as_f64().ok_or_else(|| anyhow::anyhow!("no {k} in {text}"));
    Ok((
        get("mha")?,
        get("sdpa")?,
        get("mha_foreach")?,
        format!("torch {}, {} threads", v["torch"].as_str().unwrap_or("?"), v["threads"]),
    ))
}

fn time<F: FnMut()>(mut f: F) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

/// Waits for queued GPU work (CUDA runs kernels asynchronously: a timer must not stop
/// before they are done).
fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

pub fn train_step(o: &TrainStepOptions) -> Result<String> {
    if let Some(n) = o.threads {
        tch::set_num_threads(n);
    }
    let device = crate::run::resolve_device(o.device)?;
    let mut out = String::new();
    let (model, train) = (o.model(), o.train());
    let mut trainer = Trainer::new(&model, &train, 0, o.channels, o.grid, device)?;
    writeln!(
        out,
        "ras bench train-step: device {}, precision {}, {} torch threads",
        crate::run::cost::device_kind(device),
        trainer.precision(),
        tch::get_num_threads()
    )?;
    // 1. Training steps on in-memory features at the given shapes.
    let feats = Tensor::randn([o.batch as i64, o.channels, o.grid, o.grid], (Kind::Float, device));
    let ids: Vec<usize> = (0..o.batch).collect();
    let noise = device.is_cuda().then(|| trainer.epoch_noise(o.batch, &feats.size()[1..], 0, device));
    let _ = trainer.step(&feats, &ids, 0, noise.as_ref(), &SingleProcess, false)?; // warm-up
    sync(device);
    let secs = time(|| {
        for s in 0..o.steps {
            let _ = trainer.step(&feats, &ids, s, noise.as_ref(), &SingleProcess, false).expect("single process");
        }
        sync(device);
    });
    let sps = (o.steps * o.batch) as f64 / secs;
    let gflop = o.flops_per_sample() / 1e9;
    writeln!(
        out,
        "train step  batch {} features {}x{}x{} T_e={} T_d={} C={}: {:.1} samples/s ({:.4} s/step over {} steps), {:.2} TFLOP/s achieved ({:.2} GFLOP per sample)",
        o.batch, o.channels, o.grid, o.grid, o.encoder_layers, o.decoder_layers, o.hidden_dim, sps, secs / o.steps as f64, o.steps, sps * gflop / 1e3, gflop
    )?;
    // The PyTorch reference runs on the CPU: compared only there.
    if o.pytorch && !device.is_cuda() {
        let (mha, sdpa, foreach, what) = pytorch_train_step(o, tch::get_num_threads())?;
        writeln!(out, "pytorch ({what}), same shapes and steps:")?;
        writeln!(out, "  (a) nn.MultiheadAttention, need_weights=True (the public code): {mha:.1} samples/s")?;
        writeln!(out, "  (b) F.scaled_dot_product_attention (fused):                      {sdpa:.1} samples/s")?;
        writeln!(out, "  (c) (a) with AdamW(foreach=True), foreach clipping:              {foreach:.1} samples/s")?;
        writeln!(
            out,
            "  ours/(a) = {:.2}x, ours/(b) = {:.2}x, ours/(c) = {:.2}x",
            sps / mha,
            sps / sdpa,
            sps / foreach
        )?;
    }
    if o.epoch_images == 0 {
        return Ok(out);
    }

    // 2. One epoch of `epoch_images` images: decode + backbone + train (what a run without
    //    the cache would do every epoch) vs train on cached features.
    let dir = tempfile_dir()?;
    let spec = synth::SynthSpec {
        classes: 1,
        train_per_class: o.epoch_images,
        test_good_per_class: 1,
        test_defect_per_kind: 1,
        image_size: 224,
        seed: 7,
    };
    synth::generate(&dir, &spec, &mut |_, _| {})?;
    let index = crate::data::scan_mvtec(&dir, &[])?;
    let bcfg = BackboneConfig { arch: o.arch, ..Default::default() };
    let ex = FeatureExtractor::new(&bcfg, device)?;
    let c = ex.identity.channels;
    let g = ex.identity.grid;
    let mut trainer = Trainer::new(&model, &train, 0, c, g, device)?;
    let samples = &index.classes[0].1.train;
    let mut cached = vec![];
    let mut feature_secs = 0.0;
    let uncached = time(|| {
        for chunk in samples.chunks(o.batch) {
            let t = Instant::now();
            let imgs: Vec<Tensor> =
                chunk.iter().map(|s| imageio::load_image(&s.path, 224).expect("synthetic image")).collect();
            let f = ex.extract(&Tensor::stack(&imgs, 0));
            sync(device);
            feature_secs += t.elapsed().as_secs_f64();
            let ids: Vec<usize> = (0..chunk.len()).collect();
            let _ = trainer.step(&f, &ids, 0, None, &SingleProcess, false).expect("single process");
            cached.push(f);
        }
    });
    let all = Tensor::cat(&cached, 0);
    let cached_secs = time(|| {
        trainer.epoch(&all, 1, 0, &SingleProcess, &AtomicBool::new(false), &mut |_| {}).expect("single process");
        sync(device);
    });
    // 3. One evaluation pass over the same features (forward and anomaly maps; the
    //    metrics, which a run computes on top, are not timed).
    let eval_secs = time(|| {
        crate::eval::predict(&trainer.model, &all, g * 16, o.batch, 0.0, 0, device);
        sync(device);
    });
    let _ = std::fs::remove_dir_all(&dir);
    writeln!(
        out,
        "epoch of {} images ({}, {}x{}x{}): decode+backbone+train {:.2} s, cached features {:.2} s: cache speed-up {:.1}x",
        samples.len(),
        o.arch,
        c,
        g,
        g,
        uncached,
        cached_secs,
        uncached / cached_secs
    )?;
    let n = samples.len() as f64;
    writeln!(out, "for `ras plan`, paste into the cluster profile of this device (measured at the shapes above: T_e={} T_d={} C={}, {}; the plan scales them to other shapes by FLOPs):", o.encoder_layers, o.decoder_layers, o.hidden_dim, o.arch)?;
    writeln!(out, "train_images_per_s_per_rank = {sps:.1}")?;
    writeln!(out, "bench_gflop_per_image = {gflop:.3}")?;
    writeln!(out, "feature_images_per_s = {:.1}", n / feature_secs)?;
    writeln!(out, "eval_images_per_s = {:.1}", n / eval_secs)?;
    Ok(out)
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("ras-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// One rank of `ras bench ranks`: `steps` training steps at the given shapes with the
/// global batch split over the ranks (started by mpirun). Rank 0 returns a report line:
/// world size, samples/s, all-reduce share of step time, bytes all-reduced per step.
pub fn data_parallel_worker(o: &TrainStepOptions) -> Result<Option<String>> {
    if let Some(n) = o.threads {
        tch::set_num_threads(n);
    }
    let world = crate::dist::WorldInfo::from_env()?;
    // cuda: each rank its own GPU (by local rank), NCCL between them; cpu: MPI.
    let device = world.device(o.device)?;
    let coll = crate::dist::connect(world, device)?;
    let mut trainer = Trainer::new(&o.model(), &o.train(), 0, o.channels, o.grid, device)?;
    let local = trainer.local_batch(world.world_size)?;
    let feats = Tensor::randn([local as i64, o.channels, o.grid, o.grid], (Kind::Float, device));
    let ids: Vec<usize> = (0..local).collect();
    let noise = device.is_cuda().then(|| trainer.epoch_noise(local, &feats.size()[1..], 0, device));
    let _ = trainer.step(&feats, &ids, 0, noise.as_ref(), coll.as_ref(), false)?; // warm-up
    sync(device);
    coll.barrier()?;
    trainer.comm_seconds = 0.0;
    trainer.comm_bytes = 0;
    let t = Instant::now();
    for s in 0..o.steps {
        let _ = trainer.step(&feats, &ids, s, noise.as_ref(), coll.as_ref(), false)?;
    }
    sync(device);
    let secs = t.elapsed().as_secs_f64();
    if world.rank != 0 {
        return Ok(None);
    }
    let sps = (o.steps * local * world.world_size) as f64 / secs;
    Ok(Some(format!(
        "ranks {}  {} ({})  global batch {} ({} per rank)  {:.1} samples/s  {:.2} TFLOP/s  {:.4} s/step  all-reduce {:.1}% of step time  {:.1} MB all-reduced per step per rank",
        world.world_size,
        crate::run::cost::device_kind(device),
        coll.name(),
        local * world.world_size,
        local,
        sps,
        sps * o.flops_per_sample() / 1e12,
        secs / o.steps as f64,
        100.0 * trainer.comm_seconds / secs,
        trainer.comm_bytes as f64 / o.steps as f64 / 1e6
    )))
}

/// `ras bench epoch`: whole epochs on `images` cached training features resident on the
/// device (random features at the given shapes: the cost does not depend on their
/// values), then one evaluation of `test_images` (anomaly maps, scores and the per-class
/// metrics on synthetic labels), as a run does them. Prints samples/s, TFLOP/s and the
/// wall time of each part.
pub fn epoch(o: &TrainStepOptions, images: usize, test_images: usize, epochs: usize) -> Result<String> {
    if let Some(n) = o.threads {
        tch::set_num_threads(n);
    }
    anyhow::ensure!(images > 0 && epochs > 0, "--images and --epochs must be at least 1");
    let device = crate::run::resolve_device(o.device)?;
    let mut trainer = Trainer::new(&o.model(), &o.train(), 0, o.channels, o.grid, device)?;
    let mut out = String::new();
    writeln!(
        out,
        "ras bench epoch: device {}, precision {}, {images} train images x {epochs} epochs, {test_images} test images, batch {}, features {}x{}x{} (T_e={} T_d={} C={})",
        crate::run::cost::device_kind(device),
        trainer.precision(),
        o.batch,
        o.channels,
        o.grid,
        o.grid,
        o.encoder_layers,
        o.decoder_layers,
        o.hidden_dim
    )?;
    let t0 = Instant::now();
    let train = crate::rng::with_torch_seed(1, || {
        Tensor::randn([images as i64, o.channels, o.grid, o.grid], (Kind::Float, device))
    });
    let test = crate::rng::with_torch_seed(2, || {
        Tensor::randn([test_images.max(2) as i64, o.channels, o.grid, o.grid], (Kind::Float, Device::Cpu))
    });
    sync(device);
    let setup = t0.elapsed().as_secs_f64();
    let stop = AtomicBool::new(false);
    let mut per_epoch = vec![];
    for e in 0..epochs {
        let t = Instant::now();
        let r = trainer.epoch(&train, e, 0, &SingleProcess, &stop, &mut |_| {})?;
        sync(device);
        per_epoch.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(r.loss.is_finite(), "loss {} at epoch {e}", r.loss);
    }
    let train_secs: f64 = per_epoch.iter().sum();
    // Epoch 0 includes one-off costs (flat buffers, kernel selection): report the rest.
    let steady = if epochs > 1 { per_epoch[1..].iter().sum::<f64>() / (epochs - 1) as f64 } else { per_epoch[0] };
    let sps = images as f64 / steady;
    writeln!(
        out,
        "train: {epochs} epochs in {train_secs:.2} s (first {:.3} s, then {steady:.3} s each): {sps:.1} samples/s, {:.2} TFLOP/s achieved",
        per_epoch[0],
        sps * o.flops_per_sample() / 1e12
    )?;
    let t = Instant::now();
    let preds = crate::eval::predict(&trainer.model, &test, o.grid * 16, o.batch, 0.0, 0, device);
    sync(device);
    let predict_secs = t.elapsed().as_secs_f64();
    let m = test.size()[0] as usize;
    let labels: Vec<bool> = (0..m).map(|i| i % 2 == 1).collect();
    let side = o.grid * 16;
    let masks = Tensor::zeros([m as i64, side, side], (Kind::Float, Device::Cpu));
    for i in (1..m).step_by(2) {
        let _ = masks.get(i as i64).narrow(0, 0, side / 4).narrow(1, 0, side / 4).fill_(1.0);
    }
    let t = Instant::now();
    crate::eval::class_metrics(&preds, &labels, &masks, 0.3)?;
    let metric_secs = t.elapsed().as_secs_f64();
    writeln!(
        out,
        "eval: {m} images, maps and scores {predict_secs:.2} s ({:.1} images/s), metrics {metric_secs:.2} s",
        m as f64 / predict_secs
    )?;
    writeln!(out, "total wall time {:.2} s (setup {setup:.2} s)", setup + train_secs + predict_secs + metric_secs)?;
    Ok(out)
}
