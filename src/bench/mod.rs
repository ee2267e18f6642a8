//! Throughput measurements (`ras bench train-step`): measured, printed, never asserted.

use crate::backbone::FeatureExtractor;
use crate::config::{BackboneConfig, ModelConfig, TrainConfig};
use crate::data::{imageio, synth};
use crate::dist::SingleProcess;
use crate::train::Trainer;
use std::sync::atomic::AtomicBool;
use anyhow::Result;
use std::fmt::Write;
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
    pub arch: String,
    pub threads: Option<i32>,
}

fn time<F: FnMut()>(mut f: F) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

pub fn train_step(o: &TrainStepOptions) -> Result<String> {
    if let Some(n) = o.threads {
        tch::set_num_threads(n);
    }
    let device = Device::Cpu;
    let mut out = String::new();
    let model = ModelConfig { encoder_layers: o.encoder_layers, decoder_layers: o.decoder_layers, hidden_dim: o.hidden_dim, ..Default::default() };
    let train = TrainConfig { batch_size: o.batch, ..Default::default() };
    writeln!(out, "ras bench train-step: device cpu, {} torch threads", tch::get_num_threads())?;
    // 1. Training steps on in-memory features at the given shapes.
    let mut trainer = Trainer::new(&model, &train, 0, o.channels, o.grid, device)?;
    let feats = Tensor::randn([o.batch as i64, o.channels, o.grid, o.grid], (Kind::Float, device));
    let ids: Vec<usize> = (0..o.batch).collect();
    trainer.step(&feats, &ids, 0, &SingleProcess, false)?; // warm-up
    let secs = time(|| {
        for s in 0..o.steps {
            trainer.step(&feats, &ids, s, &SingleProcess, false).expect("single process");
        }
    });
    let sps = (o.steps * o.batch) as f64 / secs;
    writeln!(
        out,
        "train step  batch {} features {}x{}x{} T_e={} T_d={} C={}: {:.1} samples/s ({:.3} s/step over {} steps)",
        o.batch, o.channels, o.grid, o.grid, o.encoder_layers, o.decoder_layers, o.hidden_dim, sps, secs / o.steps as f64, o.steps
    )?;

    // 2. One epoch of `epoch_images` images: decode + backbone + train (what a run without
    //    the cache would do every epoch) vs train on cached features.
    let dir = tempfile_dir()?;
    let spec = synth::SynthSpec { classes: 1, train_per_class: o.epoch_images, test_good_per_class: 1, test_defect_per_kind: 1, image_size: 224, seed: 7 };
    synth::generate(&dir, &spec, &mut |_, _| {})?;
    let index = crate::data::scan_mvtec(&dir, &[])?;
    let bcfg = BackboneConfig { arch: o.arch.clone(), ..Default::default() };
    let ex = FeatureExtractor::new(&bcfg, device)?;
    let c = ex.identity.channels;
    let g = ex.identity.grid;
    let mut trainer = Trainer::new(&model, &train, 0, c, g, device)?;
    let samples = &index.classes[0].1.train;
    let mut cached = vec![];
    let uncached = time(|| {
        for chunk in samples.chunks(o.batch) {
            let imgs: Vec<Tensor> = chunk.iter().map(|s| imageio::load_image(&s.path, 224).expect("synthetic image")).collect();
            let f = ex.extract(&Tensor::stack(&imgs, 0));
            let ids: Vec<usize> = (0..chunk.len()).collect();
            trainer.step(&f, &ids, 0, &SingleProcess, false).expect("single process");
            cached.push(f);
        }
    });
    let all = Tensor::cat(&cached, 0);
    let cached_secs = time(|| {
        trainer.epoch(&all, 1, 0, &SingleProcess, &AtomicBool::new(false), &mut |_| {}).expect("single process");
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
    Ok(out)
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("ras-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
