//! The real MNIST files, found when the tests are built (`SPECREG_DATA`, the per-user cache,
//! a download: see `specreg_data::testing`); ignored, with the reason, when there are none.

use specreg_data::{CheckOutcome, DatasetKind, Mnist, verify};

#[test]
#[cfg_attr(
    specreg_no_mnist,
    ignore = "MNIST not found at build time (see the cargo warning): set SPECREG_DATA"
)]
fn real_mnist() {
    let dir = specreg_data::test_mnist_dir!();
    let m = Mnist::load(&dir).unwrap();
    assert_eq!(m.train.len(), 60_000);
    assert_eq!(m.test.len(), 10_000);
    assert_eq!(m.train.images().dim(), (60_000, 784));
    assert_eq!(m.test.images_nchw().shape(), &[10_000, 1, 28, 28]);
    assert_eq!(&m.train.labels()[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(&m.test.labels()[..5], &[7, 2, 1, 0, 4]);
    for split in [&m.train, &m.test] {
        let x = split.images();
        let min = x.iter().copied().fold(f32::INFINITY, f32::min);
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!((min, max), (0.0, 1.0));
    }
    assert_eq!(m.train.class_counts().iter().sum::<usize>(), 60_000);
    assert_eq!(m.train.class_counts()[1], 6742);

    let checks = verify(DatasetKind::Mnist, &dir).unwrap();
    assert_eq!(checks.len(), 4);
    assert!(checks.iter().all(|c| c.outcome == CheckOutcome::Verified));
}
