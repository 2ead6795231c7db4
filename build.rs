//! Links the `brainpipe-torch` worker against libtorch with `--no-as-needed`: nothing in tch
//! references libtorch_cuda's symbols, so with rustc's default `--as-needed` the CUDA backend would
//! be dropped and `Cuda::is_available()` be false. The `brainpipe` driver does not link libtorch at
//! all (loading it costs ~0.3 s of CPU and ~470 MB at every start).
const WORKER: &str = "brainpipe-torch";

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg-bin={WORKER}=-Wl,-rpath,{}", lib.to_string_lossy());
    }
    println!("cargo:rerun-if-env-changed=TORCH_RUNTIME_LIB");
    if let Ok(lib) = std::env::var("TORCH_RUNTIME_LIB") {
        println!("cargo:rustc-link-arg-bin={WORKER}=-Wl,-rpath,{lib}");
    }
    println!("cargo:rustc-link-arg-bin={WORKER}=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg-bin={WORKER}=-ltorch");
    println!("cargo:rustc-link-arg-bin={WORKER}=-Wl,--as-needed");
}
