//! Dataset kinds, their four standard files and the published digests.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::error::DataError;

/// Which dataset: the two share file names, format and shapes (60 000 + 10 000 images of
/// 28×28 pixels, labels `0..=9`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetKind {
    /// LeCun et al.'s handwritten digits.
    Mnist,
    /// Zalando's Fashion-MNIST (clothing), a drop-in replacement for MNIST.
    FashionMnist,
}

impl DatasetKind {
    /// Both kinds.
    pub const ALL: [DatasetKind; 2] = [DatasetKind::Mnist, DatasetKind::FashionMnist];

    /// Lower-case name, also the per-user cache subdirectory: `mnist` or `fashion-mnist`.
    pub fn dir_name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
        }
    }

    /// Environment variable naming a directory that holds this dataset's files directly:
    /// `SPECREG_DATA` for MNIST, `SPECREG_FASHION_DATA` for Fashion-MNIST (see
    /// [`crate::locate`]).
    pub fn env_var(self) -> &'static str {
        match self {
            DatasetKind::Mnist => super::DATA_ENV,
            DatasetKind::FashionMnist => super::FASHION_DATA_ENV,
        }
    }

    /// Base URLs (ending in `/`) that serve `<stem>.gz`, tried in order by the downloader.
    pub fn mirrors(self) -> &'static [&'static str] {
        match self {
            DatasetKind::Mnist => &[
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
            ],
            DatasetKind::FashionMnist => {
                &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
            }
        }
    }

    /// System-wide directories installed by distribution packages (Debian's
    /// `dataset-fashion-mnist` installs `/usr/share/datasets/fashion-mnist/`).
    pub fn system_dirs(self) -> &'static [&'static str] {
        match self {
            DatasetKind::Mnist => &[],
            DatasetKind::FashionMnist => &["/usr/share/datasets/fashion-mnist"],
        }
    }

    /// The published digest of one of this dataset's files.
    pub fn digest(self, file: DataFile) -> ExpectedDigest {
        use DataFile::*;
        match self {
            DatasetKind::Mnist => ExpectedDigest::UncompressedMd5(match file {
                TrainImages => "6bbc9ace898e44ae57da46a324031adb",
                TrainLabels => "a25bea736e30d166cdddb491f175f624",
                TestImages => "2646ac647ad5339dbf082846283269ea",
                TestLabels => "27ae3e4e09519cfbb04c329615203637",
            }),
            DatasetKind::FashionMnist => ExpectedDigest::GzipMd5(match file {
                TrainImages => "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                TrainLabels => "25c81989df183df01b3e8a0aad5dffbe",
                TestImages => "bef4ecab320f06d8554ea6380940ec79",
                TestLabels => "bb300cfdad3c16e7a12a480ee83cd310",
            }),
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatasetKind::Mnist => "MNIST",
            DatasetKind::FashionMnist => "Fashion-MNIST",
        })
    }
}

impl FromStr for DatasetKind {
    type Err = DataError;

    /// Accepts `mnist`, `fashion-mnist`, `fashion_mnist`, `fashionmnist` or `fashion`,
    /// ignoring case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "mnist" => Ok(DatasetKind::Mnist),
            "fashion-mnist" | "fashion_mnist" | "fashionmnist" | "fashion" => {
                Ok(DatasetKind::FashionMnist)
            }
            _ => Err(DataError::UnknownDataset { name: s.to_owned() }),
        }
    }
}

/// One of the four files of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataFile {
    /// `train-images-idx3-ubyte`
    TrainImages,
    /// `train-labels-idx1-ubyte`
    TrainLabels,
    /// `t10k-images-idx3-ubyte`
    TestImages,
    /// `t10k-labels-idx1-ubyte`
    TestLabels,
}

impl DataFile {
    /// The four files, in download order.
    pub const ALL: [DataFile; 4] = [
        DataFile::TrainImages,
        DataFile::TrainLabels,
        DataFile::TestImages,
        DataFile::TestLabels,
    ];

    /// Standard file name without the `.gz` suffix.
    pub fn stem(self) -> &'static str {
        match self {
            DataFile::TrainImages => "train-images-idx3-ubyte",
            DataFile::TrainLabels => "train-labels-idx1-ubyte",
            DataFile::TestImages => "t10k-images-idx3-ubyte",
            DataFile::TestLabels => "t10k-labels-idx1-ubyte",
        }
    }

    /// The file in `dir`: `<stem>` if it exists, else `<stem>.gz`, else `None`.
    ///
    /// Either may be raw or gzip; the reader decides by content, not by name.
    pub fn find_in(self, dir: &Path) -> Option<PathBuf> {
        [
            dir.join(self.stem()),
            dir.join(format!("{}.gz", self.stem())),
        ]
        .into_iter()
        .find(|p| p.is_file())
    }

    /// Like [`DataFile::find_in`], but a missing file is a [`DataError::MissingDatasetFile`].
    ///
    /// # Errors
    /// [`DataError::MissingDatasetFile`] naming `dir` and the file.
    pub fn require_in(self, dir: &Path) -> Result<PathBuf, DataError> {
        self.find_in(dir)
            .ok_or_else(|| DataError::MissingDatasetFile {
                dir: dir.into(),
                stem: self.stem(),
            })
    }
}

/// A published md5 digest of a dataset file, in one of two forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedDigest {
    /// md5 (lowercase hex) of the uncompressed IDX bytes. Checkable for a raw file and for any
    /// gzip compression of it, including re-compressed copies.
    UncompressedMd5(&'static str),
    /// md5 (lowercase hex) of the `.gz` file exactly as published. Only checkable against
    /// that very file; a raw (decompressed) copy cannot be checked.
    GzipMd5(&'static str),
}

impl ExpectedDigest {
    /// The expected md5, lowercase hex.
    pub fn md5(self) -> &'static str {
        match self {
            ExpectedDigest::UncompressedMd5(h) | ExpectedDigest::GzipMd5(h) => h,
        }
    }

    /// What the digest covers, in words (used in error messages).
    pub fn form(self) -> &'static str {
        match self {
            ExpectedDigest::UncompressedMd5(_) => "uncompressed content",
            ExpectedDigest::GzipMd5(_) => "published .gz file",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in DatasetKind::ALL {
            assert_eq!(k.dir_name().parse::<DatasetKind>().unwrap(), k);
        }
        assert!(matches!(
            "cifar".parse::<DatasetKind>(),
            Err(DataError::UnknownDataset { .. })
        ));
    }

    #[test]
    fn mirrors_end_with_slash() {
        for k in DatasetKind::ALL {
            assert!(k.mirrors().iter().all(|m| m.ends_with('/')));
        }
    }
}
