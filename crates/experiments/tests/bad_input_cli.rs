//! The bad-input catalogue, command line: unknown arguments and subcommands, bad values and
//! contradictory combinations are refused by the real `specreg` before it reads data or
//! writes anything, with one message naming the argument (both, for a contradiction) and
//! what is wrong; the results folder, which already holds a finished run, is left
//! untouched byte for byte.

mod bad_input;
mod common;

use bad_input::{BASE, Fixture, missing_words, report};

/// A command line; `{config}` stands for a valid config file, `{configs}` for a configs
/// folder holding it, `{missing}` for a path that does not exist. `--out` and `--data` are
/// added to every line.
struct Case {
    name: &'static str,
    args: &'static [&'static str],
    /// Words the one `error:` line must hold.
    words: &'static [&'static str],
}

const fn case(
    name: &'static str,
    args: &'static [&'static str],
    words: &'static [&'static str],
) -> Case {
    Case { name, args, words }
}

const CASES: &[Case] = &[
    // Unknown arguments and subcommands.
    case(
        "unknown argument",
        &["train", "--config", "{config}", "--bogus"],
        &["unexpected argument '--bogus'"],
    ),
    case(
        "unknown subcommand",
        &["frobnicate", "--config", "{config}"],
        &["unrecognized subcommand 'frobnicate'"],
    ),
    case(
        "an argument of another subcommand",
        &["train", "--config", "{config}", "--shards", "2"],
        &["unexpected argument '--shards'"],
    ),
    // Bad values.
    case(
        "shard K above N",
        &["train", "--config", "{config}", "--shard", "3/2"],
        &["'--shard <K/N>'", "\"3/2\"", "between 1 and 2"],
    ),
    case(
        "shard K = 0",
        &["train", "--config", "{config}", "--shard", "0/2"],
        &[
            "'--shard <K/N>'",
            "\"0/2\"",
            "between 1 and 2 (K is 1-based)",
        ],
    ),
    case(
        "no shards",
        &["train", "--config", "{config}", "--shard", "1/0"],
        &["'--shard <K/N>'", "N must be at least 1"],
    ),
    case(
        "shard not K/N",
        &["train", "--config", "{config}", "--shard", "two"],
        &["'--shard <K/N>'", "expected K/N"],
    ),
    case(
        "0 threads",
        &["train", "--config", "{config}", "--threads", "0"],
        &["'--threads <THREADS>'", "must be at least 1"],
    ),
    case(
        "threads not a number",
        &["train", "--config", "{config}", "--threads", "many"],
        &[
            "'--threads <THREADS>'",
            "expected a whole number of at least 1",
        ],
    ),
    case(
        "seed not a number",
        &["train", "--config", "{config}", "--seed", "x"],
        &["'--seed <SEED>'", "a seed is a whole number from 0"],
    ),
    case(
        "negative seed",
        &["train", "--config", "{config}", "--seed", "-1"],
        &[
            "invalid value '-1'",
            "'--seed <SEED>'",
            "a seed is a whole number",
        ],
    ),
    case(
        "seed above 2^64 - 1",
        &[
            "train",
            "--config",
            "{config}",
            "--seed",
            "18446744073709551616",
        ],
        &["'--seed <SEED>'", "18446744073709551615"],
    ),
    case(
        "unknown experiment",
        &["train", "--configs", "{configs}", "--only", "exp9"],
        &[
            "invalid value 'exp9'",
            "'--only <ONLY>'",
            "unknown experiment",
        ],
    ),
    case(
        "unknown experiment in a list",
        &["run", "--configs", "{configs}", "--only", "exp1,exp9"],
        &[
            "invalid value 'exp9'",
            "'--only <ONLY>'",
            "exp1, exp2 or exp3",
        ],
    ),
    case(
        "unknown device",
        &["train", "--config", "{config}", "--device", "tpu"],
        &[
            "invalid value 'tpu'",
            "'--device <DEVICE>'",
            "unknown device",
        ],
    ),
    case(
        "device without an ordinal",
        &["train", "--config", "{config}", "--device", "cuda:x"],
        &[
            "invalid value 'cuda:x'",
            "'--device <DEVICE>'",
            "cpu, cuda or cuda:N",
        ],
    ),
    case(
        "missing config file",
        &["train", "--config", "{missing}"],
        &["cannot read {missing}", "No such file"],
    ),
    case(
        "missing configs folder",
        &["run", "--configs", "{missing}"],
        &["cannot read {missing}", "No such file"],
    ),
    case(
        "unknown profile",
        &["train", "--config", "{config}", "--profile", "nosuch"],
        &["unknown profile \"nosuch\"", "nosuch.toml does not exist"],
    ),
    case(
        "0 array tasks",
        &["slurm", "--config", "{config}", "--shards", "0"],
        &["'--shards <SHARDS>'", "must be at least 1"],
    ),
    case(
        "negative hours per task",
        &["slurm", "--config", "{config}", "--hours-per-task", "-1"],
        &["--hours-per-task must be positive, got -1"],
    ),
    case(
        "0-minute time limit",
        &["slurm", "--config", "{config}", "--time", "0"],
        &["'--time <MINUTES>'", "must be at least 1"],
    ),
    // Contradictions: the message names both arguments.
    case(
        "--only with --config",
        &["train", "--config", "{config}", "--only", "exp1"],
        &[
            "'--config <FILE>'",
            "cannot be used with",
            "'--only <ONLY>'",
        ],
    ),
    case(
        "report --only with --config",
        &["report", "--config", "{config}", "--only", "exp1"],
        &[
            "'--config <FILE>'",
            "cannot be used with",
            "'--only <ONLY>'",
        ],
    ),
    case(
        "report --only without --profile",
        &["report", "--only", "exp1"],
        &["--only exp1 needs --profile"],
    ),
    case(
        "slurm --shards with --hours-per-task",
        &[
            "slurm",
            "--config",
            "{config}",
            "--shards",
            "2",
            "--hours-per-task",
            "1",
        ],
        &[
            "'--shards <SHARDS>'",
            "cannot be used with",
            "'--hours-per-task",
        ],
    ),
    case(
        "slurm with --shard",
        &["slurm", "--config", "{config}", "--shard", "1/2"],
        &["makes the shards itself (--shards N); drop --shard"],
    ),
];

