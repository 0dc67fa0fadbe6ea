//! Writing a test once for every device.
//!
//! A test is written as `fn case(dev: &Device) -> Result<(), E>` (any `E: Display`) that
//! builds its tensors and networks on `dev`, and [`test_device!`](crate::test_device) stamps
//! it out as two tests, `case::cpu` and `case::cuda`:
//!
//! ```
//! use specreg_tensor::{DType, Device, Result, Tensor, test_device, testing::tol_on};
//!
//! fn doubling(dev: &Device) -> Result<()> {
//!     let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2], dev)?;
//!     let y = x.scale(2.0)?.to_vec::<f64>()?;
//!     let tol = tol_on(dev, 0.0, 1e-12);
//!     assert!((y[1] - 4.0).abs() <= tol);
//!     Ok(())
//! }
//!
//! test_device!(doubling);
//! # fn main() {}
//! ```
//!
//! The CUDA twin is stamped in every crate, whether or not that crate (or this one) was
//! built with the `cuda` feature: it opens CUDA device 0 at run time through
//! [`cuda_device`], and where that fails (no feature, no libraries, no GPU) it prints one
//! line saying it was skipped and passes. With `SPECREG_REQUIRE_CUDA=1` (set by the GPU
//! bundle's `run.sh`) a missing device fails the test instead, so a GPU run cannot pass by
//! skipping.

use crate::Device;

/// The environment variable that turns a skipped CUDA twin into a failure.
pub const REQUIRE_CUDA_VAR: &str = "SPECREG_REQUIRE_CUDA";

/// Stamps out `mod case { #[test] fn cpu(); #[test] fn cuda() }` for each `case` named,
/// where `fn case(dev: &Device) -> Result<(), E>` with `E: Display`.
///
/// `cpu` runs the case on [`Device::Cpu`](crate::Device::Cpu). `cuda` runs it on the
/// device from [`testing::cuda_device`](crate::testing::cuda_device), which skips (prints
/// and passes) where no CUDA device can be opened, unless `SPECREG_REQUIRE_CUDA=1`. An
/// `Err` from the case fails the test with the error's message and the device.
#[macro_export]
macro_rules! test_device {
    ($($case:ident),+ $(,)?) => {
        $(
            mod $case {
                #[test]
                fn cpu() {
                    if let ::std::result::Result::Err(e) = super::$case(&$crate::Device::Cpu) {
                        panic!("{} on cpu: {e}", stringify!($case));
                    }
                }

                #[test]
                fn cuda() {
                    if let ::std::option::Option::Some(dev) =
                        $crate::testing::cuda_device(stringify!($case))
                    {
                        if let ::std::result::Result::Err(e) = super::$case(&dev) {
                            panic!("{} on {dev}: {e}", stringify!($case));
                        }
                    }
                }
            }
        )+
    };
}

/// Whether the CUDA twins must find a device (`SPECREG_REQUIRE_CUDA=1`).
pub fn cuda_required() -> bool {
    std::env::var(REQUIRE_CUDA_VAR).is_ok_and(|v| v == "1")
}

/// CUDA device 0, or `None` after printing `case::cuda skipped: …` to stderr when it cannot
/// be opened (without the `cuda` feature, the CUDA libraries or a GPU).
///
/// # Panics
///
/// When no device can be opened and [`cuda_required`]: that is the test failing, by design.
pub fn cuda_device(case: &str) -> Option<Device> {
    match Device::cuda(0) {
        Ok(d) => Some(d),
        Err(e) if cuda_required() => panic!("{case}: {REQUIRE_CUDA_VAR}=1 but: {e}"),
        Err(e) => {
            eprintln!("{case}::cuda skipped: no CUDA device ({e})");
            None
        }
    }
}

/// A tolerance that depends on the device: `cpu` on the host, `gpu` on a GPU, where sums
/// add in other orders and `exp`, `log` and `tanh` come from CUDA's libdevice.
pub fn tol_on(dev: &Device, cpu: f64, gpu: f64) -> f64 {
    if dev.is_cpu() { cpu } else { gpu }
}

/// `tol` on the host and `tol · factor` on a GPU: for finite-difference checks whose CPU
/// tolerance stays as it is while the device's rounding may cost a little more.
pub fn scaled_tol(dev: &Device, tol: f64, factor: f64) -> f64 {
    tol_on(dev, tol, tol * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerances_follow_the_device() {
        assert_eq!(tol_on(&Device::Cpu, 1e-6, 1e-4), 1e-6);
        assert_eq!(tol_on(&Device::Cuda(0), 1e-6, 1e-4), 1e-4);
        assert_eq!(scaled_tol(&Device::Cpu, 1e-6, 10.0), 1e-6);
        assert_eq!(scaled_tol(&Device::Cuda(0), 1e-6, 10.0), 1e-6 * 10.0);
    }
}
