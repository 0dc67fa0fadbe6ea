//! Reader (and a small writer) for the IDX format used by MNIST and Fashion-MNIST.
//!
//! An IDX file is a 4-byte magic number `00 00 <dtype> <rank>`, `rank` big-endian `u32`
//! dimensions, then the elements in row-major order. Files may be gzip-compressed; gzip is
//! recognised by its magic bytes `1f 8b`, never by the file name.

use std::io::{self, Read, Write};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::error::DataError;

/// Largest element count accepted in an IDX header (4 Gi elements); larger headers are
/// rejected with [`DataError::TooLarge`] before anything is allocated.
pub const MAX_IDX_ELEMENTS: u64 = 1 << 32;

/// IDX dtype code of unsigned bytes, the only element type decoded here.
pub const IDX_DTYPE_U8: u8 = 0x08;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Upper bound of the DEFLATE expansion ratio, used only to size the output buffer.
const MAX_DEFLATE_RATIO: usize = 1032;
/// Name used in errors about arrays that do not come from a file.
pub(crate) const IN_MEMORY: &str = "<in-memory>";

/// A decoded IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdxArray {
    /// The dimensions, outermost first (for MNIST images: `[N, 28, 28]`).
    pub dims: Vec<usize>,
    /// The elements in row-major order; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

impl IdxArray {
    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.dims.len()
    }
}

/// Whether `bytes` starts with the gzip magic number `1f 8b`.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Reads an IDX file, raw or gzip-compressed.
///
/// # Errors
/// [`DataError::Missing`] if the file does not exist, [`DataError::Io`] on other read
/// failures, and every error of [`parse_idx`].
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let bytes = read_file(path)?;
    parse_at(&bytes, path)
}

/// Parses the bytes of an IDX file (raw or gzip); `source` names the file in errors.
///
/// Never panics and never allocates more than the input can actually provide: the header's
/// dimension product is checked for overflow and against [`MAX_IDX_ELEMENTS`] first.
///
/// # Errors
/// [`DataError::Empty`], [`DataError::Gzip`], [`DataError::TruncatedHeader`],
/// [`DataError::BadMagic`], [`DataError::UnsupportedDtype`], [`DataError::BadDtype`],
/// [`DataError::TooLarge`], [`DataError::TruncatedBody`] or [`DataError::TrailingBytes`].
pub fn parse_idx(bytes: &[u8], source: &str) -> Result<IdxArray, DataError> {
    parse_at(bytes, Path::new(source))
}

/// Reads a whole file, mapping "not found" to [`DataError::Missing`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| io_error(path, e))
}

