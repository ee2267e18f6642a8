//! The `ras` command line: clap structs (args.rs) and dispatch (here and sweep.rs). Every
//! command is a few calls into the library; the library never sees these structs.

mod args;
mod bench_args;
mod doctor;
mod sweep;

use anyhow::{bail, Context, Result};
use args::{BenchCommand, Cli, Command, ConfigArgs, DataCommand, ExportFormatArg};
use clap::{CommandFactory, FromArgMatches};
use ras::config::RunConfig;
use ras::exit::ExitStatus;
use ras::progress::Progress;
use std::io::IsTerminal;

/// The whole program: run, print the error chain once, exit with its code.
pub fn main() -> std::process::ExitCode {
    ras::threads::pin();
    match run() {
        Ok(status) => status.into(),
        Err(err) => {
            eprintln!("error: {}", ras::error_text::chain(err.as_ref()));
            ras::failure::exit_status(&err).into()
        }
    }
}

fn run() -> Result<ExitStatus> {
    // `--version`: also which libtorch and whether its CUDA backend is in this process.
    let long_version: &'static str = Box::leak(ras::build_info().into_boxed_str());
    let cli =
        Cli::from_arg_matches(&Cli::command().long_version(long_version).get_matches()).unwrap_or_else(|e| e.exit());
    // No colour codes where stderr is a file (job logs kept in the store) or a pipe.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let progress = Progress::new(!cli.quiet && std::io::stderr().is_terminal());
    match cli.command {
        Command::Data(DataCommand::Synth { out, classes, seed, train, test_good, test_defect, image_size }) => {
            let spec = ras::data::synth::SynthSpec {
                classes,
                train_per_class: train,
                test_good_per_class: test_good,
                test_defect_per_kind: test_defect,
                image_size,
                seed,
            };
            let bar = progress.bar(0, "synth");
            let summary = ras::data::synth::generate(&out, &spec, &mut |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })?;
            bar.finish_and_clear();
            print!("{}", summary.render(&out));
        }
        Command::Data(DataCommand::Check { root, kind, classes, train_meta, test_meta }) => {
            let cfg = ras::config::DatasetConfig { kind, root, classes, train_meta, test_meta };
            let report = ras::data::check::check(&cfg, &progress)
                .with_context(|| format!("cannot check dataset {}", cfg.root.display()))?;
            print!("{}", report.render());
            if !report.is_ok() {
                eprint!("{}", report.render_errors());
            }
            return Ok(if report.is_ok() { ExitStatus::Ok } else { ExitStatus::Failed });
        }
        Command::Features(args) => {
            let cfg = RunConfig::load(&args.config, &args.overrides)?;
            let store = ras::store::Store::open(&cfg.store)?;
            let (feats, stats) = ras::run::fill_feature_cache(&cfg, &progress)?;
            print!("{}", ras::features::render_filled(&feats, &stats, store.url()));
        }
        Command::Train { config, force, ranks } if ranks > 1 => return train_ranks(&config, force, ranks),
        Command::Train { config, force, .. } => return train(&config, force, progress),
        Command::Worker { config } => return train(&config, false, Progress::hidden()),
        Command::Eval { run, store, test_jitter, checkpoint } => {
            // An unknown run (or store) is an error that creates nothing.
            let store = ras::runs::open_run(&store.unwrap_or_else(ras::config::default_store), &run)?;
            if test_jitter.is_empty() {
                if let Some(c) = checkpoint {
                    bail!("--checkpoint {c} chooses the model that --test-jitter re-evaluates; give --test-jitter too");
                }
                let paths = ras::run::RunPaths::new(run.as_str());
                let fm = match store.get_json::<ras::run::FinalMetrics>(&paths.final_metrics())? {
                    Some(fm) => fm,
                    None => ras::run::evaluate_trained(&store, &run, progress)?,
                };
                print!("{}", fm.render_outcome(&run, store.url()));
                if let Ok(Some(cfg)) = ras::run::stored_config(&store, &paths) {
                    println!("training recipe: {}", cfg.recipe());
                }
            } else {
                if let Some(bad) = test_jitter.iter().find(|s| !s.is_finite() || **s < 0.0) {
                    bail!("--test-jitter {bad} must be >= 0");
                }
                for r in ras::run::reevaluate(&store, &run, &test_jitter, checkpoint.unwrap_or_default(), &progress)? {
                    print!("{}", r.render(&run));
                }
            }
        }
        Command::Import { checkpoint, config, overrides, store, python } => {
            let mut cfg = RunConfig::load(&config, &overrides)?;
            if let Some(url) = store {
                cfg.store = url;
            }
            let store = ras::store::Store::open(&cfg.store)?;
            let opts = ras::interop::import::ImportOptions { python };
            let done = ras::interop::import::import_checkpoint(&store, &cfg, &config, &checkpoint, &opts)
                .with_context(|| format!("cannot import {}", checkpoint.display()))?;
            print!("{}", done.render(&checkpoint, store.url()));
        }
        Command::Export { run, store, format, out, model, no_backbone } => {
            let store = ras::runs::open_run(&store.unwrap_or_else(ras::config::default_store), &run)?;
            let format = match format {
                ExportFormatArg::Public => ras::interop::export::ExportFormat::Public,
                ExportFormatArg::Safetensors => ras::interop::export::ExportFormat::Safetensors,
            };
            let opts = ras::interop::export::ExportOptions { format, model, backbone: !no_backbone };
            let out = out.unwrap_or_else(|| std::path::PathBuf::from(format!("{run}.{}", format.extension())));
            ras::interop::export::check_writable(&out).with_context(|| format!("cannot write {}", out.display()))?;
            let done = ras::interop::export::export_run(&store, &run, &opts)
                .with_context(|| format!("cannot export run {run}"))?;
            ras::write_file_atomically(&out, &done.bytes).with_context(|| format!("cannot write {}", out.display()))?;
            print!("{}", done.render(&out));
        }
        Command::Predict { run, images, store, out, class, batch, device } => {
            let store = ras::runs::open_run(&store.unwrap_or_else(ras::config::default_store), &run)?;
            let out = out.unwrap_or_else(|| ras::predict::PredictOptions::default_out(&run));
            let opts = ras::predict::PredictOptions { out, class, batch: batch.map(|b| b as usize), device };
            let summary = ras::predict::predict_images(&store, &run, &images, &opts, &progress)?;
            eprint!("{}", summary.render_problems());
            print!("{}", summary.render());
            if summary.is_partial() {
                return Ok(ExitStatus::Partial);
            }
        }
        Command::Sweep { sweep, no_wait, report, retry_cancelled } => {
            return sweep::sweep(&sweep, no_wait, report.as_deref(), retry_cancelled)
        }
        Command::Status { sweep, watch } => sweep::status(&sweep, watch)?,
        Command::Cancel { sweep, runs, reason } => sweep::cancel(&sweep, &runs, reason.as_deref())?,
        Command::Plan { sweep, json, no_data_check } => sweep::plan(&sweep, json, !no_data_check)?,
        Command::Report { sweep, out } => sweep::report(&sweep, &out)?,
        Command::Verify { sweep } => return sweep::verify(&sweep),
        Command::Runs { store, filter, json } => {
            let filters = filter.iter().map(|f| f.parse()).collect::<Result<Vec<ras::runs::Filter>, _>>()?;
            let store = ras::runs::open_existing(&store.unwrap_or_else(ras::config::default_store))?;
            print!("{}", ras::runs::render_runs_as(&ras::runs::list_runs(&store, &filters)?, store.url(), json));
        }
        Command::Compare { runs, store, json } => {
            let store = ras::runs::open_existing(&store.unwrap_or_else(ras::config::default_store))?;
            print!("{}", ras::runs::render_compare_as(&ras::runs::compare(&store, &runs)?, json));
        }
        Command::Serve(a) => ras::serve::serve(&a.into(), |line| println!("{line}"))?,
        Command::Bench(BenchCommand::TrainStep(args)) => {
            print!("{}", ras::bench::train_step(&ras::bench::TrainStepOptions::from(args))?)
        }
        Command::Bench(BenchCommand::Epoch { images, test_images, epochs, shapes }) => {
            print!("{}", ras::bench::epoch(&ras::bench::TrainStepOptions::from(shapes), images, test_images, epochs)?)
        }
        Command::Bench(BenchCommand::DpWorker(args)) => {
            if let Some(line) = ras::bench::data_parallel_worker(&ras::bench::TrainStepOptions::from(args))? {
                println!("{line}");
            }
        }
        Command::Bench(BenchCommand::Ranks { ranks, shapes }) => {
            ras::bench::ranks::run(&ras::bench::TrainStepOptions::from(shapes), &ranks, &mut std::io::stdout())?
        }
        Command::Doctor { cluster, ranks, nodes, cpu, timeout, dir, elements } => {
            let opts = ras::doctor::DoctorOptions {
                ranks,
                nodes,
                cpu,
                timeout: std::time::Duration::from_secs(timeout),
                dir: dir.clone().unwrap_or_default(),
                elements,
            };
            return doctor::doctor(&cluster, opts, dir.is_some());
        }
        Command::DoctorNode { out, collective, elements, .. } => {
            return doctor::doctor_node(&out, collective, elements)
        }
        Command::Bench(BenchCommand::Search(a)) => {
            eprintln!("{}", ras::bench::search::run(&a.into(), &mut std::io::stdout())?)
        }
        Command::Bench(BenchCommand::Verdicts(a)) => {
            eprintln!("{}", ras::bench::verdicts::run(&a.into(), &mut std::io::stdout())?)
        }
        Command::Bench(BenchCommand::Serve(a)) => {
            eprintln!("{}", ras::bench::serve::run(&a.into(), &mut std::io::stdout())?)
        }
        Command::Bench(BenchCommand::Plan(a)) => {
            eprintln!("{}", ras::bench::plan::run(&a.into(), &mut std::io::stdout())?)
        }
        Command::Bench(BenchCommand::Coordinator { runs, cycles, cluster, store, json, s3, latency_ms }) => {
            let s3_latency = s3.then(|| std::time::Duration::from_millis(latency_ms));
            let opts = ras::bench::coordinator::Options { runs, cycles, store, json, s3_latency };
            eprintln!("{}", ras::bench::coordinator::run_for_profile(&cluster, &opts, &mut std::io::stdout())?);
        }
    }
    Ok(ExitStatus::Ok)
}