#[test]
fn bad_and_contradictory_arguments_are_refused() {
    let fixture = Fixture::new();
    let config = fixture.write("configs/exp1/bad-input.toml", BASE);
    let configs = fixture.root().join("inputs/configs");
    let missing = fixture.root().join("inputs/missing/nothing.toml");
    let fill = |s: &str| {
        s.replace("{config}", &config.display().to_string())
            .replace("{configs}", &configs.display().to_string())
            .replace("{missing}", &missing.display().to_string())
    };
    let before = fixture.snapshot();
    let mut failures = Vec::new();
    for c in CASES {
        let args: Vec<String> = c.args.iter().map(|a| fill(a)).collect();
        let words: Vec<String> = c.words.iter().map(|w| fill(w)).collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        match fixture.refuse(&args, true, &before) {
            Err(e) => failures.push(format!("{}: {e}", c.name)),
            Ok(line) => {
                let missing = missing_words(&line, &words);
                if !missing.is_empty() {
                    failures.push(format!("{}: {line:?} lacks {}", c.name, missing.join(", ")));
                }
            }
        }
    }
    report(&failures, CASES.len());
}

/// The combinations that look contradictory but are not: a profile's overrides apply to
/// explicit `--config` files (only its `include` list is for the configs folder), so
/// `--profile` with `--config` is accepted; here `list` shows the profile's seed.
#[test]
fn a_profile_with_explicit_configs_is_accepted() {
    let fixture = Fixture::new();
    let config = fixture.write("base.toml", BASE);
    let profile = fixture.write(
        "seven.toml",
        "include = [\"exp2/*\"]\n[overrides.all]\nseeds = [7]\n",
    );
    let args: Vec<String> = [
        "list",
        "--config",
        &config.display().to_string(),
        "--profile",
        &profile.display().to_string(),
        "--out",
        &fixture.out.display().to_string(),
        "--threads",
        "1",
    ]
    .map(String::from)
    .to_vec();
    let o = bad_input::specreg(fixture.root(), &args).output().unwrap();
    assert!(o.status.success(), "{}", bad_input::text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("exp1/bad-input"))
        .unwrap_or_else(|| panic!("no row for exp1/bad-input:\n{stdout}"));
    assert_eq!(row.split_whitespace().nth(1), Some("7"), "{row}");
}
