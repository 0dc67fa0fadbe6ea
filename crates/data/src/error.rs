//! The crate's single error type.

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;

use super::kind::DatasetKind;

/// Everything that can go wrong while reading, locating, verifying, downloading or batching data.
///
/// Every variant that concerns a file carries its path (`file`, `path` or `dir`), so the
/// rendered message always names the file and the problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The file does not exist.
    #[error("{}: file not found", path.display())]
    Missing {
        /// The path that was opened.
        path: PathBuf,
    },
    /// Any other I/O failure while reading or writing a file.
    #[error("{}: I/O error: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file (or the decompressed gzip stream) holds no bytes at all.
    #[error("{}: empty file (expected an IDX header)", file.display())]
    Empty {
        /// The file concerned.
        file: PathBuf,
    },
    /// The file starts with the gzip magic bytes but cannot be decompressed.
    #[error("{}: corrupt gzip stream: {source}", file.display())]
    Gzip {
        /// The file concerned.
        file: PathBuf,
        /// The decompressor's error.
        #[source]
        source: io::Error,
    },
    /// The first two bytes of the IDX header are not zero.
    #[error(
        "{}: bad IDX magic number {found:02x?} (expected 00 00 <dtype> <rank>)",
        file.display()
    )]
    BadMagic {
        /// The file concerned.
        file: PathBuf,
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// The file ends inside the IDX header.
    #[error(
        "{}: truncated IDX header: needs {needed} bytes, only {found} present",
        file.display()
    )]
    TruncatedHeader {
        /// The file concerned.
        file: PathBuf,
        /// Header length implied by what was read so far.
        needed: usize,
        /// Bytes actually present.
        found: usize,
    },
    /// A valid IDX element type that this crate does not decode (only `0x08` is supported).
    #[error(
        "{}: IDX dtype {code:#04x} ({}) is valid but unsupported; only unsigned bytes (0x08) are",
        file.display(),
        dtype_name(*code)
    )]
    UnsupportedDtype {
        /// The file concerned.
        file: PathBuf,
        /// The dtype byte (third header byte).
        code: u8,
    },
    /// A dtype byte that is not defined by the IDX format.
    #[error(
        "{}: invalid IDX dtype code {code:#04x} (valid: 0x08, 0x09, 0x0b, 0x0c, 0x0d, 0x0e)",
        file.display()
    )]
    BadDtype {
        /// The file concerned.
        file: PathBuf,
        /// The dtype byte (third header byte).
        code: u8,
    },
    /// The header's dimensions multiply to more elements than [`crate::MAX_IDX_ELEMENTS`]
    /// (or overflow).
    #[error(
        "{}: IDX dimensions {dims:?} describe more than {} elements",
        file.display(),
        super::MAX_IDX_ELEMENTS
    )]
    TooLarge {
        /// The file concerned.
        file: PathBuf,
        /// The declared dimensions.
        dims: Vec<usize>,
    },
    /// The body holds fewer bytes than the dimensions require.
    #[error(
        "{}: truncated IDX body: dimensions {dims:?} need {expected} bytes, found {found}",
        file.display()
    )]
    TruncatedBody {
        /// The file concerned.
        file: PathBuf,
        /// The declared dimensions.
        dims: Vec<usize>,
        /// Body bytes required by the dimensions.
        expected: usize,
        /// Body bytes present.
        found: usize,
    },
    /// The body holds more bytes than the dimensions describe.
    #[error(
        "{}: IDX body too long: dimensions {dims:?} need {expected} bytes, found {found}",
        file.display()
    )]
    TrailingBytes {
        /// The file concerned.
        file: PathBuf,
        /// The declared dimensions.
        dims: Vec<usize>,
        /// Body bytes required by the dimensions.
        expected: usize,
        /// Body bytes present.
        found: usize,
    },
    /// An IDX array of the wrong rank or shape for its role (e.g. images not N×28×28).
    #[error("{}: expected {expected}, found dimensions {dims:?}", file.display())]
    BadShape {
        /// The file concerned (`<in-memory>` for arrays built in memory).
        file: PathBuf,
        /// What was expected, in words.
        expected: &'static str,
        /// What was found.
        dims: Vec<usize>,
    },
    /// The image file and the label file disagree on the number of samples.
    #[error(
        "{}: {n_images} images but {}: {n_labels} labels",
        images.display(),
        labels.display()
    )]
    CountMismatch {
        /// The image file.
        images: PathBuf,
        /// The label file.
        labels: PathBuf,
        /// Number of images.
        n_images: usize,
        /// Number of labels.
        n_labels: usize,
    },
    /// A label is not a class index `0..=9`.
    #[error("{}: label {value} at index {index} is out of range (must be 0..=9)", file.display())]
    LabelOutOfRange {
        /// The label file.
        file: PathBuf,
        /// Position of the bad label.
        index: usize,
        /// The bad value.
        value: u8,
    },
    /// A sample index passed to [`crate::Split::gather`] is out of range.
    #[error("sample index {index} out of range for a split of {len} samples")]
    IndexOutOfRange {
        /// The offending index.
        index: usize,
        /// Number of samples in the split.
        len: usize,
    },
    /// A directory lacks one of the four dataset files (neither raw nor `.gz`).
    #[error("{}: missing {stem} (or {stem}.gz)", dir.display())]
    MissingDatasetFile {
        /// The directory searched.
        dir: PathBuf,
        /// The standard file name without `.gz`.
        stem: &'static str,
    },
    /// No directory holding the dataset was found.
    #[error("{}", not_found_message(*kind, searched))]
    NotFound {
        /// The dataset looked for.
        kind: DatasetKind,
        /// Every place that was searched, in order.
        searched: Vec<SearchedDir>,
    },
    /// A dataset name that [`DatasetKind`]'s `FromStr` does not know.
    #[error("unknown dataset {name:?} (expected \"mnist\" or \"fashion-mnist\")")]
    UnknownDataset {
        /// The name given.
        name: String,
    },
    /// A mini-batch size of zero was requested.
    #[error("batch size must be at least 1")]
    ZeroBatchSize,
    /// A file's md5 does not match the published digest.
    #[error(
        "{}: md5 of the {form} is {found}, expected {expected} (delete the file to re-fetch it)",
        file.display()
    )]
    DigestMismatch {
        /// The file checked.
        file: PathBuf,
        /// What the digest covers ("uncompressed content" or "published .gz file").
        form: &'static str,
        /// Expected md5, lowercase hex.
        expected: &'static str,
        /// Computed md5, lowercase hex.
        found: String,
    },
    /// Every mirror failed for one of the dataset files.
    #[error("{}", download_message(*kind, file, dir, attempts))]
    Download {
        /// The dataset being fetched.
        kind: DatasetKind,
        /// The standard file name (without `.gz`) that could not be fetched.
        file: &'static str,
        /// The target directory.
        dir: PathBuf,
        /// One entry per URL tried, in order.
        attempts: Vec<DownloadAttempt>,
    },
    /// Neither an explicit directory nor a per-user cache directory is available.
    #[error(
        "no directory to store {kind} in: pass an explicit path, or set $XDG_CACHE_HOME or $HOME"
    )]
    NoCacheDir {
        /// The dataset concerned.
        kind: DatasetKind,
    },
    /// A test asked for MNIST ([`crate::testing`]), but its build script found none, so the
    /// test was built as ignored and has been run anyway (`--ignored`, `--include-ignored`).
    #[error(
        "this test needs MNIST and was built without it, so it is marked ignored but has \
         been run anyway; the build script reported: {searched}"
    )]
    TestDataNotFound {
        /// The build script's account of where it looked and why the download did not happen
        /// or failed.
        searched: String,
    },
    /// MNIST was in `dir` when the tests were built, but it no longer holds the four files.
    #[error(
        "{}: held MNIST when these tests were built, but no longer holds all four files; \
         run the tests through cargo again, which searches anew",
        dir.display()
    )]
    TestDataGone {
        /// The directory the build script found.
        dir: PathBuf,
    },
    /// An [`crate::IdxArray`] that cannot be encoded (inconsistent or out-of-range dimensions).
    #[error("{}: cannot encode IDX: {problem}", file.display())]
    Encode {
        /// The destination (`<in-memory>` for [`crate::encode_idx`]).
        file: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// One directory examined by [`crate::locate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchedDir {
    /// The directory.
    pub dir: PathBuf,
    /// Why it was searched (e.g. `"$SPECREG_DATA"`, `"per-user cache"`).
    pub origin: &'static str,
    /// Whether the directory exists.
    pub exists: bool,
    /// The standard file names (without `.gz`) that were missing there.
    pub missing: Vec<&'static str>,
}

