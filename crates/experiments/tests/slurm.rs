//! Against a real Slurm (Debian's slurm-wlm, a private one-node cluster on localhost, see
//! `cluster`): `specreg slurm` writes the smoke profile as a 3-task job array and a
//! dependent report job; both are submitted with the sbatch line it prints, and the
//! merged results equal a single-process run's byte for byte apart from timing fields.
//!
//! Needs root, `apt-get install -y slurm-wlm munge` and MNIST (found when the tests are
//! built: `SPECREG_DATA`, the per-user cache, a download; see `specreg_data::testing`); it takes
//! about two and a half minutes on 2 cores, so it is ignored by default:
//! `cargo test --release -p specreg-experiments --test slurm -- --ignored`
//! (or `cargo xtask slurm`).

mod cluster;
mod common;

use std::time::{Duration, Instant};

use common::{configs, differences, mnist, ok, specreg, temp_files};

#[test]
#[ignore = "needs root, slurm-wlm and munge: cargo xtask slurm"]
fn smoke_profile_as_a_slurm_job_array_equals_a_single_process_run() {
    let data = mnist();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let (single, array) = (tmp.path().join("single"), tmp.path().join("array"));
    for d in [&single, &array] {
        std::fs::create_dir_all(d).unwrap();
    }
    let configs = configs();
    let sweep = [
        "--profile",
        "smoke",
        "--configs",
        configs.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        "results",
        "--threads",
        "1",
    ];

    let mut cluster = cluster::Cluster::start(&tmp.path().join("slurm"));
    let cluster_up = started.elapsed();

    // The array and report scripts, and the line that submits them.
    let written = ok(&mut specreg(
        &array,
        &cache,
        &[&["slurm", "--shards", "3"][..], &sweep].concat(),
    ));
    let line = String::from_utf8(written.stdout)
        .unwrap()
        .trim()
        .to_string();
    assert!(line.starts_with("jid=$(sbatch --parsable "), "{line}");
    assert!(line.contains("--dependency=afterok:"), "{line}");
    let script = std::fs::read_to_string(array.join("results/slurm/specreg-smoke.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=1-3"), "{script}");
    assert!(script.contains("#SBATCH --cpus-per-task=1"), "{script}");
    assert!(
        script.contains("--shard \"$shard\"") && script.contains("SLURM_ARRAY_TASK_ID"),
        "{script}"
    );

    let submit = Instant::now();
    let out = cluster
        .command("bash")
        .args(["-c", &line])
        .current_dir(&array)
        .env("SPECREG_COMMIT", "shard-test")
        .env("XDG_CACHE_HOME", &cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sbatch failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.logs()
    );
    cluster.wait_idle(Duration::from_secs(600));
    let jobs = submit.elapsed();
    let report = array.join("results/REPORT.md");
    let logs = || {
        std::fs::read_dir(array.join("results/slurm/logs"))
            .map(|d| {
                d.flatten()
                    .map(|e| {
                        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                        let tail: Vec<&str> = text.lines().rev().take(15).collect();
                        format!("--- {}\n{}", e.path().display(), tail.join("\n"))
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    assert!(
        report.is_file(),
        "no REPORT.md after the jobs:\n{}\n{}",
        logs(),
        cluster.logs()
    );
    // Three array tasks and the report job each left a log.
    let n_logs = std::fs::read_dir(array.join("results/slurm/logs"))
        .unwrap()
        .count();
    assert_eq!(n_logs, 4, "{}", logs());
    let report_log = logs();
    assert!(
        report_log.contains("the report holds all 11 expected runs"),
        "{report_log}"
    );
    for k in 1..=3 {
        assert!(
            array
                .join(format!("results/timing-shard-{k}-of-3.json"))
                .is_file(),
            "shard {k} kept no timing.json:\n{report_log}"
        );
    }

    let single_start = Instant::now();
    ok(&mut specreg(
        &single,
        &cache,
        &[&["run"][..], &sweep].concat(),
    ));
    let single_time = single_start.elapsed();

    let diffs = differences(&single.join("results"), &array.join("results"), 11);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    assert!(temp_files(&array.join("results")).is_empty());
    drop(cluster);
    eprintln!(
        "slurm test: cluster up in {:.1} s, job array + report {:.1} s, single process {:.1} s, \
         total {:.1} s",
        cluster_up.as_secs_f64(),
        jobs.as_secs_f64(),
        single_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
