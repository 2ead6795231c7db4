//! Links this crate's test, bench and example binaries against libtorch the way the CLI is linked
//! (rpath + `--no-as-needed`, see brainpipe-build-torch), so they find libtorch and keep CUDA.

fn main() {
    brainpipe_build_torch::link_libtorch(brainpipe_build_torch::Targets::All);
}
