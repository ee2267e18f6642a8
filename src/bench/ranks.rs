//! `ras bench ranks`: the data-parallel training step (`ras bench dp-worker`) under mpirun
//! at each of several rank counts, one report line per count.

use super::TrainStepOptions;
use crate::launch::command::{run_command, CommandError, Retry};
use std::io::Write;

#[derive(Debug, thiserror::Error)]
pub enum RanksError {
    #[error("{ranks} ranks failed")]
    Ranks {
        ranks: usize,
        #[source]
        source: CommandError,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The `ras bench dp-worker` arguments that measure `o` (no PyTorch reference; one torch
/// thread per rank unless `o.threads` says otherwise).
pub fn worker_args(o: &TrainStepOptions) -> Vec<String> {
    let mut args: Vec<String> = ["bench", "dp-worker", "--no-pytorch"].map(String::from).to_vec();
    for (k, v) in [
        ("--batch", o.batch.to_string()),
        ("--steps", o.steps.to_string()),
        ("--threads", o.threads.unwrap_or(1).to_string()),
        ("--channels", o.channels.to_string()),
        ("--grid", o.grid.to_string()),
        ("--hidden-dim", o.hidden_dim.to_string()),
        ("--encoder-layers", o.encoder_layers.to_string()),
        ("--decoder-layers", o.decoder_layers.to_string()),
        ("--device", o.device.to_string()),
    ] {
        args.extend([k.to_string(), v]);
    }
    if let Some(p) = o.precision {
        args.extend(["--precision".to_string(), p.to_string()]);
    }
    args
}

/// Runs this binary's `bench dp-worker` under mpirun with each of `ranks` ranks in turn,
/// writing a header and each run's report to `out` as it comes.
pub fn run(o: &TrainStepOptions, ranks: &[usize], out: &mut dyn Write) -> Result<(), RanksError> {
    let exe = std::env::current_exe()?;
    writeln!(
        out,
        "ras bench ranks: {} steps per measurement, {} torch thread(s) per rank, one all-reduce of the gradient buffer per step",
        o.steps,
        o.threads.unwrap_or(1)
    )?;
    let args = worker_args(o);
    for &k in ranks {
        let mut cmd = crate::launch::mpirun::command(k, &exe, &args);
        let done = run_command(&mut cmd, Retry::Never, " (install OpenMPI: scripts/setup.sh)")
            .map_err(|source| RanksError::Ranks { ranks: k, source })?;
        write!(out, "{}", done.stdout)?;
        out.flush()?;
    }
    Ok(())
}
