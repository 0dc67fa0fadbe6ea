//! MNIST for tests, found when the tests are *built*, the way the `specreg` binary finds it,
//! so that a missing dataset shows up in cargo's summary as ignored tests (with a reason, and
//! a build warning naming every place searched) instead of tests that pass having checked
//! nothing.
//!
//! # Using it in a crate
//!
//! 1. In `Cargo.toml`, `specreg-data` under `[build-dependencies]`; `build.rs`'s `main` is
//!
//!    ```no_run
//!    specreg_data::testing::build_script(specreg_data::testing::Fetch::LocateOnly);
//!    ```
//!
//!    The build script searches like [`locate`](crate::locate) with no explicit path: the
//!    directory in `$SPECREG_DATA` (and its `mnist/`), the per-user cache
//!    ([`cache_dir`](crate::cache_dir)), the system package directories. If MNIST is there,
//!    the crate is compiled with the variable `SPECREG_TEST_MNIST` naming the directory;
//!    if not, with the cfg `specreg_no_mnist`, and cargo prints a warning saying where it
//!    looked. specreg-data's own build script runs before those of the crates that depend
//!    on it and uses [`Fetch::Download`]: when MNIST is nowhere, it downloads it
//!    (digest-checked, with [`DownloadTimeouts::brief`](crate::DownloadTimeouts::brief))
//!    into the per-user cache, unless `SPECREG_OFFLINE` (or `CARGO_NET_OFFLINE`) is set.
//!    The search runs again when one of those variables, `XDG_CACHE_HOME` or `HOME`
//!    changes, or when a directory it examined (the cache included) changes.
//! 2. Each test that needs MNIST:
//!
//!    ```text
//!    #[test]
//!    #[cfg_attr(specreg_no_mnist, ignore = "MNIST not found at build time (see the cargo warning): set SPECREG_DATA")]
//!    fn trains_on_mnist() {
//!        let dir = specreg_data::test_mnist_dir!();
//!        let mnist = specreg_data::Mnist::load(&dir).unwrap();
//!        // ...
//!    }
//!    ```
//!
//!    [`test_mnist_dir!`](crate::test_mnist_dir) panics with a clear message if the test
//!    runs although MNIST was not found (`--ignored`), or if the directory found at build
//!    time no longer holds the files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::error::{DataError, SearchedDir};
use super::kind::DatasetKind;
use super::locate::{Env, cache_dir_with, candidates_with, env, has_dataset, search};

/// Compile-time variable naming the MNIST directory the build script found.
pub const MNIST_DIR_ENV: &str = "SPECREG_TEST_MNIST";

/// Compile-time variable holding the build script's account of a failed search.
pub const MNIST_MISSING_ENV: &str = "SPECREG_TEST_MNIST_MISSING";

/// The cfg set when MNIST was not found; tests use it in `#[cfg_attr(.., ignore = "..")]`.
pub const NO_MNIST_CFG: &str = "specreg_no_mnist";

/// Environment variable that, set to anything but `0`, `false` or `no`, forbids the
/// build-time download.
pub const OFFLINE_ENV: &str = "SPECREG_OFFLINE";

/// Cargo's own offline switch, honoured the same way.
const CARGO_OFFLINE_ENV: &str = "CARGO_NET_OFFLINE";

/// Every variable the search depends on.
const WATCHED_ENV: [&str; 5] = [
    super::DATA_ENV,
    "XDG_CACHE_HOME",
    "HOME",
    OFFLINE_ENV,
    CARGO_OFFLINE_ENV,
];

/// Downloads MNIST into the directory given, returning it or a one-line error.
type Fetcher<'a> = &'a dyn Fn(&Path) -> Result<PathBuf, String>;

/// Whether a build script may download MNIST when it is nowhere on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// Download it into the per-user cache (specreg-data's own build script).
    Download,
    /// Only search; the download is left to specreg-data's build script, which runs first.
    LocateOnly,
}

/// What became of the build-time download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadOutcome {
    /// MNIST was already on disk.
    NotNeeded,
    /// Not attempted, for the reason given.
    Skipped(String),
    /// Downloaded and digest-checked into this directory.
    Fetched(PathBuf),
    /// Attempted and failed, with this (one-line) error.
    Failed(String),
}

/// The result of the build-time search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildProbe {
    /// The directory holding the four files, if any.
    pub found: Option<PathBuf>,
    /// The directories examined that lacked files, in search order.
    pub searched: Vec<SearchedDir>,
    /// What became of the download.
    pub download: DownloadOutcome,
    /// Directories whose changes must re-run the search (each exists).
    pub watch: Vec<PathBuf>,
}

