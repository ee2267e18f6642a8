//! Placement across nodes, with the real engine: a two-node Slurm cluster on this one
//! machine (cluster/slurm-2node-up.sh: slurmd n1 and n2, one CPU and one fake GPU each)
//! and the profile cluster/ci-slurm-2node.toml, which names the nodes.
//!
//! - `ras plan --json` puts two 1-rank runs of one sweep side by side (n1 and n2, both at
//!   the start) and one 2-rank run of another sweep across both nodes (one rank each).
//! - `ras sweep` then runs them through sbatch + srun --mpi=pmix, and the test checks
//!   where every rank really ran against that plan, from two sources: what each rank saw
//!   (SLURMD_NODENAME, gathered over MPI into the run's env.json) and what Slurm says
//!   (`scontrol show job`: NodeList, NumNodes, start and end times).
//!
//! Both "nodes" are the same host, so the hostname cannot tell them apart; SLURMD_NODENAME
//! can. OMPI_MCA_btl=self,tcp makes the 2-rank run's all-reduce take the network path
//! between the nodes instead of shared memory.

mod common;
use common::*;
use std::path::Path;

/// `KEY=value` of a `scontrol show job` text.
fn field<'a>(sc: &'a str, key: &str) -> &'a str {
    sc.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}="))).unwrap_or_else(|| panic!("no {key} in {sc}"))
}

/// Seconds of a Slurm timestamp (2026-11-28T14:10:29), comparable within one day.
fn secs(ts: &str) -> u64 {
    let t = ts.split('T').nth(1).unwrap_or_else(|| panic!("timestamp {ts}"));
    t.split(':').map(|p| p.parse::<u64>().unwrap()).fold(0, |a, p| a * 60 + p)
}

/// (Slurm job id, its finished `scontrol show job`) of a run's only job.
fn slurm_job(store: &Path, id: &str) -> (String, String) {
    let rec = files(&store.join(format!("runs/{id}/jobs"))).into_iter().find(|f| f.ends_with(".json")).unwrap();
    let job = rec.trim_end_matches(".json").to_string();
    let sc = finished_job(&job);
    assert!(sc.contains("JobState=COMPLETED"), "{sc}");
    (job, sc)
}

/// Node names per rank, in rank order, as the ranks themselves saw them.
fn rank_nodes(store: &Path, id: &str) -> Vec<String> {
    let env = json(&store.join(format!("runs/{id}/env.json")));
    let ranks = env["world"]["ranks"].as_array().unwrap_or_else(|| panic!("no world.ranks in {env}"));
    assert_eq!(ranks.len() as u64, env["world"]["world_size"].as_u64().unwrap(), "{env}");
    ranks
        .iter()
        .enumerate()
        .map(|(i, r)| {
            assert_eq!(r["rank"], i, "gathered in rank order: {env}");
            assert_eq!(r["cuda_visible_devices"], "0", "each rank got its node's one (fake) GPU: {env}");
            r["node"].as_str().unwrap().to_string()
        })
        .collect()
}