/// Maps an I/O error on `path` to [`DataError::Missing`] or [`DataError::Io`].
pub(crate) fn io_error(path: &Path, source: io::Error) -> DataError {
    if source.kind() == io::ErrorKind::NotFound {
        DataError::Missing {
            path: path.to_path_buf(),
        }
    } else {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub(crate) fn parse_at(bytes: &[u8], file: &Path) -> Result<IdxArray, DataError> {
    if bytes.is_empty() {
        return Err(DataError::Empty { file: file.into() });
    }
    if is_gzip(bytes) {
        parse_gzip(bytes, file)
    } else {
        parse_raw(bytes, file)
    }
}

/// Validates the 4-byte magic; returns the rank.
fn parse_magic(magic: [u8; 4], file: &Path) -> Result<usize, DataError> {
    if magic[0] != 0 || magic[1] != 0 {
        return Err(DataError::BadMagic {
            file: file.into(),
            found: magic,
        });
    }
    match magic[2] {
        IDX_DTYPE_U8 => Ok(usize::from(magic[3])),
        code @ (0x09 | 0x0B..=0x0E) => Err(DataError::UnsupportedDtype {
            file: file.into(),
            code,
        }),
        code => Err(DataError::BadDtype {
            file: file.into(),
            code,
        }),
    }
}

/// Decodes the big-endian dimensions; returns them with their (bounded) product.
fn parse_dims(raw: &[u8], file: &Path) -> Result<(Vec<usize>, usize), DataError> {
    let dims: Vec<usize> = raw
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let product = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&p| p <= MAX_IDX_ELEMENTS)
        .and_then(|p| usize::try_from(p).ok());
    match product {
        Some(p) => Ok((dims, p)),
        None => Err(DataError::TooLarge {
            file: file.into(),
            dims,
        }),
    }
}

fn parse_raw(bytes: &[u8], file: &Path) -> Result<IdxArray, DataError> {
    let magic: [u8; 4] = bytes
        .get(..4)
        .and_then(|m| m.try_into().ok())
        .ok_or_else(|| DataError::TruncatedHeader {
            file: file.into(),
            needed: 4,
            found: bytes.len(),
        })?;
    let rank = parse_magic(magic, file)?;
    let header_len = 4 + 4 * rank;
    let (Some(raw_dims), Some(body)) = (bytes.get(4..header_len), bytes.get(header_len..)) else {
        return Err(DataError::TruncatedHeader {
            file: file.into(),
            needed: header_len,
            found: bytes.len(),
        });
    };
    let (dims, expected) = parse_dims(raw_dims, file)?;
    check_body_len(file, &dims, expected, body.len())?;
    Ok(IdxArray {
        dims,
        data: body.to_vec(),
    })
}

fn check_body_len(
    file: &Path,
    dims: &[usize],
    expected: usize,
    found: usize,
) -> Result<(), DataError> {
    let (file, dims) = (file.into(), dims.to_vec());
    match found.cmp(&expected) {
        std::cmp::Ordering::Less => Err(DataError::TruncatedBody {
            file,
            dims,
            expected,
            found,
        }),
        std::cmp::Ordering::Greater => Err(DataError::TrailingBytes {
            file,
            dims,
            expected,
            found,
        }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// Reads until `buf` is full or the stream ends; returns the number of bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn parse_gzip(bytes: &[u8], file: &Path) -> Result<IdxArray, DataError> {
    let gz_err = |source| DataError::Gzip {
        file: file.into(),
        source,
    };
    let mut dec = MultiGzDecoder::new(bytes);
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut dec, &mut magic).map_err(gz_err)?;
    if got == 0 {
        return Err(DataError::Empty { file: file.into() });
    }
    if got < 4 {
        return Err(DataError::TruncatedHeader {
            file: file.into(),
            needed: 4,
            found: got,
        });
    }
    let rank = parse_magic(magic, file)?;
    let mut raw_dims = vec![0u8; 4 * rank];
    let got = read_up_to(&mut dec, &mut raw_dims).map_err(gz_err)?;
    if got < raw_dims.len() {
        return Err(DataError::TruncatedHeader {
            file: file.into(),
            needed: 4 + raw_dims.len(),
            found: 4 + got,
        });
    }
    let (dims, expected) = parse_dims(&raw_dims, file)?;
    // Capacity is only a hint, bounded by what the compressed input can expand to.
    let mut data = Vec::with_capacity(expected.min(bytes.len().saturating_mul(MAX_DEFLATE_RATIO)));
    // Reading one byte past the expected size detects trailing data; reaching the end of the
    // stream makes the decoder verify the gzip CRC.
    (&mut dec)
        .take(expected as u64 + 1)
        .read_to_end(&mut data)
        .map_err(gz_err)?;
    let mut found = data.len();
    if found > expected {
        let rest = io::copy(&mut dec, &mut io::sink()).map_err(gz_err)?;
        found = found.saturating_add(usize::try_from(rest).unwrap_or(usize::MAX));
    }
    check_body_len(file, &dims, expected, found)?;
    Ok(IdxArray { dims, data })
}

/// Encodes an array as raw (uncompressed) IDX bytes with dtype `0x08`.
///
/// # Errors
/// [`DataError::Encode`] if the rank exceeds 255, a dimension exceeds `u32::MAX`, or
/// `data.len()` differs from the product of `dims`.
pub fn encode_idx(array: &IdxArray) -> Result<Vec<u8>, DataError> {
    encode_at(array, Path::new(IN_MEMORY))
}

fn encode_at(array: &IdxArray, file: &Path) -> Result<Vec<u8>, DataError> {
    let problem = |problem: String| DataError::Encode {
        file: file.into(),
        problem,
    };
    let rank = u8::try_from(array.rank())
        .map_err(|_| problem(format!("rank {} exceeds 255", array.rank())))?;
    let product = array
        .dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if product != Some(array.data.len()) {
        return Err(problem(format!(
            "dimensions {:?} do not match {} data bytes",
            array.dims,
            array.data.len()
        )));
    }
    let mut out = Vec::with_capacity(4 + 4 * array.rank() + array.data.len());
    out.extend_from_slice(&[0, 0, IDX_DTYPE_U8, rank]);
    for &d in &array.dims {
        let d = u32::try_from(d).map_err(|_| problem(format!("dimension {d} exceeds u32")))?;
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(&array.data);
    Ok(out)
}

/// Writes an array as an IDX file, gzip-compressed when `gzip` is true.
///
/// # Errors
/// [`DataError::Encode`] as for [`encode_idx`], [`DataError::Io`] if writing fails.
pub fn write_idx(path: &Path, array: &IdxArray, gzip: bool) -> Result<(), DataError> {
    let raw = encode_at(array, path)?;
    let bytes = if gzip { gzip_bytes(&raw) } else { Ok(raw) };
    bytes
        .and_then(|b| std::fs::write(path, b))
        .map_err(|source| DataError::Io {
            path: path.into(),
            source,
        })
}

fn gzip_bytes(raw: &[u8]) -> io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(raw)?;
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_zero_is_a_scalar() {
        let a = parse_idx(&[0, 0, 8, 0, 42], "s").unwrap();
        assert_eq!(a.dims, Vec::<usize>::new());
        assert_eq!(a.data, vec![42]);
    }

    #[test]
    fn overflowing_dims_are_rejected_before_allocation() {
        let mut b = vec![0, 0, 8, 3];
        for _ in 0..3 {
            b.extend_from_slice(&u32::MAX.to_be_bytes());
        }
        assert!(matches!(
            parse_idx(&b, "big"),
            Err(DataError::TooLarge { .. })
        ));
        let gz = gzip_bytes(&b).unwrap();
        assert!(matches!(
            parse_idx(&gz, "big"),
            Err(DataError::TooLarge { .. })
        ));
    }

    #[test]
    fn gzip_trailing_bytes_are_counted() {
        let gz = gzip_bytes(&[0, 0, 8, 1, 0, 0, 0, 2, 1, 2, 3, 4, 5]).unwrap();
        match parse_idx(&gz, "t") {
            Err(DataError::TrailingBytes {
                expected, found, ..
            }) => assert_eq!((expected, found), (2, 5)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encode_rejects_inconsistent_arrays() {
        let a = IdxArray {
            dims: vec![2, 2],
            data: vec![0; 3],
        };
        assert!(matches!(encode_idx(&a), Err(DataError::Encode { .. })));
    }
}
