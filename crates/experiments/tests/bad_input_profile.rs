//! The bad-input catalogue, profiles: a bad value that a profile's overrides put into a
//! valid config is refused by the real `specreg train` when it reads the config, with one
//! message naming the config, the dotted key, what is wrong and the profile's override
//! table that set it; a malformed profile is refused naming the profile's file and key. The
//! results folder, which already holds a finished run, is left untouched byte for byte.

mod bad_input;
mod common;

use bad_input::{BASE, Fixture, missing_words, report};

/// Where a message must point.
#[derive(Clone, Copy)]
enum Blame {
    /// `<config>: <key>: … (set by [overrides.<table>] of profile <profile>)`.
    Override(&'static str),
    /// `<config>: <key>: …`, without a note: the profile set another key.
    Config,
    /// `<profile>: <key>: …`: the profile itself is malformed.
    Profile,
}

/// A profile (configs/profiles/*.toml format) applied to the valid `BASE`.
struct Case {
    name: &'static str,
    profile: &'static str,
    key: &'static str,
    blame: Blame,
    words: &'static [&'static str],
}

const fn case(
    name: &'static str,
    profile: &'static str,
    key: &'static str,
    blame: Blame,
    words: &'static [&'static str],
) -> Case {
    Case {
        name,
        profile,
        key,
        blame,
        words,
    }
}

use Blame::{Config, Override, Profile};

const CASES: &[Case] = &[
    case(
        "lr = 0 for every config",
        "[overrides.all.train]\nlr = 0.0",
        "train.lr",
        Override("all.train"),
        &["must be in (0, 1], got 0"],
    ),
    case(
        "negative lr for experiment 1",
        "[overrides.exp1.train]\nlr = -0.5",
        "train.lr",
        Override("exp1.train"),
        &["must be in (0, 1], got -0.5"],
    ),
    case(
        "0 epochs",
        "[overrides.all.train]\nepochs = 0",
        "train.epochs",
        Override("all.train"),
        &["must be at least 1, got 0"],
    ),
    case(
        "batch 0 for the shallow network",
        "[overrides.shallow.train]\nbatch_size = 0",
        "train.batch_size",
        Override("shallow.train"),
        &["must be at least 2, got 0"],
    ),
    case(
        "the network's table wins over `all`",
        "[overrides.all.train]\nbatch_size = 100\n[overrides.shallow.train]\nbatch_size = 1",
        "train.batch_size",
        Override("shallow.train"),
        &["must be at least 2, got 1"],
    ),
    case(
        "batch larger than the config's subset",
        "[overrides.all.train]\nbatch_size = 501",
        "train.batch_size",
        Override("all.train"),
        &["(501) is larger than the 500 training images of train.train_subset"],
    ),
    case(
        "subset smaller than the config's batch",
        "[overrides.all.train]\ntrain_subset = 100",
        "train.batch_size",
        Config,
        &["(250) is larger than the 100 training images of train.train_subset"],
    ),
    case(
        "τ = width",
        "[overrides.all.spectral]\ntau = 2000",
        "spectral.tau",
        Override("all.spectral"),
        &["(2000) must be < width of hidden (2000)"],
    ),
    case(
        "β < 0",
        "[overrides.all.spectral]\nbeta = -2.0",
        "spectral.beta",
        Override("all.spectral"),
        &["beta must be finite and ≥ 0, got -2"],
    ),
    case(
        "FGSM ε above 1",
        "[overrides.all.eval]\nfgsm_eps = [0.0, 1.5]",
        "eval.fgsm_eps",
        Override("all.eval"),
        &["values must be in [0, 1], got 1.5"],
    ),
    case(
        "strong-attack ε below 0",
        "[overrides.all.eval]\nstrong_eps = [-0.1]",
        "eval.strong_eps",
        Override("all.eval"),
        &["values must be in [0, 1], got -0.1"],
    ),
    case(
        "σ below 0",
        "[overrides.all.eval]\nnoise_sigma = [-1.0]",
        "eval.noise_sigma",
        Override("all.eval"),
        &["values must be finite and ≥ 0, got -1"],
    ),
    case(
        "empty PGD grid",
        "[overrides.all.eval]\npgd_eps = []",
        "eval.pgd_eps",
        Override("all.eval"),
        &["must list at least one value"],
    ),
    case(
        "duplicate seeds",
        "[overrides.all]\nseeds = [4, 4]",
        "seeds",
        Override("all"),
        &["seed 4 is listed twice"],
    ),
    case(
        "empty seed list",
        "[overrides.exp1]\nseeds = []",
        "seeds",
        Override("exp1"),
        &["must list at least one seed"],
    ),
    case(
        "unknown key in an override",
        "[overrides.all.train]\nepochz = 1",
        "train.epochz",
        Override("all.train"),
        &["unknown field `epochz`", "`epochs`"],
    ),
    case(
        "unknown top-level key in an override",
        "[overrides.all]\ncolour = 1",
        "colour",
        Override("all"),
        &["unknown field `colour`"],
    ),
    case(
        "wrong type in an override",
        "[overrides.all.train]\nlr = \"fast\"",
        "train.lr",
        Override("all.train"),
        &["invalid type: string \"fast\"", "expected f64"],
    ),
    case(
        "unknown override table",
        "[overrides.mpl.train]\nlr = 0.1",
        "overrides.mpl",
        Profile,
        &["unknown field `mpl`", "`mlp`"],
    ),
    case(
        "unknown profile key",
        "colour = 1",
        "colour",
        Profile,
        &["unknown field `colour`", "`include`"],
    ),
    case(
        "include as a string",
        "include = \"*\"",
        "include",
        Profile,
        &["invalid type: string \"*\"", "expected a sequence"],
    ),
];

