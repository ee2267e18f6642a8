//! `ras doctor --cluster PROFILE` for real: through the local launcher (mpirun on this
//! machine) and through the two-node Slurm of tests/multinode.rs (cluster/slurm-2node-up.sh,
//! profile cluster/ci-slurm-2node.toml: n1 and n2, one CPU and one fake GPU each).
//! CPU-only here: the cuda and nccl checks are SKIP ("no GPU"), and the MPI all-reduce
//! must PASS, across the two nodes on Slurm.

mod common;
use common::*;
use std::path::Path;
use std::sync::Mutex;

/// The Slurm test sets environment variables: the tests of this file run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn doctor(cwd: &Path, args: &[&str]) -> (bool, String) {
    let out = sweep_cmd(cwd, &[&["doctor"], args].concat()).output().unwrap();
    (out.status.success(), text(&out))
}

/// The line of check `name` in the table.
fn line<'a>(table: &'a str, name: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} line in\n{table}"))
}

#[test]
fn doctor_passes_on_this_machine_through_the_local_launcher() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let profile = repo().join("cluster/local.toml");
    let (ok, out) = doctor(dir.path(), &["--cluster", profile.to_str().unwrap(), "--elements", "100000"]);
    assert!(ok, "{out}");
    for (check, status) in
        [("submit", "PASS"), ("start", "PASS"), ("placement", "PASS"), ("mpi", "PASS"), ("nccl", "SKIP")]
    {
        assert!(line(&out, check).contains(status), "{check} {status}:\n{out}");
    }
    // cluster/local.toml is CPU-only (gpus_per_node = 0): no CUDA is no failure here.
    assert!(line(&out, "cuda").contains("SKIP"), "{out}");
    assert!(line(&out, "mpi").contains("all-reduce over 2 rank(s) on one node: 3 == 3"), "{out}");
    assert!(line(&out, "nccl").contains("no GPU"), "{out}");

    // A check leaves nothing behind in the folder it ran in.
    assert_eq!(files(dir.path()), Vec::<String>::new(), "ras doctor left files");

    // A job that does not end in time is cancelled, and the check fails (exit 1).
    let (ok, out) = doctor(dir.path(), &["--cluster", profile.to_str().unwrap(), "--timeout", "0"]);
    assert!(!ok && line(&out, "finish").contains("FAIL") && out.contains("cancelled"), "{out}");
    assert!(out.contains("`ras doctor --dir DIR` keeps the job's files"), "{out}");
    assert_eq!(files(dir.path()), Vec::<String>::new(), "a failed ras doctor left files");
}

#[test]
fn doctor_passes_mpi_across_the_two_slurm_nodes() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _slurm = two_nodes_up();
    let dir = tempfile::tempdir().unwrap();
    let profile = repo().join("cluster/ci-slurm-2node.toml");
    // The profile's GPUs are fake (/dev/null): --cpu, as the test cluster has no CUDA.
    let (ok, out) = doctor(
        dir.path(),
        &["--cluster", profile.to_str().unwrap(), "--cpu", "--elements", "100000", "--timeout", "120", "--dir", "kept"],
    );
    assert!(ok, "{out}");
    assert!(line(&out, "submit").contains("slurm job"), "{out}");
    assert!(line(&out, "start").contains("2/2 ranks started: rank 0 on n1, rank 1 on n2"), "{out}");
    assert!(line(&out, "placement").contains("PASS  2 node(s) of 2 asked: n1, n2"), "{out}");
    assert!(
        line(&out, "mpi").contains("PASS  all-reduce over 2 rank(s) across 2 nodes: 3 == 3 on every rank"),
        "{out}"
    );
    assert!(line(&out, "nccl").contains("SKIP  no GPU"), "{out}");
    assert!(line(&out, "cuda").contains("SKIP"), "{out}");

    // The job's script: one rank per named node, each node's GPU by --gres (no per-task
    // cgroup), and the node to itself since one rank fills its one GPU.
    assert!(out.contains("all checks passed (files in "), "{out}");
    let run = std::fs::read_dir(dir.path().join("kept")).unwrap().next().unwrap().unwrap().path();
    let script_file = files(&run.join("logs")).into_iter().find(|f| f.ends_with(".sbatch")).expect("the job script");
    let script = std::fs::read_to_string(run.join("logs").join(script_file)).unwrap();
    for want in [
        "#SBATCH --nodes=2\n",
        "#SBATCH --ntasks-per-node=1\n",
        "#SBATCH --gres=gpu:1\n#SBATCH --exclusive\n",
        "#SBATCH --nodelist=n1,n2\n",
    ] {
        assert!(script.contains(want), "{want:?} not in\n{script}");
    }
    assert!(!script.contains("gpus-per-task"), "{script}");
    // Slurm bound each node's one (fake) GPU to both ranks there.
    for r in 0..2 {
        let rank = json(&run.join(format!("ranks/rank-{r}.json")));
        assert_eq!(rank["cuda_visible_devices"], "0", "{rank}");
        assert_eq!(rank["mpi"]["world_size"], 2, "{rank}");
        assert_eq!(rank["finished"], true, "{rank}");
    }
}
