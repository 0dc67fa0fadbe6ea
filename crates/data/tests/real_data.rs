//! The real MNIST files, when `SPECREG_DATA` points at them (skipped otherwise).

use specreg_data::{CheckOutcome, DatasetKind, Mnist, verify};

#[test]
fn real_mnist() {
    let Some(dir) = std::env::var_os("SPECREG_DATA") else {
        println!("SPECREG_DATA is not set: skipping the real-MNIST test");
        return;
    };
    let dir = std::path::PathBuf::from(dir);
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
