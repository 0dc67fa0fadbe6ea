//! Finds MNIST for this crate's tests (downloading it into the per-user cache if it is
//! nowhere and the build is not offline), as `specreg_data::testing` describes. The build
//! script cannot depend on the crate it builds, so it compiles the library's sources as a
//! module of its own.

#[allow(dead_code, unused_imports, unused_macros, missing_docs)]
#[path = "src/lib.rs"]
mod specreg_data;

fn main() {
    specreg_data::testing::build_script(specreg_data::testing::Fetch::Download);
}