/// Runs (or resumes) one run in this process, as a rank of whatever launched it. With
/// several ranks, every log line carries the rank (a span), so merged logs can be told apart.
fn train(config: &ConfigArgs, force: bool, progress: Progress) -> Result<ExitStatus> {
    let cfg = RunConfig::load(&config.config, &config.overrides)?;
    let world = ras::dist::WorldInfo::from_env()?;
    let _rank =
        (world.world_size > 1).then(|| tracing::info_span!("rank", rank = world.rank, of = world.world_size).entered());
    let opts = ras::run::RunOptions::new(progress, force);
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGUSR1] {
        signal_hook::flag::register(sig, opts.stop.clone()).context("installing signal handlers")?;
    }
    let out = ras::run::execute(&cfg, &opts).with_context(|| format!("run from {} failed", config.config.display()))?;
    if out.preempted {
        eprintln!("run {} stopped by a signal after a checkpoint; run the same command again to resume", out.run_id);
        return Ok(ExitStatus::Requeue);
    }
    if let Some(epoch) = out.paused_at {
        eprintln!(
            "run {} paused at epoch {epoch}, a rung of its search: its sweep's coordinator promotes it (it then resumes from this checkpoint) or not",
            out.run_id
        );
    }
    if let Some(fm) = &out.final_metrics {
        print!("{}", fm.render_outcome(&out.run_id, &cfg.store));
        println!("training recipe: {}", cfg.recipe());
    }
    Ok(ExitStatus::Ok)
}

/// `ras train --ranks N`: N workers under mpirun on this machine.
fn train_ranks(config: &ConfigArgs, force: bool, ranks: usize) -> Result<ExitStatus> {
    let cfg = RunConfig::load(&config.config, &config.overrides)?;
    let out = ras::launch::train_ranks(&cfg, &config.config, &config.overrides, force, ranks)?;
    if let ras::launch::RanksOutcome::Done(Some(fm)) = &out {
        print!("{}", fm.render_outcome(&cfg.run_id(), &cfg.store));
    }
    Ok(out.exit_status())
}