/// One failed fetch attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadAttempt {
    /// The URL requested.
    pub url: String,
    /// Why it failed.
    pub error: String,
}

/// Human-readable name of an IDX dtype code.
pub(crate) fn dtype_name(code: u8) -> &'static str {
    match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "i16",
        0x0C => "i32",
        0x0D => "f32",
        0x0E => "f64",
        _ => "unknown",
    }
}

fn file_list() -> String {
    super::DataFile::ALL.map(|f| f.stem()).join(", ")
}

fn where_to_put(kind: DatasetKind) -> String {
    format!(
        "Put the four files {} (each raw or .gz) in one directory and pass it explicitly or \
         point ${} at it{}; or fetch them with `specreg_data::download` (cargo feature \
         `download`, on by default).",
        file_list(),
        kind.env_var(),
        match super::cache_dir(kind) {
            Some(c) => format!(", or use the per-user cache {}", c.display()),
            None => String::new(),
        }
    )
}

fn not_found_message(kind: DatasetKind, searched: &[SearchedDir]) -> String {
    let mut s = format!("{kind} data not found; looked in:");
    if searched.is_empty() {
        s.push_str("\n  (nowhere: no explicit path, no environment variable, no $HOME)");
    }
    for d in searched {
        let status = if !d.exists {
            "directory does not exist".to_owned()
        } else {
            format!("missing {}", d.missing.join(", "))
        };
        let _ = write!(s, "\n  {} ({}): {status}", d.dir.display(), d.origin);
    }
    let _ = write!(s, "\n{}", where_to_put(kind));
    s
}

fn download_message(
    kind: DatasetKind,
    file: &str,
    dir: &std::path::Path,
    attempts: &[DownloadAttempt],
) -> String {
    let mut s = format!("could not download {kind} file {file}; tried:");
    for a in attempts {
        let _ = write!(s, "\n  {}: {}", a.url, a.error);
    }
    let _ = write!(
        s,
        "\nFetch them by other means and put the four files {} (each raw or .gz) in {} \
         manually (or anywhere, pointing ${} at that directory).",
        file_list(),
        dir.display(),
        kind.env_var()
    );
    s
}
