//! The NVRTC compile check of the CUDA kernels, which needs libnvrtc but no GPU: every
//! kernel module compiles for `sm_80` and `sm_90` (as PTX through cudarc's
//! `compile_ptx_with_opts`, and as the CUBIN the backend loads), and every entry point the
//! backend loads is in the PTX.
//!
//! Without libnvrtc on the loader path the test says so and passes, unless
//! `SPECREG_REQUIRE_NVRTC=1` (set by `.ci/run`), which makes it fail. CI installs the
//! `nvidia-cuda-nvrtc` wheel into `target/nvrtc-venv` and points `LD_LIBRARY_PATH` at its
//! `nvidia/cu13/lib`.
#![cfg(feature = "cuda")]

use cudarc::nvrtc::{CompileOptions, compile_ptx_with_opts};
use specreg_tensor::cuda::kernels::{self, Module};

const ARCHS: [&str; 2] = ["sm_80", "sm_90"];

/// Whether to run: libnvrtc present, or a failure when it is required.
fn nvrtc_or_skip(test: &str) -> bool {
    if kernels::nvrtc_available() {
        return true;
    }
    let required = std::env::var("SPECREG_REQUIRE_NVRTC").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: SPECREG_REQUIRE_NVRTC=1 but libnvrtc cannot be loaded (LD_LIBRARY_PATH = {:?})",
        std::env::var("LD_LIBRARY_PATH").unwrap_or_default()
    );
    eprintln!("{test} skipped: libnvrtc not found (install the nvidia-cuda-nvrtc wheel)");
    false
}

/// The `.entry` names of a PTX text.
fn ptx_entries(ptx: &str) -> Vec<String> {
    ptx.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix(".visible .entry ")?;
            Some(rest.split('(').next()?.trim().to_string())
        })
        .collect()
}

#[test]
fn every_kernel_module_compiles_to_ptx_with_every_loaded_entry_point() {
    if !nvrtc_or_skip("nvrtc compile") {
        return;
    }
    let mut checked = 0;
    for module in Module::ALL {
        let wanted = module.entry_points();
        assert!(!wanted.is_empty(), "{} has no entry points", module.name());
        for arch in ARCHS {
            let opts = CompileOptions {
                arch: Some(arch),
                options: kernels::NVRTC_FLAGS.iter().map(|s| s.to_string()).collect(),
                name: Some(format!("{}.cu", module.name())),
                ..Default::default()
            };
            let ptx = compile_ptx_with_opts(module.source(), opts)
                .unwrap_or_else(|e| panic!("{} for {arch}: {e}", module.name()))
                .to_src();
            let entries = ptx_entries(&ptx);
            for name in &wanted {
                assert!(
                    entries.iter().any(|e| e == name),
                    "{} for {arch}: entry point {name} is missing from the PTX (has {entries:?})",
                    module.name()
                );
                checked += 1;
            }
        }
    }
    eprintln!("nvrtc: {checked} entry points found in the PTX of {ARCHS:?}");
}

#[test]
fn every_kernel_module_compiles_to_the_cubin_the_backend_loads() {
    if !nvrtc_or_skip("nvrtc cubin") {
        return;
    }
    for module in Module::ALL {
        for arch in ARCHS {
            let cubin = kernels::compile_cubin(module, arch)
                .unwrap_or_else(|e| panic!("{} for {arch}: {e}", module.name()));
            // An ELF image.
            assert_eq!(&cubin[..4], b"\x7fELF", "{} for {arch}", module.name());
        }
    }
}
