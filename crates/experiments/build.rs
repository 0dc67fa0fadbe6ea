//! Finds MNIST for this crate's tests, or marks them ignored with a warning saying where it
//! looked: see `specreg_data::testing`.

fn main() {
    specreg_data::testing::build_script(specreg_data::testing::Fetch::LocateOnly);
}