/// The profile file of `c`: `include = ["*"]` and its text, unless the text has its own
/// `include`.
fn profile_text(c: &Case) -> String {
    if c.profile.starts_with("include") {
        format!("{}\n", c.profile)
    } else {
        format!(
            "description = \"bad-input catalogue\"\ninclude = [\"*\"]\n{}\n",
            c.profile
        )
    }
}

/// Checks the error line of case `c` against the config and profile files it names.
fn check(c: &Case, line: &str, config: &str, profile: &str) -> Option<String> {
    let origin = match c.blame {
        Profile => profile,
        Override(_) | Config => config,
    };
    let prefix = format!("error: {origin}: {}: ", c.key);
    if !line.starts_with(&prefix) {
        return Some(format!("{}: expected {prefix:?}…, got {line:?}", c.name));
    }
    let note = " (set by [overrides.";
    match c.blame {
        Override(table) => {
            let tail = format!("(set by [overrides.{table}] of profile {profile})");
            if !line.ends_with(&tail) {
                return Some(format!("{}: {line:?} does not end in {tail:?}", c.name));
            }
        }
        Config | Profile if line.contains(note) => {
            return Some(format!("{}: {line:?} blames an override", c.name));
        }
        Config | Profile => {}
    }
    let missing = missing_words(line, c.words);
    (!missing.is_empty()).then(|| format!("{}: {line:?} lacks {}", c.name, missing.join(", ")))
}

/// `specreg train --config BASE --profile FILE` with each case's profile file.
#[test]
fn bad_profile_overrides_are_refused_naming_the_override() {
    let fixture = Fixture::new();
    let config = fixture.write("base.toml", BASE);
    let profiles: Vec<_> = CASES
        .iter()
        .enumerate()
        .map(|(i, c)| fixture.write(&format!("profile-{i}.toml"), &profile_text(c)))
        .collect();
    let before = fixture.snapshot();
    let mut failures = Vec::new();
    for (c, profile) in CASES.iter().zip(&profiles) {
        let args = [
            "train".into(),
            "--config".into(),
            config.display().to_string(),
            "--profile".into(),
            profile.display().to_string(),
        ];
        match fixture.refuse(&args, false, &before) {
            Err(e) => failures.push(format!("{}: {e}", c.name)),
            Ok(line) => failures.extend(check(
                c,
                &line,
                &config.display().to_string(),
                &profile.display().to_string(),
            )),
        }
    }
    report(&failures, CASES.len());
}

/// The same through a configs folder and a profile given by name: the sweep's route, where
/// the profile's `include` picks the configs and its file is `<configs>/profiles/<name>`.
#[test]
fn bad_overrides_of_a_named_profile_are_refused() {
    let fixture = Fixture::new();
    let configs = fixture.root().join("inputs/configs");
    let config = fixture.write("configs/exp1/bad-input.toml", BASE);
    let picked: Vec<&Case> = CASES
        .iter()
        .filter(|c| matches!(c.blame, Override(_)))
        .take(4)
        .collect();
    for (i, c) in picked.iter().enumerate() {
        let text = profile_text(c).replace("[\"*\"]", "[\"exp1/bad-input\"]");
        fixture.write(&format!("configs/profiles/bad-{i}.toml"), &text);
    }
    let before = fixture.snapshot();
    let mut failures = Vec::new();
    for (i, c) in picked.iter().enumerate() {
        let args = [
            "train".into(),
            "--configs".into(),
            configs.display().to_string(),
            "--profile".into(),
            format!("bad-{i}"),
        ];
        let profile = configs.join(format!("profiles/bad-{i}.toml"));
        match fixture.refuse(&args, false, &before) {
            Err(e) => failures.push(format!("{}: {e}", c.name)),
            Ok(line) => failures.extend(check(
                c,
                &line,
                &config.display().to_string(),
                &profile.display().to_string(),
            )),
        }
    }
    assert_eq!(picked.len(), 4);
    report(&failures, picked.len());
}
