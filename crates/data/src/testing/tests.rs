//! Unit tests of the test-data search.

use std::cell::RefCell;
use std::ffi::OsString;

use super::super::kind::DataFile;
use super::*;

/// A fresh, empty directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "specreg-testing-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the four file names (empty: only their presence is checked here).
fn fill(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in DataFile::ALL {
        std::fs::write(dir.join(format!("{}.gz", f.stem())), b"").unwrap();
    }
}

fn vars(pairs: Vec<(&'static str, OsString)>) -> impl Fn(&str) -> Option<OsString> {
    move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
}

fn has(lines: &[String], prefix: &str) -> bool {
    lines.iter().any(|l| l.starts_with(prefix))
}

#[test]
fn found_in_specreg_data_passes_the_directory() {
    let s = Scratch::new("found");
    let data = s.0.join("mnist-files");
    fill(&data);
    let env = vars(vec![
        ("SPECREG_DATA", data.clone().into()),
        ("XDG_CACHE_HOME", s.0.join("cache").into()),
    ]);
    let never = |_: &Path| -> Result<PathBuf, String> { panic!("no download needed") };
    let p = probe_with(&env, Some(&never));
    assert_eq!(p.found.as_deref(), Some(data.as_path()));
    assert_eq!(p.download, DownloadOutcome::NotNeeded);
    assert_eq!(p.watch, std::slice::from_ref(&data));
    let lines = directives(&p);
    let dir = data.to_str().unwrap();
    assert!(lines.contains(&format!("cargo::rustc-env=SPECREG_TEST_MNIST={dir}")));
    assert!(lines.contains(&format!("cargo::rerun-if-changed={dir}")));
    assert!(lines.contains(&"cargo::rerun-if-env-changed=SPECREG_DATA".to_owned()));
    assert!(lines.contains(&"cargo::rustc-check-cfg=cfg(specreg_no_mnist)".to_owned()));
    assert!(!has(&lines, "cargo::rustc-cfg="), "{lines:?}");
    assert!(!has(&lines, "cargo::warning="), "{lines:?}");
    assert!(
        !s.0.join("cache").exists(),
        "no cache created when not needed"
    );
}

#[test]
fn offline_skips_the_download_and_says_where_it_looked() {
    let s = Scratch::new("offline");
    let cache_root = s.0.join("cache");
    let env = vars(vec![
        ("SPECREG_DATA", s.0.join("absent").into()),
        ("XDG_CACHE_HOME", cache_root.clone().into()),
        ("SPECREG_OFFLINE", "1".into()),
    ]);
    let never = |_: &Path| -> Result<PathBuf, String> { panic!("offline: no download") };
    let p = probe_with(&env, Some(&never));
    assert_eq!(p.found, None);
    assert!(matches!(&p.download, DownloadOutcome::Skipped(w) if w.contains("SPECREG_OFFLINE")));
    let cache = cache_root.join("specreg/mnist");
    assert!(
        cache.is_dir(),
        "the cache is created so that it can be watched"
    );
    assert_eq!(p.watch, std::slice::from_ref(&cache));
    let lines = directives(&p);
    assert!(lines.contains(&"cargo::rustc-cfg=specreg_no_mnist".to_owned()));
    let warning = lines
        .iter()
        .find_map(|l| l.strip_prefix("cargo::warning="))
        .expect("a warning");
    assert!(
        warning.contains(&s.0.join("absent").display().to_string()),
        "{warning}"
    );
    assert!(warning.contains("no such directory"), "{warning}");
    assert!(warning.contains(&cache.display().to_string()), "{warning}");
    assert!(warning.contains("$SPECREG_OFFLINE is set (1)"), "{warning}");
    assert!(lines.contains(&format!(
        "cargo::rustc-env=SPECREG_TEST_MNIST_MISSING={warning}"
    )));
    assert!(
        !has(&lines, "cargo::rustc-env=SPECREG_TEST_MNIST="),
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| !l.contains('\n')));
}

