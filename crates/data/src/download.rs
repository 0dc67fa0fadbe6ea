//! Fetching the dataset files from public mirrors (cargo feature `download`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::digest::{CheckOutcome, check_bytes, check_file};
use super::error::{DataError, DownloadAttempt};
use super::idx::is_gzip;
use super::kind::{DataFile, DatasetKind};
use super::locate::{cache_dir, locate};
use super::mnist::Mnist;

/// Largest response accepted (the biggest file, train images, is about 26 MiB as .gz and
/// 45 MiB raw).
const MAX_DOWNLOAD_BYTES: u64 = 256 << 20;

/// Downloads the four files of `kind` into `dir` from [`DatasetKind::mirrors`]; see
/// [`download_from`].
///
/// # Errors
/// As for [`download_from`].
pub fn download(kind: DatasetKind, dir: impl AsRef<Path>) -> Result<PathBuf, DataError> {
    download_from(kind, dir, kind.mirrors())
}

/// Downloads the four files of `kind` into `dir`, trying each base URL of `mirrors` in
/// order (`<base>/<stem>.gz`), and returns `dir`.
///
/// * Files already in `dir` (raw or `.gz`) whose digest checks are skipped.
/// * Each download is checked against the published md5 ([`DatasetKind::digest`]) before it
///   is written; a mismatch moves on to the next mirror.
/// * Files are written atomically: to a temporary file in `dir`, then renamed; nothing
///   half-written is left behind on failure. `dir` is created if needed.
///
/// # Errors
/// [`DataError::Download`] naming every URL tried and where to put the files by hand;
/// [`DataError::DigestMismatch`] if a file already present is corrupt (it is not
/// overwritten: delete it to re-fetch); [`DataError::Io`] if writing fails.
pub fn download_from(
    kind: DatasetKind,
    dir: impl AsRef<Path>,
    mirrors: &[&str],
) -> Result<PathBuf, DataError> {
    download_with(kind, dir, mirrors, DownloadTimeouts::default())
}

/// How long a download may take before it is abandoned (and the next mirror tried).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadTimeouts {
    /// Looking up the host name, and separately setting up the connection (TLS included).
    pub connect: Duration,
    /// One file, from the request to its last byte.
    pub per_file: Duration,
}

impl Default for DownloadTimeouts {
    /// 30 s to resolve and to connect, 10 minutes per file: patient, for interactive use.
    fn default() -> Self {
        DownloadTimeouts {
            connect: Duration::from_secs(30),
            per_file: Duration::from_secs(600),
        }
    }
}

impl DownloadTimeouts {
    /// 5 s to resolve and to connect, 90 s per file: for a build that must not hang on a
    /// machine without network (the largest file, 9.9 MB, then needs about 110 kB/s).
    pub fn brief() -> Self {
        DownloadTimeouts {
            connect: Duration::from_secs(5),
            per_file: Duration::from_secs(90),
        }
    }
}

/// [`download_from`] with explicit [`DownloadTimeouts`].
///
/// # Errors
/// As for [`download_from`]; a timeout is one failed attempt of [`DataError::Download`].
pub fn download_with(
    kind: DatasetKind,
    dir: impl AsRef<Path>,
    mirrors: &[&str],
    timeouts: DownloadTimeouts,
) -> Result<PathBuf, DataError> {
    let dir = dir.as_ref();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_resolve(Some(timeouts.connect))
        .timeout_connect(Some(timeouts.connect))
        .timeout_global(Some(timeouts.per_file))
        .build()
        .into();
    for file in DataFile::ALL {
        if let Some(existing) = file.find_in(dir) {
            check_file(kind.digest(file), &existing)?;
            continue;
        }
        fetch_one(&agent, kind, file, dir, mirrors)?;
    }
    Ok(dir.to_path_buf())
}

fn fetch_one(
    agent: &ureq::Agent,
    kind: DatasetKind,
    file: DataFile,
    dir: &Path,
    mirrors: &[&str],
) -> Result<PathBuf, DataError> {
    let mut attempts = Vec::new();
    for base in mirrors {
        let sep = if base.ends_with('/') { "" } else { "/" };
        let url = format!("{base}{sep}{}.gz", file.stem());
        match get(agent, &url).and_then(|bytes| accept(kind, file, &url, bytes)) {
            Ok((name, bytes)) => return write_atomic(dir, &name, &bytes),
            Err(error) => attempts.push(DownloadAttempt { url, error }),
        }
    }
    Err(DataError::Download {
        kind,
        file: file.stem(),
        dir: dir.into(),
        attempts,
    })
}

fn get(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>, String> {
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    response
        .body_mut()
        .with_config()
        .limit(MAX_DOWNLOAD_BYTES)
        .read_to_vec()
        .map_err(|e| e.to_string())
}

/// Checks the digest of downloaded bytes; returns the file name to store them under (a
/// server may have sent them decompressed, then they are stored raw).
fn accept(
    kind: DatasetKind,
    file: DataFile,
    url: &str,
    bytes: Vec<u8>,
) -> Result<(String, Vec<u8>), String> {
    let name = if is_gzip(&bytes) {
        format!("{}.gz", file.stem())
    } else {
        file.stem().to_owned()
    };
    match check_bytes(kind.digest(file), &bytes, Path::new(url)) {
        Ok(CheckOutcome::Verified) => Ok((name, bytes)),
        Ok(CheckOutcome::Unverifiable) => {
            Err("served decompressed; the published .gz digest cannot be checked".to_owned())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, DataError> {
    let target = dir.join(name);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(".{name}.part-{}-{nanos}", std::process::id()));
    let result = fs::create_dir_all(dir)
        .and_then(|()| {
            let mut f = fs::File::create_new(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, &target));
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(DataError::Io {
            path: target,
            source,
        });
    }
    Ok(target)
}

/// Loads `kind` if [`locate`] finds it; otherwise downloads it into `explicit` (or, without
/// one, into the per-user [`cache_dir`]) and loads it from there.
///
/// # Errors
/// [`DataError::NoCacheDir`] if there is nowhere to download to, the errors of
/// [`download`] and of [`Mnist::load`].
pub fn load_or_download(kind: DatasetKind, explicit: Option<&Path>) -> Result<Mnist, DataError> {
    match locate(kind, explicit) {
        Ok(dir) => Mnist::load(dir),
        Err(DataError::NotFound { .. }) => {
            let dir = match explicit {
                Some(d) => d.to_path_buf(),
                None => cache_dir(kind).ok_or(DataError::NoCacheDir { kind })?,
            };
            Mnist::load(download(kind, dir)?)
        }
        Err(e) => Err(e),
    }
}