/// Searches for MNIST in this process's environment (a build script's) and, with
/// [`Fetch::Download`], downloads it into the per-user cache if it is nowhere; see the
/// [module documentation](self).
pub fn probe(fetch: Fetch) -> BuildProbe {
    let download = match fetch {
        Fetch::Download => Some(&default_download as Fetcher<'_>),
        Fetch::LocateOnly => None,
    };
    probe_with(&env, download)
}

/// Prints the cargo directives of [`probe`]`(fetch)`: the whole of a build script.
pub fn build_script(fetch: Fetch) {
    for line in directives(&probe(fetch)) {
        println!("{line}");
    }
}

/// The cargo build-script directives for `probe`: the `specreg_no_mnist` cfg declaration,
/// what to re-run on, then either `SPECREG_TEST_MNIST=<dir>` or the cfg, the
/// `SPECREG_TEST_MNIST_MISSING` account and a warning.
pub fn directives(probe: &BuildProbe) -> Vec<String> {
    let mut out = vec![format!("cargo::rustc-check-cfg=cfg({NO_MNIST_CFG})")];
    out.extend(
        WATCHED_ENV
            .iter()
            .map(|v| format!("cargo::rerun-if-env-changed={v}")),
    );
    out.extend(
        probe
            .watch
            .iter()
            .filter_map(|d| directive_value(d))
            .map(|d| format!("cargo::rerun-if-changed={d}")),
    );
    if let DownloadOutcome::Fetched(dir) = &probe.download {
        out.push(format!(
            "cargo::warning=downloaded MNIST (md5-checked) into {} for the tests",
            dir.display()
        ));
    }
    let missing = match &probe.found {
        Some(dir) => match directive_value(dir) {
            Some(d) => {
                out.push(format!("cargo::rustc-env={MNIST_DIR_ENV}={d}"));
                return out;
            }
            None => format!(
                "MNIST is in {}, but that path cannot be handed to the tests (it is not \
                 UTF-8 or holds a line break): point ${} at a copy elsewhere",
                dir.display(),
                super::DATA_ENV
            ),
        },
        None => account(probe),
    };
    out.push(format!("cargo::rustc-cfg={NO_MNIST_CFG}"));
    out.push(format!("cargo::rustc-env={MNIST_MISSING_ENV}={missing}"));
    out.push(format!("cargo::warning={missing}"));
    out
}

/// The MNIST directory a test crate was built with, checked again now.
///
/// `built` and `missing` are the crate's compile-time `SPECREG_TEST_MNIST` and
/// `SPECREG_TEST_MNIST_MISSING`, as [`test_mnist_dir!`](crate::test_mnist_dir) passes them.
///
/// # Errors
/// [`DataError::TestDataNotFound`] if the build script found no MNIST (`missing` says where
/// it looked), [`DataError::TestDataGone`] if the directory it found no longer holds the
/// four files.
pub fn built_mnist_dir(built: Option<&str>, missing: Option<&str>) -> Result<PathBuf, DataError> {
    match built {
        Some(dir) if has_dataset(Path::new(dir)) => Ok(PathBuf::from(dir)),
        Some(dir) => Err(DataError::TestDataGone { dir: dir.into() }),
        None => Err(DataError::TestDataNotFound {
            searched: missing
                .unwrap_or(
                    "the crate has no build script calling specreg_data::testing::build_script",
                )
                .to_owned(),
        }),
    }
}

/// The MNIST directory found when the calling crate was built (see [`crate::testing`]);
/// panics, saying why, if there was none or it no longer holds the four files.
#[macro_export]
macro_rules! test_mnist_dir {
    () => {
        match $crate::testing::built_mnist_dir(
            ::core::option_env!("SPECREG_TEST_MNIST"),
            ::core::option_env!("SPECREG_TEST_MNIST_MISSING"),
        ) {
            ::core::result::Result::Ok(dir) => dir,
            ::core::result::Result::Err(e) => ::core::panic!("{e}"),
        }
    };
}

fn probe_with(env: Env<'_>, download: Option<Fetcher<'_>>) -> BuildProbe {
    let candidates = candidates_with(DatasetKind::Mnist, None, env);
    let mut watch: Vec<PathBuf> = Vec::new();
    for (dir, _) in &candidates {
        if dir.is_dir() && !watch.contains(dir) {
            watch.push(dir.clone());
        }
    }
    let searched = match search(candidates) {
        Ok(dir) => {
            return BuildProbe {
                found: Some(dir),
                searched: Vec::new(),
                download: DownloadOutcome::NotNeeded,
                watch,
            };
        }
        Err(searched) => searched,
    };
    let cache = cache_dir_with(DatasetKind::Mnist, env);
    let outcome = match (download, &cache) {
        (None, _) => DownloadOutcome::Skipped(
            "left to specreg-data's build script (see its warning)".to_owned(),
        ),
        (Some(_), None) => DownloadOutcome::Skipped(
            "there is no per-user cache to download into (neither $XDG_CACHE_HOME nor $HOME \
             is set)"
                .to_owned(),
        ),
        (Some(fetch), Some(cache)) => match refusal(env) {
            Some(why) => DownloadOutcome::Skipped(why),
            None => match fetch(cache) {
                Ok(dir) if has_dataset(&dir) => DownloadOutcome::Fetched(dir),
                Ok(dir) => DownloadOutcome::Failed(format!(
                    "the download reported success but {} lacks some of the four files",
                    dir.display()
                )),
                Err(e) => DownloadOutcome::Failed(e),
            },
        },
    };
    // Watch the cache even while it is empty (creating it is harmless: a download would),
    // so that MNIST arriving there later, by `specreg` or by hand, re-runs the search.
    if let Some(cache) = cache
        && std::fs::create_dir_all(&cache).is_ok()
        && !watch.contains(&cache)
    {
        watch.push(cache);
    }
    let found = match &outcome {
        DownloadOutcome::Fetched(dir) => Some(dir.clone()),
        _ => None,
    };
    BuildProbe {
        searched: if found.is_some() {
            Vec::new()
        } else {
            searched
        },
        found,
        download: outcome,
        watch,
    }
}

/// Why the download must not be attempted, if it must not.
fn refusal(env: Env<'_>) -> Option<String> {
    for var in [OFFLINE_ENV, CARGO_OFFLINE_ENV] {
        if let Some(value) = env(var) {
            let value = value.to_string_lossy().into_owned();
            if !matches!(value.trim(), "0" | "false" | "no") {
                return Some(format!("${var} is set ({value})"));
            }
        }
    }
    // A crate unpacked from a registry or a vendor directory (cargo writes Cargo.toml.orig
    // into every package) is a dependency of someone else's build: no downloads there.
    if let Some(dir) = env("CARGO_MANIFEST_DIR")
        && Path::new(&dir).join("Cargo.toml.orig").is_file()
    {
        return Some("the crate was built from a published package, not a checkout".to_owned());
    }
    None
}

#[cfg(feature = "download")]
fn default_download(dir: &Path) -> Result<PathBuf, String> {
    let kind = DatasetKind::Mnist;
    super::download::download_with(
        kind,
        dir,
        kind.mirrors(),
        super::download::DownloadTimeouts::brief(),
    )
    .map_err(|e| one_line(&e.to_string()))
}

#[cfg(not(feature = "download"))]
fn default_download(_dir: &Path) -> Result<PathBuf, String> {
    Err("specreg-data was built without its `download` feature".to_owned())
}

/// One line: where the build script looked and what became of the download, and what to do.
fn account(probe: &BuildProbe) -> String {
    let mut s = String::from("MNIST not found, so the tests that need it are ignored; looked in ");
    if probe.searched.is_empty() {
        s.push_str("nothing (no $SPECREG_DATA, no $XDG_CACHE_HOME or $HOME)");
    }
    for (i, d) in probe.searched.iter().enumerate() {
        let status = if !d.exists {
            "no such directory".to_owned()
        } else if d.missing.len() == super::kind::DataFile::ALL.len() {
            "none of the four files".to_owned()
        } else {
            format!("missing {}", d.missing.join(", "))
        };
        let sep = if i == 0 { "" } else { "; " };
        let _ = write!(s, "{sep}{} ({}): {status}", d.dir.display(), d.origin);
    }
    match &probe.download {
        DownloadOutcome::Skipped(why) => {
            let _ = write!(s, ". Download skipped: {why}");
        }
        DownloadOutcome::Failed(e) => {
            let _ = write!(s, ". Download failed: {}", e.trim_end_matches('.'));
        }
        DownloadOutcome::NotNeeded | DownloadOutcome::Fetched(_) => {}
    }
    let _ = write!(
        s,
        ". Set ${} to the folder of the four MNIST files (or put them in the per-user \
         cache), then build the tests again",
        super::DATA_ENV
    );
    s
}

/// `s` with its line breaks turned into `; ` (cargo directives are one line each).
#[cfg(feature = "download")]
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
        .replace(":; ", ": ")
}

/// `path` as a directive value, if it can be one.
fn directive_value(path: &Path) -> Option<&str> {
    path.to_str().filter(|s| !s.contains(['\n', '\r']))
}

#[cfg(test)]
mod tests;
