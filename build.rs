//! Links the `brainpipe-torch` worker against libtorch with `--no-as-needed` (see
//! crates/build-torch); the `brainpipe` driver does not link libtorch at all (loading it costs
//! ~0.3 s of CPU and ~470 MB at every start).
fn main() {
    brainpipe_build_torch::link_libtorch(brainpipe_build_torch::Targets::Bin("brainpipe-torch"));
}
