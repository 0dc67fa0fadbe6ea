//! Counting device→host reads.
//!
//! On a GPU every read of tensor data by the host (`to_vec`, a scalar, a host view) waits
//! for the device to finish and copies across the bus, so the hot paths of training and
//! attacks are meant to make a fixed, small number of them. This counter makes that
//! number testable on any machine: every call that reads data on the host bumps a
//! per-thread count, on the CPU exactly as on a GPU. Counted: [`Tensor::as_array_view`],
//! [`Tensor::to_array`], [`Tensor::to_vec`], [`Tensor::to_scalar`], [`Tensor::sum_all`],
//! [`Tensor::mean_all`], [`Tensor::max_abs`], [`Tensor::argmax_rows`], and
//! [`Tensor::to_device`] from another device to the CPU (a move from the CPU to the CPU
//! is no move, and is not counted).
//!
//! ```
//! use specreg_tensor::{DType, Device, HostReads, Tensor};
//! # fn main() -> specreg_tensor::Result<()> {
//! let x = Tensor::ones(&[2, 3], DType::F32, &Device::Cpu)?;
//! let reads = HostReads::start();
//! let y = x.scale(2.0)?.sum_axis(1)?; // stays on the device
//! let total = y.sum_all()?; // one read
//! assert_eq!(total, 12.0);
//! assert_eq!(reads.ops(), vec!["sum_all"]);
//! # Ok(())
//! # }
//! ```
//!
//! [`Tensor::as_array_view`]: crate::Tensor::as_array_view
//! [`Tensor::to_array`]: crate::Tensor::to_array
//! [`Tensor::to_vec`]: crate::Tensor::to_vec
//! [`Tensor::to_scalar`]: crate::Tensor::to_scalar
//! [`Tensor::sum_all`]: crate::Tensor::sum_all
//! [`Tensor::mean_all`]: crate::Tensor::mean_all
//! [`Tensor::max_abs`]: crate::Tensor::max_abs
//! [`Tensor::argmax_rows`]: crate::Tensor::argmax_rows
//! [`Tensor::to_device`]: crate::Tensor::to_device

use std::cell::{Cell, RefCell};

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
    static RECORDERS: Cell<usize> = const { Cell::new(0) };
    static LOG: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
}

/// Host reads made by this thread since it started.
pub fn host_reads() -> u64 {
    COUNT.with(Cell::get)
}

/// Records one host read by operation `op`.
pub(crate) fn count(op: &'static str) {
    COUNT.with(|c| c.set(c.get() + 1));
    if RECORDERS.with(Cell::get) > 0 {
        LOG.with(|l| l.borrow_mut().push(op));
    }
}

/// The host reads this thread makes while the value is alive, with the name of the
/// operation behind each (for a test's failure message). Recorders may nest.
#[derive(Debug)]
pub struct HostReads {
    start_count: u64,
    start_log: usize,
}

impl HostReads {
    /// Starts recording.
    pub fn start() -> Self {
        RECORDERS.with(|r| r.set(r.get() + 1));
        Self {
            start_count: host_reads(),
            start_log: LOG.with(|l| l.borrow().len()),
        }
    }

    /// Reads since [`HostReads::start`].
    pub fn count(&self) -> u64 {
        host_reads() - self.start_count
    }

    /// The operation of each read since [`HostReads::start`], in order.
    pub fn ops(&self) -> Vec<&'static str> {
        LOG.with(|l| l.borrow()[self.start_log..].to_vec())
    }
}

impl Drop for HostReads {
    fn drop(&mut self) {
        let left = RECORDERS.with(|r| {
            let n = r.get().saturating_sub(1);
            r.set(n);
            n
        });
        if left == 0 {
            LOG.with(|l| l.borrow_mut().clear());
        }
    }
}
