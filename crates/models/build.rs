//! Links this crate's test and bench binaries against libtorch the way the worker is linked
//! (crates/build-torch): an rpath to LibTorch and `--no-as-needed`, so they find libtorch and keep
//! its CUDA backend.
fn main() {
    brainpipe_build_torch::link_libtorch(brainpipe_build_torch::Targets::All);
}
