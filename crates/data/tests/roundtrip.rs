//! Valid files: IDX round trips (raw and gzip) and loading a small dataset.

mod common;

use common::{TempDir, gzip, idx, write_dataset};
use specreg_data::{
    DataError, DataFile, DatasetKind, IdxArray, Mnist, encode_idx, has_dataset, locate, parse_idx,
    read_idx, write_idx,
};

#[test]
fn raw_and_gzip_round_trip() {
    let d = TempDir::new("roundtrip");
    let array = IdxArray {
        dims: vec![2, 3, 4],
        data: (0..24).map(|v| v * 10).collect(),
    };
    for gz in [false, true] {
        let p = d.path().join(format!("a-{gz}"));
        write_idx(&p, &array, gz).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(specreg_data::is_gzip(&bytes), gz);
        assert_eq!(read_idx(&p).unwrap(), array);
    }
    // Hand-written bytes decode to the expected values, and re-encode identically.
    let bytes = idx(&[3], &[9, 8, 7]);
    let a = parse_idx(&bytes, "mem").unwrap();
    assert_eq!(
        (a.dims.as_slice(), a.data.as_slice()),
        (&[3][..], &[9, 8, 7][..])
    );
    assert_eq!(encode_idx(&a).unwrap(), bytes);
    assert_eq!(parse_idx(&gzip(&bytes), "mem").unwrap(), a);
}

#[test]
fn concatenated_gzip_members_are_read() {
    let bytes = idx(&[4], &[1, 2, 3, 4]);
    let mut two = gzip(&bytes[..6]);
    two.extend(gzip(&bytes[6..]));
    assert_eq!(parse_idx(&two, "multi").unwrap().data, [1, 2, 3, 4]);
}

#[test]
fn load_small_dataset_mixing_raw_and_gzip() {
    let d = TempDir::new("load");
    write_dataset(&d);
    assert!(has_dataset(d.path()));
    let m = Mnist::load(d.path()).unwrap();
    assert_eq!((m.train.len(), m.test.len()), (3, 2));
    assert_eq!(m.train.labels(), &[5, 0, 4]);
    assert_eq!(m.test.labels(), &[7, 2]);
    // Pixel p of image i is (i * 7 + p) % 256, scaled by 1/255.
    let x = m.train.images();
    assert_eq!(x.dim(), (3, 784));
    assert_eq!(x[[0, 0]], 0.0);
    assert_eq!(x[[0, 255]], 1.0);
    assert_eq!(x[[2, 1]], 15.0 / 255.0);
    let nchw = m.train.images_nchw();
    assert_eq!(nchw[[2, 0, 0, 1]], 15.0 / 255.0);
    assert_eq!(nchw[[1, 0, 1, 0]], 35.0 / 255.0);
    let (bx, by) = m.train.gather(&[2, 0]).unwrap();
    assert_eq!(by, [4, 5]);
    assert_eq!(bx.row(0), x.row(2));
    assert_eq!(m.train.subset(1).labels(), &[5]);
}

#[test]
fn locate_explicit_directory() {
    let d = TempDir::new("locate");
    write_dataset(&d);
    assert_eq!(
        locate(DatasetKind::Mnist, Some(d.path())).unwrap(),
        d.path()
    );
    let m = specreg_data::load(DatasetKind::FashionMnist, Some(d.path())).unwrap();
    assert_eq!(m.test.len(), 2);

    std::fs::remove_file(d.path().join(DataFile::TestImages.stem())).unwrap();
    let err = locate(DatasetKind::Mnist, Some(d.path())).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::NotFound { .. }));
    assert!(msg.contains(&d.path().display().to_string()), "{msg}");
    assert!(msg.contains("missing t10k-images-idx3-ubyte"), "{msg}");
    assert!(msg.contains("download"), "{msg}");
}

#[test]
fn verify_detects_wrong_content() {
    let d = TempDir::new("verify");
    write_dataset(&d);
    let err = specreg_data::verify(DatasetKind::Mnist, d.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            DataError::DigestMismatch {
                form: "uncompressed content",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(msg.contains("train-images-idx3-ubyte.gz"), "{msg}");
    // Fashion-MNIST digests are of the published .gz files; our re-compressed train files
    // mismatch, raw test files cannot be checked.
    let err = specreg_data::verify(DatasetKind::FashionMnist, d.path()).unwrap_err();
    assert!(matches!(
        err,
        DataError::DigestMismatch {
            form: "published .gz file",
            ..
        }
    ));
}
