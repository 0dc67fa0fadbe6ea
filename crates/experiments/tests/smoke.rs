//! End to end on real MNIST: the `smoke` profile trains, evaluates and reports, and the
//! report, CSVs and figures exist and hold sane numbers.

mod common;

use std::path::Path;
use std::process::Command;

/// The data rows of a CSV with `#` comment lines, split on commas, and the comments.
fn csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let comments = text
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let rows = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    (comments, rows)
}

#[test]
#[cfg_attr(
    specreg_no_mnist,
    ignore = "MNIST not found at build time (see the cargo warning): set SPECREG_DATA"
)]
fn smoke_profile_end_to_end() {
    let data = common::mnist();
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("results");
    let status = Command::new(env!("CARGO_BIN_EXE_specreg"))
        .args(["run", "--profile", "smoke", "--quiet", "--threads", "2"])
        .arg("--configs")
        .arg(&configs)
        .arg("--out")
        .arg(&out)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );

    // Every run of the profile has its files, with provenance.
    let runs = [
        "exp1/vanilla",
        "exp1/specreg-b2",
        "exp2/mlp-vanilla",
        "exp2/mlp-whitened",
        "exp2/mlp-specreg-last-b2",
        "exp2/mlp-specreg-last-whitened-b2",
        "exp2/cnn-specreg-last-whitened-b2",
        "exp3/mlp-specreg-all-b2",
        "exp3/mlp-jacobian",
        "exp3/mlp-jacobian-eq11",
        "exp1/vanilla-no-bn",
    ];
    for run in runs {
        let dir = out.join(run).join("seed0");
        for f in [
            "config.toml",
            "metrics.jsonl",
            "model.safetensors",
            "robustness.csv",
            "spectrum.csv",
            "sensitivity.csv",
            "sensitivity.png",
            "summary.json",
        ] {
            assert!(dir.join(f).is_file(), "{run}: {f} missing");
        }
        let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
        assert!(
            config.contains("seed=0") && config.contains("threads=2"),
            "{config}"
        );
        let kernels = format!("cpu_kernels={}", specreg_tensor::linalg::cpu_kernels());
        assert!(config.contains(&kernels), "{config}");

        // Metrics: one finite epoch, accuracy a fraction.
        let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        let line: serde_json::Value =
            serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
        assert_eq!(line["epoch"], 1);
        assert_eq!(line["threads"], 2);
        assert!(line["loss"].as_f64().unwrap().is_finite());
        let test_acc = line["test_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&test_acc));
        if run.contains("specreg") {
            let err = line["eigen_error"].as_object().unwrap();
            assert!(
                !err.is_empty(),
                "{run}: no projected-vs-exact eigenvalue error"
            );
            for v in err.values() {
                assert!(v.as_f64().unwrap().is_finite());
            }
            assert!(!line["terms"].as_object().unwrap().is_empty());
        }

        // Robustness: FGSM, PGD, noise and the stronger attacks (plus the BatchNorm
        // batch-statistics curves for experiment 1's BN nets); clean accuracy above chance
        // for unwhitened networks;
        // accuracies are fractions and the ε = 0 point equals the clean accuracy.
        let (comments, rows) = csv(&dir.join("robustness.csv"));
        assert!(
            comments
                .iter()
                .any(|c| c.contains("PGD") && c.contains("5 steps"))
        );
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap())
                .unwrap();
        let clean = summary["clean_accuracy"].as_f64().unwrap();
        assert!(clean > 0.0 && clean <= 1.0);
        if !run.contains("whitened") {
            assert!(clean > 0.1, "{run}: clean accuracy {clean} is at chance");
        }
        let attacks: std::collections::BTreeSet<&str> =
            rows.iter().map(|r| r[0].as_str()).collect();
        let mut expected = vec!["apgd-ce", "apgd-dlr", "fgsm", "noise", "pgd", "pgd-cw"];
        if run.starts_with("exp1/") && !run.ends_with("no-bn") {
            expected.extend(["fgsm-bn-batch", "pgd-bn-batch"]);
            expected.sort();
        }
        assert_eq!(attacks.into_iter().collect::<Vec<_>>(), expected, "{run}");
        // Every number names its reading.
        let reading = &summary["reading"];
        assert!(
            reading["pgd_start"]
                .as_str()
                .unwrap()
                .starts_with("uniform random start")
        );
        assert!(
            reading["ranks"]
                .as_str()
                .unwrap()
                .contains("α fit over ranks 11–500")
        );
        if run.contains("whitened") {
            assert!(
                reading["whitening"]
                    .as_str()
                    .unwrap()
                    .starts_with("batch statistics")
            );
        }
        if run.ends_with("jacobian") {
            assert!(reading["jacobian"].as_str().unwrap().starts_with("logit"));
        }
        if run.ends_with("eq11") {
            assert!(
                reading["jacobian"]
                    .as_str()
                    .unwrap()
                    .starts_with("input-loss")
            );
        }
        // The zero-gradient count is recorded for every point.
        assert!(
            rows.iter()
                .all(|r| r.len() == 9 && r[8].parse::<usize>().is_ok())
        );
        for r in &rows {
            let acc: f64 = r[2].parse().unwrap();
            assert!((0.0..=1.0).contains(&acc), "{run}: {r:?}");
            if r[1] == "0" && r[0] != "noise" && !r[0].ends_with("bn-batch") {
                assert!(
                    (acc - clean).abs() < 1e-12,
                    "{run}: ε = 0 accuracy {acc} vs clean {clean}"
                );
            }
        }
        // PGD at ε = 0.2 is no weaker than the clean accuracy.
        let pgd02: f64 = rows
            .iter()
            .find(|r| r[0] == "pgd" && r[1] == "0.2")
            .unwrap()[2]
            .parse()
            .unwrap();
        assert!(pgd02 <= clean);

        // Spectra: positive leading eigenvalues, descending, normalised to sum 1.
        let (_, rows) = csv(&dir.join("spectrum.csv"));
        let layers: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        for layer in layers {
            let vals: Vec<f64> = rows
                .iter()
                .filter(|r| r[0] == layer)
                .map(|r| r[2].parse().unwrap())
                .collect();
            assert!(vals[0] > 0.0 && vals[9] > 0.0, "{run} {layer}");
            assert!(
                vals.windows(2).all(|w| w[0] >= w[1]),
                "{run} {layer}: not descending"
            );
            let sum: f64 = vals.iter().sum();
            assert!((sum - 1.0).abs() < 1e-9, "{run} {layer}: sums to {sum}");
        }
        let alpha = summary["spectra"].as_array().unwrap().last().unwrap()["alpha"]
            .as_f64()
            .unwrap();
        assert!(alpha > 0.0 && alpha < 10.0, "{run}: α = {alpha}");

        // Sensitivity maps: four ranks of 784 finite values, not all zero.
        let (_, rows) = csv(&dir.join("sensitivity.csv"));
        assert_eq!(rows.len(), 4);
        for r in &rows {
            assert_eq!(r.len(), 785);
            let v: Vec<f64> = r[1..].iter().map(|x| x.parse().unwrap()).collect();
            assert!(v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x != 0.0));
        }
        let png = std::fs::read(dir.join("sensitivity.png")).unwrap();
        assert_eq!(&png[..4], b"\x89PNG");
    }

    // The report: figures for each experiment and the claims table.
    let report = std::fs::read_to_string(out.join("REPORT.md")).unwrap();
    for needle in [
        "## Experiment 1",
        "## Experiment 2 (§4.2): MLP",
        "## Experiment 3 (§4.3): MLP",
        "## Claims of section 4",
    ] {
        assert!(report.contains(needle), "report lacks {needle:?}");
    }
    assert!(report.contains("SpecReg is more robust than vanilla under FGSM and PGD"));
    assert!(report.contains("whitening the 2nd layer makes the MLP less robust"));
    // One seed: every decided verdict is a preview, and each names its test.
    assert!(report.contains("preview (leans"), "no preview verdict");
    assert!(!report.contains("| **supported** |") && !report.contains("| **not supported** |"));
    assert!(report.contains("Welch t-test") && report.contains("TOST"));
    assert!(report.contains("BatchNorm does not affect the vanilla shallow net"));
    assert!(report.contains("selection uses the test set"));
    assert!(report.contains("Stronger attacks and attack-time BatchNorm"));
    assert!(report.contains("PGD random start"));
    for stem in [
        "exp1-shallow-spectrum",
        "exp1-shallow-fgsm",
        "exp1-shallow-pgd",
        "exp1-shallow-noise",
        "exp1-shallow-pgd-bn-batch",
        "exp2-mlp-pgd",
        "exp3-mlp-fgsm",
    ] {
        for ext in ["png", "svg"] {
            let f = out.join("figures").join(format!("{stem}.{ext}"));
            assert!(f.is_file(), "{} missing", f.display());
            assert!(report.contains(&format!("figures/{stem}.{ext}")));
        }
    }
    assert!(out.join("figures/exp2-mlp-sensitivity.png").is_file());
    let svg = std::fs::read_to_string(out.join("figures/exp1-shallow-pgd.svg")).unwrap();
    assert!(svg.contains("seeds=0") && svg.contains("threads=2"));

    // Running the same command again does no work and changes nothing.
    let model = out.join("exp1/vanilla/seed0/model.safetensors");
    let before = std::fs::read(&model).unwrap();
    let again = Command::new(env!("CARGO_BIN_EXE_specreg"))
        .args(["run", "--profile", "smoke", "--threads", "2"])
        .arg("--configs")
        .arg(&configs)
        .arg("--out")
        .arg(&out)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(again.status.success());
    let log = String::from_utf8_lossy(&again.stderr);
    assert!(
        log.contains("train: 0 done (0 resumed), 11 already done"),
        "{log}"
    );
    assert!(
        log.contains("eval: 0 done (0 resumed), 11 already done"),
        "{log}"
    );
    assert_eq!(std::fs::read(&model).unwrap(), before);
}
