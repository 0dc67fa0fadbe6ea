//! md5 checks of dataset files against the published digests.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use md5::{Digest, Md5};

use super::error::DataError;
use super::idx::{io_error, is_gzip};
use super::kind::{DataFile, DatasetKind, ExpectedDigest};

/// Result of checking one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The md5 matches the published digest.
    Verified,
    /// The digest cannot be checked for this form of the file: the published digest is of the
    /// `.gz` file ([`ExpectedDigest::GzipMd5`]) but the file on disk is uncompressed.
    Unverifiable,
}

/// The outcome of [`verify`] for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    /// Which file.
    pub file: DataFile,
    /// Where it was found.
    pub path: PathBuf,
    /// Whether its digest was checked.
    pub outcome: CheckOutcome,
}

/// Lowercase hex md5 of `bytes`.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn md5_of_reader(mut r: impl Read) -> io::Result<String> {
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(hex(&hasher.finalize())),
            Ok(n) => hasher.update(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn compare(
    expected: ExpectedDigest,
    found: String,
    file: &Path,
) -> Result<CheckOutcome, DataError> {
    if found == expected.md5() {
        Ok(CheckOutcome::Verified)
    } else {
        Err(DataError::DigestMismatch {
            file: file.into(),
            form: expected.form(),
            expected: expected.md5(),
            found,
        })
    }
}

/// Checks in-memory file content (raw or gzip) against `expected`; `file` names it in errors.
///
/// # Errors
/// [`DataError::Gzip`] if an [`ExpectedDigest::UncompressedMd5`] check meets corrupt gzip,
/// [`DataError::DigestMismatch`] if the md5 differs.
pub fn check_bytes(
    expected: ExpectedDigest,
    bytes: &[u8],
    file: &Path,
) -> Result<CheckOutcome, DataError> {
    let gz = is_gzip(bytes);
    let found = match expected {
        ExpectedDigest::GzipMd5(_) if !gz => return Ok(CheckOutcome::Unverifiable),
        ExpectedDigest::UncompressedMd5(_) if gz => md5_of_reader(MultiGzDecoder::new(bytes))
            .map_err(|source| DataError::Gzip {
                file: file.into(),
                source,
            })?,
        _ => md5_hex(bytes),
    };
    compare(expected, found, file)
}

/// Checks one file on disk against `expected`, streaming (the file is not held in memory).
///
/// # Errors
/// [`DataError::Missing`] / [`DataError::Io`] if it cannot be read, [`DataError::Gzip`] if
/// it is corrupt gzip, [`DataError::DigestMismatch`] if the md5 differs.
pub fn check_file(expected: ExpectedDigest, path: &Path) -> Result<CheckOutcome, DataError> {
    let open = || {
        File::open(path)
            .map(BufReader::new)
            .map_err(|e| io_error(path, e))
    };
    let mut head = [0u8; 2];
    let n = open()?.read(&mut head).map_err(|e| io_error(path, e))?;
    let gz = is_gzip(head.get(..n).unwrap_or_default());
    let found = match expected {
        ExpectedDigest::GzipMd5(_) if !gz => return Ok(CheckOutcome::Unverifiable),
        ExpectedDigest::UncompressedMd5(_) if gz => md5_of_reader(MultiGzDecoder::new(open()?))
            .map_err(|source| DataError::Gzip {
                file: path.into(),
                source,
            })?,
        _ => md5_of_reader(open()?).map_err(|e| io_error(path, e))?,
    };
    compare(expected, found, path)
}

/// Checks the md5 of the four files of `kind` in `dir` against the published digests.
///
/// For MNIST the digests are of the uncompressed content, so raw files and any gzip copy
/// can be checked. For Fashion-MNIST they are of the published `.gz` files; a raw copy is
/// reported as [`CheckOutcome::Unverifiable`].
///
/// # Errors
/// [`DataError::MissingDatasetFile`] if a file is absent, [`DataError::DigestMismatch`] on
/// the first mismatch, and read/gzip errors as for [`check_file`].
pub fn verify(kind: DatasetKind, dir: &Path) -> Result<Vec<FileCheck>, DataError> {
    DataFile::ALL
        .iter()
        .map(|&file| {
            let path = file.require_in(dir)?;
            let outcome = check_file(kind.digest(file), &path)?;
            Ok(FileCheck {
                file,
                path,
                outcome,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_known_value() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn gzip_digest_of_raw_bytes_is_unverifiable() {
        let d = ExpectedDigest::GzipMd5("00000000000000000000000000000000");
        assert_eq!(
            check_bytes(d, b"\0\0\x08\x01", Path::new("x")).unwrap(),
            CheckOutcome::Unverifiable
        );
    }

    #[test]
    fn mismatch_names_file() {
        let d = ExpectedDigest::UncompressedMd5("00000000000000000000000000000000");
        let e = check_bytes(d, b"abc", Path::new("some/file")).unwrap_err();
        assert!(matches!(e, DataError::DigestMismatch { .. }));
        assert!(e.to_string().contains("some/file"));
    }
}
