//! One test per malformed input: each asserts the error variant and that the message names
//! the file.

mod common;

use std::path::Path;

use common::{TempDir, gzip, idx, images, labels};
use specreg_data::{DataError, DataFile, Mnist, read_idx};

/// Reads `path`, expecting an error whose message names the file; returns the error.
fn read_err(path: &Path) -> DataError {
    let err = read_idx(path).expect_err("malformed input must be rejected");
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message does not name the file: {msg}"
    );
    err
}

#[test]
fn wrong_magic_number() {
    let d = TempDir::new("magic");
    let mut bytes = idx(&[2], &[1, 2]);
    bytes[1] = 0x03;
    let p = d.write("bad-magic", &bytes);
    assert!(matches!(
        read_err(&p),
        DataError::BadMagic {
            found: [0, 3, 8, 1],
            ..
        }
    ));
    // The same inside a gzip stream.
    let p = d.write("bad-magic.gz", &gzip(&bytes));
    assert!(matches!(read_err(&p), DataError::BadMagic { .. }));
}

#[test]
fn unsupported_dtype_code() {
    let d = TempDir::new("dtype");
    for code in [0x09u8, 0x0B, 0x0C, 0x0D, 0x0E] {
        let p = d.write(&format!("dtype-{code}"), &[0, 0, code, 1, 0, 0, 0, 1, 0]);
        match read_err(&p) {
            DataError::UnsupportedDtype { code: c, .. } => assert_eq!(c, code),
            other => panic!("{other:?}"),
        }
    }
    let msg = read_err(&d.path().join("dtype-13")).to_string();
    assert!(msg.contains("0x0d"), "{msg}");
}

