//! Helpers shared by the integration tests: temporary directories and IDX fixtures.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use specreg_data::{DataFile, IdxArray, encode_idx};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "specreg-data-test-{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `bytes` to `<dir>/<name>` and returns the path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// Names of the entries in the directory.
    pub fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Raw IDX bytes (dtype 0x08) for `dims` and `data`, written by hand (not by the crate).
pub fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// `n` 28×28 images whose pixel `p` of image `i` is `(i * 7 + p) % 256`.
pub fn images(n: usize) -> Vec<u8> {
    idx(
        &[n as u32, 28, 28],
        &(0..n * 784)
            .map(|k| ((k / 784) * 7 + k % 784) as u8)
            .collect::<Vec<_>>(),
    )
}

pub fn labels(values: &[u8]) -> Vec<u8> {
    idx(&[values.len() as u32], values)
}

/// Writes a complete small dataset: train (3 samples, gzip) and test (2 samples, raw).
pub fn write_dataset(dir: &TempDir) {
    dir.write(
        &format!("{}.gz", DataFile::TrainImages.stem()),
        &gzip(&images(3)),
    );
    dir.write(
        &format!("{}.gz", DataFile::TrainLabels.stem()),
        &gzip(&labels(&[5, 0, 4])),
    );
    dir.write(DataFile::TestImages.stem(), &images(2));
    dir.write(DataFile::TestLabels.stem(), &labels(&[7, 2]));
}

/// Same as `encode_idx` but via the crate, for round-trip comparisons.
pub fn encode(dims: Vec<usize>, data: Vec<u8>) -> Vec<u8> {
    encode_idx(&IdxArray { dims, data }).unwrap()
}