/// `ras plan --json`: run id -> (nodes, start hour).
fn plan(cwd: &Path, sweep: &Path, profile: &Path) -> Vec<(String, Vec<String>, f64, usize)> {
    let out = run_ok(cwd, &["plan", sweep.to_str().unwrap(), "--cluster", profile.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pinned"], true, "{v}");
    v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let nodes = r["nodes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
            (
                r["id"].as_str().unwrap().to_string(),
                nodes,
                r["start_h"].as_f64().unwrap(),
                r["ranks_per_node"].as_u64().unwrap() as usize,
            )
        })
        .collect()
}

#[test]
fn planner_places_runs_across_two_nodes_and_slurm_runs_them_there() {
    let _slurm = two_nodes_up();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    dataset_at(cwd, "out/demo-data");
    let profile = repo().join("cluster/ci-slurm-2node.toml");
    let store = cwd.join("ras-store");

    // Sweep 1: two 1-rank runs, side by side on the two nodes.
    let side = small_sweep(cwd, "side", "ranks = 1\n[grid]\n\"model.encoder_layers\" = [0, 1]\n");
    let planned = plan(cwd, &side, &profile);
    assert_eq!(planned.len(), 2);
    let mut plan_nodes: Vec<Vec<String>> = planned.iter().map(|p| p.1.clone()).collect();
    plan_nodes.sort();
    assert_eq!(plan_nodes, vec![vec!["n1".to_string()], vec!["n2".to_string()]], "one run per node: {planned:?}");
    assert!(planned.iter().all(|p| p.2 == 0.0), "both start at once: {planned:?}");
    run_ok(cwd, &["sweep", side.to_str().unwrap(), "--cluster", profile.to_str().unwrap()]);
    let mut spans = vec![];
    for (id, nodes, _, _) in &planned {
        assert_eq!(status(&store, id)["state"], "complete", "run {id}");
        assert_eq!(&rank_nodes(&store, id), nodes, "run {id}: rank 0 ran on the planned node");
        let (job, sc) = slurm_job(&store, id);
        assert_eq!(field(&sc, "NodeList"), nodes[0], "Slurm agrees for job {job}: {sc}");
        let script = std::fs::read_to_string(store.join(format!("runs/{id}/jobs/{job}.sbatch"))).unwrap();
        assert!(script.contains(&format!("#SBATCH --nodelist={}", nodes[0])), "{script}");
        spans.push((secs(field(&sc, "StartTime")), secs(field(&sc, "EndTime"))));
    }
    // The feature cache was filled once, by its own job, before both runs: they waited
    // for it (afterany) and computed nothing themselves.
    let fjobs: Vec<String> =
        files(&store.join("sweeps/side/features")).into_iter().filter(|f| f.ends_with(".json")).collect();
    assert_eq!(fjobs.len(), 1, "one feature-cache job: {fjobs:?}");
    let fjob = json(&store.join(format!("sweeps/side/features/{}", fjobs[0])))["id"].as_str().unwrap().to_string();
    assert!(finished_job(&fjob).contains("JobState=COMPLETED"), "feature-cache job {fjob}");
    for (id, _, _, _) in &planned {
        let (job, _) = slurm_job(&store, id);
        let script = std::fs::read_to_string(store.join(format!("runs/{id}/jobs/{job}.sbatch"))).unwrap();
        assert!(script.contains(&format!("#SBATCH --dependency=afterany:{fjob}")), "{script}");
        let cache = &json(&store.join(format!("runs/{id}/env.json")))["feature_cache"];
        assert_eq!(
            (cache["classes_computed"].as_u64(), cache["classes_reused"].as_u64()),
            (Some(0), Some(2)),
            "run {id}: {cache}"
        );
    }
    let ((s0, e0), (s1, e1)) = (spans[0], spans[1]);
    assert!(s0 < e1 && s1 < e0, "the two runs ran at the same time (side by side): {spans:?}");

    // Sweep 2: one 2-rank run, one rank on each node.
    // (A config of its own: a run whose resolved config matches a finished one is skipped.)
    let wide = small_sweep(cwd, "wide", "ranks = 2\n[grid]\n\"model.decoder_layers\" = [3]\n");
    let planned = plan(cwd, &wide, &profile);
    assert_eq!(planned.len(), 1);
    let (id, nodes, _, per_node) = &planned[0];
    assert_eq!(
        (nodes.clone(), *per_node),
        (vec!["n1".to_string(), "n2".to_string()], 1),
        "across both nodes: {planned:?}"
    );
    run_ok(cwd, &["sweep", wide.to_str().unwrap(), "--cluster", profile.to_str().unwrap()]);
    assert_eq!(status(&store, id)["state"], "complete");
    let env = json(&store.join(format!("runs/{id}/env.json")));
    assert_eq!(env["world"]["world_size"], 2, "{env}");
    assert_eq!(env["world"]["collective"], "mpi", "{env}");
    assert_eq!(&rank_nodes(&store, id), nodes, "rank 0 on n1, rank 1 on n2");
    let (job, sc) = slurm_job(&store, id);
    assert!(
        sc.contains("NumNodes=2") && sc.contains("NumTasks=2") && field(&sc, "NodeList") == "n[1-2]",
        "job {job}: {sc}"
    );
    let script = std::fs::read_to_string(store.join(format!("runs/{id}/jobs/{job}.sbatch"))).unwrap();
    assert!(
        script.contains("#SBATCH --nodes=2")
            && script.contains("#SBATCH --ntasks-per-node=1")
            && script.contains("#SBATCH --nodelist=n1,n2"),
        "{script}"
    );
    // The job ids the ranks saw are the job the coordinator recorded.
    for r in env["world"]["ranks"].as_array().unwrap() {
        assert_eq!(r["slurm_job_id"], job.as_str(), "{env}");
    }
}
