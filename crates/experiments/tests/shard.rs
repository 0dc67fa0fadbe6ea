//! `--shard K/N`: shards run at the same time into one results folder, `specreg report`
//! names what is missing until the last shard is done, and the merged results equal a
//! single-process run's byte for byte apart from timing fields (see `common`).

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;

use common::{configs, differences, mnist, ok, specreg, temp_files};
use specreg_experiments::Profile;
use specreg_experiments::cost::reference_cost;
use specreg_experiments::shard::{Shard, shard_configs};
use specreg_experiments::sweep::Selection;

/// The smoke profile's experiment 2 (five runs, the CNN among them): every kind of network
/// and regulariser the sweep shards, in under a minute per pass.
const SWEEP: &[&str] = &["--profile", "smoke", "--only", "exp2", "--threads", "1"];

#[test]
#[cfg_attr(
    specreg_no_mnist,
    ignore = "MNIST not found at build time (see the cargo warning): set SPECREG_DATA"
)]
fn concurrent_shards_merge_into_the_single_process_results() {
    let data = mnist();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let (single, sharded) = (tmp.path().join("single"), tmp.path().join("sharded"));
    for d in [&single, &sharded] {
        std::fs::create_dir_all(d).unwrap();
    }
    let configs = configs();
    let common: Vec<&str> = [
        SWEEP,
        &[
            "--configs",
            configs.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            "results",
        ],
    ]
    .concat();
    let args = |cmd: &str, extra: &[&'static str]| -> Vec<String> {
        let mut v = vec![cmd.to_string()];
        v.extend(common.iter().map(|s| s.to_string()));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |cwd: &std::path::Path, cmd: &str, extra: &[&'static str]| {
        let a = args(cmd, extra);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        specreg(cwd, &cache, &refs)
    };

    // `list` prices every run before anything ran (and warms the calibration cache).
    let listed =
        |cwd: &std::path::Path| String::from_utf8(ok(&mut run(cwd, "list", &[])).stdout).unwrap();
    let before = listed(&sharded);
    let rows: Vec<&str> = before.lines().filter(|l| l.starts_with("exp2/")).collect();
    assert_eq!(rows.len(), 5, "{before}");
    for row in &rows {
        let estimate = row.split_whitespace().rev().take(2).collect::<Vec<_>>();
        assert!(
            estimate[0] == "s" && estimate[1].parse::<f64>().is_ok_and(|v| v > 0.0),
            "no estimate in {row:?}"
        );
    }
    assert!(
        before.contains("total: 5 runs, 5 with work left, estimated"),
        "{before}"
    );

    ok(&mut run(&single, "run", &[]));

    // Shards 1 and 2 at the same time, into one folder.
    let first = run(&sharded, "run", &["--shard", "1/3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let second = ok(&mut run(&sharded, "run", &["--shard", "2/3"]));
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "shard 1/3 failed: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let stderr = String::from_utf8_lossy(&second.stderr).to_string();
    assert!(stderr.contains("shard 2/3"), "{stderr}");
    assert!(
        stderr.contains("estimated wall time on this machine"),
        "{stderr}"
    );
    assert!(
        !sharded.join("results/REPORT.md").exists(),
        "a shard wrote the report"
    );

    // The report merges what is there and names the runs of shard 3 as missing.
    let report = |cwd: &std::path::Path| {
        let a = [
            "report",
            "--profile",
            "smoke",
            "--only",
            "exp2",
            "--configs",
            configs.to_str().unwrap(),
            "--out",
            "results",
        ];
        String::from_utf8_lossy(&ok(&mut specreg(cwd, &cache, &a)).stderr).to_string()
    };
    let partial = report(&sharded);
    let sel = Selection {
        files: Vec::new(),
        configs_dir: configs.clone(),
        profile: Profile::load("smoke", &configs).unwrap(),
        only: vec![specreg_experiments::Experiment::Exp2],
        seed: None,
        device: None,
    };
    let all = sel.configs().unwrap();
    let third = shard_configs(&all, "3/3".parse().unwrap());
    assert!(!third.is_empty());
    let n_third: usize = third.iter().map(|c| c.seeds.len()).sum();
    assert!(
        partial.contains(&format!("holds {} of 5 expected runs", 5 - n_third)),
        "{partial}"
    );
    for c in &third {
        assert!(
            partial.contains(&format!("{} seed 0: new", c.id())),
            "{partial}"
        );
    }

    ok(&mut run(&sharded, "run", &["--shard", "3/3"]));
    let complete = report(&sharded);
    assert!(complete.contains("holds all 5 expected runs"), "{complete}");
    let after = listed(&sharded);
    assert!(after.contains("total: 5 runs, 0 with work left"), "{after}");

    let diffs = differences(&single.join("results"), &sharded.join("results"), 5);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    assert_eq!(
        temp_files(&sharded.join("results")),
        Vec::<std::path::PathBuf>::new()
    );

    // Each process kept its estimate against its measured time.
    for (dir, name) in [
        (&single, "timing.json"),
        (&sharded, "timing-shard-1-of-3.json"),
        (&sharded, "timing-shard-3-of-3.json"),
    ] {
        let t: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("results").join(name)).unwrap())
                .unwrap();
        assert!(
            t["estimated_seconds"].as_f64().unwrap() > 0.0,
            "{name}: {t}"
        );
        assert!(t["measured_seconds"].as_f64().unwrap() > 0.0, "{name}: {t}");
        assert!(t["relative_error"].is_f64(), "{name}: {t}");
    }
}

#[test]
fn paper_sweep_shards_are_a_balanced_partition() {
    let configs = configs();
    let sel = Selection {
        files: Vec::new(),
        configs_dir: configs.clone(),
        profile: Profile::paper(),
        only: Vec::new(),
        seed: None,
        device: None,
    };
    let all = sel.configs().unwrap();
    let runs: BTreeSet<(String, u64)> = all
        .iter()
        .flat_map(|c| c.seeds.iter().map(move |&s| (c.id(), s)))
        .collect();
    let biggest = all
        .iter()
        .map(|c| reference_cost(c).total())
        .fold(0.0, f64::max);
    for count in [1, 2, 3, 7, runs.len() + 2] {
        let mut seen = BTreeSet::new();
        let mut loads = Vec::new();
        for index in 1..=count {
            let part = shard_configs(&all, Shard::new(index, count).unwrap());
            let mut load = 0.0;
            for c in &part {
                load += c.seeds.len() as f64 * reference_cost(c).total();
                for &s in &c.seeds {
                    assert!(
                        seen.insert((c.id(), s)),
                        "{} seed {s} in two shards",
                        c.id()
                    );
                }
            }
            loads.push(load);
        }
        assert_eq!(seen, runs, "{count} shards do not cover the sweep");
        let max = loads.iter().cloned().fold(0.0, f64::max);
        let min = loads.iter().cloned().fold(f64::INFINITY, f64::min);
        if count <= runs.len() {
            assert!(max - min <= biggest, "{count} shards: {loads:?}");
        }
    }
}

#[test]
fn a_bad_shard_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs();
    let out = specreg(
        tmp.path(),
        &tmp.path().join("cache"),
        &[
            "list",
            "--profile",
            "smoke",
            "--configs",
            configs.to_str().unwrap(),
            "--shard",
            "4/3",
        ],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("4/3") && err.contains("between 1 and 3"),
        "{err}"
    );
}
