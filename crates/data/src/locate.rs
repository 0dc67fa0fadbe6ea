//! Finding the directory that holds a dataset.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::error::{DataError, SearchedDir};
use super::kind::{DataFile, DatasetKind};

/// Environment variable naming the MNIST directory (the four files directly inside), or a
/// root holding `mnist/` and `fashion-mnist/` subdirectories.
pub const DATA_ENV: &str = "SPECREG_DATA";

/// Environment variable naming the Fashion-MNIST directory (the four files directly inside).
pub const FASHION_DATA_ENV: &str = "SPECREG_FASHION_DATA";

/// Per-user cache directory of `kind`: `$XDG_CACHE_HOME/specreg/<kind>` if `XDG_CACHE_HOME`
/// is an absolute path, else `$HOME/.cache/specreg/<kind>`; `None` if neither is set.
/// `<kind>` is [`DatasetKind::dir_name`].
pub fn cache_dir(kind: DatasetKind) -> Option<PathBuf> {
    cache_dir_with(kind, &env)
}

/// Every directory [`locate`] would examine, in order, without examining them:
///
/// 1. `explicit`, if given: then it is the only candidate;
/// 2. `$SPECREG_FASHION_DATA` (Fashion-MNIST only);
/// 3. `$SPECREG_DATA` itself (MNIST only), then `$SPECREG_DATA/<kind>`;
/// 4. the per-user [`cache_dir`];
/// 5. system directories ([`DatasetKind::system_dirs`], e.g. Debian's
///    `/usr/share/datasets/fashion-mnist` for Fashion-MNIST).
///
/// Unset or empty variables are skipped.
pub fn candidate_dirs(kind: DatasetKind, explicit: Option<&Path>) -> Vec<(PathBuf, &'static str)> {
    candidates_with(kind, explicit, &env)
}

/// Returns the first candidate directory (see [`candidate_dirs`]) that holds all four files
/// of `kind`, each as `<stem>` or `<stem>.gz`.
///
/// An explicit path is authoritative: if it lacks the files, the search stops there.
///
/// # Errors
/// [`DataError::NotFound`], whose message lists every directory examined, what was missing
/// there, and where to put the files.
pub fn locate(kind: DatasetKind, explicit: Option<&Path>) -> Result<PathBuf, DataError> {
    locate_in(kind, candidate_dirs(kind, explicit))
}

/// Whether `dir` holds all four files of a dataset (raw or `.gz`).
pub fn has_dataset(dir: &Path) -> bool {
    DataFile::ALL.iter().all(|f| f.find_in(dir).is_some())
}

pub(crate) fn env(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// Reads an environment variable (unset and empty alike give `None`); injectable for tests.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

pub(crate) fn cache_dir_with(kind: DatasetKind, env: Env<'_>) -> Option<PathBuf> {
    let xdg = env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("specreg").join(kind.dir_name()))
}

pub(crate) fn candidates_with(
    kind: DatasetKind,
    explicit: Option<&Path>,
    env: Env<'_>,
) -> Vec<(PathBuf, &'static str)> {
    if let Some(dir) = explicit {
        return vec![(dir.to_path_buf(), "explicit path")];
    }
    let mut out = Vec::new();
    if kind == DatasetKind::FashionMnist
        && let Some(d) = env(FASHION_DATA_ENV)
    {
        out.push((PathBuf::from(d), "$SPECREG_FASHION_DATA"));
    }
    if let Some(d) = env(DATA_ENV).map(PathBuf::from) {
        if kind == DatasetKind::Mnist {
            out.push((d.clone(), "$SPECREG_DATA"));
        }
        out.push((d.join(kind.dir_name()), "$SPECREG_DATA subdirectory"));
    }
    if let Some(d) = cache_dir_with(kind, env) {
        out.push((d, "per-user cache"));
    }
    for d in kind.system_dirs() {
        out.push((PathBuf::from(d), "system dataset package"));
    }
    out
}

fn locate_in(
    kind: DatasetKind,
    candidates: Vec<(PathBuf, &'static str)>,
) -> Result<PathBuf, DataError> {
    search(candidates).map_err(|searched| DataError::NotFound { kind, searched })
}

/// The first candidate holding all four files, or what each candidate lacked.
pub(crate) fn search(
    candidates: Vec<(PathBuf, &'static str)>,
) -> Result<PathBuf, Vec<SearchedDir>> {
    let mut searched = Vec::with_capacity(candidates.len());
    for (dir, origin) in candidates {
        let missing: Vec<&'static str> = DataFile::ALL
            .iter()
            .filter(|f| f.find_in(&dir).is_none())
            .map(|f| f.stem())
            .collect();
        if missing.is_empty() {
            return Ok(dir);
        }
        let exists = dir.is_dir();
        searched.push(SearchedDir {
            dir,
            origin,
            exists,
            missing,
        });
    }
    Err(searched)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_env(
        vars: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<OsString> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    fn dirs(kind: DatasetKind, env: &dyn Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
        candidates_with(kind, None, env)
            .into_iter()
            .map(|(d, _)| d)
            .collect()
    }

    #[test]
    fn xdg_cache_wins_over_home_and_must_be_absolute() {
        let e = fake_env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(
            cache_dir_with(DatasetKind::Mnist, &e),
            Some("/x/specreg/mnist".into())
        );
        let e = fake_env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")]);
        assert_eq!(
            cache_dir_with(DatasetKind::FashionMnist, &e),
            Some("/h/.cache/specreg/fashion-mnist".into())
        );
        assert_eq!(cache_dir_with(DatasetKind::Mnist, &fake_env(&[])), None);
    }

    #[test]
    fn search_order() {
        let e = fake_env(&[("SPECREG_DATA", "/d"), ("HOME", "/h")]);
        assert_eq!(
            dirs(DatasetKind::Mnist, &e),
            [
                PathBuf::from("/d"),
                "/d/mnist".into(),
                "/h/.cache/specreg/mnist".into()
            ]
        );
        let e = fake_env(&[("SPECREG_DATA", "/d"), ("SPECREG_FASHION_DATA", "/f")]);
        assert_eq!(
            dirs(DatasetKind::FashionMnist, &e),
            [
                PathBuf::from("/f"),
                "/d/fashion-mnist".into(),
                "/usr/share/datasets/fashion-mnist".into()
            ]
        );
    }

    #[test]
    fn explicit_is_authoritative() {
        let e = fake_env(&[("SPECREG_DATA", "/d")]);
        let c = candidates_with(DatasetKind::Mnist, Some(Path::new("/e")), &e);
        assert_eq!(c, [(PathBuf::from("/e"), "explicit path")]);
    }

    #[test]
    fn not_found_lists_every_place() {
        let c = vec![
            (PathBuf::from("/nonexistent/specreg-a"), "explicit path"),
            (PathBuf::from("/nonexistent/specreg-b"), "per-user cache"),
        ];
        let err = locate_in(DatasetKind::Mnist, c).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/nonexistent/specreg-a (explicit path)"),
            "{msg}"
        );
        assert!(
            msg.contains("/nonexistent/specreg-b (per-user cache)"),
            "{msg}"
        );
        assert!(msg.contains("t10k-labels-idx1-ubyte"), "{msg}");
        assert!(msg.contains("download"), "{msg}");
        match err {
            DataError::NotFound { searched, .. } => {
                assert_eq!(searched.len(), 2);
                assert!(!searched[0].exists);
            }
            other => panic!("{other:?}"),
        }
    }
}