#[test]
fn a_zero_offline_value_allows_the_download_which_fills_the_cache() {
    let s = Scratch::new("fetch");
    let env = vars(vec![
        ("HOME", s.0.clone().into()),
        ("SPECREG_OFFLINE", "0".into()),
    ]);
    let asked = RefCell::new(Vec::new());
    let fetch = |dir: &Path| -> Result<PathBuf, String> {
        asked.borrow_mut().push(dir.to_path_buf());
        fill(dir);
        Ok(dir.to_path_buf())
    };
    let p = probe_with(&env, Some(&fetch));
    let cache = s.0.join(".cache/specreg/mnist");
    assert_eq!(*asked.borrow(), std::slice::from_ref(&cache));
    assert_eq!(p.found.as_deref(), Some(cache.as_path()));
    assert_eq!(p.download, DownloadOutcome::Fetched(cache.clone()));
    let lines = directives(&p);
    assert!(has(&lines, "cargo::warning=downloaded MNIST"), "{lines:?}");
    assert!(
        has(&lines, "cargo::rustc-env=SPECREG_TEST_MNIST="),
        "{lines:?}"
    );
    assert!(!has(&lines, "cargo::rustc-cfg="), "{lines:?}");
}

#[test]
fn a_failed_download_is_reported_on_one_line() {
    let s = Scratch::new("fail");
    let env = vars(vec![("XDG_CACHE_HOME", s.0.clone().into())]);
    let fetch = |_: &Path| -> Result<PathBuf, String> {
        Err(one_line(
            "could not download; tried:\n  https://x/y.gz: dns failed.\n",
        ))
    };
    let p = probe_with(&env, Some(&fetch));
    assert_eq!(p.found, None);
    let lines = directives(&p);
    let warning = lines
        .iter()
        .find_map(|l| l.strip_prefix("cargo::warning="))
        .unwrap();
    assert!(
        warning.contains(
            "Download failed: could not download; tried: https://x/y.gz: dns failed. Set"
        ),
        "{warning}"
    );
    assert!(has(&lines, "cargo::rustc-cfg=specreg_no_mnist"));
}

#[test]
fn a_partial_folder_lists_what_it_lacks() {
    let s = Scratch::new("partial");
    std::fs::write(s.0.join("train-images-idx3-ubyte.gz"), b"").unwrap();
    let env = vars(vec![("SPECREG_DATA", s.0.clone().into())]);
    let p = probe_with(&env, None);
    let warning = account(&p);
    assert!(
        warning.contains(
            "($SPECREG_DATA): missing train-labels-idx1-ubyte, t10k-images-idx3-ubyte, \
             t10k-labels-idx1-ubyte"
        ),
        "{warning}"
    );
    assert_eq!(p.watch, std::slice::from_ref(&s.0));
}

#[test]
fn locate_only_never_downloads() {
    let s = Scratch::new("locate-only");
    let env = vars(vec![("XDG_CACHE_HOME", s.0.clone().into())]);
    let p = probe_with(&env, None);
    assert!(matches!(&p.download, DownloadOutcome::Skipped(w) if w.contains("specreg-data")));
    assert_eq!(p.found, None);
}

#[test]
fn a_packaged_crate_does_not_download() {
    let s = Scratch::new("packaged");
    std::fs::write(s.0.join("Cargo.toml.orig"), b"").unwrap();
    let env = vars(vec![
        ("XDG_CACHE_HOME", s.0.join("cache").into()),
        ("CARGO_MANIFEST_DIR", s.0.clone().into()),
    ]);
    let never = |_: &Path| -> Result<PathBuf, String> { panic!("packaged: no download") };
    let p = probe_with(&env, Some(&never));
    assert!(matches!(&p.download, DownloadOutcome::Skipped(w) if w.contains("published package")));
}

#[test]
fn the_runtime_check_names_what_is_wrong() {
    let s = Scratch::new("runtime");
    fill(&s.0);
    let dir = s.0.to_str().unwrap();
    assert_eq!(built_mnist_dir(Some(dir), None).unwrap(), s.0);

    let gone = s.0.join("gone");
    let err = built_mnist_dir(gone.to_str(), None).unwrap_err();
    assert!(matches!(&err, DataError::TestDataGone { dir } if *dir == gone));
    assert!(err.to_string().contains("no longer holds"), "{err}");

    let err = built_mnist_dir(None, Some("looked in /x (per-user cache)")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("was built without it"), "{msg}");
    assert!(msg.contains("looked in /x (per-user cache)"), "{msg}");
    let err = built_mnist_dir(None, None).unwrap_err();
    assert!(err.to_string().contains("no build script"), "{err}");
}
