//! The downloader, offline: unreachable mirrors give a `Download` error naming the URLs and
//! leave no file behind; a local HTTP server stands in for a mirror to check digest
//! rejection and, when `SPECREG_DATA` holds the real files, a complete download.
#![cfg(feature = "download")]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;

use common::{TempDir, gzip, images, labels, write_dataset};
use specreg_data::{CheckOutcome, DataError, DataFile, DatasetKind, download_from, verify};

/// Serves `files` (name → bytes) over HTTP on a loopback port, answering 404 otherwise;
/// returns the base URL. The server thread lives until the test process exits.
fn serve(files: HashMap<String, Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/data/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let name = path.strip_prefix("/data/").unwrap_or("");
            let (status, body) = match files.get(name) {
                Some(b) => ("200 OK", b.as_slice()),
                None => ("404 Not Found", &b"not here"[..]),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: \
                 application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    base
}

/// Nothing listens on the discard port of the loopback interface: connection refused.
const DEAD: [&str; 2] = ["http://127.0.0.1:9/a/", "http://127.0.0.1:9/b"];

#[test]
fn unreachable_mirror_fails_cleanly() {
    let d = TempDir::new("dl");
    let target = d.path().join("mnist");
    let err = download_from(DatasetKind::Mnist, &target, &DEAD).unwrap_err();
    let msg = err.to_string();
    match &err {
        DataError::Download { file, attempts, .. } => {
            assert_eq!(*file, "train-images-idx3-ubyte");
            let urls: Vec<&str> = attempts.iter().map(|a| a.url.as_str()).collect();
            assert_eq!(
                urls,
                [
                    "http://127.0.0.1:9/a/train-images-idx3-ubyte.gz",
                    "http://127.0.0.1:9/b/train-images-idx3-ubyte.gz"
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        msg.contains("http://127.0.0.1:9/a/train-images-idx3-ubyte.gz"),
        "{msg}"
    );
    assert!(msg.contains(&target.display().to_string()), "{msg}");
    assert!(msg.contains("manually"), "{msg}");
    // Nothing written: the target directory was not even created.
    assert!(!target.exists() || std::fs::read_dir(&target).unwrap().next().is_none());
    assert!(
        d.entries().iter().all(|e| e == "mnist"),
        "{:?}",
        d.entries()
    );
}

#[test]
fn present_but_corrupt_file_is_reported_not_overwritten() {
    let d = TempDir::new("dl-corrupt");
    write_dataset(&d);
    let before = d.entries();
    let err = download_from(DatasetKind::Mnist, d.path(), &DEAD).unwrap_err();
    assert!(matches!(err, DataError::DigestMismatch { .. }), "{err:?}");
    assert_eq!(d.entries(), before);
}

#[test]
fn wrong_digest_is_rejected_and_nothing_written() {
    // A mirror serving well-formed but wrong files (not the real MNIST).
    let mut files = HashMap::new();
    files.insert("train-images-idx3-ubyte.gz".to_owned(), gzip(&images(2)));
    files.insert(
        "train-labels-idx1-ubyte.gz".to_owned(),
        gzip(&labels(&[1, 2])),
    );
    let base = serve(files);
    let d = TempDir::new("dl-digest");
    let err = download_from(DatasetKind::Mnist, d.path(), &[base.as_str()]).unwrap_err();
    match &err {
        DataError::Download { attempts, .. } => {
            assert_eq!(attempts.len(), 1);
            assert!(attempts[0].error.contains("md5"), "{attempts:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(d.entries().is_empty(), "{:?}", d.entries());
}

#[test]
#[cfg_attr(
    specreg_no_mnist,
    ignore = "MNIST not found at build time (see the cargo warning): set SPECREG_DATA"
)]
fn full_download_from_a_local_mirror() {
    let real = specreg_data::test_mnist_dir!();
    let real = Path::new(&real);
    let files: HashMap<String, Vec<u8>> = DataFile::ALL
        .iter()
        .map(|f| {
            let path = f.find_in(real).expect("real MNIST file");
            let bytes = std::fs::read(&path).unwrap();
            let bytes = if specreg_data::is_gzip(&bytes) {
                bytes
            } else {
                gzip(&bytes)
            };
            (format!("{}.gz", f.stem()), bytes)
        })
        .collect();
    let base = serve(files);
    let d = TempDir::new("dl-full");
    let target = d.path().join("cache").join("mnist");
    // The first, dead mirror is skipped for each file.
    let got = download_from(DatasetKind::Mnist, &target, &[DEAD[0], base.as_str()]).unwrap();
    assert_eq!(got, target);
    let entries: Vec<String> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries.len(), 4, "{entries:?}");
    assert!(entries.iter().all(|e| e.ends_with(".gz")), "{entries:?}");
    let checks = verify(DatasetKind::Mnist, &target).unwrap();
    assert!(checks.iter().all(|c| c.outcome == CheckOutcome::Verified));
    // A second run finds everything present and valid: it needs no mirror at all.
    download_from(DatasetKind::Mnist, &target, &[]).unwrap();
    let m = specreg_data::Mnist::load(&target).unwrap();
    assert_eq!(m.test.len(), 10_000);
}
