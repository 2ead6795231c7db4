//! For build scripts of crates whose binaries or tests use tch: an rpath to LibTorch and
//! `-ltorch` between `--no-as-needed` / `--as-needed`.
//!
//! Nothing in tch references libtorch_cuda's symbols, so with rustc's default `--as-needed` the
//! linker drops libtorch (and with it the CUDA backend) and `Cuda::is_available()` is false on a
//! GPU machine. The crate calling this must depend on `torch-sys` directly, which gives its build
//! script `DEP_TCH_LIBTORCH_LIB`. `TORCH_RUNTIME_LIB` adds the LibTorch folder of another machine
//! (the device machine's venv) to the rpath.
//!
//! ```no_run
//! // build.rs
//! brainpipe_build_torch::link_libtorch(brainpipe_build_torch::Targets::All);
//! ```

/// Which link targets of the calling package get the arguments.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// Every target (tests, benches, examples, binaries).
    All,
    /// Only the binary of this name (`cargo:rustc-link-arg-bin`).
    Bin(&'a str),
}

/// Emits the link arguments; a no-op off Linux.
pub fn link_libtorch(targets: Targets<'_>) {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let emit = |arg: &str| match targets {
        Targets::All => println!("cargo:rustc-link-arg={arg}"),
        Targets::Bin(bin) => println!("cargo:rustc-link-arg-bin={bin}={arg}"),
    };
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        emit(&format!("-Wl,-rpath,{}", lib.to_string_lossy()));
    }
    println!("cargo:rerun-if-env-changed=TORCH_RUNTIME_LIB");
    if let Ok(lib) = std::env::var("TORCH_RUNTIME_LIB") {
        emit(&format!("-Wl,-rpath,{lib}"));
    }
    emit("-Wl,--no-as-needed");
    emit("-ltorch");
    emit("-Wl,--as-needed");
}
