//! Run-time device selection.

use crate::{Error, Result};

/// Where a tensor's data lives. Chosen at run time; every op dispatches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// Host memory; kernels from ndarray, faer and rayon.
    #[default]
    Cpu,
    /// The CUDA device with this ordinal.
    Cuda(usize),
}

impl Device {
    /// Opens CUDA device `ordinal`.
    ///
    /// Never panics: without the `cuda` feature this is [`Error::NotCompiledWithCuda`]; with
    /// it, each CUDA library is probed first and a missing one is
    /// [`Error::CudaLibraryMissing`] naming it.
    pub fn cuda(ordinal: usize) -> Result<Device> {
        #[cfg(feature = "cuda")]
        {
            crate::cuda::context(ordinal)?;
            Ok(Device::Cuda(ordinal))
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = ordinal;
            Err(Error::NotCompiledWithCuda)
        }
    }

    /// Parses `cpu`, `cuda` (ordinal 0) or `cuda:N`, opening CUDA devices as
    /// [`Device::cuda`] does.
    pub fn parse(s: &str) -> Result<Device> {
        match s.trim() {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Device::cuda(0),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Device::cuda(n),
                _ => Err(Error::InvalidArgument {
                    op: "Device::parse",
                    reason: format!("unknown device {other:?} (expected cpu, cuda or cuda:N)"),
                }),
            },
        }
    }

    /// Whether this is the host.
    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }

    /// Waits until all queued work on the device has finished (a no-op on the CPU). Benches
    /// call it inside the timed region so they measure work, not queueing.
    pub fn synchronize(&self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            Device::Cuda(n) => crate::cuda::synchronize(*n),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => Err(Error::NotCompiledWithCuda),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_cpu_and_reject_garbage() {
        assert_eq!(Device::parse("cpu").unwrap(), Device::Cpu);
        let err = Device::parse("tpu").unwrap_err();
        assert!(err.to_string().contains("tpu"), "{err}");
        assert_eq!(Device::Cuda(1).to_string(), "cuda:1");
    }

    #[test]
    fn cuda_without_gpu_is_an_error_not_a_panic() {
        // On machines without CUDA (CI, this project's dev machines) opening a device must
        // fail cleanly; with a GPU present it succeeds.
        match Device::cuda(0) {
            Ok(d) => assert_eq!(d, Device::Cuda(0)),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("CUDA") || msg.contains("cuda"), "{msg}");
            }
        }
    }
}