#[test]
fn wrong_dtype_code() {
    let d = TempDir::new("baddtype");
    for code in [0x00u8, 0x07, 0x0A, 0x0F, 0xFF] {
        let p = d.write(&format!("dtype-{code}"), &[0, 0, code, 1, 0, 0, 0, 1, 0]);
        match read_err(&p) {
            DataError::BadDtype { code: c, .. } => assert_eq!(c, code),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn truncated_header() {
    let d = TempDir::new("header");
    let p = d.write("short-magic", &[0, 0, 8]);
    assert!(matches!(
        read_err(&p),
        DataError::TruncatedHeader {
            needed: 4,
            found: 3,
            ..
        }
    ));
    // Rank 3 needs 16 header bytes; only one dimension present.
    let p = d.write("short-dims", &[0, 0, 8, 3, 0, 0, 0, 1]);
    assert!(matches!(
        read_err(&p),
        DataError::TruncatedHeader {
            needed: 16,
            found: 8,
            ..
        }
    ));
    let p = d.write("short-dims.gz", &gzip(&[0, 0, 8, 3, 0, 0, 0, 1]));
    assert!(matches!(
        read_err(&p),
        DataError::TruncatedHeader {
            needed: 16,
            found: 8,
            ..
        }
    ));
}

#[test]
fn truncated_body() {
    let d = TempDir::new("body");
    let full = images(10);
    let half = &full[..16 + 10 * 784 / 2];
    let p = d.write("half", half);
    match read_err(&p) {
        DataError::TruncatedBody {
            dims,
            expected,
            found,
            ..
        } => {
            assert_eq!(dims, [10, 28, 28]);
            assert_eq!((expected, found), (7840, 3920));
        }
        other => panic!("{other:?}"),
    }
    let p = d.write("half.gz", &gzip(half));
    assert!(matches!(
        read_err(&p),
        DataError::TruncatedBody { found: 3920, .. }
    ));
}

#[test]
fn dimension_product_differs_from_byte_count() {
    let d = TempDir::new("product");
    let p = d.write("too-few", &idx(&[2, 3], &[1, 2, 3, 4, 5]));
    assert!(matches!(
        read_err(&p),
        DataError::TruncatedBody {
            expected: 6,
            found: 5,
            ..
        }
    ));
    let p = d.write("too-many", &idx(&[2, 3], &[1, 2, 3, 4, 5, 6, 7]));
    assert!(matches!(
        read_err(&p),
        DataError::TrailingBytes {
            expected: 6,
            found: 7,
            ..
        }
    ));
    let p = d.write("too-many.gz", &gzip(&idx(&[2, 3], &[0; 9])));
    assert!(matches!(
        read_err(&p),
        DataError::TrailingBytes {
            expected: 6,
            found: 9,
            ..
        }
    ));
}

#[test]
fn huge_dimensions_are_rejected_without_allocating() {
    let d = TempDir::new("huge");
    let p = d.write("huge", &idx(&[u32::MAX, u32::MAX, u32::MAX], &[]));
    assert!(matches!(read_err(&p), DataError::TooLarge { .. }));
    // 2^32 + 1 elements: over the cap without overflowing u64.
    let p = d.write("over-cap.gz", &gzip(&idx(&[65537, 65537], &[1, 2, 3])));
    assert!(matches!(read_err(&p), DataError::TooLarge { .. }));
}

#[test]
fn corrupt_gzip() {
    let d = TempDir::new("gzip");
    let p = d.write(
        "garbage.gz",
        &[0x1f, 0x8b, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5],
    );
    assert!(matches!(read_err(&p), DataError::Gzip { .. }));
    // A valid stream with its body damaged (CRC or deflate error).
    let mut gz = gzip(&images(4));
    let mid = gz.len() / 2;
    for b in &mut gz[mid..mid + 16] {
        *b ^= 0x5a;
    }
    let p = d.write("damaged.gz", &gz);
    assert!(matches!(read_err(&p), DataError::Gzip { .. }));
    // A valid stream cut short (no trailer). The file name does not end in .gz: gzip is
    // detected by content.
    let gz = gzip(&images(4));
    let p = d.write("cut", &gz[..gz.len() - 6]);
    assert!(matches!(read_err(&p), DataError::Gzip { .. }));
}

#[test]
fn empty_file() {
    let d = TempDir::new("empty");
    let p = d.write("empty", &[]);
    assert!(matches!(read_err(&p), DataError::Empty { .. }));
    let p = d.write("empty.gz", &gzip(&[]));
    assert!(matches!(read_err(&p), DataError::Empty { .. }));
}

#[test]
fn missing_file() {
    let d = TempDir::new("missing");
    let p = d.path().join("does-not-exist");
    assert!(matches!(read_err(&p), DataError::Missing { .. }));
    // A dataset directory lacking one file.
    common::write_dataset(&d);
    std::fs::remove_file(d.path().join(DataFile::TestLabels.stem())).unwrap();
    let err = Mnist::load(d.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            DataError::MissingDatasetFile {
                stem: "t10k-labels-idx1-ubyte",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(msg.contains(&d.path().display().to_string()), "{msg}");
}

#[test]
fn image_count_differs_from_label_count() {
    let d = TempDir::new("count");
    common::write_dataset(&d);
    let lpath = d.write(DataFile::TestLabels.stem(), &labels(&[1, 2, 3]));
    let err = Mnist::load(d.path()).unwrap_err();
    let msg = err.to_string();
    match err {
        DataError::CountMismatch {
            n_images,
            n_labels,
            labels,
            ..
        } => {
            assert_eq!((n_images, n_labels), (2, 3));
            assert_eq!(labels, lpath);
        }
        other => panic!("{other:?}"),
    }
    assert!(msg.contains(&lpath.display().to_string()), "{msg}");
    assert!(msg.contains("t10k-images-idx3-ubyte"), "{msg}");
}

#[test]
fn label_above_nine() {
    let d = TempDir::new("label");
    common::write_dataset(&d);
    let lpath = d.write(DataFile::TestLabels.stem(), &labels(&[3, 10]));
    let err = Mnist::load(d.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            DataError::LabelOutOfRange {
                index: 1,
                value: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(msg.contains(&lpath.display().to_string()), "{msg}");
}

#[test]
fn wrong_shapes() {
    let d = TempDir::new("shape");
    common::write_dataset(&d);
    let ipath = d.write(DataFile::TestImages.stem(), &idx(&[2, 784], &[0; 2 * 784]));
    let err = Mnist::load(d.path()).unwrap_err();
    assert!(err.to_string().contains(&ipath.display().to_string()));
    assert!(matches!(err, DataError::BadShape { .. }), "{err:?}");

    common::write_dataset(&d);
    let lpath = d.write(DataFile::TestLabels.stem(), &idx(&[2, 1], &[0, 0]));
    let err = Mnist::load(d.path()).unwrap_err();
    assert!(err.to_string().contains(&lpath.display().to_string()));
    assert!(matches!(err, DataError::BadShape { .. }), "{err:?}");
}
