//! Links libtorch with `--no-as-needed`: nothing in tch references libtorch_cuda's symbols, so with
//! rustc's default `--as-needed` the CUDA backend is dropped and `Cuda::is_available()` is false.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.to_string_lossy());
    }
    println!("cargo:rerun-if-env-changed=TORCH_RUNTIME_LIB");
    if let Ok(lib) = std::env::var("TORCH_RUNTIME_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
}
